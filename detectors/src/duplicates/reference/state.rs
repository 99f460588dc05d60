//! The trusted corpus as a mergeable state: every distinct normalised text once, with its label
//! counts and the first row it came from.
//!
//! Entries are keyed by the xxh3-128 hash of the normalised text (then the text itself, so two
//! texts that collide stay two entries) and kept sorted by that key. A partial is the entries of
//! any subset of the rows; merging two partials is a sorted merge that adds the counts of equal
//! keys and keeps the smaller first row. Integer addition and `min` are associative and
//! commutative, and the label table is the sorted union of names, so every partitioning of the
//! rows and every merge order give the same entries and therefore the same bytes (tested).
//!
//! Layout after the [`Header`] (little-endian): rows (u64), the label names (u32 count, then each
//! as u32 length and UTF-8 bytes, sorted), the entries (u64 count, then each as hash (16 bytes),
//! first row (u64), text (u32 length, UTF-8), label counts (u32 count, then (u32 label index, u64
//! count) pairs in label order, no zero count)), then the embedding dimension (u64, 0 when the
//! corpus was fitted without embeddings) and, when it is not 0, the per-label [`Moments`] of the
//! embeddings (u32 count, then each as u32 label index and u64 length followed by the moments'
//! own bytes, labels ascending). Moments are exact integer sums, so they merge like the counts.
//! A file that breaks any of these rules (unsorted keys, an index outside the label table, a zero
//! count, moments whose rows disagree with the label counts, bytes left over) is refused, never
//! half read.

use super::super::normalise::{normalize, Normalization};
use crate::state::{Header, Moments, StateError};
use crate::ClassIndex;
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_128;

/// Code written into the state's header.
pub const STATE_CODE: &str = "REFERENCE";
/// Version of the state's layout and keying; bumped when the bytes for the same rows change.
pub const STATE_VERSION: u16 = 2;
/// Rows per partial when a state is built from many rows (fixed, so the work split never
/// depends on the thread count; the result does not depend on it either).
const PARTIAL_ROWS: usize = 8192;

/// One distinct normalised text of the trusted corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// xxh3-128 of the normalised text.
    pub hash: u128,
    /// The normalised text.
    pub text: String,
    /// The first row (in the order the rows were given) that had this text.
    pub first: u64,
    /// Rows per label (index into [`ReferenceState::labels`]), ascending, no zero count.
    pub counts: Vec<(u32, u64)>,
}

impl Entry {
    /// Rows of this text, all labels together.
    pub fn rows(&self) -> u64 {
        self.counts.iter().map(|c| c.1).sum()
    }
}

/// The trusted corpus a new batch is judged against (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceState {
    norm: Normalization,
    rows: u64,
    labels: Vec<String>,
    entries: Vec<Entry>,
    /// Embedding dimension (0: fitted without embeddings).
    dims: usize,
    /// Per label (index into `labels`, ascending): the moments of its rows' embeddings.
    moments: Vec<(u32, Moments)>,
}

/// The header in front of each label's moments.
fn moments_header(dims: usize) -> Header {
    Header::new(STATE_CODE, STATE_VERSION, &json!({ "moments_dims": dims }))
}

/// The header of a reference state made with normalisation `norm`.
pub fn state_header(norm: &Normalization) -> Header {
    Header::new(STATE_CODE, STATE_VERSION, &normalization_json(norm))
}

/// The normalisation as it is echoed into reports and digested into the header.
pub fn normalization_json(norm: &Normalization) -> serde_json::Value {
    json!({
        "nfkc": norm.nfkc,
        "case_fold": norm.case_fold,
        "collapse_whitespace": norm.collapse_whitespace,
        "hash": "xxh3-128",
    })
}

impl ReferenceState {
    /// An empty state (no rows) for normalisation `norm`.
    pub fn empty(norm: Normalization) -> Self {
        ReferenceState {
            norm,
            rows: 0,
            labels: Vec::new(),
            entries: Vec::new(),
            dims: 0,
            moments: Vec::new(),
        }
    }

    /// The state of `texts` with labels `labels` (indices into `class_names`), the first of them
    /// being row `first_row` of the whole corpus. Built from fixed-size partials merged in
    /// parallel; the result is the same for any split.
    pub fn from_rows(
        texts: &[String],
        labels: &[ClassIndex],
        class_names: &[String],
        first_row: u64,
        norm: Normalization,
    ) -> Result<Self, StateError> {
        if texts.len() != labels.len() {
            return Err(StateError::Shape {
                expected: texts.len(),
                got: labels.len(),
            });
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(StateError::Shape {
                expected: class_names.len(),
                got: bad as usize + 1,
            });
        }
        let parts: Vec<ReferenceState> = texts
            .par_chunks(PARTIAL_ROWS)
            .zip(labels.par_chunks(PARTIAL_ROWS))
            .enumerate()
            .map(|(ci, (t, l))| {
                let start = first_row + (ci * PARTIAL_ROWS) as u64;
                Self::partial(t, l, class_names, start, norm)
            })
            .collect();
        parts
            .into_par_iter()
            .map(Ok)
            .try_reduce(|| ReferenceState::empty(norm), |a, b| a.merge(b))
    }

    /// One partial, sequentially.
    fn partial(
        texts: &[String],
        labels: &[ClassIndex],
        class_names: &[String],
        first_row: u64,
        norm: Normalization,
    ) -> Self {
        // the labels this partial uses, sorted by name
        let mut used: Vec<&str> = labels
            .iter()
            .map(|&l| class_names[l as usize].as_str())
            .collect();
        used.sort_unstable();
        used.dedup();
        let index: BTreeMap<&str, u32> = used
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, i as u32))
            .collect();
        let mut by_key: BTreeMap<(u128, String), (u64, BTreeMap<u32, u64>)> = BTreeMap::new();
        for (j, (t, &l)) in texts.iter().zip(labels).enumerate() {
            let text = normalize(t, &norm);
            let hash = xxh3_128(text.as_bytes());
            let e = by_key
                .entry((hash, text))
                .or_insert_with(|| (first_row + j as u64, BTreeMap::new()));
            *e.1.entry(index[class_names[l as usize].as_str()])
                .or_insert(0) += 1;
        }
        ReferenceState {
            norm,
            rows: texts.len() as u64,
            dims: 0,
            moments: Vec::new(),
            labels: used.into_iter().map(str::to_string).collect(),
            entries: by_key
                .into_iter()
                .map(|((hash, text), (first, counts))| Entry {
                    hash,
                    text,
                    first,
                    counts: counts.into_iter().collect(),
                })
                .collect(),
        }
    }

    /// The exact merge of two states of the same normalisation: counts of equal texts added,
    /// the smaller first row kept, label tables united. Associative and commutative.
    pub fn merge(self, other: ReferenceState) -> Result<Self, StateError> {
        if self.norm != other.norm {
            return Err(StateError::Mismatch {
                field: "normalisation",
                found: normalization_json(&other.norm).to_string(),
                expected: normalization_json(&self.norm).to_string(),
            });
        }
        let rows = self
            .rows
            .checked_add(other.rows)
            .ok_or(StateError::Overflow)?;
        let mut labels: Vec<String> = self.labels.iter().chain(&other.labels).cloned().collect();
        labels.sort_unstable();
        labels.dedup();
        let remap = |names: &[String]| -> Vec<u32> {
            names
                .iter()
                .map(|n| labels.binary_search(n).unwrap_or_default() as u32)
                .collect()
        };
        let (ma, mb) = (remap(&self.labels), remap(&other.labels));
        let relabel = |e: Entry, m: &[u32]| Entry {
            counts: e.counts.iter().map(|&(l, c)| (m[l as usize], c)).collect(),
            ..e
        };
        let mut entries = Vec::with_capacity(self.entries.len() + other.entries.len());
        let mut a = self.entries.into_iter().map(|e| relabel(e, &ma)).peekable();
        let mut b = other
            .entries
            .into_iter()
            .map(|e| relabel(e, &mb))
            .peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => (x.hash, &x.text).cmp(&(y.hash, &y.text)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            let next = match order {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => match (a.next(), b.next()) {
                    (Some(x), Some(y)) => Some(add_entries(x, y)?),
                    _ => None,
                },
            };
            entries.extend(next);
        }
        // moments: both sides must have embeddings of one dimension, unless one has no rows
        let (dims, moments) = match (self.rows, other.rows) {
            (0, _) => (other.dims, relabel_moments(other.moments, &mb)),
            (_, 0) => (self.dims, relabel_moments(self.moments, &ma)),
            _ if self.dims != other.dims => {
                return Err(StateError::Shape {
                    expected: self.dims,
                    got: other.dims,
                })
            }
            _ => {
                let mut by_label: BTreeMap<u32, Moments> = BTreeMap::new();
                for (l, m) in relabel_moments(self.moments, &ma)
                    .into_iter()
                    .chain(relabel_moments(other.moments, &mb))
                {
                    match by_label.get_mut(&l) {
                        Some(acc) => acc.merge(&m)?,
                        None => {
                            by_label.insert(l, m);
                        }
                    }
                }
                (self.dims, by_label.into_iter().collect())
            }
        };
        Ok(ReferenceState {
            norm: self.norm,
            rows,
            labels,
            entries,
            dims,
            moments,
        })
    }

    /// Add the moments of the rows' embeddings (`x`: the rows in the order of
    /// [`ReferenceState::from_rows`], `d` columns, row-major) per label. Only for a state made by
    /// `from_rows` from exactly these rows and labels.
    pub fn add_embeddings(
        &mut self,
        x: &[f32],
        d: usize,
        labels: &[ClassIndex],
        class_names: &[String],
    ) -> Result<(), StateError> {
        if d == 0 || x.len() != labels.len() * d || labels.len() as u64 != self.rows {
            return Err(StateError::Shape {
                expected: self.rows as usize,
                got: x.len() / d.max(1),
            });
        }
        if d > crate::state::MAX_MOMENT_DIMS {
            return Err(StateError::TooWide(d));
        }
        let mut by_label: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        for (row, &l) in x.chunks_exact(d).zip(labels) {
            let name = class_names.get(l as usize).ok_or(StateError::Shape {
                expected: class_names.len(),
                got: l as usize + 1,
            })?;
            let li = self
                .labels
                .binary_search(name)
                .map_err(|_| invalid("a label of the embeddings is not in the state"))?;
            by_label
                .entry(li as u32)
                .or_default()
                .extend_from_slice(row);
        }
        let moments: Vec<(u32, Moments)> = by_label
            .into_par_iter()
            .map(|(l, rows)| {
                let mut m = Moments::new(d);
                m.update_rows(&rows).map(|()| (l, m))
            })
            .collect::<Result<_, _>>()?;
        self.dims = d;
        self.moments = moments;
        Ok(())
    }

    /// Rows of the trusted corpus with the label `name` (0 for a label it does not have).
    pub fn label_rows(&self, name: &str) -> u64 {
        match self.labels.binary_search_by(|n| n.as_str().cmp(name)) {
            Ok(l) => label_totals(&self.entries, self.labels.len())[l],
            Err(_) => 0,
        }
    }

    /// Embedding dimension of the moments (0: none).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The moments of the embeddings of label `name`'s rows, when the state has embeddings.
    pub fn moments_of(&self, name: &str) -> Option<&Moments> {
        let li = self
            .labels
            .binary_search_by(|n| n.as_str().cmp(name))
            .ok()? as u32;
        self.moments.iter().find(|(l, _)| *l == li).map(|(_, m)| m)
    }

    /// Whether the trusted corpus has the normalised text `text` with the label `label`.
    pub fn confirms(&self, text: &str, label: &str) -> bool {
        let key = (xxh3_128(text.as_bytes()), text);
        let Ok(at) = self
            .entries
            .binary_search_by(|e| (e.hash, e.text.as_str()).cmp(&key))
        else {
            return false;
        };
        let Ok(l) = self.labels.binary_search_by(|n| n.as_str().cmp(label)) else {
            return false;
        };
        self.entries[at]
            .counts
            .iter()
            .any(|&(x, _)| x as usize == l)
    }

    /// Rows the state was built from.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Label names, sorted.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Distinct normalised texts, sorted by key.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The normalisation the texts were made with.
    pub fn normalization(&self) -> Normalization {
        self.norm
    }

    /// The state's bytes (header first).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = state_header(&self.norm).to_bytes();
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        for l in &self.labels {
            put_str(&mut out, l);
        }
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.hash.to_le_bytes());
            out.extend_from_slice(&e.first.to_le_bytes());
            put_str(&mut out, &e.text);
            out.extend_from_slice(&(e.counts.len() as u32).to_le_bytes());
            for &(l, c) in &e.counts {
                out.extend_from_slice(&l.to_le_bytes());
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.dims as u64).to_le_bytes());
        if self.dims > 0 {
            out.extend_from_slice(&(self.moments.len() as u32).to_le_bytes());
            let header = moments_header(self.dims);
            for (l, m) in &self.moments {
                let bytes = m.to_bytes(&header);
                out.extend_from_slice(&l.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        out
    }

    /// Read a state written with normalisation `norm`; any other header, or bytes that break
    /// the layout's rules, is an error.
    pub fn from_bytes(bytes: &[u8], norm: Normalization) -> Result<Self, StateError> {
        let mut r = Reader(state_header(&norm).check(bytes)?);
        let rows = r.u64()?;
        let n_labels = r.u32()? as usize;
        let mut labels = Vec::with_capacity(n_labels.min(1 << 16));
        for _ in 0..n_labels {
            labels.push(r.string()?);
        }
        if labels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("label names are not sorted and distinct"));
        }
        let n_entries = r.u64()?;
        let mut entries: Vec<Entry> = Vec::with_capacity((n_entries as usize).min(1 << 20));
        let mut total = 0u64;
        for _ in 0..n_entries {
            let hash = r.u128()?;
            let first = r.u64()?;
            let text = r.string()?;
            if xxh3_128(text.as_bytes()) != hash {
                return Err(invalid("an entry's hash does not match its text"));
            }
            let k = r.u32()? as usize;
            let mut counts = Vec::with_capacity(k.min(n_labels));
            for _ in 0..k {
                let l = r.u32()?;
                let c = r.u64()?;
                if l as usize >= n_labels || c == 0 {
                    return Err(invalid("a label count names no label or is zero"));
                }
                if counts.last().is_some_and(|&(p, _)| p >= l) {
                    return Err(invalid("an entry's labels are not in order"));
                }
                total = total.checked_add(c).ok_or(StateError::Overflow)?;
                counts.push((l, c));
            }
            if counts.is_empty() {
                return Err(invalid("an entry has no rows"));
            }
            if let Some(p) = entries.last() {
                if (p.hash, &p.text) >= (hash, &text) {
                    return Err(invalid("entries are not sorted by key"));
                }
            }
            entries.push(Entry {
                hash,
                text,
                first,
                counts,
            });
        }
        if total != rows {
            return Err(invalid("the label counts do not add up to the row count"));
        }
        let totals = label_totals(&entries, n_labels);
        let dims = usize::try_from(r.u64()?).map_err(|_| invalid("embedding dimension"))?;
        let mut moments: Vec<(u32, Moments)> = Vec::new();
        if dims > 0 {
            let header = moments_header(dims);
            let k = r.u32()? as usize;
            for _ in 0..k {
                let l = r.u32()?;
                let len = usize::try_from(r.u64()?).map_err(|_| StateError::Truncated)?;
                let m = Moments::from_bytes(r.take(len)?, &header)?;
                if l as usize >= n_labels || moments.last().is_some_and(|&(p, _)| p >= l) {
                    return Err(invalid("moments name no label or are not in label order"));
                }
                if m.dims() != dims {
                    return Err(invalid("moments of another dimension"));
                }
                if m.rows() != totals[l as usize] {
                    return Err(invalid("moments' rows differ from the label's row count"));
                }
                moments.push((l, m));
            }
        }
        if !r.0.is_empty() {
            return Err(StateError::Trailing(r.0.len()));
        }
        Ok(ReferenceState {
            norm,
            rows,
            labels,
            entries,
            dims,
            moments,
        })
    }
}

/// Rows per label index over `entries` (indices below `n_labels`).
fn label_totals(entries: &[Entry], n_labels: usize) -> Vec<u64> {
    let mut t = vec![0u64; n_labels];
    for &(l, c) in entries.iter().flat_map(|e| e.counts.iter()) {
        if let Some(slot) = t.get_mut(l as usize) {
            *slot += c;
        }
    }
    t
}

fn relabel_moments(m: Vec<(u32, Moments)>, map: &[u32]) -> Vec<(u32, Moments)> {
    m.into_iter()
        .map(|(l, m)| (map.get(l as usize).copied().unwrap_or(l), m))
        .collect()
}

fn add_entries(x: Entry, y: Entry) -> Result<Entry, StateError> {
    let mut counts: BTreeMap<u32, u64> = x.counts.into_iter().collect();
    for (l, c) in y.counts {
        let slot = counts.entry(l).or_insert(0);
        *slot = slot.checked_add(c).ok_or(StateError::Overflow)?;
    }
    Ok(Entry {
        hash: x.hash,
        text: x.text,
        first: x.first.min(y.first),
        counts: counts.into_iter().collect(),
    })
}

fn invalid(what: &str) -> StateError {
    StateError::Mismatch {
        field: "reference layout",
        found: what.to_string(),
        expected: "a state written by `poisongate fit`".to_string(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Bounds-checked little-endian reads from untrusted bytes.
struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], StateError> {
        if self.0.len() < n {
            return Err(StateError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u128(&mut self) -> Result<u128, StateError> {
        let mut b = [0u8; 16];
        b.copy_from_slice(self.take(16)?);
        Ok(u128::from_le_bytes(b))
    }
    fn string(&mut self) -> Result<String, StateError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid("a string is not UTF-8"))
    }
}
