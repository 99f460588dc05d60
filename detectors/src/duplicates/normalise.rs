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
pub fn normalize(text: &str, norm: &Normalization) -> String {
    // ASCII is its own NFKC form, and lower-cases byte by byte: the common case skips both
    // Unicode passes
    let ascii = text.is_ascii();
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
        let raw = Normalization {
            nfkc: false,
            case_fold: false,
            collapse_whitespace: false,
        };
        assert_eq!(normalize(" A  b", &raw), " A  b");
    }
}
