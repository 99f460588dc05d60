//! Near duplicates a few words apart: word hashes, one-word-edit neighbourhood keys and the
//! verified pairs of exact groups one word edit apart; aligned block keys and the verified pairs
//! of equally long texts with a few words substituted.

use super::minhash::{mod_mersenne, words};
use super::{NearParams, CHUNK, MERSENNE};
use crate::rng::splitmix;
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Whether one word sequence is the other with words added (the shorter is a subsequence of
/// the longer, and they differ).
pub(super) fn only_added(a: &[u64], b: &[u64]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.len() == long.len() {
        return false;
    }
    let mut it = long.iter();
    short.iter().all(|w| it.any(|x| x == w))
}

/// Whether one text is the other with whole words added once the whitespace is ignored: the
/// longer text's words, some of them left out, spell the shorter text's characters. Catches a
/// word added where the other text has no space (`movie. #ugh #revenge` / `movie.#ugh`), which
/// aligned words read as substitutions; a replaced word never spells the one it replaced.
pub(super) fn only_added_words(a: &str, b: &str) -> bool {
    let squeeze = |t: &str| t.split_whitespace().collect::<String>();
    let (sa, sb) = (squeeze(a), squeeze(b));
    let (short, long) = if sa.len() <= sb.len() {
        (sa, b)
    } else {
        (sb, a)
    };
    let mut rest = short.as_str();
    let mut left_out = 0usize;
    for w in long.split_whitespace() {
        match rest.strip_prefix(w) {
            Some(r) => rest = r,
            None => left_out += 1,
        }
    }
    rest.is_empty() && left_out > 0
}

/// Whether two word sequences are at most one word edit apart (substitution, insertion or
/// deletion) and not equal.
fn one_word_edit(a: &[u64], b: &[u64]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => short.iter().zip(long).filter(|(x, y)| x != y).count() == 1,
        1 => {
            let p = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[p..] == long[p + 1..]
        }
        _ => false,
    }
}

/// One-word-edit neighbourhood keys of a word-hash sequence: the whole sequence and each
/// sequence with one word deleted, as polynomial hashes mod 2⁶¹ − 1 (with the length). Two
/// sequences one edit apart share a key (a substitution at i: both minus word i; an insertion:
/// the longer minus the inserted word equals the shorter), so no such pair is missed; keys can
/// also be shared by sequences two edits apart or by hash collisions, so candidates are
/// verified with [`one_word_edit`]. O(n) per text through prefix and suffix hashes.
fn edit_keys(w: &[u64], base: u64) -> Vec<(usize, u64)> {
    let n = w.len();
    let mulmod = |a: u64, b: u64| mod_mersenne(a as u128 * b as u128);
    let addmod = |a: u64, b: u64| mod_mersenne(a as u128 + b as u128);
    // pow[k] = base^k, prefix[i] = hash of w[..i], suffix[i] = hash of w[i..]
    let mut pow = vec![1u64; n + 1];
    for k in 1..=n {
        pow[k] = mulmod(pow[k - 1], base);
    }
    let mut prefix = vec![0u64; n + 1];
    for i in 0..n {
        prefix[i + 1] = addmod(mulmod(prefix[i], base), w[i]);
    }
    let mut suffix = vec![0u64; n + 1];
    for i in (0..n).rev() {
        suffix[i] = addmod(mulmod(w[i], pow[n - 1 - i]), suffix[i + 1]);
    }
    let mut keys = Vec::with_capacity(n + 1);
    keys.push((n, prefix[n]));
    for i in 0..n {
        // w[..i] then w[i+1..]: prefix shifted by the n − 1 − i words that follow
        keys.push((
            n - 1,
            addmod(mulmod(prefix[i], pow[n - 1 - i]), suffix[i + 1]),
        ));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Word hashes (mod 2⁶¹ − 1) of each representative's normalised text.
pub(super) fn word_hashes(normalized: &[String], reps: &[usize], seed: u64) -> Vec<Vec<u64>> {
    reps.par_chunks(CHUNK)
        .flat_map_iter(|c| {
            c.iter()
                .map(|&r| text_word_hashes(&normalized[r], seed))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Word hashes (mod 2⁶¹ − 1) of one normalised text.
pub(super) fn text_word_hashes(normalized: &str, seed: u64) -> Vec<u64> {
    words(normalized)
        .iter()
        .map(|w| xxh3_64_with_seed(w.as_bytes(), seed) % MERSENNE)
        .collect()
}

/// The base of the one-word-edit keys' polynomial hashes, drawn from the seed.
pub(super) fn edit_base(near: &NearParams) -> u64 {
    let mut state = near.seed ^ 0xED17_0000_0000_0001;
    splitmix(&mut state) % (MERSENNE - 2) + 2
}

/// One-word-edit keys of a text's words `t` (none when it is too short for a pair: a pair
/// needs max(words) ≥ `min_words`, so the shorter text has at least `min_words` − 1).
pub(super) fn text_edit_keys(t: &[u64], min_words: usize, base: u64) -> Vec<(usize, u64)> {
    if t.len() + 1 >= min_words && !t.is_empty() {
        edit_keys(t, base)
    } else {
        Vec::new()
    }
}

/// The edit similarity 1 − 1/max(words) of two texts one word edit apart, the longer having at
/// least `min_words` words; `None` for any other pair.
pub(super) fn verify_edit(ta: &[u64], tb: &[u64], min_words: usize) -> Option<f64> {
    let longest = ta.len().max(tb.len());
    (longest >= min_words && one_word_edit(ta, tb)).then(|| 1.0 - 1.0 / longest as f64)
}

/// Most words that may be substituted in a text of `n` words: one per `min_words` words (the
/// similarity 1 − d/n then stays at or above the one-word edit's 1 − 1/`min_words`).
pub(super) fn max_substitutions(n: usize, min_words: usize) -> usize {
    n / min_words.max(1)
}

/// Positions at which two equally long word sequences differ.
fn hamming(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Aligned block keys of a text of n words allowing d = [`max_substitutions`] substituted words:
/// the positions are cut into d + 1 contiguous blocks, and each block's words (with n and the
/// block's index) make one key. Two equally long texts that differ in at most d positions leave
/// at least one block untouched (pigeonhole), so they share that key: no such pair is missed.
fn block_keys(w: &[u64], d: usize) -> Vec<u64> {
    let n = w.len();
    let blocks = d + 1;
    let mut bytes = Vec::with_capacity(8 * (n / blocks + 3));
    (0..blocks)
        .map(|j| {
            bytes.clear();
            bytes.extend_from_slice(&(n as u64).to_le_bytes());
            bytes.extend_from_slice(&(j as u64).to_le_bytes());
            for x in &w[j * n / blocks..(j + 1) * n / blocks] {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            xxh3_64_with_seed(&bytes, 0x5B57_0000_0000_0002)
        })
        .collect()
}

/// Aligned block keys of a text's words `t` (none when fewer than two substitutions are
/// allowed: one is a one-word edit).
pub(super) fn text_block_keys(t: &[u64], min_words: usize) -> Vec<u64> {
    let d = max_substitutions(t.len(), min_words);
    if d >= 2 {
        block_keys(t, d)
    } else {
        Vec::new()
    }
}

/// The similarity 1 − d/n of two equally long texts of n words that differ in 2 to
/// ⌊n / `min_words`⌋ word positions (one position is a one-word edit, found by
/// [`verify_edit`]); `None` for any other pair. A flipped copy with a few words replaced by
/// other words keeps its length and the order of the rest: 5-gram MinHash misses it below
/// about 50 words (each substitution breaks five shingles).
pub(super) fn verify_substitution(ta: &[u64], tb: &[u64], min_words: usize) -> Option<f64> {
    if ta.len() != tb.len() {
        return None;
    }
    let n = ta.len();
    let d = hamming(ta, tb);
    (d >= 2 && d <= max_substitutions(n, min_words)).then(|| 1.0 - d as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_edit_keys_find_every_edit() {
        let base = 0x1234_5678_9abc;
        let a: Vec<u64> = vec![1, 2, 3, 4, 5];
        let sub = vec![1, 2, 9, 4, 5];
        let ins = vec![1, 2, 3, 9, 4, 5];
        let del = vec![1, 3, 4, 5];
        let two = vec![1, 9, 3, 9, 5];
        let shares = |x: &[u64], y: &[u64]| {
            let kx = edit_keys(x, base);
            edit_keys(y, base).iter().any(|k| kx.contains(k))
        };
        for b in [&sub, &ins, &del] {
            assert!(shares(&a, b) && one_word_edit(&a, b), "{b:?}");
        }
        assert!(!one_word_edit(&a, &two) && !one_word_edit(&a, &a));
    }

    #[test]
    fn words_added_without_a_space_are_not_substitutions() {
        assert!(only_added_words(
            "a spider movie. #ugh #revenge",
            "a spider movie.  #ugh"
        ));
        assert!(only_added_words(
            "stop smiling ;'( #pictureday2016 #smile #ornot",
            "stop smiling ;'(#pictureday2016  #ornot"
        ));
        // a replaced word does not spell the one it replaced, even when it contains it
        assert!(!only_added_words(
            "the film is a gem",
            "the film is brilliant gem"
        ));
        assert!(!only_added_words("the film is a gem", "the film is a gem"));
    }

    #[test]
    fn block_keys_find_every_pair_within_the_substitution_budget() {
        // 15 words allow 3 substitutions: every choice of 3 positions leaves a shared block
        let a: Vec<u64> = (1..=15).collect();
        let d = max_substitutions(a.len(), 5);
        assert_eq!(d, 3);
        let ka = block_keys(&a, d);
        for i in 0..15 {
            for j in i + 1..15 {
                for k in j + 1..15 {
                    let mut b = a.clone();
                    for p in [i, j, k] {
                        b[p] += 100;
                    }
                    let kb = block_keys(&b, d);
                    assert!(ka.iter().zip(&kb).any(|(x, y)| x == y), "{i} {j} {k}");
                    assert_eq!(hamming(&a, &b), 3);
                }
            }
        }
        let mut b = a.clone();
        b[2] = 99;
        b[9] = 98;
        let mut c = a.clone();
        for p in [0, 4, 8, 12] {
            c[p] = 97;
        }
        // a–b differ in 2 of 15 words; c differs from a in 4 (over the budget of 3) and from b in 6
        let sim = verify_substitution(&a, &b, 5).expect("a and b");
        assert!((sim - 13.0 / 15.0).abs() < 1e-12);
        assert_eq!(verify_substitution(&a, &c, 5), None);
        assert_eq!(verify_substitution(&b, &c, 5), None);
    }
}
