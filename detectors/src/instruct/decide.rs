//! Step 3: the rounds of association tests, then naming the triggers.

use super::features::{Feature, Property};
use super::neighbours::{leave_one_out, top_k, Index};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// The resolved parameters the fit uses (see the detector's docs).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub neighbours: usize,
    pub alpha: f64,
    pub min_lift: f64,
    pub min_purity: f64,
    pub min_rows: usize,
    pub cover: f64,
    pub row_probability: f64,
    pub max_rounds: usize,
    pub min_exclusive: f64,
    pub max_cohesion: f64,
}

/// One accepted (feature, property, direction) test.
#[derive(Debug, Clone)]
pub(super) struct Accepted {
    pub feature: usize,
    pub property: usize,
    /// The trigger's rows lack the property (instead of having it).
    pub absent: bool,
    /// Rows holding the feature.
    pub support: usize,
    /// Of those, rows showing the behaviour.
    pub observed: usize,
    /// Rows expected to show it from the rest of their prompts.
    pub expected: f64,
    /// Natural log of the Chernoff bound on the binomial tail.
    pub ln_p: f64,
    /// Share of the behaviour's unexplained rows that the feature holds.
    pub exclusive: f64,
    /// Mean share of the feature's rows among its rows' nearest prompts (feature removed).
    pub cohesion: f64,
    /// Rows flagged: the feature, the behaviour, and a context predicting the opposite.
    pub rows: Vec<u32>,
}

/// A named trigger: one n-gram, or several that only occur together.
#[derive(Debug, Clone)]
pub(super) struct Trigger {
    /// Its n-grams (one for a single trigger, several for a combination).
    pub names: Vec<String>,
    /// The strongest accepted test of the group.
    pub best: Accepted,
    /// Rows flagged.
    pub rows: Vec<u32>,
}

/// (c + 0.5 + prior·(K − k)/K) / (k + 1 + (K − k)/K): the rate of a property among k found
/// neighbours (c of them having it), shrunk towards `prior` for the neighbours not found.
pub(super) fn smoothed(c: f64, k: usize, big_k: usize, prior: f64) -> f64 {
    let a = (big_k - k.min(big_k)) as f64 / big_k as f64;
    (c + 0.5 + prior * a) / (k as f64 + 1.0 + a)
}

/// −n·KL(q ‖ p): the log of the Chernoff bound on P(X ≥ q·n) for X ~ Binomial(n, p), q ≥ p
/// (also a bound for a Poisson-binomial of mean p·n).
fn ln_chernoff(q: f64, p: f64, n: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let mut kl = 0.0;
    if q > 0.0 {
        kl += q * (q / p).ln();
    }
    if q < 1.0 {
        kl += (1.0 - q) * ((1.0 - q) / (1.0 - p)).ln();
    }
    -n * kl
}

/// Counts of properties among a set of rows, sorted by property.
fn property_counts(rows: &[u32], of_row: &[Vec<u32>]) -> Vec<(u32, u32)> {
    let mut all: Vec<u32> = rows
        .iter()
        .flat_map(|&j| of_row[j as usize].iter().copied())
        .collect();
    all.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for p in all {
        match out.last_mut() {
            Some((x, c)) if *x == p => *c += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

fn count_of(counts: &[(u32, u32)], p: u32) -> f64 {
    counts
        .binary_search_by_key(&p, |&(x, _)| x)
        .map_or(0.0, |i| counts[i].1 as f64)
}

fn has(of_row: &[Vec<u32>], i: u32, p: u32) -> bool {
    of_row[i as usize].binary_search(&p).is_ok()
}

/// Everything one round needs to know about the pool.
struct PoolStats {
    /// Rows of the pool having each property.
    count: Vec<usize>,
    size: usize,
    /// Per pool row, properties it has although its neighbours say it should not (sorted).
    unexplained_has: Vec<Vec<u32>>,
    /// Per pool row, properties it lacks although its neighbours say it should have them.
    unexplained_lacks: Vec<Vec<u32>>,
    total_has: Vec<usize>,
    total_lacks: Vec<usize>,
}

fn pool_stats(
    index: &Index,
    pool: &[bool],
    of_row: &[Vec<u32>],
    n_props: usize,
    s: &Settings,
) -> PoolStats {
    let n = pool.len();
    let size = pool.iter().filter(|&&p| p).count();
    let mut count = vec![0usize; n_props];
    for i in (0..n).filter(|&i| pool[i]) {
        for &p in &of_row[i] {
            count[p as usize] += 1;
        }
    }
    let prior: Vec<f64> = count
        .iter()
        .map(|&c| c as f64 / size.max(1) as f64)
        .collect();
    let loo = leave_one_out(index, pool, s.neighbours);
    let per_row: Vec<(Vec<u32>, Vec<u32>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            if !pool[i] {
                return (Vec::new(), Vec::new());
            }
            let counts = property_counts(&loo[i], of_row);
            let k = loo[i].len();
            let (mut h, mut l) = (Vec::new(), Vec::new());
            for (p, &pr) in prior.iter().enumerate() {
                let p0 = smoothed(count_of(&counts, p as u32), k, s.neighbours, pr);
                if has(of_row, i as u32, p as u32) {
                    if p0 < s.row_probability {
                        h.push(p as u32);
                    }
                } else if 1.0 - p0 < s.row_probability {
                    l.push(p as u32);
                }
            }
            (h, l)
        })
        .collect();
    let mut total_has = vec![0usize; n_props];
    let mut total_lacks = vec![0usize; n_props];
    let (mut unexplained_has, mut unexplained_lacks) = (Vec::new(), Vec::new());
    for (h, l) in per_row {
        for &p in &h {
            total_has[p as usize] += 1;
        }
        for &p in &l {
            total_lacks[p as usize] += 1;
        }
        unexplained_has.push(h);
        unexplained_lacks.push(l);
    }
    PoolStats {
        count,
        size,
        unexplained_has,
        unexplained_lacks,
        total_has,
        total_lacks,
    }
}

/// The tests of one feature against every property, both directions.
#[allow(clippy::too_many_arguments)]
fn test_feature(
    fi: usize,
    f: &Feature,
    index: &Index,
    pool: &[bool],
    stats: &PoolStats,
    props: &[Property],
    of_row: &[Vec<u32>],
    ln_threshold: f64,
    s: &Settings,
) -> Vec<Accepted> {
    let rows = &f.rows;
    let n = rows.len();
    let in_f = |j: usize| rows.binary_search(&(j as u32)).is_ok();
    // rows of the pool outside the feature, and the properties' rate among them
    let mut f_pool_count = vec![0usize; props.len()];
    let mut f_in_pool = 0usize;
    for &i in rows {
        if pool[i as usize] {
            f_in_pool += 1;
            for &p in &of_row[i as usize] {
                f_pool_count[p as usize] += 1;
            }
        }
    }
    let others = stats.size - f_in_pool;
    if others == 0 {
        return Vec::new();
    }
    let prior: Vec<f64> = (0..props.len())
        .map(|p| (stats.count[p] - f_pool_count[p]) as f64 / others as f64)
        .collect();
    // each row's neighbours outside the feature, the feature's own tokens taken out
    // and, among all rows, how many of its nearest prompts hold the feature too (cohesion),
    // with every token (almost) confined to the feature's rows taken out as well: the other
    // words of an all-of trigger, or the rest of a phrase, are not what makes rows alike
    let mut in_rows: BTreeMap<u32, usize> = BTreeMap::new();
    for &i in rows {
        for &(w, _) in &index.rows[i as usize] {
            *in_rows.entry(w).or_default() += 1;
        }
    }
    let mut confined: Vec<u32> = in_rows
        .into_iter()
        .filter(|&(w, c)| c as f64 >= s.cover * index.document_frequency(w) as f64)
        .map(|(w, _)| w)
        .filter(|w| f.token_ids.binary_search(w).is_err())
        .collect();
    confined.sort_unstable();
    let mut cohesion_sum = 0.0;
    let neigh: Vec<(usize, Vec<(u32, u32)>)> = rows
        .iter()
        .map(|&i| {
            let mut sims = index.similarities(i as usize);
            index.remove_tokens(i as usize, &f.token_ids, &mut sims);
            let nb = top_k(&sims, s.neighbours, |j| pool[j] && !in_f(j));
            let all = if confined.is_empty() {
                top_k(&sims, s.neighbours, |j| j != i as usize)
            } else {
                let mut rest = sims.clone();
                index.remove_tokens(i as usize, &confined, &mut rest);
                top_k(&rest, s.neighbours, |j| j != i as usize)
            };
            // a row left with no neighbour shares no word with rows outside the group at all
            cohesion_sum += if all.is_empty() {
                1.0
            } else {
                all.iter().filter(|&&j| in_f(j as usize)).count() as f64 / all.len() as f64
            };
            (nb.len(), property_counts(&nb, of_row))
        })
        .collect();
    let cohesion = cohesion_sum / n.max(1) as f64;
    // rows that, the feature aside, are each other's nearest prompts are a topical or
    // templated group of the corpus (a natural phrase), not prompts a trigger was put into
    if cohesion > s.max_cohesion {
        return Vec::new();
    }
    let big_k = s.neighbours as f64;
    let (mut sum_inv_d, mut sum_a_d) = (0.0, 0.0);
    let mut count_term = vec![0f64; props.len()];
    for (k, counts) in &neigh {
        let a = (big_k - *k as f64) / big_k;
        let d = *k as f64 + 1.0 + a;
        sum_inv_d += 1.0 / d;
        sum_a_d += a / d;
        for &(p, c) in counts {
            count_term[p as usize] += c as f64 / d;
        }
    }
    let mut observed_has = vec![0usize; props.len()];
    for &i in rows {
        for &p in &of_row[i as usize] {
            observed_has[p as usize] += 1;
        }
    }
    let words: Vec<&str> = f.text.split(' ').collect();
    let mut out = Vec::new();
    for p in 0..props.len() {
        let e_has = count_term[p] + 0.5 * sum_inv_d + prior[p] * sum_a_d;
        for absent in [false, true] {
            let (obs, e) = if absent {
                (n - observed_has[p], n as f64 - e_has)
            } else {
                (observed_has[p], e_has)
            };
            let obs_f = obs as f64;
            if obs < s.min_rows || obs_f < s.min_lift * e || obs_f < s.min_purity * n as f64 {
                continue;
            }
            let ln_p = ln_chernoff(obs_f / n as f64, e / n as f64, n as f64);
            if ln_p > ln_threshold {
                continue;
            }
            // a response that repeats a word of the feature is natural, not a trigger
            if !absent && props[p].text.split(' ').any(|w| words.contains(&w)) {
                continue;
            }
            let mut flagged = Vec::new();
            for (&i, (k, counts)) in rows.iter().zip(&neigh) {
                let h = has(of_row, i, p as u32);
                if h == absent {
                    continue;
                }
                let ph = smoothed(count_of(counts, p as u32), *k, s.neighbours, prior[p]);
                let pd = if absent { 1.0 - ph } else { ph };
                if pd < s.row_probability {
                    flagged.push(i);
                }
            }
            if flagged.len() < s.min_rows {
                continue;
            }
            let (per_row, total) = if absent {
                (&stats.unexplained_lacks, &stats.total_lacks)
            } else {
                (&stats.unexplained_has, &stats.total_has)
            };
            let inside = rows
                .iter()
                .filter(|&&i| per_row[i as usize].binary_search(&(p as u32)).is_ok())
                .count();
            let outside = total[p].saturating_sub(inside);
            let exclusive = flagged.len() as f64 / (flagged.len() + outside) as f64;
            if exclusive < s.min_exclusive {
                continue;
            }
            out.push(Accepted {
                feature: fi,
                property: p,
                absent,
                support: n,
                observed: obs,
                expected: e,
                ln_p,
                exclusive,
                cohesion,
                rows: flagged,
            });
        }
    }
    out
}

/// What the fit found: the accepted tests of the last round, the triggers, and the counts
/// behind the significance threshold.
pub(super) struct Found {
    pub triggers: Vec<Trigger>,
    pub tests: usize,
    pub rounds: usize,
}

/// Test every feature against every property, in rounds that take the flagged rows out of the
/// pool of neighbours, then name the triggers.
pub(super) fn find(
    index: &Index,
    features: &[Feature],
    props: &[Property],
    of_row: &[Vec<u32>],
    s: &Settings,
) -> Found {
    let n = of_row.len();
    let tests = (features.len() * props.len() * 2).max(1);
    let ln_threshold = (s.alpha / tests as f64).ln();
    let mut pool = vec![true; n];
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut rounds = 0;
    for _ in 0..s.max_rounds.max(1) {
        rounds += 1;
        let stats = pool_stats(index, &pool, of_row, props.len(), s);
        accepted = features
            .par_iter()
            .enumerate()
            .flat_map_iter(|(fi, f)| {
                test_feature(fi, f, index, &pool, &stats, props, of_row, ln_threshold, s)
            })
            .collect();
        let mut next = pool.clone();
        for a in &accepted {
            for &r in &a.rows {
                next[r as usize] = false;
            }
        }
        if next == pool {
            break;
        }
        pool = next;
    }
    Found {
        triggers: name(features, props, accepted, s.cover),
        tests,
        rounds,
    }
}

fn contained(a: &str, b: &str) -> bool {
    a != b && format!(" {b} ").contains(&format!(" {a} "))
}

fn overlap(a: &[u32], b: &[u32]) -> usize {
    a.iter().filter(|x| b.binary_search(x).is_ok()).count()
}

/// Per feature its strongest test, flagging the rows of all its tests; features inside a longer accepted n-gram that covers their
/// rows dropped; features flagging the same rows grouped into one trigger (a combination when
/// several n-grams remain); groups mostly covered by larger ones dropped.
fn name(
    features: &[Feature],
    props: &[Property],
    accepted: Vec<Accepted>,
    cover: f64,
) -> Vec<Trigger> {
    let key = |a: &Accepted| {
        (
            a.ln_p,
            props[a.property].rank(),
            std::cmp::Reverse(props[a.property].text.len()),
            a.absent,
        )
    };
    // a feature flags the rows of every test it passed (a flip seen from the chosen and
    // from the rejected side), named after its strongest
    let mut union: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for a in &accepted {
        union.entry(a.feature).or_default().extend(&a.rows);
    }
    let mut best: BTreeMap<usize, Accepted> = BTreeMap::new();
    for a in accepted {
        match best.get(&a.feature) {
            Some(b) if key(b).partial_cmp(&key(&a)) != Some(std::cmp::Ordering::Greater) => {}
            _ => {
                best.insert(a.feature, a);
            }
        }
    }
    let cands: Vec<Accepted> = best
        .into_values()
        .map(|mut a| {
            if let Some(mut rows) = union.remove(&a.feature) {
                rows.sort_unstable();
                rows.dedup();
                a.rows = rows;
            }
            a
        })
        .collect();
    let kept: Vec<&Accepted> = cands
        .iter()
        .filter(|a| {
            let fa = &features[a.feature].text;
            !cands.iter().any(|h| {
                contained(fa, &features[h.feature].text)
                    && overlap(&a.rows, &h.rows) as f64 >= cover * a.rows.len() as f64
            })
        })
        .collect();
    let mut groups: HashMap<&[u32], Vec<&Accepted>> = HashMap::new();
    for a in &kept {
        groups.entry(a.rows.as_slice()).or_default().push(a);
    }
    let mut ordered: Vec<(&[u32], Vec<&Accepted>)> = groups.into_iter().collect();
    let min_p = |m: &[&Accepted]| m.iter().map(|a| a.ln_p).fold(f64::INFINITY, f64::min);
    ordered.sort_by(|a, b| {
        b.0.len()
            .cmp(&a.0.len())
            .then(min_p(&a.1).total_cmp(&min_p(&b.1)))
            .then(a.0.cmp(b.0))
    });
    let mut covered: Vec<bool> = Vec::new();
    let mut out = Vec::new();
    for (rows, members) in ordered {
        let n_cov = rows
            .iter()
            .filter(|&&r| covered.get(r as usize).copied().unwrap_or(false))
            .count();
        if n_cov as f64 >= cover * rows.len() as f64 {
            continue;
        }
        let names: Vec<&str> = members
            .iter()
            .map(|m| features[m.feature].text.as_str())
            .collect();
        let mut maximal: Vec<String> = names
            .iter()
            .filter(|x| !names.iter().any(|y| contained(x, y)))
            .map(|x| x.to_string())
            .collect();
        maximal.sort();
        maximal.dedup();
        let Some(m0) = members
            .iter()
            .min_by(|a, b| a.ln_p.total_cmp(&b.ln_p).then(a.feature.cmp(&b.feature)))
        else {
            continue;
        };
        for &r in rows {
            if covered.len() <= r as usize {
                covered.resize(r as usize + 1, false);
            }
            covered[r as usize] = true;
        }
        out.push(Trigger {
            names: maximal,
            best: (*m0).clone(),
            rows: rows.to_vec(),
        });
    }
    out
}
