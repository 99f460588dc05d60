//! Normalisation of texts before hashing and shingling (NFKC, case fold, whitespace).

use unicode_normalization::UnicodeNormalization;

/// How texts are normalised before hashing and shingling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalization {
    /// Unicode NFKC.
    pub nfkc: bool,
    /// Unicode lower-casing.
    pub case_fold: bool,
    /// Collapse runs of whitespace into one space and trim the ends.
    pub collapse_whitespace: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            nfkc: true,
            case_fold: true,
            collapse_whitespace: true,
        }
    }
}

/// Normalise `text` as `norm` says (NFKC, then case fold, then whitespace).
///
/// With whitespace collapsed, the words are the writer's: the text is cut at its whitespace
/// first and each word is normalised on its own, dropping any whitespace the normalisation
/// yields. NFKC decomposes some spacing marks into a space and a combining mark (U+02DC SMALL
/// TILDE becomes U+0020 U+0303, U+00B4 ACUTE ACCENT U+0020 U+0301), and normalising the whole
/// text would cut `‘˜this` into two words: a copy with that word replaced by one word would then
/// differ in length from its original, and no word-level near-duplicate key would see the pair.
pub fn normalize(text: &str, norm: &Normalization) -> String {
    // ASCII is its own NFKC form, and lower-cases byte by byte: the common case skips both
    // Unicode passes
    let ascii = text.is_ascii();
    if norm.collapse_whitespace && !ascii {
        let mut out = String::with_capacity(text.len());
        for word in text.split_whitespace() {
            let mut w: String = if norm.nfkc {
                word.nfkc().filter(|c| !c.is_whitespace()).collect()
            } else {
                word.to_string()
            };
            if norm.case_fold {
                w = w.to_lowercase();
            }
            if w.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&w);
        }
        return out;
    }
    let mut s: String = if norm.nfkc && !ascii {
        text.nfkc().collect()
    } else {
        text.to_string()
    };
    if norm.case_fold {
        if ascii {
            s.make_ascii_lowercase();
        } else {
            s = s.to_lowercase();
        }
    }
    if norm.collapse_whitespace {
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_nfkc_case_space() {
        let n = Normalization::default();
        assert_eq!(normalize("  Ｈello\t WORLD \n", &n), "hello world");
        // a spacing tilde decomposes into a space and a combining tilde: the word stays one
        assert_eq!(normalize("‘˜This is", &n), "‘\u{303}this is");
        assert_eq!(normalize("a\u{3000}b\u{a0} c", &n), "a b c");
        let raw = Normalization {
            nfkc: false,
            case_fold: false,
            collapse_whitespace: false,
        };
        assert_eq!(normalize(" A  b", &raw), " A  b");
    }
}
