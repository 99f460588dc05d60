//! TRIG001 context model: leave-one-out naive Bayes over unmasked tokens, its temperature
//! calibration, the context pass over the candidates' rows, and trigger co-occurrence.

use super::tokenise::{for_each_window, is_anchor, Corpus, FastMap};
use super::{CHUNK, UNKNOWN};
use rayon::prelude::*;
use std::collections::BTreeMap;

pub(super) struct NaiveBayes {
    /// per token: per-class document frequency (masked tokens hold None)
    df: Vec<Option<Vec<u32>>>,
    /// per class: total token-document count over unmasked tokens
    total: Vec<f64>,
    class_rows: Vec<usize>,
    vocab_size: f64,
}

impl NaiveBayes {
    pub(super) fn new(token_df: &[Vec<u32>], masked: &[bool], class_rows: &[usize]) -> Self {
        let n_classes = class_rows.len();
        let mut total = vec![0.0; n_classes];
        let mut vocab_size = 0.0f64;
        let df: Vec<Option<Vec<u32>>> = token_df
            .iter()
            .zip(masked)
            .map(|(d, &m)| {
                if m || d.iter().all(|&x| x == 0) {
                    None
                } else {
                    vocab_size += 1.0;
                    for (t, &x) in total.iter_mut().zip(d) {
                        *t += x as f64;
                    }
                    Some(d.clone())
                }
            })
            .collect();
        NaiveBayes {
            df,
            total,
            class_rows: class_rows.to_vec(),
            vocab_size: vocab_size.max(1.0),
        }
    }

    /// Leave-one-out log joint per class of a row with distinct unmasked tokens `toks` and
    /// label `label` (its own counts are removed from the model first).
    fn scores(&self, toks: &[u32], label: usize) -> Vec<f64> {
        let n: usize = self.class_rows.iter().sum();
        let k = self.class_rows.len() as f64;
        let known: Vec<&Vec<u32>> = toks
            .iter()
            .filter_map(|&t| self.df.get(t as usize).and_then(|d| d.as_ref()))
            .collect();
        (0..self.class_rows.len())
            .map(|c| {
                let own = usize::from(c == label);
                let prior = ((self.class_rows[c] - own.min(self.class_rows[c])) as f64 + 1.0)
                    / ((n.saturating_sub(1)) as f64 + k);
                let denom = self.total[c] - (own * known.len()) as f64 + self.vocab_size;
                let mut s = prior.ln();
                for d in &known {
                    let cnt = d[c] as f64 - own as f64;
                    s += ((cnt.max(0.0) + 1.0) / denom).ln();
                }
                s
            })
            .collect()
    }
}

/// Per suspect: (row, label, probability of the suspect's target from the rest of the row) of
/// every row carrying it, in row order.
type Postings = Vec<Vec<(u32, u32, f64)>>;

/// Leave-one-out naive Bayes log joint per class of every row (flat, `n_classes` per row).
pub(super) fn row_scores(
    corpus: &Corpus,
    labels: &[u32],
    nb: &NaiveBayes,
    n_classes: usize,
) -> Vec<f64> {
    let mut out = vec![0.0f64; corpus.len() * n_classes];
    out.par_chunks_mut(CHUNK * n_classes.max(1))
        .enumerate()
        .for_each(|(ci, block)| {
            let mut toks = Vec::new();
            for (j, dst) in block.chunks_mut(n_classes.max(1)).enumerate() {
                let r = ci * CHUNK + j;
                distinct_real(corpus.row(r), &mut toks);
                dst.copy_from_slice(&nb.scores(&toks, labels[r] as usize));
            }
        });
    out
}

/// Distinct real (non-anchor, known) tokens of a row, sorted, into `out`.
fn distinct_real(seq: &[u32], out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        seq.iter()
            .copied()
            .filter(|&t| !is_anchor(t) && t != UNKNOWN),
    );
    out.sort_unstable();
    out.dedup();
}

/// For every row carrying a suspect: the calibrated probability (temperature `tau`) of the
/// suspect's target label given the rest of the row, that is the row without the tokens in
/// `exclude[s]` (sorted).
#[allow(clippy::too_many_arguments)]
pub(super) fn context_pass(
    corpus: &Corpus,
    labels: &[u32],
    nb: &NaiveBayes,
    suspects: &FastMap<Vec<u32>, usize>,
    targets: &[usize],
    exclude: &[Vec<u32>],
    max_len: usize,
    tau: f64,
) -> Postings {
    let parts: Vec<Vec<(u32, u32, u32, f64)>> = (0..corpus.len())
        .into_par_iter()
        .chunks(CHUNK)
        .map(|rows| {
            let mut hits = Vec::new();
            let mut toks = Vec::new();
            let mut found: Vec<usize> = Vec::new();
            for r in rows {
                let seq = corpus.row(r);
                let label = labels[r];
                found.clear();
                for_each_window(seq, max_len, |a, b| {
                    if let Some(&s) = suspects.get(&seq[a..b]) {
                        found.push(s);
                    }
                });
                if found.is_empty() {
                    continue;
                }
                found.sort_unstable();
                found.dedup();
                distinct_real(seq, &mut toks);
                for &s in &found {
                    let ex = &exclude[s];
                    let rest: Vec<u32> = toks
                        .iter()
                        .copied()
                        .filter(|t| ex.binary_search(t).is_err())
                        .collect();
                    let sc = nb.scores(&rest, label as usize);
                    let q = softmax_at(&sc, tau, targets[s]);
                    hits.push((s as u32, r as u32, label, q));
                }
            }
            hits
        })
        .collect();
    let mut postings: Postings = vec![Vec::new(); exclude.len()];
    for hits in parts {
        for (s, row, label, q) in hits {
            postings[s as usize].push((row, label, q));
        }
    }
    postings
}

/// Distinct real tokens of a span, sorted.
pub(super) fn sorted_tokens(span: &[u32]) -> Vec<u32> {
    let mut t: Vec<u32> = span.iter().copied().filter(|&t| !is_anchor(t)).collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// For each suspect, the other suspects with no token in common that share at least
/// `min_support` rows with it and at least twice as many as label-conditional independence
/// predicts
/// (Σ_c n_g,c · n_h,c / R_c rows).
pub(super) fn co_occurring(
    postings: &[Vec<(u32, u32, f64)>],
    tokens: &[Vec<u32>],
    class_rows: &[usize],
    min_support: usize,
) -> Vec<Vec<usize>> {
    let by_label: Vec<Vec<f64>> = postings
        .iter()
        .map(|occ| {
            let mut v = vec![0.0; class_rows.len()];
            for &(_, l, _) in occ {
                if let Some(x) = v.get_mut(l as usize) {
                    *x += 1.0;
                }
            }
            v
        })
        .collect();
    // rows -> suspects carrying them, to count shared rows without all-pairs merges
    let mut row_suspects: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (j, occ) in postings.iter().enumerate() {
        for &(r, _, _) in occ {
            row_suspects.entry(r).or_default().push(j);
        }
    }
    let mut shared: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for list in row_suspects.values() {
        for (x, &a) in list.iter().enumerate() {
            for &b in &list[x + 1..] {
                *shared.entry((a, b)).or_insert(0) += 1;
            }
        }
    }
    let mut out = vec![Vec::new(); postings.len()];
    for ((a, b), n) in shared {
        let expected: f64 = (0..class_rows.len())
            .map(|c| by_label[a][c] * by_label[b][c] / class_rows[c].max(1) as f64)
            .sum();
        // overlapping spans ("great" and "great film") are nested, not co-occurring
        let overlap = tokens[a].iter().any(|t| tokens[b].binary_search(t).is_ok());
        if !overlap && n >= min_support && n as f64 >= 2.0 * expected {
            out[a].push(b);
            out[b].push(a);
        }
    }
    out
}

fn softmax_at(scores: &[f64], tau: f64, c: usize) -> f64 {
    let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let z: f64 = scores.iter().map(|&s| (tau * (s - m)).exp()).sum();
    scores
        .get(c)
        .map_or(0.0, |&s| (tau * (s - m)).exp() / z.max(f64::MIN_POSITIVE))
}

/// Temperature τ minimising the mean log loss of softmax(τ·scores) against the labels (convex
/// in τ; golden-section search). Sums are taken per fixed chunk, then in chunk order.
pub(super) fn calibrate(row_scores: &[f64], labels: &[u32], n_classes: usize) -> f64 {
    if n_classes < 2 || row_scores.is_empty() {
        return 1.0;
    }
    let loss = |tau: f64| -> f64 {
        let parts: Vec<f64> = row_scores
            .par_chunks(CHUNK * n_classes)
            .zip(labels.par_chunks(CHUNK))
            .map(|(sc, lc)| {
                sc.chunks(n_classes)
                    .zip(lc)
                    .map(|(s, &l)| -softmax_at(s, tau, l as usize).max(1e-300).ln())
                    .sum::<f64>()
            })
            .collect();
        parts.iter().sum()
    };
    let (mut lo, mut hi) = (1e-3f64, 4.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let (mut f1, mut f2) = (loss(x1), loss(x2));
    for _ in 0..50 {
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = loss(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = loss(x2);
        }
    }
    0.5 * (lo + hi)
}
