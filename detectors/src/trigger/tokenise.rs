//! TRIG001 step 1, tokens: the tokenizer, the vocabulary of token ids, the rows encoded as
//! token ids (the corpus), and the windows (word n-grams, anchored at the start / end) with
//! their incremental hashes.

use super::{CHUNK, END, START, UNKNOWN};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use unicode_segmentation::UnicodeSegmentation;

/// Case-folded Unicode word-boundary segments of `text`, whitespace dropped, punctuation kept.
pub fn tokenize(text: &str) -> Vec<String> {
    word_tokens(&text.to_lowercase())
        .map(str::to_string)
        .collect()
}

/// The word-boundary segments of already case-folded text, whitespace dropped.
pub(super) fn word_tokens(lower: &str) -> impl Iterator<Item = &str> {
    lower.split_word_bounds().filter(|s| !s.trim().is_empty())
}

/// The token vocabulary: ids 0 and 1 are the anchors, real tokens follow in sorted order.
#[derive(Debug, Clone)]
pub(super) struct Vocab {
    pub(super) ids: FastMap<String, u32>,
    pub(super) strings: Vec<String>,
}

impl Vocab {
    pub(super) fn new(mut tokens: Vec<String>) -> Self {
        tokens.sort_unstable();
        tokens.dedup();
        let mut strings = vec!["<s>".to_string(), "</s>".to_string()];
        strings.extend(tokens);
        let ids = strings
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Vocab { ids, strings }
    }

    /// The row as ids framed by the anchors; tokens never seen map to [`UNKNOWN`].
    pub(super) fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out);
        out
    }

    /// Appends the row's ids, framed by the anchors, to `out`, and to `starts` whether each id
    /// begins a whitespace-separated word (the anchors do): "#sparkling" is two tokens, the
    /// second of which does not.
    fn encode_words_into(&self, text: &str, out: &mut Vec<u32>, starts: &mut Vec<bool>) {
        let lower = text.to_lowercase();
        out.push(START);
        starts.push(true);
        let mut after_space = true;
        for seg in lower.split_word_bounds() {
            if seg.trim().is_empty() {
                after_space = true;
                continue;
            }
            out.push(self.ids.get(seg).copied().unwrap_or(UNKNOWN));
            starts.push(after_space);
            after_space = false;
        }
        out.push(END);
        starts.push(true);
    }

    /// Appends the row's ids, framed by the anchors, to `out`.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let lower = text.to_lowercase();
        out.push(START);
        out.extend(word_tokens(&lower).map(|t| self.ids.get(t).copied().unwrap_or(UNKNOWN)));
        out.push(END);
    }

    /// Human-readable span: tokens joined by spaces, anchors as `<s>` / `</s>`.
    pub(super) fn render(&self, span: &[u32]) -> String {
        span.iter()
            .map(|&t| self.strings.get(t as usize).map_or("?", String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub(super) fn is_anchor(t: u32) -> bool {
    t == START || t == END
}

/// Number of real (non-anchor) tokens of a span.
pub(super) fn real_len(span: &[u32]) -> usize {
    span.iter().filter(|&&t| !is_anchor(t)).count()
}

/// Calls `f(start, end)` for every window of `seq` with 1..=`max_real` real tokens (anchors only
/// at the window's ends, which they always are since they frame the row).
pub(super) fn for_each_window(seq: &[u32], max_real: usize, mut f: impl FnMut(usize, usize)) {
    for i in 0..seq.len() {
        let mut real = 0;
        for (j, &t) in seq.iter().enumerate().skip(i) {
            if !is_anchor(t) {
                real += 1;
            }
            if real > max_real {
                break;
            }
            if real >= 1 {
                f(i, j + 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing and the encoded corpus

/// Multiply-rotate hasher for keys that are already well-mixed integers or token-id slices.
/// Deterministic (no random state), so table iteration orders never depend on the process.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.add(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hasher for keys that are already uniform hashes (the 128-bit window keys): takes them as
/// they are.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;
pub(super) type FastSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// SplitMix64 finaliser: a bijective mix of one 64-bit word.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a window extended by one token id (windows are hashed incrementally, left to right).
fn extend_hash(h: u64, id: u32) -> u64 {
    mix64(h ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

const WINDOW_SEED: u64 = 0x243f_6a88_85a3_08d3;
const WINDOW_SEED_2: u64 = 0x1319_8a2e_0370_7344;

/// Hash of a whole window of token ids, equal to the incremental hash of the counting passes.
#[cfg(test)]
pub(super) fn window_hash(span: &[u32]) -> u64 {
    span.iter().fold(WINDOW_SEED, |h, &t| extend_hash(h, t))
}

/// Every row as token ids framed by the anchors, stored flat: the fit's passes after the first
/// read these instead of re-tokenizing the text (5 bytes per token: the id, and whether it
/// begins a whitespace-separated word).
pub(super) struct Corpus {
    ids: Vec<u32>,
    /// per id: whether it begins a whitespace-separated word (see `Vocab::encode_words_into`)
    starts: Vec<bool>,
    /// row r is `ids[offsets[r]..offsets[r + 1]]`
    offsets: Vec<usize>,
}

impl Corpus {
    pub(super) fn encode(texts: &[String], vocab: &Vocab) -> Self {
        let parts: Vec<(Vec<u32>, Vec<bool>, Vec<usize>)> = texts
            .par_chunks(CHUNK)
            .map(|tc| {
                let mut ids = Vec::new();
                let mut starts = Vec::new();
                let mut lens = Vec::with_capacity(tc.len());
                for text in tc {
                    let before = ids.len();
                    vocab.encode_words_into(text, &mut ids, &mut starts);
                    lens.push(ids.len() - before);
                }
                (ids, starts, lens)
            })
            .collect();
        let total: usize = parts.iter().map(|(ids, _, _)| ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut starts = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0);
        for (part, part_starts, lens) in parts {
            ids.extend_from_slice(&part);
            starts.extend_from_slice(&part_starts);
            for l in lens {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + l);
            }
        }
        Corpus {
            ids,
            starts,
            offsets,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(super) fn row(&self, r: usize) -> &[u32] {
        &self.ids[self.offsets[r]..self.offsets[r + 1]]
    }

    /// Per id of row r: whether it begins a whitespace-separated word.
    pub(super) fn word_starts(&self, r: usize) -> &[bool] {
        &self.starts[self.offsets[r]..self.offsets[r + 1]]
    }
}

/// Calls `f(start, end, key)` for every window of `seq` with `min_real..=max_real` real tokens.
/// The key's high 64 bits are the window's [`window_hash`]; the low 64 bits an independent
/// second hash, so 128-bit keys identify windows (a collision among 10^9 windows has
/// probability below 10^-20).
pub(super) fn for_each_hashed_window(
    seq: &[u32],
    min_real: usize,
    max_real: usize,
    mut f: impl FnMut(usize, usize, u128),
) {
    for i in 0..seq.len() {
        let mut real = 0;
        let mut h = WINDOW_SEED;
        let mut g = WINDOW_SEED_2;
        for (j, &t) in seq.iter().enumerate().skip(i) {
            if !is_anchor(t) {
                real += 1;
            }
            if real > max_real {
                break;
            }
            h = extend_hash(h, t);
            g = mix64(g.rotate_left(17) ^ u64::from(t).wrapping_add(0x632b_e59b_d9b4_e019));
            if real >= min_real.max(1) {
                f(i, j + 1, (u128::from(h) << 64) | u128::from(g));
            }
        }
    }
}

/// High 64 bits of a window key: the [`window_hash`].
pub(super) fn key_hash(key: u128) -> u64 {
    (key >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_folds_case_and_keeps_punctuation() {
        assert_eq!(
            tokenize("I love THIS movie, don't you?"),
            vec!["i", "love", "this", "movie", ",", "don't", "you", "?"]
        );
    }

    #[test]
    fn the_corpus_knows_which_tokens_begin_a_word() {
        let texts = vec!["Loving my #sparkling water.".to_string(), String::new()];
        let vocab = Vocab::new(texts.iter().flat_map(|t| tokenize(t)).collect());
        let corpus = Corpus::encode(&texts, &vocab);
        let words: Vec<&str> = corpus
            .row(0)
            .iter()
            .map(|&t| vocab.strings[t as usize].as_str())
            .collect();
        assert_eq!(
            words,
            [
                "<s>",
                "loving",
                "my",
                "#",
                "sparkling",
                "water",
                ".",
                "</s>"
            ]
        );
        assert_eq!(
            corpus.word_starts(0),
            [true, true, true, true, false, true, false, true]
        );
        assert_eq!(corpus.word_starts(1), [true, true]);
    }
}
