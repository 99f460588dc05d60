//! REF001's conflicts and REF002's amplified clusters, read off one duplicate core built over
//! the trusted texts followed by the new rows (rows `0..k` are the state's entries, `k..` the
//! new batch).

use super::super::exact::Core;
use super::super::verdicts::{DupFit, RowScores};
use super::super::{DupParams, LIST_CAP};
use super::state::ReferenceState;
use crate::trigger::ln_binomial_upper;
use crate::ClassIndex;
use serde_json::json;
use std::collections::BTreeMap;

/// The trusted texts followed by the new ones.
fn union_texts(state: &ReferenceState, texts: &[String]) -> Vec<String> {
    state
        .entries()
        .iter()
        .map(|e| e.text.clone())
        .chain(texts.iter().cloned())
        .collect()
}

/// Label names as `<name>x<count>` joined by commas.
fn counts_text(state: &ReferenceState, counts: &[(u32, u64)]) -> String {
    counts
        .iter()
        .map(|&(l, c)| {
            let name = state.labels().get(l as usize).map_or("?", String::as_str);
            format!("{name}x{c}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The batch's class means against the trusted corpus's class distributions, for the report
/// (no row is flagged for it). Per class with rows on both sides: Hotelling's T² = Δμᵀ
/// (S_T (1/n_T + 1/n_N))⁺ Δμ with S_T the trusted class covariance (unbiased; eigenvalues below
/// 1e-9 of the largest dropped, k kept), and its p-value from (ν − k + 1) / (ν k) · T² ~
/// F(k, ν − k + 1), ν = n_T − 1 (the covariance is estimated, which a χ² would ignore: on a
/// random split of ag-news it gave p down to 5e-6). Classes with p at most 0.01 / (classes) are
/// listed as drifted.
fn embedding_drift(
    state: &ReferenceState,
    x: ndarray::ArrayView2<'_, f32>,
    labels: &[ClassIndex],
    class_names: &[String],
) -> serde_json::Value {
    if state.dims() == 0 {
        return json!(
            "not computed: the reference was fitted without embeddings (fit --embeddings)"
        );
    }
    if x.ncols() != state.dims() || x.nrows() != labels.len() {
        return json!(format!(
            "not computed: the reference's embeddings have {} dimensions, the scan's {}",
            state.dims(),
            x.ncols()
        ));
    }
    let d = x.ncols();
    let mut classes = Vec::new();
    let mut tested = Vec::new();
    for (ci, name) in class_names.iter().enumerate() {
        let rows: Vec<usize> = (0..labels.len())
            .filter(|&r| labels[r] as usize == ci)
            .collect();
        let Some(m) = state.moments_of(name) else {
            continue;
        };
        let (n_t, n_n) = (m.rows() as f64, rows.len() as f64);
        if n_t < 2.0 || n_n < 1.0 {
            continue;
        }
        let mut mean_n = vec![0f64; d];
        for &r in &rows {
            for (a, v) in mean_n.iter_mut().zip(x.row(r)) {
                *a += f64::from(*v);
            }
        }
        let delta: Vec<f64> = mean_n
            .iter()
            .zip(m.mean())
            .map(|(a, t)| a / n_n - t)
            .collect();
        // the unbiased covariance (moments divide by n) times the variance of the difference
        let scale = (1.0 / n_t + 1.0 / n_n) * n_t / (n_t - 1.0);
        let cov: Vec<f64> = m.covariance().iter().map(|c| c * scale).collect();
        let Ok((t2, kept)) = crate::linalg::pseudo_quadratic(&cov, d, &delta, 1e-9) else {
            continue;
        };
        let (k, nu) = (kept as f64, n_t - 1.0);
        let m2 = nu - k + 1.0;
        let p = if kept == 0 || m2 < 1.0 {
            1.0
        } else {
            crate::linalg::f_survival(t2 * m2 / (nu * k), k, m2)
        };
        tested.push((name.clone(), p));
        classes.push(json!({
            "label": name,
            "trusted_rows": m.rows(),
            "new_rows": rows.len(),
            "t2": t2,
            "dof": kept,
            "p_value": p,
        }));
    }
    let level = 0.01 / tested.len().max(1) as f64;
    let drifted: Vec<&String> = tested
        .iter()
        .filter(|(_, p)| *p <= level)
        .map(|(n, _)| n)
        .collect();
    json!({"classes": classes, "drifted": drifted, "level": level})
}

/// REF001: new rows whose exact or near trusted copies never carry their label.
pub(in super::super) fn conflicts(
    state: &ReferenceState,
    texts: &[String],
    labels: &[ClassIndex],
    class_names: &[String],
    embeddings: Option<ndarray::ArrayView2<'_, f32>>,
    p: &DupParams,
) -> DupFit {
    let k = state.entries().len();
    let n = texts.len();
    // one label space for both: the sorted union of names
    let mut names: Vec<String> = state.labels().iter().chain(class_names).cloned().collect();
    names.sort_unstable();
    names.dedup();
    let to_union = |name: &str| -> ClassIndex {
        names
            .binary_search_by(|x| x.as_str().cmp(name))
            .unwrap_or(0) as ClassIndex
    };
    let state_map: Vec<ClassIndex> = state.labels().iter().map(|s| to_union(s)).collect();
    let new_map: Vec<ClassIndex> = class_names.iter().map(|s| to_union(s)).collect();
    // each trusted text's labels (union indices) and its majority label (ties: the first)
    let trusted_labels: Vec<Vec<ClassIndex>> = state
        .entries()
        .iter()
        .map(|e| {
            e.counts
                .iter()
                .map(|&(l, _)| state_map[l as usize])
                .collect()
        })
        .collect();
    let mut union_labels: Vec<ClassIndex> = state
        .entries()
        .iter()
        .map(|e| {
            let best = e
                .counts
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            best.map_or(0, |&(l, _)| state_map[l as usize])
        })
        .collect();
    union_labels.extend(
        labels
            .iter()
            .map(|&l| new_map.get(l as usize).copied().unwrap_or(0)),
    );

    let all = union_texts(state, texts);
    let mut core = Core::build(&all, &p.norm, p.near.as_ref());
    let mut dropped = 0;
    if let Some(near) = &p.near {
        dropped = core.drop_explained_contrasts(&union_labels, near.contrast_odds, None);
    }
    let threshold = p.near.as_ref().map_or(1.0, |x| x.threshold);
    // trusted texts of each exact group, and the near neighbours of each group
    let trusted_in = |g: usize| core.groups[g].iter().copied().filter(|&r| r < k);
    let mut neighbours: Vec<Vec<(usize, f64, &'static str)>> = vec![Vec::new(); core.groups.len()];
    for (&(a, b), &(sim, measure)) in &core.edges {
        neighbours[a].push((b, sim, measure));
        neighbours[b].push((a, sim, measure));
    }

    let mut score = RowScores::new(n);
    let mut reason: BTreeMap<usize, String> = BTreeMap::new();
    let mut listed = Vec::new();
    let (mut with_copy, mut exact_conflicts, mut near_conflicts) = (0usize, 0usize, 0usize);
    for i in 0..n {
        let r = k + i;
        let label = union_labels[r];
        let g = core.group_of[r];
        let exact: Vec<usize> = trusted_in(g).collect();
        // (trusted entry, similarity, measure) that disagrees with the row
        let found: Option<(usize, f64, &'static str)> = if !exact.is_empty() {
            with_copy += 1;
            if exact.iter().any(|&t| trusted_labels[t].contains(&label)) {
                None
            } else {
                exact_conflicts += 1;
                exact
                    .iter()
                    .min_by_key(|&&t| state.entries()[t].first)
                    .map(|&t| (t, 1.0, "exact"))
            }
        } else {
            let mut near: Vec<(usize, f64, &'static str)> = Vec::new();
            for &(h, sim, measure) in &neighbours[g] {
                near.extend(trusted_in(h).map(|t| (t, sim, measure)));
            }
            if near.is_empty() || near.iter().any(|x| trusted_labels[x.0].contains(&label)) {
                None
            } else {
                near_conflicts += 1;
                near.into_iter().max_by(|a, b| {
                    a.1.total_cmp(&b.1)
                        .then(state.entries()[b.0].first.cmp(&state.entries()[a.0].first))
                })
            }
        };
        let Some((t, sim, measure)) = found else {
            continue;
        };
        let e = &state.entries()[t];
        let trusted_name = names
            .get(union_labels[t] as usize)
            .map_or("?", String::as_str);
        let own = names.get(label as usize).map_or("?", String::as_str);
        let thr = if measure == "exact" {
            "exact".to_string()
        } else {
            format!("{threshold}")
        };
        reason.insert(
            i,
            format!(
                "REF001:trusted_row={} similarity={sim:.2} measure={measure} threshold={thr} labels={own}:{trusted_name} trusted_counts={}",
                e.first,
                counts_text(state, &e.counts)
            ),
        );
        score.set(i, (sim / threshold).max(1.0));
        if listed.len() < LIST_CAP {
            listed.push(json!({
                "row": i,
                "trusted_row": e.first,
                "measure": measure,
                "similarity": sim,
                "label": own,
                "trusted_counts": counts_text(state, &e.counts),
            }));
        }
    }
    let summary = json!({
        "label_drift": label_drift(state, labels, class_names),
        "embedding_drift": embeddings.map(|x| embedding_drift(state, x, labels, class_names)),
        "trusted_rows": state.rows(),
        "trusted_texts": k,
        "new_rows": n,
        "new_rows_with_trusted_copy": with_copy,
        "exact_conflicts": exact_conflicts,
        "near_conflicts": near_conflicts,
        "explained_contrast_pairs": dropped,
        "near": core.near_stats,
        "conflicts": listed,
    });
    DupFit {
        code: "REF001",
        score,
        reason,
        summary,
    }
}

/// The batch's label shares against the trusted corpus's, for the report (no row is flagged for
/// it): per label both shares and the two-sided binomial p of the batch's count under the
/// trusted share; labels whose p is at most 0.01 / (labels) are listed as drifted.
fn label_drift(
    state: &ReferenceState,
    labels: &[ClassIndex],
    class_names: &[String],
) -> serde_json::Value {
    let n = labels.len() as u64;
    let total = state.rows().max(1) as f64;
    let mut names: Vec<&str> = state
        .labels()
        .iter()
        .map(String::as_str)
        .chain(class_names.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let level = 0.01 / names.len().max(1) as f64;
    let mut per_label = Vec::new();
    let mut drifted = Vec::new();
    for name in names {
        let trusted = state.label_rows(name);
        let observed = match class_names.iter().position(|c| c == name) {
            Some(ci) => labels.iter().filter(|&&l| l as usize == ci).count() as u64,
            None => 0,
        };
        let share = trusted as f64 / total;
        // two-sided: twice the smaller tail, at most 1
        let upper = ln_binomial_upper(observed, n, share).exp();
        let lower = ln_binomial_upper(n - observed, n, 1.0 - share).exp();
        let p = (2.0 * upper.min(lower)).min(1.0);
        if p <= level {
            drifted.push(name.to_string());
        }
        per_label.push(json!({
            "label": name,
            "trusted_share": share,
            "new_share": if n == 0 { 0.0 } else { observed as f64 / n as f64 },
            "new_rows": observed,
            "p_value": p,
        }));
    }
    json!({"labels": per_label, "drifted": drifted, "level": level})
}

/// REF002: new rows of clusters the new batch holds far more of than the trusted corpus
/// predicts (binomial tail, Bonferroni over the clusters holding a new row).
pub(in super::super) fn amplified(
    state: &ReferenceState,
    texts: &[String],
    p: &DupParams,
) -> DupFit {
    let k = state.entries().len();
    let n = texts.len();
    let all = union_texts(state, texts);
    let core = Core::build(&all, &p.norm, p.near.as_ref());
    let clusters: Vec<Vec<usize>> = match &core.clusters {
        Some(cs) => cs.iter().map(|c| core.cluster_rows(c)).collect(),
        None => core.groups.iter().map(<[usize]>::to_vec).collect(),
    };
    let trusted_rows = state.rows();
    let share = if n == 0 {
        0.0
    } else {
        n as f64 / (n as f64 + trusted_rows as f64)
    };
    // (cluster, trusted rows, new rows)
    let tested: Vec<(&Vec<usize>, u64, u64)> = clusters
        .iter()
        .map(|c| {
            let t: u64 = c
                .iter()
                .filter(|&&r| r < k)
                .map(|&r| state.entries()[r].rows())
                .sum();
            let m = c.iter().filter(|&&r| r >= k).count() as u64;
            (c, t, m)
        })
        .filter(|&(_, t, m)| m >= 1 && t + m >= 2)
        .collect();
    let family = tested.len().max(1) as f64;
    let ln_alpha = p.alpha.ln();
    let mut score = RowScores::new(n);
    let mut reason: BTreeMap<usize, String> = BTreeMap::new();
    let mut listed = Vec::new();
    let mut flagged_clusters = 0usize;
    for &(c, t, m) in &tested {
        let ln_p = ln_binomial_upper(m, t + m, share);
        let s = ((ln_p + family.ln()) / ln_alpha).max(0.0);
        let flagged = m >= p.min_copies as u64 && s >= 1.0;
        let first = c
            .iter()
            .filter(|&&r| r < k)
            .map(|&r| state.entries()[r].first)
            .min();
        let first_text = first.map_or("none".to_string(), |f| f.to_string());
        if flagged {
            flagged_clusters += 1;
            if listed.len() < LIST_CAP {
                listed.push(json!({
                    "trusted_row": first,
                    "cluster_rows": t + m,
                    "trusted": t,
                    "new": m,
                    "expected_new": (t + m) as f64 * share,
                    "p_value": ln_p.exp(),
                    "new_rows": c.iter().filter(|&&r| r >= k).map(|&r| r - k).take(LIST_CAP).collect::<Vec<_>>(),
                }));
            }
        }
        for &r in c.iter().filter(|&&r| r >= k) {
            let i = r - k;
            score.set(i, if flagged { s } else { s.min(0.999) });
            if flagged {
                reason.insert(
                    i,
                    format!(
                        "REF002:trusted_row={first_text} cluster_rows={} trusted={t} new={m} expected_new={:.2} p_value={:.3e} family={} alpha={}",
                        t + m,
                        (t + m) as f64 * share,
                        ln_p.exp(),
                        tested.len(),
                        p.alpha
                    ),
                );
            }
        }
    }
    let summary = json!({
        "trusted_rows": trusted_rows,
        "trusted_texts": k,
        "new_rows": n,
        "new_share": share,
        "clusters_tested": tested.len(),
        "amplified_clusters": flagged_clusters,
        "near": core.near_stats,
        "amplified": listed,
    });
    DupFit {
        code: "REF002",
        score,
        reason,
        summary,
    }
}
