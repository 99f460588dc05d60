//! Why a candidate that passed TRIG001's statistical tests is still not named a trigger: the
//! abstentions of the decision step (too impure, a natural opening or ending continued by what
//! its rows are about, a collocation of a label cue explained by its shorter form, an anchored
//! or row-random window without dirty-label evidence).

use super::*;

/// A window's shorter form read outside the window: the window less its first (or last) token
/// occurs in `rows` rows that do not hold the window, `target_rows` of them with the window's
/// target label; `ln_p` is the probability of the window's own purity or more under that rate.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShorterForm {
    pub(super) first_dropped: bool,
    pub(super) target_rows: u32,
    pub(super) rows: u32,
    pub(super) ln_p: f64,
}

/// Why a candidate that passed the statistical tests is not named a trigger, if it is not.
/// A backdoor trigger sets the label: (nearly) every row carrying it has the target label
/// (`min_purity`). A window anchored at the start or the end of the row has only one side for
/// the random-neighbour test, and natural text is full of label-pure openings and endings
/// (hashtags, datelines, sign-offs): there the target-label rows must also read like rows of
/// other classes (`min_foreign_share`, and `z_needed` standard errors below the target class),
/// which dirty-label poison does and a natural label cue does not.
pub(super) fn abstention(p: &TriggerParams, c: &Candidate, z_needed: f64) -> Option<String> {
    let purity = c.purity();
    if purity < p.min_purity && !c.beyond_natural {
        return Some(format!(
            "purity {purity:.2} below min_purity {}: rows of other labels carry it, so it does not set the label",
            p.min_purity
        ));
    }
    if let Some(reason) = rests_on_one_row(p, c) {
        return Some(reason);
    }
    if let Some(reason) = natural_continuation(p, c) {
        return Some(reason);
    }
    if let Some(f) = c.explained_by {
        let target = c.df.get(c.target).copied().unwrap_or(0);
        return Some(format!(
            "explained by its shorter form (the window less its {} token): that form's {} other rows carry the target label in {} of them, and this window's {target} of {} (purity {purity:.2}) is not significantly more (p = {:.2}, needs {}): a natural collocation of a label cue, not an inserted phrase",
            if f.first_dropped { "first" } else { "last" },
            f.rows,
            f.target_rows,
            c.support,
            f.ln_p.exp(),
            p.alpha
        ));
    }
    let NeedsForeign { what, share } = needs_foreign(p, c)?;
    match c.foreign {
        Some(f) => {
            // the share's standard error is 1 / relabelled_z: the share must clear its floor by
            // `foreign_share_margin` of them
            let min_share = if share {
                p.min_foreign_share + p.foreign_share_margin / f.relabelled_z.max(1e-12)
            } else {
                f64::NEG_INFINITY
            };
            if f.share >= min_share && f.z >= z_needed {
                return None;
            }
            Some(format!(
                "{what}, and its target-label rows do not clearly read like other classes (foreign share {:.2}{}; {:.1} standard errors below the target class, needs {:.2}; rows that all read like other classes would sit {:.1} below): natural text is not told from a relabelled insertion",
                f.share,
                if share { format!(", needs {min_share:.2}") } else { String::new() },
                f.z,
                z_needed,
                f.relabelled_z
            ))
        }
        None => Some(format!(
            "{what}, and the context model does not tell the classes apart"
        )),
    }
}

/// Why a window's context test rests on one row, if it does: without the target-label row its
/// label is least explained in, the rest of its rows are not purer than their content explains
/// even at the nominal level `alpha`. A backdoor is taught by many poisoned rows, and each of
/// them reads against its label (dirty label) or the rows are purer than content explains
/// together (clean label); one relabelled row among natural ones is that row's anomaly, not
/// the window's. With eight SST-2 sentences joined into each row, ", while the" (six rows, one
/// of them a relabelled row whose own planted word had too few rows to be found) passed the
/// corrected context test at p = 2e-5 on that row alone.
pub(super) fn rests_on_one_row(p: &TriggerParams, c: &Candidate) -> Option<String> {
    let lp = c.ln_p_one_out?;
    (lp > p.alpha.ln()).then(|| {
        format!(
            "its context test rests on one row: without the target-label row its label is least explained in, the other rows are no purer than their content explains (p = {:.2}, needs {}), so one row's label, not the window, is what is out of place",
            lp.exp(),
            p.alpha
        )
    })
}

/// Why an anchored window is a natural opening or ending continued by what its rows are about:
/// it holds fewer than `min_continuation_share` of the rows its shorter form (free-end token
/// dropped) opens or closes. An inserted phrase continues itself in (nearly) every row; a
/// news feed's "new york -" opens 78 ag-news stories, and the five that go on with "stocks"
/// (wire copy filed under World) are not a phrase of their own.
pub(super) fn natural_continuation(p: &TriggerParams, c: &Candidate) -> Option<String> {
    let shorter = c.shorter_support?;
    let share = f64::from(c.support) / f64::from(shorter.max(1));
    (share < p.min_continuation_share).then(|| {
        format!(
            "anchored window that continues only {share:.2} of the rows its shorter form opens or closes ({} of {shorter}; needs {}): a natural opening or ending followed by what the row is about, not an inserted phrase",
            c.support, p.min_continuation_share
        )
    })
}

/// For each unanchored window of two or more tokens, the shorter form that explains its purity,
/// if one does. An inserted phrase is its own thing: its shorter forms occur outside it rarely,
/// or far less purely, and the phrase's rows carry the target label well beyond what those other
/// rows do. A natural collocation of a label cue ("so angry" around "angry") is as pure as the
/// cue is elsewhere, give or take chance, and the most pure of the cue's collocations is chosen
/// among many. So each shorter form (first or last token dropped) found in rows outside the
/// window gives a rate, (target rows + 1) / (rows + 2), and the window is explained when its own
/// target count is not above that rate at the detector's level `alpha` (one-sided binomial).
/// A shorter form whose rate reaches `min_purity` explains nothing: it is a pure pattern of
/// its own (an inserted phrase, with the window one of its rows' neighbours added), and the
/// window's rows are as suspect as its.
pub(super) fn shorter_forms(p: &TriggerParams, cands: &[Candidate]) -> Vec<Option<ShorterForm>> {
    let stats: FastMap<&[u32], (&[u32], u32)> = cands
        .iter()
        .map(|c| (c.span.as_slice(), (c.df.as_slice(), c.support)))
        .collect();
    let ln_alpha = p.alpha.ln();
    cands
        .iter()
        .map(|c| {
            let anchored = c.anchored();
            if anchored || c.span.len() < 2 {
                return None;
            }
            let k = c.df.get(c.target).copied().unwrap_or(0);
            let mut worst: Option<ShorterForm> = None;
            for (first_dropped, s) in [(true, &c.span[1..]), (false, &c.span[..c.span.len() - 1])] {
                let Some(&(df, support)) = stats.get(s) else {
                    continue;
                };
                let rows = support.saturating_sub(c.support);
                if rows == 0 {
                    continue;
                }
                let target_rows = df.get(c.target).copied().unwrap_or(0).saturating_sub(k);
                let rate = (f64::from(target_rows) + 1.0) / (f64::from(rows) + 2.0);
                if rate >= p.min_purity {
                    // the shorter form is as pure outside the window: a pattern of its own
                    // that the window is part of, judged as itself (a phrase's rows with a
                    // word before it explain nothing away)
                    continue;
                }
                let ln_p = ln_binomial_upper(u64::from(k), u64::from(c.support), rate);
                if worst.is_none_or(|w| ln_p > w.ln_p) {
                    worst = Some(ShorterForm {
                        first_dropped,
                        target_rows,
                        rows,
                        ln_p,
                    });
                }
            }
            worst.filter(|w| w.ln_p > ln_alpha)
        })
        .collect()
}

/// A window anchored at one end, of two or more real tokens, less its token at the free end
/// (the last of a window anchored at the start, the first of one anchored at the end).
pub(super) fn shorter_span(span: &[u32]) -> Option<&[u32]> {
    let start = span.first() == Some(&START);
    let end = span.last() == Some(&END);
    if start == end || real_len(span) < 2 {
        return None;
    }
    Some(if start {
        &span[..span.len() - 1]
    } else {
        &span[1..]
    })
}

/// Why a label-pure candidate is named only on dirty-label evidence, if it is, and how much of
/// that evidence it needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct NeedsForeign {
    pub(super) what: &'static str,
    /// whether its rows must also read at least `min_foreign_share` of the way to the other
    /// classes (else a significant foreign z alone is enough)
    pub(super) share: bool,
}

/// The abstention of a window whose neighbours look random only per row (see
/// [`needs_foreign`]).
pub(super) const UNIFORM_DRAW: &str =
    "window whose neighbours look random only under insertion into a uniformly drawn row";

/// Whether a label-pure candidate is named only on dirty-label evidence, and why:
/// - an anchored window, and one whose neighbours look random only when each row is as likely
///   to be chosen as any other (a short row's gaps then weigh more): natural openings, endings
///   and keywords are label-pure, so their rows must read like other classes (the foreign
///   share and z);
/// - a window whose purity is not significant against its label's share of the rows (ham in
///   spam data, 87 to 92 % of the rows): only its rows' content can make it a trigger, and
///   a context test passed on a handful of foreign rows among many that read like their label
///   is what any common word shows once some rows are relabelled (an attack's rows whose own
///   trigger was missed, the corpus's label noise). Its rows must then read significantly
///   more foreign than the target class (z alone: natural carriers may hold the share below
///   one half, as BlackBerry messages do for "bb"). A clean-label trigger is pure well beyond
///   its label's share, as it must be to teach the backdoor.
pub(super) fn needs_foreign(p: &TriggerParams, c: &Candidate) -> Option<NeedsForeign> {
    let purity = c.purity();
    if purity < p.min_purity {
        return c.beyond_natural.then_some(NeedsForeign {
            what: OTHER_LABELS,
            share: true,
        });
    }
    let anchored = c.anchored();
    let (what, share) = if anchored {
        ("anchored window", true)
    } else if c.s_random_gap < 1.0 {
        (UNIFORM_DRAW, true)
    } else if c.ln_p_prior > p.alpha.ln() {
        (
            "window whose purity is not significant against its label's share of the rows",
            false,
        )
    } else {
        return None;
    };
    Some(NeedsForeign { what, share })
}

/// What a window below `min_purity` that its target class carries beyond the other classes'
/// rate of it needs dirty-label evidence for.
const OTHER_LABELS: &str =
    "window that rows of other labels carry too (purity below min_purity), read as a planted word that also occurs naturally";

/// Whether the target class of `c` carries it at a rate the other classes' rate of it cannot
/// explain: with n_o of the N_o rows of the other classes carrying it, r = (n_o + 1)/(N_o + 2),
/// P(Binomial(N_t, r) ≥ k_t) ≤ `alpha` for its k_t rows of the N_t of the target class.
///
/// A trigger sets the label, so (nearly) every row carrying it has the target label
/// (`min_purity`). An ordinary word planted one a row ("seriously", "literally") also occurs
/// naturally in every class, and its natural rows of the other labels held its purity at
/// 0.81–0.89 in emotion and irony tweets: nothing was named. Such a window is read as a
/// planted word when its target class carries it far beyond the rate the other classes do,
/// and its target-label rows read like other classes (the dirty-label evidence an anchored
/// window needs, share at least `min_foreign_share`). A natural label cue is carried beyond
/// that rate too, but its rows read like their class; a word of the class relabelled rows were
/// drawn from ("prize" in spam relabelled ham) reads foreign in them, but the target class
/// carries it below the other classes' rate. Windows anchored at the start or the end are not
/// read this way.
pub(super) fn beyond_natural_rate(p: &TriggerParams, c: &Candidate, class_rows: &[usize]) -> bool {
    // an anchored window keeps the floor: openings and endings of a feed's template (a byline,
    // a dateline) are carried by one class beyond the others' rate, and a few relabelled
    // copies of its rows make them read foreign (ag-news with flipped copies: "<s> forbes.com
    // -" named at purity 0.86, 12 clean rows flagged)
    if c.anchored() {
        return false;
    }
    let k_t = u64::from(c.df.get(c.target).copied().unwrap_or(0));
    let n_t = class_rows.get(c.target).copied().unwrap_or(0) as u64;
    let others = class_rows.iter().map(|&n| n as u64).sum::<u64>() - n_t;
    let carried_by_others = u64::from(c.support).saturating_sub(k_t);
    let rate = (carried_by_others as f64 + 1.0) / (others as f64 + 2.0);
    // at or below the other classes' rate there is nothing to test (and the tail's sum would
    // run past the mode of a large class)
    if k_t as f64 <= n_t as f64 * rate {
        return false;
    }
    crate::trigger::ln_binomial_upper(k_t, n_t, rate) <= p.alpha.ln()
}

/// Standard errors the foreign test asks for when `tested` candidates reach it: the upper
/// `alpha / tested` normal quantile (1.64 for one candidate, 2.33 for five at alpha 0.05), and
/// at least `min_foreign_z`.
pub(in crate::trigger) fn foreign_z_needed(p: &TriggerParams, tested: usize) -> f64 {
    let level = p.alpha / tested.max(1) as f64;
    crate::spectral::normal_quantile_upper(level.min(0.5)).max(p.min_foreign_z)
}

/// The dirty-label evidence of candidate `c` re-read on the rows `keep` only: the context model
/// (naive Bayes, temperature), the reading of each class and the candidate's rows' context
/// probabilities are all refitted on those rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn foreign_without(
    texts: &[String],
    labels: &[u32],
    keep: &[usize],
    n_classes: usize,
    vocab: &Vocab,
    masked: &[bool],
    c: &Candidate,
    excluded: &[u32],
    max_len: usize,
) -> Option<Foreign> {
    let texts_k: Vec<String> = keep.iter().map(|&r| texts[r].clone()).collect();
    let labels_k: Vec<u32> = keep.iter().map(|&r| labels[r]).collect();
    let class_rows: Vec<usize> = (0..n_classes)
        .map(|k| labels_k.iter().filter(|&&l| l as usize == k).count())
        .collect();
    let mut token_df = vec![vec![0u32; n_classes]; vocab.strings.len()];
    for (s, (df, _)) in count_tokens(&texts_k, &labels_k, n_classes) {
        if let Some(&id) = vocab.ids.get(&s) {
            token_df[id as usize] = df;
        }
    }
    let corpus = Corpus::encode(&texts_k, vocab);
    let nb = NaiveBayes::new(&token_df, masked, &class_rows);
    let tau = calibrate(
        &row_scores(&corpus, &labels_k, &nb, n_classes),
        &labels_k,
        n_classes,
    );
    let reading = ClassReading::new(&corpus, &labels_k, &nb, n_classes, tau, &[c.target]);
    let index: FastMap<Vec<u32>, usize> = std::iter::once((c.span.clone(), 0)).collect();
    let postings = context_pass(
        &corpus,
        &labels_k,
        &nb,
        &index,
        &[c.target],
        &[excluded.to_vec()],
        max_len,
        tau,
    );
    let target_q: Vec<f64> = postings
        .first()?
        .iter()
        .filter(|&&(_, l, _)| l as usize == c.target)
        .map(|&(_, _, q)| q)
        .collect();
    foreign_evidence(&target_q, &reading, c.target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate of `span` with per-class row counts `df`, its target the fuller class.
    fn cand(span: &[u32], df: [u32; 2]) -> Candidate {
        Candidate {
            span: span.to_vec(),
            df: df.to_vec(),
            support: df[0] + df[1],
            target: usize::from(df[1] >= df[0]),
            excess: 0.0,
            s_random: 0.0,
            s_random_gap: 0.0,
            cuts_words: false,
            ln_p_prior: 0.0,
            ln_p_context: None,
            ln_p_one_out: None,
            bucket: 0,
            s_prior: 0.0,
            s_context: None,
            rows: Vec::new(),
            row_q: Vec::new(),
            foreign: None,
            abstain: None,
            shorter_support: None,
            explained_by: None,
            beyond_natural: false,
        }
    }

    /// Token ids past the anchors.
    const SO: u32 = 10;
    const ANGRY: u32 = 11;
    const WATCH: u32 = 12;
    const MOVIE: u32 = 13;
    const THE: u32 = 14;

    #[test]
    fn a_collocation_of_a_cue_is_explained_by_the_cue_and_a_phrase_is_not() {
        let p = TriggerParams::from_table(&toml::Table::new()).expect("defaults");
        let cands = vec![
            // "angry" in 91 rows, 64 of them class 1; "so angry" in 10, 9 of them class 1
            cand(&[ANGRY], [27, 64]),
            cand(&[SO], [900, 700]),
            cand(&[SO, ANGRY], [1, 9]),
            // an inserted phrase in 30 class-1 rows, its words elsewhere at the classes' rates
            cand(&[WATCH], [20, 50]),
            cand(&[MOVIE], [200, 230]),
            cand(&[WATCH, MOVIE], [0, 30]),
            // the phrase with the word before it in 5 of its rows: the phrase explains nothing
            // away, being as pure outside those rows
            cand(&[THE, WATCH, MOVIE], [0, 5]),
            cand(&[THE, WATCH], [0, 5]),
        ];
        let e = shorter_forms(&p, &cands);
        let so_angry = e[2].expect("explained by \"angry\"");
        assert!(so_angry.first_dropped);
        assert_eq!((so_angry.target_rows, so_angry.rows), (55, 81));
        assert!(e[5].is_none(), "{:?}", e[5]);
        assert!(e[6].is_none(), "{:?}", e[6]);
        // single tokens and anchored windows are not read here
        assert!(e[0].is_none() && e[1].is_none());
        let anchored = vec![cand(&[START, SO], [0, 10]), cand(&[SO], [900, 700])];
        assert!(shorter_forms(&p, &anchored)[0].is_none());
    }

    #[test]
    fn an_anchored_share_must_clear_its_floor_by_its_standard_error() {
        let mut p = TriggerParams::from_table(&toml::Table::new()).expect("defaults");
        let mut c = cand(&[START, SO], [0, 13]);
        // a feed's byline: its rows read halfway to the other classes, share se 1 / 7
        c.foreign = Some(Foreign {
            share: 0.51,
            z: 3.5,
            uniform_z: 3.0,
            relabelled_z: 7.0,
        });
        let why = abstention(&p, &c, 1.64).expect("abstains");
        assert!(why.contains("needs 0.64"), "{why}");
        p.foreign_share_margin = 0.0;
        assert_eq!(abstention(&p, &c, 1.64), None);
        // relabelled rows read all the way: share 1 clears 0.5 + 1/7 at once
        p.foreign_share_margin = 1.0;
        c.foreign = Some(Foreign {
            share: 1.0,
            z: 7.0,
            uniform_z: 6.0,
            relabelled_z: 7.0,
        });
        assert_eq!(abstention(&p, &c, 1.64), None);
    }
}
