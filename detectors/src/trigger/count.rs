//! TRIG001 step 2, counts: the count-min sketch of window document frequencies, the exact
//! per-label token table (pass 1), and the exact statistics and neighbour samples of the
//! candidate windows (pass 2).

use super::tokenise::{for_each_hashed_window, key_hash, mix64, word_tokens, Corpus, KeyMap};
use super::{CHUNK, SKETCH_DEPTH};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, Ordering};

/// A blocked count-min sketch: each key's `SKETCH_DEPTH` counters lie in one 32-byte block, so
/// an update or a query touches one cache line (two at most). Counters are 16-bit and stop at
/// [`Sketch::SATURATED`]: the sketch only screens windows against `min_support`, so an estimate
/// is either never under the true count (below the cap, as in any count-min sketch) or
/// saturated, which lets the window through whatever `min_support` is (the exact pass decides);
/// half the memory of 32-bit counters.
///
/// Saturation without a compare-and-swap loop: an addition that finds the counter at the cap
/// or above takes itself back. The first such addition finds every earlier one kept, so kept
/// additions reach the cap before any is taken back and never pass it: a counter ends at
/// min(additions, cap) whatever the interleaving, and in between holds at most the cap plus
/// the additions in flight (one per thread), far below 2¹⁶.
pub(super) struct Sketch {
    /// number of 16-counter blocks (a power of two)
    blocks: usize,
    cells: Vec<AtomicU16>,
}

impl Sketch {
    /// A sketch for about `windows` window occurrences: 16 counters per 8 occurrences, so each
    /// of the four levels carries about two occurrences a counter and a window seen once passes
    /// `min_support` = 5 by collisions alone with probability about P(Poisson(2) ≥ 5)⁴ ≈ 10⁻⁵
    /// (sized by rows instead, at 32 counters a row, a million rows of 20 words let most rare
    /// windows through and the exact pass held 10 GB). At most 2²³ blocks (256 MiB).
    pub(super) fn new(windows: usize) -> Self {
        let blocks = (windows.max(1) / 8)
            .next_power_of_two()
            .clamp(1 << 8, 1 << 23);
        Sketch {
            blocks,
            cells: (0..blocks * 16).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    /// The largest count a counter holds; it then stays there.
    pub(super) const SATURATED: u32 = 1 << 15;

    /// Whether a window whose key hashes to `h` may occur in `min_support` rows: its estimate
    /// reaches `min_support`, or is saturated.
    pub(super) fn may_reach(&self, h: u64, min_support: u32) -> bool {
        self.estimate(h) >= min_support.min(Self::SATURATED)
    }

    fn slots(&self, h: u64) -> [usize; SKETCH_DEPTH] {
        let m = mix64(h ^ 0xd6e8_feb8_6659_fd93);
        let base = (m as usize & (self.blocks - 1)) * 16;
        let within = m >> 40;
        // four distinct counters of the block: one in each quarter
        std::array::from_fn(|level| base + level * 4 + ((within >> (2 * level)) & 3) as usize)
    }

    fn add(&self, h: u64) {
        for slot in self.slots(h) {
            // saturating additions commute: the final table is the same for any thread count
            let cell = &self.cells[slot];
            if u32::from(cell.fetch_add(1, Ordering::Relaxed)) >= Self::SATURATED {
                cell.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The smallest of the window's counters: never under its true count below
    /// [`Sketch::SATURATED`].
    pub(super) fn estimate(&self, h: u64) -> u32 {
        self.slots(h)
            .into_iter()
            .map(|slot| u32::from(self.cells[slot].load(Ordering::Relaxed)))
            .min()
            .unwrap_or(0)
    }

    /// Document frequency of every window of two or more ids, each counted once per row.
    pub(super) fn fill(&self, corpus: &Corpus, max_real: usize) {
        (0..corpus.len())
            .into_par_iter()
            .with_min_len(CHUNK)
            .for_each_init(Vec::new, |seen: &mut Vec<u64>, r| {
                let seq = corpus.row(r);
                seen.clear();
                for_each_hashed_window(seq, 1, max_real, |a, b, key| {
                    if b - a >= 2 {
                        seen.push(key_hash(key));
                    }
                });
                seen.sort_unstable();
                seen.dedup();
                for &h in seen.iter() {
                    self.add(h);
                }
            });
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 1: token frequencies

/// token string -> (per-label document frequency, occurrences)
type TokenTable = HashMap<String, (Vec<u32>, u64)>;

pub(super) fn count_tokens(texts: &[String], labels: &[u32], n_classes: usize) -> TokenTable {
    texts
        .par_chunks(CHUNK)
        .zip(labels.par_chunks(CHUNK))
        .fold(TokenTable::new, |mut table, (tc, lc)| {
            for (text, &label) in tc.iter().zip(lc) {
                let lower = text.to_lowercase();
                let mut distinct: Vec<&str> = Vec::new();
                for t in word_tokens(&lower) {
                    match table.get_mut(t) {
                        Some(e) => e.1 += 1,
                        None => {
                            table.insert(t.to_string(), (vec![0; n_classes], 1));
                        }
                    }
                    distinct.push(t);
                }
                distinct.sort_unstable();
                distinct.dedup();
                for t in &distinct {
                    if let Some(e) = table.get_mut(*t) {
                        e.0[label as usize] += 1;
                    }
                }
            }
            table
        })
        .reduce(TokenTable::new, |a, b| {
            let (mut a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (k, (df, occ)) in b {
                let e = a.entry(k).or_insert_with(|| (vec![0; n_classes], 0));
                for (x, y) in e.0.iter_mut().zip(df) {
                    *x += y;
                }
                e.1 += occ;
            }
            a
        })
}

// ---------------------------------------------------------------------------------------------
// Pass 2: exact statistics of candidate windows

/// Occurrences whose neighbours are kept per span: the `NEIGHBOUR_SAMPLE` with the smallest
/// occurrence hash (a bottom-k sample, the same whatever the chunking or thread count), so a
/// span's memory is bounded while spans seen fewer times are counted exactly.
const NEIGHBOUR_SAMPLE: usize = 4096;

/// Neighbour id of an occurrence at a row's edge (where the anchor itself is the window's end).
const NO_NEIGHBOUR: u32 = u32::MAX - 1;

/// (occurrence hash, left neighbour, right neighbour, whether the window is part of a longer
/// whitespace-separated word: a token glued to it on either side).
type Occurrence = (u32, u32, u32, bool);

#[derive(Debug, Clone, Default)]
pub(super) struct SpanStats {
    /// the window's token ids
    span: Vec<u32>,
    pub(super) df: Vec<u32>,
    /// (occurrence hash, left neighbour, right neighbour, inside a longer word), a bottom-k
    /// sample of occurrences
    occ: Vec<Occurrence>,
}

impl SpanStats {
    fn push(&mut self, o: Occurrence) {
        self.occ.push(o);
        if self.occ.len() >= 2 * NEIGHBOUR_SAMPLE {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.occ.len() > NEIGHBOUR_SAMPLE {
            self.occ.select_nth_unstable(NEIGHBOUR_SAMPLE);
            self.occ.truncate(NEIGHBOUR_SAMPLE);
        }
    }

    fn merge(&mut self, other: SpanStats) {
        if self.df.len() < other.df.len() {
            self.df.resize(other.df.len(), 0);
        }
        for (a, b) in self.df.iter_mut().zip(other.df) {
            *a += b;
        }
        self.occ.extend(other.occ);
        if self.occ.len() >= 2 * NEIGHBOUR_SAMPLE {
            self.trim();
        }
    }

    fn finish(&mut self) {
        self.trim();
        self.occ.sort_unstable();
        self.occ.shrink_to_fit();
    }

    pub(super) fn support(&self) -> u32 {
        self.df.iter().sum()
    }

    /// (occurrences inside a longer word, occurrences) in the sample.
    pub(super) fn inside_words(&self) -> (usize, usize) {
        let inside = self.occ.iter().filter(|o| o.3).count();
        (inside, self.occ.len())
    }

    /// Counts of each neighbour on one side (`left` or right) in the sample, by id.
    pub(super) fn neighbours(&self, left: bool) -> Vec<(u32, u32)> {
        let mut ids: Vec<u32> = self
            .occ
            .iter()
            .map(|&(_, l, r, _)| if left { l } else { r })
            .filter(|&t| t != NO_NEIGHBOUR)
            .collect();
        ids.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for t in ids {
            match out.last_mut() {
                Some((lt, c)) if *lt == t => *c += 1,
                _ => out.push((t, 1)),
            }
        }
        out
    }
}

type SpanTable = KeyMap<SpanStats>;

/// Window occurrences one pass of [`count_spans_with`] reads at most (about a quarter of a
/// gigabyte of tables at the peak, with two threads' partial tables merging; 2²⁴ held a
/// gigabyte and took 7 % less time: 41 s against 44 s for TRIG001 on a million rows).
pub(super) const SPAN_PASS_OCCURRENCES: usize = 1 << 22;

/// Exact per-label document frequency and a bounded sample of neighbours of every window of
/// `min_real..=max_real` real tokens for which `keep(span, hash)` is true and that at least
/// `min_support` rows carry.
///
/// The windows are counted in `passes` passes over the corpus, each keeping the windows of one
/// slice of the key space (the key's low half modulo `passes`): a window's statistics depend on
/// its own occurrences only, so the result is the same for any number of passes, while the
/// working tables hold a slice at a time and the windows kept are trimmed and compacted after
/// each pass.
///
/// Each window's statistics are turned into what the caller keeps (`judge`) as soon as its
/// pass is counted, so that the neighbour samples of one slice of the key space are held at a
/// time, not those of every window.
#[allow(clippy::too_many_arguments)]
pub(super) fn count_spans_with<T: Send>(
    corpus: &Corpus,
    labels: &[u32],
    n_classes: usize,
    (min_real, max_real): (usize, usize),
    min_support: u32,
    passes: usize,
    keep: &(dyn Fn(&[u32], u64) -> bool + Sync),
    judge: &(dyn Fn(&[u32], SpanStats) -> T + Sync),
) -> BTreeMap<Vec<u32>, T> {
    let passes = passes.max(1) as u64;
    let mut out = BTreeMap::new();
    for part in 0..passes {
        let in_part = |key: u128| passes == 1 || (key as u64) % passes == part;
        let merged = (0..corpus.len())
            .into_par_iter()
            .with_min_len(CHUNK)
            .fold(
                || (SpanTable::default(), KeyMap::<()>::default()),
                |(mut table, mut in_row), r| {
                    let seq = corpus.row(r);
                    let starts = corpus.word_starts(r);
                    let label = labels[r] as usize;
                    in_row.clear();
                    // the run of equal tokens last walked, [start, end): every occurrence in
                    // a run shares its nearest other tokens, so a row that repeats a word
                    // many times side by side is walked once, not once per occurrence
                    let mut run = (0usize, 0usize);
                    for_each_hashed_window(seq, min_real, max_real, |a, b, key| {
                        let span = &seq[a..b];
                        if !in_part(key) || !keep(span, key_hash(key)) {
                            return;
                        }
                        let st = table.entry(key).or_insert_with(|| SpanStats {
                            span: span.to_vec(),
                            df: vec![0; n_classes],
                            occ: Vec::new(),
                        });
                        if in_row.insert(key, ()).is_none() {
                            st.df[label] += 1;
                        }
                        // a one-token window's neighbour is the nearest other token: a word
                        // put into a row twice side by side ("mn mn") is not its own collocate
                        let (mut l, mut rr) = (a, b);
                        if b == a + 1 {
                            if !(run.0..run.1).contains(&a) {
                                while l > 0 && seq[l - 1] == seq[a] {
                                    l -= 1;
                                }
                                while rr < seq.len() && seq[rr] == seq[a] {
                                    rr += 1;
                                }
                                run = (l, rr);
                            }
                            (l, rr) = run;
                        }
                        let left = if l > 0 { seq[l - 1] } else { NO_NEIGHBOUR };
                        let right = if rr < seq.len() {
                            seq[rr]
                        } else {
                            NO_NEIGHBOUR
                        };
                        let occurrence = mix64(((r as u64) << 16) ^ a as u64 ^ key_hash(key));
                        let whole = starts.get(a).copied().unwrap_or(true)
                            && starts.get(b).copied().unwrap_or(true);
                        st.push(((occurrence >> 32) as u32, left, right, !whole));
                    });
                    (table, in_row)
                },
            )
            .map(|(table, _)| table)
            .reduce(SpanTable::default, |a, b| {
                let (mut a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(st) => st.merge(v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
                a
            });
        let kept: Vec<SpanStats> = merged
            .into_values()
            .filter(|v| v.support() >= min_support)
            .collect();
        let judged: Vec<(Vec<u32>, T)> = kept
            .into_par_iter()
            .map(|mut v| {
                v.finish();
                let span = std::mem::take(&mut v.span);
                let t = judge(&span, v);
                (span, t)
            })
            .collect();
        out.extend(judged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tokenise::window_hash;
    use super::super::{END, START};
    use super::*;

    #[test]
    fn window_keys_are_incremental_hashes_and_the_sketch_never_under_counts() {
        let seq = [START, 7, 8, 9, 7, 8, END];
        let mut seen = Vec::new();
        for_each_hashed_window(&seq, 1, 3, |a, b, key| {
            assert_eq!(key_hash(key), window_hash(&seq[a..b]));
            seen.push((seq[a..b].to_vec(), key));
        });
        // equal windows get equal keys, different windows different keys
        for (s1, k1) in &seen {
            for (s2, k2) in &seen {
                assert_eq!(s1 == s2, k1 == k2, "{s1:?} {s2:?}");
            }
        }
        let sketch = Sketch::new(10);
        for (i, (_, key)) in seen.iter().enumerate() {
            for _ in 0..=i {
                sketch.add(key_hash(*key));
            }
        }
        for (i, (span, key)) in seen.iter().enumerate() {
            let exact: usize = seen
                .iter()
                .enumerate()
                .filter(|(_, (s, _))| s == span)
                .map(|(j, _)| j + 1)
                .sum();
            let est = sketch.estimate(key_hash(*key)) as usize;
            assert!(est >= exact.max(i + 1).min(Sketch::SATURATED as usize));
            assert!(sketch.may_reach(key_hash(*key), exact as u32));
        }
        // a counter stops at its cap, and a saturated window passes any support
        let h = key_hash(seen[0].1);
        let before = sketch.estimate(h);
        (0..Sketch::SATURATED + 1000)
            .into_par_iter()
            .for_each(|_| sketch.add(h));
        assert!(before < Sketch::SATURATED);
        assert_eq!(sketch.estimate(h), Sketch::SATURATED);
        assert!(sketch.may_reach(h, 40_000) && sketch.may_reach(h, 1_000_000));
    }

    #[test]
    fn window_counts_are_the_same_in_any_number_of_passes() {
        use super::super::tokenise::{Corpus, Vocab};
        let (texts, labels, _) = super::super::tests::synthetic(12_000, 0.03, 4);
        let tokens = count_tokens(&texts, &labels, 2);
        let vocab = Vocab::new(tokens.keys().cloned().collect());
        let corpus = Corpus::encode(&texts, &vocab);
        let keep = |_: &[u32], _: u64| true;
        let flat =
            |m: BTreeMap<Vec<u32>, SpanStats>| -> Vec<(Vec<u32>, Vec<u32>, Vec<Occurrence>)> {
                m.into_iter().map(|(k, v)| (k, v.df, v.occ)).collect()
            };
        let one = flat(count_spans_with(
            &corpus,
            &labels,
            2,
            (1, 4),
            5,
            1,
            &keep,
            &|_, st| st,
        ));
        let full = one.iter().filter(|s| s.2.len() == NEIGHBOUR_SAMPLE).count();
        assert!(
            one.len() > 500 && full > 0,
            "{} windows, {full} with a full sample",
            one.len()
        );
        for passes in [2, 7] {
            let many = flat(count_spans_with(
                &corpus,
                &labels,
                2,
                (1, 4),
                5,
                passes,
                &keep,
                &|_, st| st,
            ));
            assert!(one == many, "{passes} passes");
        }
    }

    #[test]
    fn a_run_of_one_token_shares_its_nearest_other_tokens() {
        use super::super::tokenise::{Corpus, Vocab};
        let texts: Vec<String> = ["b a a a c a", "a a", "a ".repeat(50_000).as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let labels = vec![0, 1, 0];
        let tokens = count_tokens(&texts, &labels, 2);
        let vocab = Vocab::new(tokens.keys().cloned().collect());
        let corpus = Corpus::encode(&texts, &vocab);
        let id = |w: &str| vocab.ids[w];
        let keep = |span: &[u32], _: u64| span == [id("a")];
        let stats = count_spans_with(&corpus, &labels, 2, (1, 1), 1, 1, &keep, &|_, st| st);
        let st = &stats[&vec![id("a")]];
        assert_eq!(st.df, vec![2, 1]);
        // "b [a a a] c [a] </s>", "<s> [a a] </s>", and the long run "<s> [a ...] </s>"
        let mut left = [(START, 50_002), (id("b"), 3), (id("c"), 1)];
        let mut right = [(END, 50_003), (id("c"), 3)];
        left.sort_unstable();
        right.sort_unstable();
        // the sample keeps the bottom `NEIGHBOUR_SAMPLE` of the occurrences
        let total = |v: &[(u32, u32)]| v.iter().map(|x| x.1 as usize).sum::<usize>();
        assert_eq!(total(&st.neighbours(true)), NEIGHBOUR_SAMPLE);
        assert_eq!(total(&st.neighbours(false)), NEIGHBOUR_SAMPLE);
        let ids = |v: Vec<(u32, u32)>| v.into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert!(ids(st.neighbours(true))
            .iter()
            .all(|t| left.iter().any(|l| l.0 == *t)));
        assert!(ids(st.neighbours(false))
            .iter()
            .all(|t| right.iter().any(|r| r.0 == *t)));
        // without the long run every occurrence is kept
        let short = &texts[..2];
        let corpus = Corpus::encode(short, &vocab);
        let stats = count_spans_with(&corpus, &labels[..2], 2, (1, 1), 1, 1, &keep, &|_, st| st);
        let st = &stats[&vec![id("a")]];
        assert_eq!(
            st.neighbours(true),
            vec![(START, 2), (id("b"), 3), (id("c"), 1)]
        );
        assert_eq!(st.neighbours(false), vec![(END, 3), (id("c"), 3)]);
    }

    #[test]
    fn neighbour_sample_is_the_bottom_k_whatever_the_merge_order() {
        let occ: Vec<Occurrence> = (0..3 * NEIGHBOUR_SAMPLE as u32)
            .map(|i| ((mix64(u64::from(i)) >> 32) as u32, i % 7, i % 5, i % 3 == 0))
            .collect();
        let build = |parts: &[&[Occurrence]]| {
            let mut acc = SpanStats::default();
            for part in parts {
                let mut st = SpanStats::default();
                for &o in *part {
                    st.push(o);
                }
                acc.merge(st);
            }
            acc.finish();
            acc.occ
        };
        let mut expected = occ.clone();
        expected.sort_unstable();
        expected.truncate(NEIGHBOUR_SAMPLE);
        let (a, b) = occ.split_at(1000);
        assert_eq!(build(&[&occ]), expected);
        assert_eq!(build(&[a, b]), expected);
        assert_eq!(build(&[b, a]), expected);
    }
}
