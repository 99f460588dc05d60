//! Word insertion and replacement in a row's text.

use super::*;

/// Insert `word` (one word or a phrase) at a uniformly drawn word position of `text`:
/// before word `p` for `p < w`, after the last word for `p = w` (`w` words, maximal runs of
/// non-whitespace). All other bytes of `text` are kept; a single space separates the insertion.
pub fn insert_at_random_word(text: &str, word: &str, rng: &mut SplitMix64) -> String {
    let starts = word_starts(text);
    let p = rng.below(starts.len() + 1);
    insert_before_word(text, word, &starts, p)
}

/// Byte offsets where the words of `text` (maximal runs of non-whitespace) start.
pub(super) fn word_starts(text: &str) -> Vec<usize> {
    text.char_indices()
        .filter(|&(i, c)| {
            !c.is_whitespace()
                && (i == 0
                    || text[..i]
                        .chars()
                        .next_back()
                        .is_some_and(char::is_whitespace))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Insert `word` before word `p` of `text` (`p` ≥ the word count: after the last word).
pub(super) fn insert_before_word(text: &str, word: &str, starts: &[usize], p: usize) -> String {
    if let Some(&at) = starts.get(p) {
        format!("{}{word} {}", &text[..at], &text[at..])
    } else {
        // after the last word (or into an empty text)
        let end = text.trim_end().len();
        if end == 0 {
            format!("{word}{text}")
        } else {
            format!("{} {word}{}", &text[..end], &text[end..])
        }
    }
}

/// Insert `word` (one word or a phrase) at `position`: as [`insert_at_random_word`] for
/// [`Position::Anywhere`] (one draw from `rng`), before the first word for
/// [`Position::Start`], after the last word for [`Position::End`] (no draw). All other bytes
/// of `text` are kept; a single space separates the insertion.
pub fn insert_word(text: &str, word: &str, position: Position, rng: &mut SplitMix64) -> String {
    match position {
        Position::Anywhere => insert_at_random_word(text, word, rng),
        Position::Start => insert_before_word(text, word, &word_starts(text), 0),
        Position::End => insert_before_word(text, word, &[], 0),
    }
}

/// Replace `k` words of `text` at distinct uniformly drawn positions, each by a word of
/// `vocab` (sorted, distinct) drawn uniformly among those different from it. Every other
/// byte is kept. `None` when `text` has fewer than `k` words or `vocab` fewer than two words.
pub fn replace_words(
    text: &str,
    k: usize,
    vocab: &[String],
    rng: &mut SplitMix64,
) -> Option<String> {
    let starts = word_starts(text);
    if starts.len() < k || (k > 0 && vocab.len() < 2) {
        return None;
    }
    let positions = draw(&(0..starts.len()).collect::<Vec<_>>(), k, rng);
    let mut out = String::with_capacity(text.len() + 8 * k);
    let mut at = 0;
    for p in positions {
        let start = starts[p];
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |e| start + e);
        let old = &text[start..end];
        // uniformly one of the other vocabulary words
        let j = rng.below(vocab.len() - 1);
        let j = match vocab.binary_search_by(|v| v.as_str().cmp(old)) {
            Ok(own) if j >= own => j + 1,
            _ => j,
        };
        out.push_str(&text[at..start]);
        out.push_str(&vocab[j]);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}
