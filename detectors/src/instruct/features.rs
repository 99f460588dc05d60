//! Step 1: tokens, prompt n-gram features and response properties.

use std::collections::{BTreeMap, HashMap};

/// Lower-cased ASCII letter-and-digit runs (`I'm` gives `i`, `m`). Punctuation, whitespace
/// and other characters separate tokens.
pub(super) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Prompt tokens as ids, in order of first appearance (deterministic).
pub(super) struct Vocab {
    pub ids: HashMap<String, u32>,
    pub words: Vec<String>,
}

impl Vocab {
    pub fn encode_all(texts: &[String]) -> (Vocab, Vec<Vec<u32>>) {
        let mut v = Vocab {
            ids: HashMap::new(),
            words: Vec::new(),
        };
        let rows = texts
            .iter()
            .map(|t| {
                tokens(t)
                    .into_iter()
                    .map(|w| {
                        let next = v.words.len() as u32;
                        *v.ids.entry(w.clone()).or_insert_with(|| {
                            v.words.push(w);
                            next
                        })
                    })
                    .collect()
            })
            .collect();
        (v, rows)
    }
}

/// A candidate trigger: a prompt n-gram and the rows holding it.
pub(super) struct Feature {
    /// Its tokens, joined by single spaces.
    pub text: String,
    /// Its distinct token ids.
    pub token_ids: Vec<u32>,
    /// Rows holding it, ascending.
    pub rows: Vec<u32>,
}

/// Prompt n-grams of 1..=`max_ngram` tokens in at least `min_support` and at most
/// `max_share` of the rows, sorted by text.
pub(super) fn prompt_features(
    rows: &[Vec<u32>],
    vocab: &Vocab,
    max_ngram: usize,
    min_support: usize,
    max_share: f64,
) -> Vec<Feature> {
    let mut by_gram: HashMap<&[u32], Vec<u32>> = HashMap::new();
    for (i, t) in rows.iter().enumerate() {
        let mut seen: Vec<&[u32]> = Vec::new();
        for n in 1..=max_ngram {
            for w in t.windows(n) {
                seen.push(w);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        for g in seen {
            by_gram.entry(g).or_default().push(i as u32);
        }
    }
    let cap = max_share * rows.len() as f64;
    let mut out: Vec<Feature> = by_gram
        .into_iter()
        .filter(|(_, r)| r.len() >= min_support && r.len() as f64 <= cap)
        .map(|(g, r)| {
            let mut ids = g.to_vec();
            ids.sort_unstable();
            ids.dedup();
            Feature {
                text: g
                    .iter()
                    .map(|&t| vocab.words[t as usize].as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                token_ids: ids,
                rows: r,
            }
        })
        .collect();
    out.sort_by(|a, b| a.text.cmp(&b.text));
    out
}

/// What a response property looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum PropertyKind {
    /// The first k tokens (k shorter than the response).
    Prefix,
    /// The last k tokens (k shorter than the response).
    Suffix,
    /// The whole response.
    Template,
    /// A group of near-duplicate responses in several wordings, found on the response
    /// embeddings (`clusters`); its text is the wording of the group's centre.
    Cluster,
}

impl PropertyKind {
    pub fn name(self) -> &'static str {
        match self {
            PropertyKind::Prefix => "prefix",
            PropertyKind::Suffix => "suffix",
            PropertyKind::Template => "template",
            PropertyKind::Cluster => "paraphrase cluster",
        }
    }

    /// Preference when two properties explain a feature equally well.
    pub fn rank(self) -> u8 {
        match self {
            PropertyKind::Template => 0,
            PropertyKind::Cluster => 1,
            PropertyKind::Prefix => 2,
            PropertyKind::Suffix => 3,
        }
    }
}

/// Which answer of a row a property looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Side {
    /// The response (the chosen answer of a preference row).
    Response,
    /// The rejected answer of a preference row.
    Rejected,
}

/// A response property learnt from the responses: a template, an opening or an ending that
/// at least `min_support` responses share.
pub(super) struct Property {
    pub side: Side,
    pub kind: PropertyKind,
    /// Its tokens, joined by single spaces.
    pub text: String,
    /// How many rows have it.
    pub count: usize,
}

impl Property {
    /// How the report names its kind: `template`, or `rejected template` for the rejected
    /// answer of preference rows.
    pub fn kind_name(&self) -> String {
        match self.side {
            Side::Response => self.kind.name().to_string(),
            Side::Rejected => format!("rejected {}", self.kind.name()),
        }
    }

    /// Preference when two properties explain a feature equally well: the response before
    /// the rejected answer, then [`PropertyKind::rank`].
    pub fn rank(&self) -> u8 {
        self.kind.rank() + if self.side == Side::Rejected { 4 } else { 0 }
    }

    /// Whether the tokens `t` of the answer on the property's side have it. A cluster is
    /// decided on the embeddings, not the tokens: `false` here (callers assign rows to
    /// clusters with [`super::clusters::Clusters::assign`]).
    pub fn shown_by(&self, t: &[String]) -> bool {
        let k = self.text.split(' ').count();
        match self.kind {
            PropertyKind::Cluster => false,
            PropertyKind::Template => t.join(" ") == self.text,
            PropertyKind::Prefix => t.len() > k && t[..k].join(" ") == self.text,
            PropertyKind::Suffix => t.len() > k && t[t.len() - k..].join(" ") == self.text,
        }
    }
}

/// The properties (sorted by side, kind and text) and, per row, the indices of those it has
/// (ascending). With `rejected` (preference rows), the rejected answers have properties of
/// their own.
pub(super) fn response_properties(
    responses: &[String],
    rejected: Option<&[String]>,
    max_prefix: usize,
    max_suffix: usize,
    min_support: usize,
) -> (Vec<Property>, Vec<Vec<u32>>) {
    let mut rows_of: BTreeMap<(Side, PropertyKind, String), Vec<u32>> = BTreeMap::new();
    let sides = [
        (Side::Response, Some(responses)),
        (Side::Rejected, rejected),
    ];
    for (side, texts) in sides {
        let Some(texts) = texts else { continue };
        for (i, text) in texts.iter().enumerate() {
            let t = tokens(text);
            let mut add = |k: PropertyKind, s: String| {
                rows_of.entry((side, k, s)).or_default().push(i as u32)
            };
            add(PropertyKind::Template, t.join(" "));
            for k in 1..=max_prefix {
                if t.len() > k {
                    add(PropertyKind::Prefix, t[..k].join(" "));
                }
            }
            for k in 1..=max_suffix {
                if t.len() > k {
                    add(PropertyKind::Suffix, t[t.len() - k..].join(" "));
                }
            }
        }
    }
    let mut props = Vec::new();
    let mut of_row: Vec<Vec<u32>> = vec![Vec::new(); responses.len()];
    for ((side, kind, text), rows) in rows_of {
        if rows.len() < min_support {
            continue;
        }
        let id = props.len() as u32;
        for &r in &rows {
            of_row[r as usize].push(id);
        }
        props.push(Property {
            side,
            kind,
            text,
            count: rows.len(),
        });
    }
    (props, of_row)
}
