//! Ground-truth evaluation: confusion counts, precision, recall, F1 and AUROC.

use serde::Serialize;

/// Evaluation of one set of flags and scores against ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Rows flagged.
    pub flagged: usize,
    /// Flagged and poisoned.
    pub tp: usize,
    /// Flagged but clean.
    pub fp: usize,
    /// Poisoned but not flagged.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// tp / (tp + fp); 0 when nothing is flagged.
    pub precision: f64,
    /// tp / (tp + fn); 0 when nothing is poisoned.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// Area under the ROC curve of the scores (ties count one half); `None` when the ground
    /// truth has only one class, where AUROC is undefined.
    pub auroc: Option<f64>,
}

/// Evaluate `flagged` and `scores` against `truth` (all the same length).
pub fn evaluate(flagged: &[bool], scores: &[f64], truth: &[bool]) -> Evaluation {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&f, &t) in flagged.iter().zip(truth) {
        match (f, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Evaluation {
        flagged: tp + fp,
        tp,
        fp,
        fn_,
        precision,
        recall,
        f1,
        auroc: auroc(scores, truth),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// AUROC by the Mann–Whitney U statistic with average ranks for ties:
/// the probability that a random positive scores above a random negative (ties count 1/2).
/// NaN scores are ranked lowest. `None` when either class is empty.
pub fn auroc(scores: &[f64], truth: &[bool]) -> Option<f64> {
    let n_pos = truth.iter().filter(|&&t| t).count();
    let n_neg = truth.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && key(scores[order[j + 1]]) == key(scores[order[i]]) {
            j += 1;
        }
        // ranks i+1 ..= j+1 share their average
        let avg = (i + j + 2) as f64 / 2.0;
        for &idx in &order[i..=j] {
            if truth[idx] {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_auroc() {
        let truth = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &truth), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &truth), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5, 0.5, 0.5], &truth), Some(0.5));
        assert_eq!(auroc(&[0.5, 0.5], &[false, false]), None);
    }

    #[test]
    fn auroc_matches_pair_count() {
        // brute-force pair counting on a small irregular example with ties
        let scores = [0.3, 0.1, 0.3, 0.7, 0.2, 0.3, 0.9, 0.1];
        let truth = [true, false, false, true, false, true, false, true];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..scores.len() {
            for j in 0..scores.len() {
                if truth[i] && !truth[j] {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        let got = auroc(&scores, &truth).unwrap();
        assert!((got - wins / pairs).abs() < 1e-12);
    }

    #[test]
    fn confusion_counts() {
        let e = evaluate(
            &[true, true, false, false],
            &[1.0, 1.0, 0.0, 0.0],
            &[true, false, true, false],
        );
        assert_eq!((e.tp, e.fp, e.fn_, e.flagged), (1, 1, 1, 2));
        assert!((e.precision - 0.5).abs() < 1e-12);
        assert!((e.recall - 0.5).abs() < 1e-12);
        assert!((e.f1 - 0.5).abs() < 1e-12);
    }
}
