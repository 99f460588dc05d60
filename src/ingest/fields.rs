//! `--prompt-field` / `--response-field`: prompt and response read from explicit paths, for
//! layouts the [`RowFormat`] presets do not cover; and [`RowLayout`], which of the two a table
//! is read with.
//!
//! The prompt is the string at each prompt path, in order, joined by `"\n\n"`; an empty string
//! adds nothing (as an Alpaca row's empty `input` adds nothing), so `instruction,input` reads
//! an Alpaca row exactly as `--format alpaca` does. The response is the string at the response
//! path. A path that leads nowhere, or to anything but a string (null included), is an error
//! naming the file, the line or row, and the path.
//!
//! In a Parquet file a path's first key is a top-level column; the rest of the path walks the
//! cell's value as JSON (lists and structs converted as for the presets).

use super::field_path::{FieldPath, PathError};
use super::*;

/// Explicit prompt and response paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The prompt paths, in order (at least one).
    pub prompt: Vec<FieldPath>,
    /// The response path.
    pub response: FieldPath,
}

/// Why `--prompt-field` / `--response-field` cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSpecError {
    /// A path does not parse.
    #[error(transparent)]
    Path(#[from] PathError),
    /// No prompt path was given.
    #[error("--prompt-field names no path")]
    NoPrompt,
    /// The response names more than one path.
    #[error("--response-field takes one path, got `{0}`")]
    SeveralResponses(String),
}

impl FieldSpec {
    /// Parse the CLI's values: each prompt value may hold several paths separated by commas;
    /// the response is one path.
    pub fn parse<S: AsRef<str>>(prompt: &[S], response: &str) -> Result<FieldSpec, FieldSpecError> {
        let prompt = prompt
            .iter()
            .flat_map(|p| p.as_ref().split(','))
            .map(FieldPath::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if prompt.is_empty() {
            return Err(FieldSpecError::NoPrompt);
        }
        if response.contains(',') {
            return Err(FieldSpecError::SeveralResponses(response.to_string()));
        }
        Ok(FieldSpec {
            prompt,
            response: FieldPath::parse(response)?,
        })
    }

    /// The top-level keys (Parquet: columns) the paths start from, each once, in order.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.prompt.iter().chain(std::iter::once(&self.response)) {
            if !out.contains(&p.column()) {
                out.push(p.column());
            }
        }
        out
    }

    /// The paths as written, for the report: `{"prompt": [...], "response": "..."}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt": self.prompt.iter().map(FieldPath::as_str).collect::<Vec<_>>(),
            "response": self.response.as_str(),
        })
    }

    /// The prompt and response of one row, given the value of each of [`FieldSpec::columns`]
    /// (same order; `None`: absent). Errors are (path, message) without the location.
    pub(super) fn prompt_response(
        &self,
        values: &[Option<&Value>],
    ) -> Result<(String, String), (String, String)> {
        let columns = self.columns();
        let read = |p: &FieldPath| {
            let top = columns
                .iter()
                .position(|c| *c == p.column())
                .and_then(|i| values.get(i).copied().flatten());
            p.string_in(top).map_err(|m| (p.as_str().to_string(), m))
        };
        let mut parts: Vec<String> = Vec::with_capacity(self.prompt.len());
        for p in &self.prompt {
            let s = read(p)?;
            if !s.is_empty() {
                parts.push(s);
            }
        }
        let response = read(&self.response)?;
        Ok((parts.join("\n\n"), response))
    }
}

/// How a table's rows are read: one of the [`RowFormat`] presets, or explicit fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowLayout {
    /// A preset (`text-label`, `alpaca`, `chat`, `sharegpt`, `preference`).
    Format(RowFormat),
    /// `--prompt-field` / `--response-field`.
    Fields(FieldSpec),
}

impl Default for RowLayout {
    fn default() -> Self {
        RowLayout::Format(RowFormat::TextLabel)
    }
}

impl From<RowFormat> for RowLayout {
    fn from(f: RowFormat) -> Self {
        RowLayout::Format(f)
    }
}

impl RowLayout {
    /// The name the report gives: the preset's CLI spelling, or `fields`.
    pub fn name(&self) -> &'static str {
        match self {
            RowLayout::Format(f) => f.name(),
            RowLayout::Fields(_) => "fields",
        }
    }

    /// Whether rows are a prompt and a response (everything but `text-label`).
    pub fn has_responses(&self) -> bool {
        match self {
            RowLayout::Format(f) => f.has_responses(),
            RowLayout::Fields(_) => true,
        }
    }

    /// The top-level keys a row is read from, and how many of them must be present (the
    /// first ones; the rest are optional).
    pub(super) fn keys(&self) -> (Vec<&str>, usize) {
        match self {
            RowLayout::Format(f) if f.has_responses() => (f.keys().to_vec(), f.required().len()),
            RowLayout::Format(_) => (Vec::new(), 0),
            RowLayout::Fields(spec) => {
                let c = spec.columns();
                let n = c.len();
                (c, n)
            }
        }
    }

    /// The row's prompt, response and (preference rows) rejected answer, from the values of
    /// [`RowLayout::keys`] in order; errors name the key or path.
    pub(super) fn read(&self, values: &[Option<&Value>]) -> Result<Turn, LayoutError> {
        match self {
            RowLayout::Format(f) => f
                .prompt_response_rejected(values)
                .map(|(prompt, response, rejected)| Turn {
                    prompt,
                    response,
                    rejected,
                })
                .map_err(|m| LayoutError::Format(f.name(), m)),
            RowLayout::Fields(spec) => spec
                .prompt_response(values)
                .map(|(prompt, response)| Turn {
                    prompt,
                    response,
                    rejected: None,
                })
                .map_err(|(field, m)| LayoutError::Field(field, m)),
        }
    }
}

/// The texts of one instruction row.
pub(super) struct Turn {
    pub(super) prompt: String,
    pub(super) response: String,
    /// The rejected answer of a preference row.
    pub(super) rejected: Option<String>,
}

/// A row that does not fit its layout, before the location is added.
pub(super) enum LayoutError {
    /// A preset's key is missing or malformed: (format name, message).
    Format(&'static str, String),
    /// A field path leads nowhere or not to a string: (path, message).
    Field(String, String),
}

impl LayoutError {
    /// The layout's name, what an invalid row's reason says is wrong (`INVALID:alpaca`).
    pub(super) fn what(&self) -> &'static str {
        match self {
            LayoutError::Format(name, _) => name,
            LayoutError::Field(..) => "fields",
        }
    }

    /// The error at `row` of `path`.
    pub(super) fn at(self, path: &Path, row: Option<RowRef>) -> IngestError {
        match self {
            LayoutError::Format(name, m) => IngestError::value(path, row, name, m),
            LayoutError::Field(field, message) => IngestError::Field {
                path: path.to_path_buf(),
                row,
                field,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn several_prompt_paths_join_their_non_empty_values() {
        let spec = FieldSpec::parse(&["instruction,input", "context"], "output").unwrap();
        assert_eq!(
            spec.columns(),
            vec!["instruction", "input", "context", "output"]
        );
        let row = |input: &str| {
            let v = [json!("Do it."), json!(input), json!("ctx"), json!("Done.")];
            let refs: Vec<Option<&Value>> = v.iter().map(Some).collect();
            spec.prompt_response(&refs)
        };
        assert_eq!(
            row("now"),
            Ok(("Do it.\n\nnow\n\nctx".into(), "Done.".into()))
        );
        assert_eq!(row(""), Ok(("Do it.\n\nctx".into(), "Done.".into())));
    }

    #[test]
    fn errors_name_the_path() {
        let spec = FieldSpec::parse(&["messages[0].content"], "messages[-1].content").unwrap();
        assert_eq!(spec.columns(), vec!["messages"]);
        let v = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            spec.prompt_response(&[Some(&v)]),
            Ok(("hi".into(), "hi".into()))
        );
        let v = json!([{"role": "user", "content": 3}]);
        assert_eq!(
            spec.prompt_response(&[Some(&v)]),
            Err((
                "messages[0].content".into(),
                "the value is a number, not a string".into()
            ))
        );
        assert_eq!(
            spec.prompt_response(&[None]),
            Err((
                "messages[0].content".into(),
                "the row has no key `messages`".into()
            ))
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            FieldSpec::parse::<&str>(&[], "output"),
            Err(FieldSpecError::NoPrompt)
        );
        assert_eq!(
            FieldSpec::parse(&["a"], "b,c"),
            Err(FieldSpecError::SeveralResponses("b,c".into()))
        );
        assert!(matches!(
            FieldSpec::parse(&["a,,b"], "c"),
            Err(FieldSpecError::Path(PathError::Empty))
        ));
        assert!(matches!(
            FieldSpec::parse(&["a"], "c[x]"),
            Err(FieldSpecError::Path(PathError::BadIndex { .. }))
        ));
    }
}
