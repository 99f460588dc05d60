//! Verdicts read off the core: the summary, the label conflicts of DUP001 (exact groups) and
//! DUP002 (near clusters), DUP003's amplified clusters, and the fitted scores and reasons.

use super::amplification::{amplification, expected_at_least, power_law_alpha};
use super::direction::{flip_direction, ClassWords, Direction};
use super::exact::Core;
use super::{DupParams, Kind, LIST_CAP, NEAREST_CAP};
use crate::trigger::ln_binomial_upper;
use crate::{Batch, ClassIndex, DetectError, Fitted, Scores};
use serde_json::json;
use std::collections::BTreeMap;

/// Histogram of cluster sizes: sizes 1 to 10 exactly, then powers-of-two bins.
fn size_histogram(sizes: impl Iterator<Item = usize>) -> serde_json::Value {
    let mut h: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for s in sizes {
        let bin = if s <= 10 {
            (s, s)
        } else {
            let hi = s.next_power_of_two().max(16);
            ((hi / 2 + 1).max(11), hi)
        };
        *h.entry(bin).or_default() += 1;
    }
    let mut m = serde_json::Map::new();
    for ((lo, hi), c) in h {
        let key = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        m.insert(key, json!(c));
    }
    serde_json::Value::Object(m)
}

/// Scores of `n` rows, most of them 0: only the others are held (rows in duplicated clusters),
/// so a fitted duplicate detector over ten million rows does not hold ten million numbers.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowScores {
    n: usize,
    nonzero: BTreeMap<usize, f64>,
}

impl RowScores {
    /// `n` rows scoring 0.
    pub(crate) fn new(n: usize) -> RowScores {
        RowScores {
            n,
            nonzero: BTreeMap::new(),
        }
    }

    /// Rows scored.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The score of `row` (0 for rows never set).
    pub(crate) fn get(&self, row: usize) -> f64 {
        self.nonzero.get(&row).copied().unwrap_or(0.0)
    }

    /// Set the score of `row` (a row past the end is ignored; +0 is not stored).
    pub(crate) fn set(&mut self, row: usize, v: f64) {
        if row >= self.n {
            return;
        }
        if v.to_bits() == 0 {
            self.nonzero.remove(&row);
        } else {
            self.nonzero.insert(row, v);
        }
    }
}

/// Per-row result of a fit: scores of every row, reasons of flagged rows.
pub(crate) struct DupFit {
    pub(crate) code: &'static str,
    pub(crate) score: RowScores,
    pub(crate) reason: BTreeMap<usize, String>,
    pub(crate) summary: serde_json::Value,
}

impl Fitted for DupFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let (start, n) = (batch.start, batch.rows.n_rows);
        let end = start.checked_add(n).filter(|&e| e <= self.score.len());
        let end = end.ok_or(DetectError::Data {
            code: self.code,
            problem: format!(
                "batch rows {start}..{} outside the {} fitted rows",
                start.saturating_add(n),
                self.score.len()
            ),
        })?;
        let mut out = Scores::with_capacity(n);
        for row in start..end {
            out.score.push(self.score.get(row));
            out.reason.push(self.reason.get(&row).cloned());
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        self.summary.clone()
    }
}

impl DupFit {
    /// `scan --reference`: withdraw the flag of every row whose normalised text the trusted
    /// corpus gives the row's own label (its label is confirmed; in a tie with a flipped copy of
    /// a trusted row it is the natural copy). Counted in the summary as
    /// `confirmed_by_reference`.
    pub(super) fn confirm_by_reference(
        &mut self,
        state: &super::reference::ReferenceState,
        texts: &[String],
        labels: &[ClassIndex],
        names: &[String],
        norm: &super::Normalization,
    ) {
        if state.normalization() != *norm {
            self.summary["confirmed_by_reference"] =
                json!("not used: the reference was made with another normalisation");
            return;
        }
        let flagged: Vec<usize> = self.reason.keys().copied().collect();
        let mut confirmed = 0usize;
        for i in flagged {
            let (Some(t), Some(&l)) = (texts.get(i), labels.get(i)) else {
                continue;
            };
            let text = super::normalize(t, norm);
            if state.confirms(&text, &label_name(names, l)) {
                self.reason.remove(&i);
                self.score.set(i, 0.0);
                confirmed += 1;
            }
        }
        self.summary["confirmed_by_reference"] = json!(confirmed);
    }
}

fn label_name(names: &[String], l: ClassIndex) -> String {
    names
        .get(l as usize)
        .cloned()
        .unwrap_or_else(|| l.to_string())
}

/// Label counts of `rows`, in class order.
fn label_counts(rows: &[usize], labels: &[ClassIndex]) -> BTreeMap<ClassIndex, usize> {
    let mut c = BTreeMap::new();
    for &r in rows {
        *c.entry(labels[r]).or_insert(0) += 1;
    }
    c
}

/// Label counts as `<name>x<count>` joined by commas, e.g. `posx3,negx1`.
fn counts_text(counts: &BTreeMap<ClassIndex, usize>, names: &[String]) -> String {
    counts
        .iter()
        .map(|(&l, c)| format!("{}x{c}", label_name(names, l)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label conflict in one cluster: the majority label (None in a tie) and the counts.
struct Conflict {
    counts: BTreeMap<ClassIndex, usize>,
    majority: Option<ClassIndex>,
    /// The labels tied at the top (one when there is a majority).
    tops: Vec<ClassIndex>,
    /// In a tie, the label the flips' direction resolves it against.
    resolved: Option<ClassIndex>,
    /// An unresolved tie among no more conflicts than natural label noise makes: not flagged.
    natural: bool,
    /// A tie resolved by its own reading: the evidence.
    own: Option<String>,
}

/// Are there more label conflicts among the duplicated clusters than natural annotation noise
/// makes? Two annotations of one text disagree now and then (annotators of tweets disagree on
/// a fifth to a third of them), so a corpus holds a few conflicting duplicates of its own; a
/// flipping attacker adds many, and each of its copies is a conflict. The count of conflicting
/// clusters among the duplicated ones is tested against Binomial(clusters, `noise_share`),
/// one-sided at `noise_alpha`; below that bar an unresolved tie (which row is the copy the text
/// cannot say) is listed, not flagged, as at least half of its rows are clean.
struct Noise {
    clusters: usize,
    conflicts: usize,
    p: f64,
    beyond: bool,
    share: f64,
    alpha: f64,
}

impl Noise {
    fn test(clusters: usize, conflicts: usize, p: &DupParams) -> Noise {
        let share = p.noise_share;
        let pv = if share <= 0.0 {
            0.0
        } else {
            ln_binomial_upper(conflicts as u64, clusters as u64, share).exp()
        };
        Noise {
            clusters,
            conflicts,
            p: pv,
            beyond: share <= 0.0 || pv <= p.noise_alpha,
            share,
            alpha: p.noise_alpha,
        }
    }

    fn summary(&self, unflagged_ties: usize) -> serde_json::Value {
        json!({
            "duplicated_clusters": self.clusters,
            "conflicting_clusters": self.conflicts,
            "noise_share": self.share,
            "alpha": self.alpha,
            "p_value": self.p,
            "beyond_noise": self.beyond,
            "unflagged_ties": unflagged_ties,
            "note": if self.beyond {
                "more label conflicts than natural annotation noise makes: ties the flips' direction does not resolve are flagged whole".to_string()
            } else {
                format!("{} conflicting of {} duplicated clusters is within natural annotation noise (share {}): {} unresolved ties listed, not flagged", self.conflicts, self.clusters, self.share, unflagged_ties)
            },
        })
    }
}

impl Conflict {
    fn of(rows: &[usize], labels: &[ClassIndex]) -> Option<Conflict> {
        let counts = label_counts(rows, labels);
        if counts.len() < 2 {
            return None;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let tops: Vec<ClassIndex> = counts
            .iter()
            .filter(|(_, &c)| c == top)
            .map(|(&l, _)| l)
            .collect();
        let majority = if tops.len() == 1 { Some(tops[0]) } else { None };
        Some(Conflict {
            counts,
            majority,
            tops,
            resolved: None,
            natural: false,
            own: None,
        })
    }

    fn flags(&self, label: ClassIndex) -> bool {
        match (self.majority, self.resolved) {
            (Some(m), _) => label != m,
            (None, Some(t)) => label == t,
            (None, None) => true,
        }
    }

    fn counts_text(&self, names: &[String]) -> String {
        counts_text(&self.counts, names)
    }

    fn verdict(&self, direction: &Direction, names: &[String]) -> String {
        match (self.majority, self.resolved) {
            (Some(_), _) => "minority".to_string(),
            (None, Some(t)) => match &self.own {
                Some(e) => e.clone(),
                None => direction.evidence(&label_name(names, t), t),
            },
            (None, None) => "tie: cannot tell which label is right".to_string(),
        }
    }

    fn score(&self, label: ClassIndex, size: usize) -> f64 {
        match self.majority {
            Some(m) => {
                let top = self.counts.get(&m).copied().unwrap_or(0);
                let mine = self.counts.get(&label).copied().unwrap_or(0);
                1.0 + top.saturating_sub(mine) as f64 / size.max(1) as f64
            }
            None => 1.0,
        }
    }

    /// Can `other_label` serve as the row a flagged row duplicates?
    fn is_reference(&self, mine: ClassIndex, other_label: ClassIndex) -> bool {
        match self.majority {
            Some(m) => other_label == m,
            None => other_label != mine,
        }
    }
}

/// `words`: the class word counts of every row, when already counted (else counted from
/// `core` when a tie needs them).
pub(super) fn verdicts(
    p: &DupParams,
    core: &Core,
    labels: Option<&[ClassIndex]>,
    names: &[String],
    words: Option<&ClassWords>,
) -> DupFit {
    let n = core.n_rows;
    let code = p.code();
    let mut score = RowScores::new(n);
    let mut reason = BTreeMap::new();
    let exact_sizes = core.groups.iter().map(<[usize]>::len);
    let mut summary = json!({
        "detector": code,
        "rows": n,
        "exact": {
            "groups": core.groups.len(),
            "duplicated_groups": core.groups.iter().filter(|g| g.len() > 1).count(),
            "duplicate_rows": n - core.groups.len(),
            "size_histogram": size_histogram(exact_sizes),
        },
    });
    // rows per near cluster; a cluster's rows are listed only where they are read (most
    // clusters are one row)
    let near_sizes = core.cluster_sizes();
    if let Some(cs) = &core.clusters {
        summary["near"] = json!({
            "clusters": cs.len(),
            "duplicated_clusters": near_sizes.iter().filter(|&&s| s > 1).count(),
            "rows_in_duplicated_clusters": near_sizes.iter().filter(|&&s| s > 1).sum::<usize>(),
            "clusters_with_several_texts": cs.iter().filter(|c| c.len() > 1).count(),
            "size_histogram": size_histogram(near_sizes.iter().copied()),
            "lsh": core.near_stats,
        });
    }
    let threshold = p.near.map_or(1.0, |nr| nr.threshold);
    match p.kind {
        Kind::ExactConflict | Kind::NearConflict => {
            let Some(labels) = labels else {
                return DupFit {
                    code,
                    score,
                    reason,
                    summary,
                };
            };
            let mut listed = Vec::new();
            let mut n_conflicts = 0usize;
            let exact = p.kind == Kind::ExactConflict;
            let clusters: Vec<(Vec<usize>, &[usize])> = if exact {
                core.groups
                    .iter()
                    .filter(|g| g.len() > 1)
                    .map(|g| (g.to_vec(), &[][..]))
                    .collect()
            } else {
                core.clusters
                    .as_ref()
                    .map(|cs| {
                        cs.iter()
                            .filter(|c| c.len() > 1)
                            .map(|c| (core.cluster_rows(c), c))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut conflicts: Vec<(&[usize], &[usize], Conflict)> = clusters
                .iter()
                .filter_map(|(rows, cgroups)| {
                    Conflict::of(rows, labels).map(|c| (rows.as_slice(), *cgroups, c))
                })
                .collect();
            let ties: Vec<(&[usize], Vec<usize>, Vec<ClassIndex>)> = conflicts
                .iter()
                .filter(|(_, _, c)| c.majority.is_none())
                .map(|(rows, cgroups, c)| {
                    let groups = if exact {
                        vec![core.group_of[rows[0]]]
                    } else {
                        cgroups.to_vec()
                    };
                    (*rows, groups, c.tops.clone())
                })
                .collect();
            let noise = Noise::test(clusters.len(), conflicts.len(), p);
            let direction =
                flip_direction(core, &ties, labels, p.direction_alpha, words, noise.beyond);
            let mut tie = 0usize;
            for (_, _, c) in &mut conflicts {
                if c.majority.is_none() {
                    match direction.resolves_own(tie, |l| label_name(names, l)) {
                        Some((l, e)) => {
                            c.resolved = Some(l);
                            c.own = Some(e);
                        }
                        None => c.resolved = direction.resolves(&c.tops),
                    }
                    c.natural = c.resolved.is_none() && !noise.beyond;
                    tie += 1;
                }
            }
            let mut unflagged_ties = 0usize;
            for (rows, cgroups, conflict) in &conflicts {
                n_conflicts += 1;
                if listed.len() < LIST_CAP {
                    listed.push(json!({
                        "rows": rows.iter().take(LIST_CAP).collect::<Vec<_>>(),
                        "size": rows.len(),
                        "labels": conflict.counts_text(names),
                        "distinct_texts": if exact { 1 } else { cgroups.len() },
                        "flagged": !conflict.natural,
                    }));
                }
                if conflict.natural {
                    unflagged_ties += 1;
                    continue;
                }
                for &row in rows.iter() {
                    let mine = labels[row];
                    if !conflict.flags(mine) {
                        continue;
                    }
                    // the row it duplicates: for exact, the first reference row; for near, the
                    // most similar reference row in another exact group (else any reference)
                    let (dup_of, jac, measure) = if exact {
                        let d = rows
                            .iter()
                            .copied()
                            .find(|&o| o != row && conflict.is_reference(mine, labels[o]));
                        (d, 1.0, "exact")
                    } else {
                        let g_me = core.group_of[row];
                        let mut best: Option<(f64, usize, &str)> = None;
                        for &g in cgroups.iter().take(NEAREST_CAP) {
                            if g == g_me {
                                continue;
                            }
                            let Some(&o) = core.groups[g]
                                .iter()
                                .find(|&&o| conflict.is_reference(mine, labels[o]))
                            else {
                                continue;
                            };
                            let (j, m) = core.sim(g_me, g);
                            if best.is_none_or(|(bj, bo, _)| j > bj || (j == bj && o < bo)) {
                                best = Some((j, o, m));
                            }
                        }
                        match best {
                            Some((j, o, m)) => (Some(o), j, m),
                            None => (
                                rows.iter()
                                    .copied()
                                    .find(|&o| o != row && conflict.is_reference(mine, labels[o])),
                                1.0,
                                "exact",
                            ),
                        }
                    };
                    let Some(dup_of) = dup_of else { continue };
                    let (sim, thr) = if exact {
                        ("jaccard=1.00".to_string(), "exact".to_string())
                    } else {
                        (
                            format!("similarity={jac:.2} measure={measure}"),
                            format!("{threshold:.2}"),
                        )
                    };
                    reason.insert(
                        row,
                        format!(
                            "{code}:dup_of={dup_of} {sim} threshold={thr} labels={}:{} counts={} {}",
                            label_name(names, mine),
                            label_name(names, labels[dup_of]),
                            conflict.counts_text(names),
                            conflict.verdict(&direction, names)
                        ),
                    );
                    score.set(
                        row,
                        if exact {
                            conflict.score(mine, rows.len())
                        } else {
                            (jac / threshold).max(1.0)
                        },
                    );
                }
            }
            // explained contrasts read again in the flips' direction: once the copies' target
            // is established, a one-word edit into the target whose new word happens to carry
            // that label ("you" → "Mobile" in a ham message copied as spam) is one more copy;
            // natural contrasts are rare (0 or 1 in each clean corpus), copies many
            let mut in_direction = 0usize;
            for &((ga, gb), (sim, measure)) in &core.contrasts {
                let (la, lb) = (labels[core.groups[ga][0]], labels[core.groups[gb][0]]);
                let Some(t) = direction.resolves(&[la, lb]) else {
                    continue;
                };
                let (gt, go) = if la == t { (ga, gb) } else { (gb, ga) };
                let (o, lo) = (core.groups[go][0], labels[core.groups[go][0]]);

                let counts =
                    BTreeMap::from([(t, core.groups[gt].len()), (lo, core.groups[go].len())]);
                for &row in &core.groups[gt] {
                    if reason.contains_key(&row) {
                        continue;
                    }
                    in_direction += 1;
                    reason.insert(
                        row,
                        format!(
                            "{code}:dup_of={o} similarity={sim:.2} measure={measure} threshold={threshold:.2} labels={}:{} counts={} explained contrast read in the flips' direction: {}",
                            label_name(names, t),
                            label_name(names, lo),
                            counts_text(&counts, names),
                            direction.evidence(&label_name(names, t), t)
                        ),
                    );
                    score.set(row, (sim / threshold).max(1.0));
                }
            }
            summary["contrasts_in_flip_direction"] = json!(in_direction);
            summary["conflicting_clusters"] = json!(n_conflicts);
            summary["flip_direction"] = direction.summary(|l| label_name(names, l));
            summary["natural_noise"] = noise.summary(unflagged_ties);
            summary["conflicts"] = json!(listed);
        }
        Kind::Amplification => {
            let sizes: Vec<usize> = near_sizes.iter().copied().filter(|&s| s > 1).collect();
            let cut = amplification(&sizes, p.alpha, p.min_copies);
            let mut listed = Vec::new();
            let mut n_amp = 0;
            let cs = core.clusters.iter().flat_map(|cs| cs.iter());
            for (c, &k) in cs.zip(&near_sizes) {
                if k < 2 {
                    continue;
                }
                let rows = &core.cluster_rows(c);
                let e = expected_at_least(&sizes, k);
                let s = if e > 0.0 {
                    e.ln() / p.alpha.ln()
                } else {
                    f64::INFINITY
                };
                let flagged = cut.is_some_and(|c| k >= c);
                let s = if flagged {
                    s.max(1.0)
                } else {
                    s.clamp(0.0, 0.999)
                };
                for &r in rows {
                    score.set(r, s);
                }
                if !flagged {
                    continue;
                }
                n_amp += 1;
                let first = rows[0];
                let g_first = core.group_of[first];
                if listed.len() < LIST_CAP {
                    listed.push(json!({
                        "rows": rows.iter().take(LIST_CAP).collect::<Vec<_>>(),
                        "size": k,
                        "distinct_texts": c.len(),
                        "expected_clusters_this_large": e,
                        "labels": labels.map(|l| counts_text(&label_counts(rows, l), names)),
                    }));
                }
                for &r in rows {
                    let g = core.group_of[r];
                    let (j, m) = if g == g_first {
                        (1.0, "exact")
                    } else {
                        core.sim(g, g_first)
                    };
                    reason.insert(
                        r,
                        format!(
                            "{code}:dup_of={first} similarity={j:.2} measure={m} threshold={threshold:.2} cluster_size={k} expected={e:.2e} alpha={}",
                            p.alpha
                        ),
                    );
                }
            }
            let fit = sizes
                .iter()
                .filter(|&&s| cut.is_none_or(|c| s < c))
                .copied()
                .collect::<Vec<_>>();
            let mut largest = sizes.clone();
            largest.sort_unstable_by(|a, b| b.cmp(a));
            largest.truncate(10);
            summary["amplification"] = json!({
                "cut_cluster_size": cut,
                "baseline_power_law_alpha": power_law_alpha(&fit),
                "largest_clusters": largest,
                "amplified_clusters": n_amp,
                "clusters": listed,
            });
        }
    }
    summary["flagged_rows"] = json!(reason.len());
    DupFit {
        code,
        score,
        reason,
        summary,
    }
}
