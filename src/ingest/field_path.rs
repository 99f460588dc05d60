//! Field paths: where in a row `--prompt-field` and `--response-field` find their text.
//!
//! A path is a top-level key followed by steps into nested values:
//!
//! ```text
//! path  := key step*
//! step  := "." key | "[" index "]"
//! key   := one or more characters other than ".", "[" and "]"
//! index := "-"? digit+        (negative: from the end, -1 the last item; "-0" is refused)
//! ```
//!
//! `instruction`, `conversations[-1].value`, `data.turns[0].text` and `a.b[2]` are paths.
//! Surrounding whitespace is trimmed; whitespace inside a key is part of the key. A key holding
//! `.`, `[`, `]` (or `,`, which separates several prompt paths on the command line) cannot be
//! named.
//!
//! The parser is written by hand: the grammar is four productions, and a JSONPath or JMESPath
//! crate would accept a much larger language (filters, wildcards, slices, quoting) whose
//! results are lists rather than the single value a prompt or a response must be, and would
//! give its own error messages where ours name the offending byte of the path.

use std::fmt;

use serde_json::Value;

use super::json_kind;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object key.
    Key(String),
    /// A list index; negative counts from the end (`-1` is the last item).
    Index(i64),
}

/// A parsed field path (see the [module docs](self) for the grammar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    steps: Vec<Step>,
}

/// Why a field path does not parse. `at` is a 0-based byte offset into the trimmed path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty (or only whitespace).
    #[error("the field path is empty")]
    Empty,
    /// A key is empty: the path starts with `.` or `[`, ends with `.`, or holds `..` or `.[`.
    #[error("field path `{path}`: empty key at byte {at}")]
    EmptySegment {
        /// The path.
        path: String,
        /// Where the key should start.
        at: usize,
    },
    /// The text between `[` and `]` is not an integer.
    #[error("field path `{path}`: `[{index}]` is not a list index (an integer, negative from the end: [0], [-1])")]
    BadIndex {
        /// The path.
        path: String,
        /// The text between the brackets.
        index: String,
    },
    /// A `[` has no matching `]`.
    #[error("field path `{path}`: the `[` at byte {at} is not closed")]
    Unclosed {
        /// The path.
        path: String,
        /// Where the `[` is.
        at: usize,
    },
    /// A character that cannot come where it is: a `]` without `[`, or text right after `]`.
    #[error("field path `{path}`: unexpected `{found}` at byte {at} (a key or `]` is followed by `.`, `[` or the end)")]
    Unexpected {
        /// The path.
        path: String,
        /// Where.
        at: usize,
        /// The character found.
        found: char,
    },
}

impl FieldPath {
    /// Parse a path; see the [module docs](self).
    pub fn parse(raw: &str) -> Result<FieldPath, PathError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        let path = || text.to_string();
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        // a key is expected at the start and after every `.`
        let mut i = 0usize;
        let mut want_key = true;
        while i < bytes.len() {
            if want_key {
                let end = text[i..]
                    .find(['.', '[', ']'])
                    .map_or(text.len(), |k| i + k);
                if end == i {
                    if bytes[i] == b']' {
                        return Err(PathError::Unexpected {
                            path: path(),
                            at: i,
                            found: ']',
                        });
                    }
                    return Err(PathError::EmptySegment {
                        path: path(),
                        at: i,
                    });
                }
                steps.push(Step::Key(text[i..end].to_string()));
                i = end;
                want_key = false;
                continue;
            }
            match bytes[i] {
                b'.' => {
                    i += 1;
                    want_key = true;
                    if i == bytes.len() {
                        return Err(PathError::EmptySegment {
                            path: path(),
                            at: i,
                        });
                    }
                }
                b'[' => {
                    let close = text[i..].find(']').map(|k| i + k);
                    let Some(close) = close else {
                        return Err(PathError::Unclosed {
                            path: path(),
                            at: i,
                        });
                    };
                    let inner = &text[i + 1..close];
                    // a second `[` before the `]` means this one was never closed
                    if inner.contains('[') {
                        return Err(PathError::Unclosed {
                            path: path(),
                            at: i,
                        });
                    }
                    steps.push(Step::Index(parse_index(inner).ok_or_else(|| {
                        PathError::BadIndex {
                            path: path(),
                            index: inner.to_string(),
                        }
                    })?));
                    i = close + 1;
                }
                _ => {
                    let found = text[i..].chars().next().unwrap_or(']');
                    return Err(PathError::Unexpected {
                        path: path(),
                        at: i,
                        found,
                    });
                }
            }
        }
        Ok(FieldPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The path as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The steps, the first always a [`Step::Key`].
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The top-level key (for Parquet: the column) the path starts from.
    pub fn column(&self) -> &str {
        match self.steps.first() {
            Some(Step::Key(k)) => k,
            _ => "",
        }
    }

    /// The string the path leads to, starting from the value of [`FieldPath::column`]
    /// (`None`: the row has no such key). Errors are messages without the file, row and path,
    /// which the caller adds.
    pub fn string_in(&self, top: Option<&Value>) -> Result<String, String> {
        let Some(mut v) = top else {
            return Err(format!("the row has no key `{}`", self.column()));
        };
        // the prefix walked so far, for messages
        let mut walked = self.column().to_string();
        for step in self.steps.iter().skip(1) {
            v = match (step, v) {
                (Step::Key(k), Value::Object(o)) => o
                    .get(k)
                    .ok_or_else(|| format!("`{walked}` has no key `{k}`"))?,
                (Step::Index(i), Value::Array(items)) => {
                    let n = items.len();
                    let at = if *i < 0 {
                        usize::try_from(i.unsigned_abs())
                            .ok()
                            .and_then(|back| n.checked_sub(back))
                    } else {
                        usize::try_from(*i).ok().filter(|&k| k < n)
                    };
                    at.and_then(|k| items.get(k)).ok_or_else(|| {
                        format!(
                            "`{walked}` has {n} item{}, so [{i}] is out of range",
                            if n == 1 { "" } else { "s" }
                        )
                    })?
                }
                (Step::Key(k), other) => {
                    return Err(format!(
                        "`{walked}` is {}, not an object, so it has no key `{k}`",
                        json_kind(other)
                    ))
                }
                (Step::Index(i), other) => {
                    return Err(format!(
                        "`{walked}` is {}, not a list, so it has no item [{i}]",
                        json_kind(other)
                    ))
                }
            };
            match step {
                Step::Key(k) => {
                    walked.push('.');
                    walked.push_str(k);
                }
                Step::Index(i) => walked.push_str(&format!("[{i}]")),
            }
        }
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("the value is {}, not a string", json_kind(other))),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An index: an optional `-` and ASCII digits, fitting an `i64`, not `-0`.
fn parse_index(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = s.parse().ok()?;
    (!(v == 0 && s.starts_with('-'))).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn the_grammar() {
        let p = |s: &str| FieldPath::parse(s).map(|p| p.steps().to_vec());
        assert_eq!(p("instruction"), Ok(vec![key("instruction")]));
        assert_eq!(
            p("conversations[-1].value"),
            Ok(vec![key("conversations"), Step::Index(-1), key("value")])
        );
        assert_eq!(
            p("data.turns[0].text"),
            Ok(vec![key("data"), key("turns"), Step::Index(0), key("text")])
        );
        assert_eq!(p("a.b[2]"), Ok(vec![key("a"), key("b"), Step::Index(2)]));
        assert_eq!(
            p("m[1][-2]"),
            Ok(vec![key("m"), Step::Index(1), Step::Index(-2)])
        );
        // whitespace around the path is trimmed; inside a key it is kept
        let q = FieldPath::parse("  user prompt.text ").unwrap();
        assert_eq!(q.as_str(), "user prompt.text");
        assert_eq!(q.column(), "user prompt");
    }

    #[test]
    fn empty_paths_and_segments() {
        assert_eq!(FieldPath::parse(""), Err(PathError::Empty));
        assert_eq!(FieldPath::parse("  "), Err(PathError::Empty));
        for (s, at) in [("a..b", 2), (".a", 0), ("a.", 2), ("a.[0]", 2), ("[0]", 0)] {
            assert_eq!(
                FieldPath::parse(s),
                Err(PathError::EmptySegment { path: s.into(), at }),
                "{s}"
            );
        }
    }

    #[test]
    fn bad_indices() {
        for (s, index) in [
            ("a[x]", "x"),
            ("a[]", ""),
            ("a[1.5]", "1.5"),
            ("a[--1]", "--1"),
            ("a[-]", "-"),
            ("a[ 1]", " 1"),
            ("a[-0]", "-0"),
            ("a[99999999999999999999]", "99999999999999999999"),
        ] {
            assert_eq!(
                FieldPath::parse(s),
                Err(PathError::BadIndex {
                    path: s.into(),
                    index: index.into()
                }),
                "{s}"
            );
        }
    }

    #[test]
    fn unclosed_and_unexpected_brackets() {
        assert_eq!(
            FieldPath::parse("a[1"),
            Err(PathError::Unclosed {
                path: "a[1".into(),
                at: 1
            })
        );
        assert_eq!(
            FieldPath::parse("a[1[2]"),
            Err(PathError::Unclosed {
                path: "a[1[2]".into(),
                at: 1
            })
        );
        assert_eq!(
            FieldPath::parse("a]"),
            Err(PathError::Unexpected {
                path: "a]".into(),
                at: 1,
                found: ']'
            })
        );
        assert_eq!(
            FieldPath::parse("a[0]b"),
            Err(PathError::Unexpected {
                path: "a[0]b".into(),
                at: 4,
                found: 'b'
            })
        );
        assert_eq!(
            FieldPath::parse("a.]"),
            Err(PathError::Unexpected {
                path: "a.]".into(),
                at: 2,
                found: ']'
            })
        );
        // messages name the path and the place
        let e = FieldPath::parse("turns[0").unwrap_err().to_string();
        assert!(e.contains("turns[0") && e.contains("byte 5"), "{e}");
    }

    #[test]
    fn resolution() {
        let row = json!({
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
            "data": {"turns": [{"text": "first"}], "n": 3},
        });
        let get = |s: &str| {
            let p = FieldPath::parse(s).unwrap();
            p.string_in(row.get(p.column()))
        };
        assert_eq!(get("conversations[-1].value"), Ok("hello".into()));
        assert_eq!(get("conversations[0].value"), Ok("hi".into()));
        assert_eq!(get("conversations[-2].value"), Ok("hi".into()));
        assert_eq!(get("data.turns[0].text"), Ok("first".into()));
        assert_eq!(get("missing"), Err("the row has no key `missing`".into()));
        assert_eq!(
            get("conversations[2].value"),
            Err("`conversations` has 2 items, so [2] is out of range".into())
        );
        assert_eq!(
            get("conversations[-3].value"),
            Err("`conversations` has 2 items, so [-3] is out of range".into())
        );
        assert_eq!(
            get("data.turns[0].txt"),
            Err("`data.turns[0]` has no key `txt`".into())
        );
        assert_eq!(
            get("data.n"),
            Err("the value is a number, not a string".into())
        );
        assert_eq!(
            get("data[0]"),
            Err("`data` is an object, not a list, so it has no item [0]".into())
        );
        assert_eq!(
            get("conversations.value"),
            Err("`conversations` is an array, not an object, so it has no key `value`".into())
        );
    }
}
