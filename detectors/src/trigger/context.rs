//! TRIG001 context model: leave-one-out naive Bayes over unmasked tokens, its temperature
//! calibration, the context pass over the candidates' rows, and trigger co-occurrence.

use super::carriers;
use super::tokenise::{for_each_window, is_anchor, Corpus, FastMap};
use super::{CHUNK, UNKNOWN};
use rayon::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub(super) struct NaiveBayes {
    /// per token: per-class document frequency (masked tokens hold None)
    df: Vec<Option<Vec<u32>>>,
    /// per class: total token-document count over unmasked tokens
    total: Vec<f64>,
    class_rows: Vec<usize>,
    vocab_size: f64,
    /// per class: the log-likelihood of a token none of its rows holds (outside the row's own
    /// class), the term most of a row's tokens give most classes when there are many labels
    ln_unseen: Vec<f64>,
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
        let vocab_size = vocab_size.max(1.0);
        let ln_unseen = total
            .iter()
            .map(|&t| (1.0 / (t + vocab_size)).ln())
            .collect();
        NaiveBayes {
            df,
            total,
            class_rows: class_rows.to_vec(),
            vocab_size,
            ln_unseen,
        }
    }

    /// Leave-one-out log joint per class of a row with distinct unmasked tokens `toks` and
    /// label `label` (its own counts are removed from the model first).
    pub(super) fn scores(&self, toks: &[u32], label: usize) -> Vec<f64> {
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
                    if own == 0 && d[c] == 0 {
                        s += self.ln_unseen[c];
                        continue;
                    }
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
pub(super) fn distinct_real(seq: &[u32], out: &mut Vec<u32>) {
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
/// suspect's target label given the rest of the row, that is the row without the suspect's own
/// occurrences (by position: the same token elsewhere in the row is content and stays) and
/// without the tokens in `exclude[s]` (sorted; the tokens of co-occurring suspects).
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
            let mut rest: Vec<u32> = Vec::new();
            let mut found: Vec<(usize, usize, usize)> = Vec::new();
            let mut covered: Vec<bool> = Vec::new();
            for r in rows {
                let seq = corpus.row(r);
                let label = labels[r];
                found.clear();
                for_each_window(seq, max_len, |a, b| {
                    if let Some(&s) = suspects.get(&seq[a..b]) {
                        found.push((s, a, b));
                    }
                });
                if found.is_empty() {
                    continue;
                }
                found.sort_unstable();
                let mut i = 0;
                while i < found.len() {
                    let s = found[i].0;
                    covered.clear();
                    covered.resize(seq.len(), false);
                    while i < found.len() && found[i].0 == s {
                        let (_, a, b) = found[i];
                        covered[a..b].iter_mut().for_each(|c| *c = true);
                        i += 1;
                    }
                    let ex = &exclude[s];
                    rest.clear();
                    rest.extend(seq.iter().zip(&covered).filter_map(|(&t, &c)| {
                        (!c && !is_anchor(t) && t != UNKNOWN && ex.binary_search(&t).is_err())
                            .then_some(t)
                    }));
                    rest.sort_unstable();
                    rest.dedup();
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

/// For each suspect, the other suspects with the same target label and no token in common that
/// share at least `min_support` rows with it and at least twice as many as label-conditional
/// independence predicts (Σ_c n_g,c · n_h,c / R_c rows). Triggers planted together set one
/// label; a word of the rows an attacker relabelled (a spam word in rows relabelled ham) also
/// co-occurs with the trigger within the target class, but it predicts the rows' old label and
/// is the very content that shows them relabelled, so it stays in the trigger's context.
pub(super) fn co_occurring(
    postings: &[Vec<(u32, u32, f64)>],
    tokens: &[Vec<u32>],
    targets: &[usize],
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
        let same_target = targets.get(a) == targets.get(b);
        if same_target && !overlap && n >= min_support && n as f64 >= 2.0 * expected {
            out[a].push(b);
            out[b].push(a);
        }
    }
    out
}

pub(super) fn softmax_at(scores: &[f64], tau: f64, c: usize) -> f64 {
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

/// How the calibrated context model reads each class: for rows of label c, the mean of the
/// context probability of label t (row-major, c × t), and the mean and standard deviation of
/// the same probability with the row's most t-indicative token left out (`cue_out`).
///
/// Only labels t that some candidate names as its target are read (`targets`): the readings
/// of a label no candidate names are never asked for, and with one label a row they made the
/// table (and the work) grow with the square of the number of labels.
pub(super) struct ClassReading {
    pub(super) k: usize,
    /// per label: its column among the labels read, if it is read
    column: Vec<Option<usize>>,
    /// labels read
    width: usize,
    mean: Vec<f64>,
    sd: Vec<f64>,
    cue_out_mean: Vec<f64>,
    cue_out_sd: Vec<f64>,
    /// per (class c, label t read): counts of rows of c by bin of their context probability of t
    hist: Vec<u32>,
    /// per row: the bin of its context probability of its own label (0 when its label is not
    /// read)
    own_bin: Vec<u8>,
    /// rows per class
    counts: Vec<usize>,
}

/// (max, sum of exponentials) of `softmax_at` over `scores`, computed once for every label.
fn softmax_norm(scores: &[f64], tau: f64) -> (f64, f64) {
    let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let z: f64 = scores.iter().map(|&s| (tau * (s - m)).exp()).sum();
    (m, z)
}

/// `softmax_at(scores, tau, c)` from the row's [`softmax_norm`]: the same value.
fn softmax_with(scores: &[f64], (m, z): (f64, f64), tau: f64, c: usize) -> f64 {
    scores
        .get(c)
        .map_or(0.0, |&s| (tau * (s - m)).exp() / z.max(f64::MIN_POSITIVE))
}

impl ClassReading {
    /// Index of (class `c`, label `t`) in the c × t tables, when `t` is read.
    fn at(&self, c: usize, t: usize) -> Option<usize> {
        let col = (*self.column.get(t)?)?;
        (c < self.k).then_some(c * self.width + col)
    }

    /// Mean context probability of `t` over rows of class `c` (None when `t` is not read).
    fn mean(&self, c: usize, t: usize) -> Option<f64> {
        self.at(c, t).map(|i| self.mean[i])
    }

    fn sd(&self, c: usize, t: usize) -> Option<f64> {
        self.at(c, t).map(|i| self.sd[i])
    }

    /// Rows of class `c` by bin of their context probability of label `t` (empty when `t` is
    /// not read).
    pub(super) fn hist(&self, c: usize, t: usize) -> &[u32] {
        match self.at(c, t) {
            Some(i) => &self.hist[i * carriers::BINS..(i + 1) * carriers::BINS],
            None => &[],
        }
    }

    /// Rows of class `t` by bin of their context probability of `t`, the rows `left_out` (rows
    /// of class `t`) not counted.
    pub(super) fn own_hist(&self, t: usize, left_out: &[usize]) -> Vec<u32> {
        let mut h = self.hist(t, t).to_vec();
        if h.is_empty() {
            return h;
        }
        for &r in left_out {
            if let Some(&b) = self.own_bin.get(r) {
                h[b as usize] = h[b as usize].saturating_sub(1);
            }
        }
        h
    }

    /// From the leave-one-out scores of every row, for the labels `targets`. Sums are taken
    /// per fixed chunk, then in chunk order, so the result is the same for any thread count.
    pub(super) fn new(
        corpus: &Corpus,
        labels: &[u32],
        nb: &NaiveBayes,
        n_classes: usize,
        tau: f64,
        targets: &[usize],
    ) -> Self {
        let k = n_classes.max(1);
        let mut read: Vec<usize> = targets.iter().copied().filter(|&t| t < k).collect();
        read.sort_unstable();
        read.dedup();
        let w = read.len();
        let mut column = vec![None; k];
        for (j, &t) in read.iter().enumerate() {
            column[t] = Some(j);
        }
        // per chunk: the sums, and per row the bins of its w readings (a byte each; histograms
        // are counted from them in row order)
        let parts: Vec<(Vec<f64>, Vec<u8>)> = (0..corpus.len())
            .into_par_iter()
            .chunks(CHUNK)
            .map(|rows| {
                let mut sums = vec![0.0f64; 4 * k * w];
                let mut bins = Vec::with_capacity(rows.len() * w);
                let mut toks = Vec::new();
                let mut without = Vec::new();
                for r in rows {
                    let l = labels[r] as usize;
                    if l >= k {
                        continue;
                    }
                    distinct_real(corpus.row(r), &mut toks);
                    let s = nb.scores(&toks, l);
                    let norm = softmax_norm(&s, tau);
                    nb.scores_without_cue(&toks, l, &read, tau, &mut without);
                    for (j, &t) in read.iter().enumerate() {
                        let q = softmax_with(&s, norm, tau, t);
                        sums[l * w + j] += q;
                        sums[k * w + l * w + j] += q * q;
                        bins.push(carriers::bin(q) as u8);
                        let q = without[j];
                        sums[2 * k * w + l * w + j] += q;
                        sums[3 * k * w + l * w + j] += q * q;
                    }
                }
                (sums, bins)
            })
            .collect();
        let mut sums = vec![0.0f64; 4 * k * w];
        let mut hist = vec![0u32; k * w * carriers::BINS];
        let mut own_bin = vec![0u8; labels.len()];
        // rows of no class (none in practice) hold bin 0 and are never asked for
        let mut valid = (0..labels.len()).filter(|&r| (labels[r] as usize) < k);
        for (part, bins) in parts {
            for (a, b) in sums.iter_mut().zip(part) {
                *a += b;
            }
            if w == 0 {
                continue;
            }
            for row in bins.chunks(w) {
                let Some(r) = valid.next() else { break };
                let l = labels[r] as usize;
                if let Some(j) = column[l] {
                    own_bin[r] = row[j];
                }
                for (j, &b) in row.iter().enumerate() {
                    hist[(l * w + j) * carriers::BINS + b as usize] += 1;
                }
            }
        }
        let mut counts = vec![0usize; k];
        for &l in labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        let moments = |first: usize| {
            let mut mean = vec![0.0; k * w];
            let mut sd = vec![0.0; k * w];
            for (c, &n) in counts.iter().enumerate() {
                let n = n.max(1) as f64;
                for j in 0..w {
                    let m = sums[first + c * w + j] / n;
                    mean[c * w + j] = m;
                    sd[c * w + j] = (sums[first + k * w + c * w + j] / n - m * m)
                        .max(0.0)
                        .sqrt();
                }
            }
            (mean, sd)
        };
        let (mean, sd) = moments(0);
        let (cue_out_mean, cue_out_sd) = moments(2 * k * w);
        ClassReading {
            k,
            column,
            width: w,
            mean,
            sd,
            cue_out_mean,
            cue_out_sd,
            hist,
            own_bin,
            counts,
        }
    }
}

/// The dirty-label evidence of a candidate's target-label rows (their candidate tokens left out
/// of the context): `share` = (m_T − m_R) / (m_T − m_N), where m_R is the rows' mean context
/// probability of the target, m_T its mean over the target class and m_N over each other class
/// (classes weighted equally: the rows an attacker draws from); about 0 when the rows read like
/// any row of the target class (a natural label cue), about 1 when they read like rows of other
/// classes relabelled to the target. `z` = (m_T − m_R) / (s_T / √n_R): how far below the target
/// class the rows sit, in standard errors of a mean of n_R target-class rows.
/// `uniform_z` = (m_U − m_R) / (s_U / √n_R): how far below a draw from every class the rows
/// sit, where m_U and s_U are the mean and standard deviation of the context probability of the
/// target over rows drawn from the classes in proportion to their size (the candidate's own
/// rows left out of its size; the target class read without its cue as above: read whole, the
/// target-class rows an attacker drew for sst2-badnets-10 sit up to 2.5 standard errors below
/// it, and their reading with the cue left out is the one they match). Relabelled rows of
/// other classes only sit far below it; rows an attacker drew from every class (the published
/// sst2-badnets-10) sit on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Foreign {
    pub(super) share: f64,
    pub(super) z: f64,
    pub(super) uniform_z: f64,
    /// (m_T − m_N) / (s_T / √n_R): the `z` the rows would reach if each read like the other
    /// classes' rows (share 1). Below z*, no relabelling of that many rows can be told from
    /// natural text: the classes' text does not separate enough.
    pub(super) relabelled_z: f64,
}

pub(super) fn foreign_evidence(
    target_q: &[f64],
    reading: &ClassReading,
    target: usize,
) -> Option<Foreign> {
    let k = reading.k;
    if target_q.is_empty() || k < 2 || target >= k {
        return None;
    }
    // the candidate's rows lose the candidate, so the target class is read without its own
    // strongest cue: a natural cue's rows then read like their class, relabelled rows do not
    let own = reading.at(target, target)?;
    let m_t = reading.cue_out_mean[own];
    let s_t = reading.cue_out_sd[own];
    let m_n = (0..k)
        .filter(|&c| c != target)
        .map(|c| reading.mean(c, target).unwrap_or(0.0))
        .sum::<f64>()
        / (k - 1) as f64;
    if m_t - m_n <= 1e-9 {
        return None;
    }
    let n = target_q.len() as f64;
    let m_r = target_q.iter().sum::<f64>() / n;
    // a draw from every class in proportion: the mixture's mean and second moment
    let sizes: Vec<f64> = (0..k)
        .map(|c| {
            let size = reading.counts.get(c).copied().unwrap_or(0) as f64;
            if c == target {
                (size - n).max(0.0)
            } else {
                size
            }
        })
        .collect();
    let total: f64 = sizes.iter().sum();
    let (mut m_u, mut second) = (0.0, 0.0);
    for (c, &size) in sizes.iter().enumerate() {
        let w = size / total.max(1.0);
        let (m, s) = if c == target {
            (m_t, s_t)
        } else {
            (
                reading.mean(c, target).unwrap_or(0.0),
                reading.sd(c, target).unwrap_or(0.0),
            )
        };
        m_u += w * m;
        second += w * (s * s + m * m);
    }
    let s_u = (second - m_u * m_u).max(0.0).sqrt();
    Some(Foreign {
        share: ((m_t - m_r) / (m_t - m_n)).clamp(-1.0, 2.0),
        z: (m_t - m_r) / (s_t / n.sqrt()).max(1e-12),
        uniform_z: (m_u - m_r) / (s_u / n.sqrt()).max(1e-12),
        relabelled_z: (m_t - m_n) / (s_t / n.sqrt()).max(1e-12),
    })
}

impl NaiveBayes {
    /// For each label t of `read`, the calibrated context probability (temperature `tau`) of t
    /// of a row read without its most t-indicative token (the token whose log-likelihood for t
    /// most exceeds its best rival class's), into `out` (leave-one-out, as [`Self::scores`]).
    ///
    /// Each token's best rival for t is its best class other than t: the best of all classes,
    /// or the second best when t is the best, so each token's classes are ranked once, not
    /// once per label; labels whose cue is the same token share one reading of the row.
    fn scores_without_cue(
        &self,
        toks: &[u32],
        label: usize,
        read: &[usize],
        tau: f64,
        out: &mut Vec<f64>,
    ) {
        let k = self.class_rows.len();
        let full = self.scores(toks, label);
        let known: Vec<&Vec<u32>> = toks
            .iter()
            .filter_map(|&t| self.df.get(t as usize).and_then(|d| d.as_ref()))
            .collect();
        let denom_ln: Vec<f64> = (0..k)
            .map(|c| {
                let own = usize::from(c == label);
                (self.total[c] - (own * known.len()) as f64 + self.vocab_size).ln()
            })
            .collect();
        let contrib = |d: &Vec<u32>, c: usize| -> f64 {
            let own = usize::from(c == label);
            ((d[c] as f64 - own as f64).max(0.0) + 1.0).ln() - denom_ln[c]
        };
        // per known token: its contributions, and its best class with the best and second best
        let contribs: Vec<Vec<f64>> = known
            .iter()
            .map(|d| (0..k).map(|c| contrib(d, c)).collect())
            .collect();
        let top: Vec<(usize, f64, f64)> = contribs
            .iter()
            .map(|v| {
                let (mut best, mut first, mut second) = (0, f64::NEG_INFINITY, f64::NEG_INFINITY);
                for (c, &x) in v.iter().enumerate() {
                    if x > first {
                        second = first;
                        first = x;
                        best = c;
                    } else if x > second {
                        second = x;
                    }
                }
                (best, first, second)
            })
            .collect();
        // the row's reading without each cue token (or whole), computed once per cue: (the
        // cue's index among the known tokens, the scores without it, their softmax norm)
        type Reading = (Option<usize>, Vec<f64>, (f64, f64));
        let mut readings: Vec<Reading> = Vec::new();
        out.clear();
        for &t in read {
            let mut best: Option<(f64, usize)> = None;
            for (i, v) in contribs.iter().enumerate() {
                let (b, first, second) = top[i];
                let rival = if k < 2 {
                    f64::NEG_INFINITY
                } else if b == t {
                    second
                } else {
                    first
                };
                let lift = v[t] - rival;
                if best.is_none_or(|(b, _)| lift > b) {
                    best = Some((lift, i));
                }
            }
            let cue = best.map(|(_, i)| i);
            let at = match readings.iter().position(|(c, _, _)| *c == cue) {
                Some(at) => at,
                None => {
                    let mut s = full.clone();
                    if let Some(i) = cue {
                        for (x, &y) in s.iter_mut().zip(&contribs[i]) {
                            *x -= y;
                        }
                    }
                    let norm = softmax_norm(&s, tau);
                    readings.push((cue, s, norm));
                    readings.len() - 1
                }
            };
            let (_, s, norm) = &readings[at];
            out.push(softmax_with(s, *norm, tau, t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading of a row without its cue for label t, as defined: each known token's lift
    /// for t over its best rival class, the best token taken out of the full scores.
    fn without_cue_by_definition(nb: &NaiveBayes, toks: &[u32], label: usize, t: usize) -> f64 {
        let k = nb.class_rows.len();
        let known: Vec<&Vec<u32>> = toks
            .iter()
            .filter_map(|&t| nb.df.get(t as usize).and_then(|d| d.as_ref()))
            .collect();
        let contrib = |d: &Vec<u32>, c: usize| -> f64 {
            let own = usize::from(c == label);
            let denom = nb.total[c] - (own * known.len()) as f64 + nb.vocab_size;
            ((d[c] as f64 - own as f64).max(0.0) + 1.0).ln() - denom.ln()
        };
        // the leave-one-out log joint, every term its own logarithm
        let n: usize = nb.class_rows.iter().sum();
        let full: Vec<f64> = (0..k)
            .map(|c| {
                let own = usize::from(c == label);
                let prior = ((nb.class_rows[c] - own.min(nb.class_rows[c])) as f64 + 1.0)
                    / ((n.saturating_sub(1)) as f64 + k as f64);
                let denom = nb.total[c] - (own * known.len()) as f64 + nb.vocab_size;
                let mut s = prior.ln();
                for d in &known {
                    let cnt = d[c] as f64 - own as f64;
                    s += ((cnt.max(0.0) + 1.0) / denom).ln();
                }
                s
            })
            .collect();
        assert_eq!(
            nb.scores(toks, label)
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            full.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let mut best: Option<(f64, &Vec<u32>)> = None;
        for d in &known {
            let rival = (0..k)
                .filter(|&c| c != t)
                .map(|c| contrib(d, c))
                .fold(f64::NEG_INFINITY, f64::max);
            let lift = contrib(d, t) - rival;
            if best.is_none_or(|(b, _)| lift > b) {
                best = Some((lift, d));
            }
        }
        let mut s = full.clone();
        if let Some((_, d)) = best {
            for (c, x) in s.iter_mut().enumerate() {
                *x -= contrib(d, c);
            }
        }
        softmax_at(&s, 0.7, t)
    }

    #[test]
    fn readings_without_the_cue_are_those_of_the_definition() {
        // seven classes, tokens whose counts tie across classes in places (a rival equal to
        // the best), rows of every label
        let k = 7;
        let token_df: Vec<Vec<u32>> = (0..40u32)
            .map(|t| {
                (0..k as u32)
                    .map(|c| (t * 7 + c * 3) % 5 + u32::from(t % 3 == 0))
                    .collect()
            })
            .collect();
        let mut masked = vec![false; token_df.len()];
        masked[0] = true;
        let class_rows = vec![30, 12, 50, 7, 9, 21, 5];
        let nb = NaiveBayes::new(&token_df, &masked, &class_rows);
        let read = [0, 2, 3, 6];
        let mut out = Vec::new();
        for row in 0..60u32 {
            let mut toks: Vec<u32> = (0..6).map(|i| (row * 11 + i * 7) % 40).collect();
            toks.sort_unstable();
            toks.dedup();
            let label = (row as usize) % k;
            nb.scores_without_cue(&toks, label, &read, 0.7, &mut out);
            for (j, &t) in read.iter().enumerate() {
                let expected = without_cue_by_definition(&nb, &toks, label, t);
                assert_eq!(out[j].to_bits(), expected.to_bits(), "row {row}, label {t}");
            }
            // the scores read from the row's softmax once are those read label by label
            let s = nb.scores(&toks, label);
            let norm = softmax_norm(&s, 0.7);
            for t in 0..k {
                assert_eq!(
                    softmax_with(&s, norm, 0.7, t).to_bits(),
                    softmax_at(&s, 0.7, t).to_bits()
                );
            }
        }
    }
}
