//! TRIG001 statistics: binomial and Poisson-binomial tails, ln Γ, the insertion null of the
//! neighbour collision test, erfc, and the dominant neighbour of a span.

use super::tokenise::{word_tokens, Corpus, Vocab};
use super::{TriggerParams, CHUNK, END, START};
use crate::linalg::erfc;
use crate::rng::SplitMix64;
use rayon::prelude::*;
use std::sync::OnceLock;

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// Arguments below this have ln n! read from a table (512 KiB, filled once).
const LN_FACTORIAL_TABLE: u64 = 1 << 16;

/// ln n! = ln Γ(n + 1). The binomial tails sum hundreds of ln C(n, i) per call and call it
/// for every candidate and null; the table holds the very values [`ln_gamma`] returns (it
/// is filled by it), so reading it changes no result, only the time.
fn ln_factorial(n: u64) -> f64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    if n < LN_FACTORIAL_TABLE {
        let table = TABLE.get_or_init(|| {
            (0..LN_FACTORIAL_TABLE)
                .map(|i| ln_gamma(i as f64 + 1.0))
                .collect()
        });
        table[n as usize]
    } else {
        ln_gamma(n as f64 + 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// ln P(X ≥ k) for X ~ Binomial(n, p).
pub fn ln_binomial_upper(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k > n || p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 || (k as f64) <= n as f64 * p {
        // at or below the mean the tail is at least about one half: report no evidence
        return 0.0_f64.min(ln_binomial_upper_sum(k, n, p));
    }
    ln_binomial_upper_sum(k, n, p)
}

fn ln_binomial_upper_sum(k: u64, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut acc = f64::NEG_INFINITY;
    let mut first = f64::NEG_INFINITY;
    for i in k..=n {
        let term = ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq;
        if i == k {
            first = term;
        }
        acc = log_add(acc, term);
        if term < first - 40.0 && i > k {
            break;
        }
    }
    acc.min(0.0)
}

/// ln P(X ≥ k) for X a sum of independent Bernoulli(q_i) (Poisson-binomial). Exact dynamic
/// programme over the number of misses when affordable, else the Chernoff bound (an upper bound
/// on the tail, so the test stays conservative).
pub fn ln_poisson_binomial_upper(q: &[f64], k: usize) -> f64 {
    let n = q.len();
    if k == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }
    let mean: f64 = q.iter().sum();
    if (k as f64) <= mean {
        return 0.0;
    }
    let max_miss = n - k;
    if (max_miss + 1).saturating_mul(n) <= 20_000_000 {
        // dp[j] = ln P(j misses so far), j ≤ max_miss; P(X ≥ k) = P(misses ≤ n − k)
        let mut dp = vec![f64::NEG_INFINITY; max_miss + 1];
        dp[0] = 0.0;
        for &qi in q {
            let qi = qi.clamp(1e-300, 1.0);
            let (lh, lm) = (qi.ln(), (1.0 - qi).max(1e-300).ln());
            for j in (0..=max_miss).rev() {
                let hit = dp[j] + lh;
                let miss = if j > 0 {
                    dp[j - 1] + lm
                } else {
                    f64::NEG_INFINITY
                };
                dp[j] = log_add(hit, miss);
            }
        }
        return dp
            .iter()
            .fold(f64::NEG_INFINITY, |a, &b| log_add(a, b))
            .min(0.0);
    }
    // Chernoff: ln P(X ≥ k) ≤ min_t [ −t k + Σ ln(1 − q_i + q_i e^t) ], convex in t ≥ 0
    let f = |t: f64| -> f64 {
        -t * k as f64
            + q.iter()
                .map(|&qi| (1.0 - qi + qi * t.exp()).ln())
                .sum::<f64>()
    };
    let (mut lo, mut hi) = (0.0f64, 50.0f64);
    for _ in 0..100 {
        let m1 = lo + (hi - lo) / 3.0;
        let m2 = hi - (hi - lo) / 3.0;
        if f(m1) < f(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    f(0.5 * (lo + hi)).min(0.0)
}

/// Neighbour collisions expected under random insertion: n neighbours drawn independently from
/// the corpus's token distribution p (anchors included), with power sums S2 = Σ p², S3 = Σ p³.
pub(super) struct InsertionNull {
    pub(super) s2: f64,
    pub(super) s3: f64,
    pub(super) max_excess: f64,
    pub(super) level: f64,
    /// for n = 0..=[`SIMULATED_MAX_N`]: collision counts of [`SIMULATIONS`] simulated
    /// random insertions of n occurrences (`None`: the normal tail for every n)
    pub(super) simulated: Option<Collisions>,
    /// the ids of the most frequent neighbours that together make up half of all positions,
    /// sorted (ids, not a flag per token of the vocabulary: a class's null holds its rows'
    /// neighbours only)
    head: Vec<u32>,
    /// whether the null has a typicality test (it was made from any neighbour counts)
    typical: bool,
    /// probability that a random insertion's neighbour is in the head
    head_mass: f64,
    /// total weight of the neighbour counts the null was made from
    total: f64,
}

/// Largest number of occurrences whose collision tail is simulated rather than approximated.
const SIMULATED_MAX_N: usize = 128;
/// Simulated random insertions per n.
const SIMULATIONS: usize = 10_000;
/// Blocks of simulations run side by side, each on a thread of its own (two per core on a small
/// machine, few enough that each block's histogram, 1.4 MB, is cheap to add).
const SIMULATION_BLOCKS: usize = 4;

/// Collision counts of random insertions: [`SIMULATIONS`] sequences of [`SIMULATED_MAX_N`]
/// neighbours drawn from the weights (Walker's alias method, a fixed seed), and for every
/// n ≤ [`SIMULATED_MAX_N`] the distribution of the collision counts of the sequences' first n
/// draws. The first n draws of a sequence are a random insertion of n occurrences, so each n's
/// table holds [`SIMULATIONS`] independent draws of its own null; the tables of different n
/// share sequences, which no test reads across. The null depends on n and the corpus only, not
/// on a candidate, so one set of tables serves every candidate. The tables are simulated the
/// first time a candidate asks for any of them (10 000 × 128 draws, about 10 ms) and kept as
/// (count, how many simulations reached it) per distinct count, a few kilobytes per null
/// however many classes ask for their own. Simulating each n on its own would draw
/// Σn = 8 256 neighbours per sequence instead of 128.
pub(super) struct Collisions {
    /// neighbours (0 when there is no weight): the length of the alias table
    len: usize,
    /// the neighbours with a weight, and their weights: the alias table is built from them
    /// when the tables are simulated and dropped after, so that a null that is never asked
    /// (the nulls of the classes, one per class and side) holds only the neighbours its rows
    /// have, not a table over the vocabulary
    weights: Vec<(usize, f64)>,
    tables: OnceLock<Vec<Tail>>,
}

/// The simulated collision counts of one n: each distinct count, ascending, with the number of
/// simulations whose count is at least that.
pub(super) struct Tail {
    at_least: Vec<(u16, u32)>,
}

impl Tail {
    /// The simulated chance of at least `observed` collisions, (1 + #{C_sim ≥ C}) / (R + 1).
    pub(super) fn chance(&self, observed: f64) -> f64 {
        let i = self
            .at_least
            .partition_point(|&(c, _)| f64::from(c) < observed);
        let reached = self.at_least.get(i).map_or(0, |&(_, k)| k);
        (1 + reached) as f64 / (SIMULATIONS + 1) as f64
    }

    /// Mean simulated count.
    #[cfg(test)]
    fn mean(&self) -> f64 {
        let mut sum = 0.0;
        for (i, &(c, k)) in self.at_least.iter().enumerate() {
            let next = self.at_least.get(i + 1).map_or(0, |&(_, k)| k);
            sum += f64::from(c) * f64::from(k - next);
        }
        sum / SIMULATIONS as f64
    }
}

impl Collisions {
    /// The draws from `weights`; no table is simulated yet.
    pub(super) fn new(weights: &[f64]) -> Self {
        let total: f64 = weights.iter().sum();
        let k = weights.len();
        if k == 0 || total <= 0.0 {
            return Collisions {
                len: 0,
                weights: Vec::new(),
                tables: OnceLock::new(),
            };
        }
        Collisions {
            len: k,
            weights: weights
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w != 0.0)
                .map(|(i, &w)| (i, w))
                .collect(),
            tables: OnceLock::new(),
        }
    }

    /// Vose's alias table: acceptance probability and alias per neighbour, side by side so
    /// that a draw reads one cache line (empty: no weight).
    fn alias_table(&self) -> Vec<(f64, usize)> {
        let k = self.len;
        if k == 0 {
            return Vec::new();
        }
        let mut weights = vec![0.0f64; k];
        for &(i, w) in &self.weights {
            weights[i] = w;
        }
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * k as f64 / total).collect();
        let mut alias: Vec<usize> = (0..k).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..k).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        prob.into_iter().zip(alias).collect()
    }

    /// The simulated collision counts of n occurrences, or `None` above
    /// [`SIMULATED_MAX_N`]. Without weights every count is 0.
    pub(super) fn tail(&self, n: usize) -> Option<&Tail> {
        if n > SIMULATED_MAX_N {
            return None;
        }
        self.tables
            .get_or_init(|| self.simulate(SIMULATION_BLOCKS))
            .get(n)
    }

    /// Every n's table at once (see [`Collisions`]), the simulations run in `blocks` blocks
    /// side by side (the same tables for any number of blocks).
    fn simulate(&self, blocks: usize) -> Vec<Tail> {
        // histogram of the counts per n: n draws have at most C(n, 2) colliding pairs
        let offset: Vec<usize> = (0..=SIMULATED_MAX_N + 1)
            .scan(0usize, |acc, n| {
                let at = *acc;
                *acc += n * n.saturating_sub(1) / 2 + 1;
                Some(at)
            })
            .collect();
        let cells = offset[SIMULATED_MAX_N + 1];
        let table = self.alias_table();
        let k = table.len();
        let hist = if k == 0 {
            let mut hist = vec![0u32; cells];
            for n in 0..=SIMULATED_MAX_N {
                hist[offset[n]] = SIMULATIONS as u32;
            }
            hist
        } else {
            let start = SplitMix64(0x7472_6967_0000_0000);
            // the sequences run in blocks side by side: a sequence takes exactly
            // 2 · SIMULATED_MAX_N draws, so block b starts `ahead` of the seed by what the
            // blocks before it draw and every sequence sees the numbers a sequential run gives
            // it; the histograms add (integer counts), so the tables do not depend on threads
            let blocks = blocks.max(1);
            let per_block = SIMULATIONS.div_ceil(blocks);
            let run_block = |b: usize| {
                let mut hist = vec![0u32; cells];
                let first = b * per_block;
                let mut rng = start.ahead((first * 2 * SIMULATED_MAX_N) as u64);
                let mut draws = [0usize; SIMULATED_MAX_N];
                // how often each neighbour was drawn so far in the current sequence: the m-th
                // draw of a neighbour collides with the m − 1 before it, so the count of pairs
                // grows while drawing (C = Σ m(m − 1)/2 over the draw counts) and every
                // prefix's count is at hand
                let mut seen = vec![0u16; k];
                for _ in first..(first + per_block).min(SIMULATIONS) {
                    hist[offset[0]] += 1;
                    let mut c = 0usize;
                    for (j, d) in draws.iter_mut().enumerate() {
                        let i = rng.below(k);
                        let (prob, alias) = table[i];
                        *d = if rng.unit() < prob { i } else { alias };
                        c += usize::from(seen[*d]);
                        seen[*d] += 1;
                        hist[offset[j + 1] + c] += 1;
                    }
                    for &d in &draws {
                        seen[d] = 0;
                    }
                }
                hist
            };
            // the blocks run on threads of their own, not on the thread pool: this runs in
            // the `OnceLock` initialiser of [`Collisions::tail`], called from pool tasks, and a
            // pool thread waiting there for pool work steals other tasks, one of which waits
            // on this very `OnceLock`: the scan hung (4 pool threads, sst2-badnets-10)
            std::thread::scope(|scope| {
                let spawned: Vec<_> = (1..blocks)
                    .map(|b| {
                        let run = &run_block;
                        (
                            b,
                            std::thread::Builder::new().spawn_scoped(scope, move || run(b)),
                        )
                    })
                    .collect();
                let mut hist = run_block(0);
                for (b, handle) in spawned {
                    // no thread to be had: that block runs here
                    let block = match handle {
                        Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                        Err(_) => run_block(b),
                    };
                    hist.iter_mut().zip(&block).for_each(|(x, y)| *x += y);
                }
                hist
            })
        };
        (0..=SIMULATED_MAX_N)
            .map(|n| {
                let mut at_least = Vec::new();
                let mut reached = 0u32;
                for c in (0..offset[n + 1] - offset[n]).rev() {
                    let h = hist[offset[n] + c];
                    if h > 0 {
                        reached += h;
                        // c ≤ C(128, 2) = 8 128
                        at_least.push((c as u16, reached));
                    }
                }
                at_least.reverse();
                Tail { at_least }
            })
            .collect()
    }
}

impl InsertionNull {
    /// The null of one side from its neighbour counts per token id: power sums, simulated
    /// collisions, and the head (the most frequent neighbours that together reach half of the
    /// positions).
    pub(super) fn from_counts(counts: &[f64], p: &TriggerParams) -> Self {
        let total: f64 = counts.iter().sum::<f64>();
        let power = |k: i32| {
            if total > 0.0 {
                counts.iter().map(|&c| (c / total).powi(k)).sum::<f64>()
            } else {
                1.0
            }
        };
        let mut order: Vec<usize> = (0..counts.len()).filter(|&t| counts[t] > 0.0).collect();
        order.sort_unstable_by(|&a, &b| counts[b].total_cmp(&counts[a]).then(a.cmp(&b)));
        let mut head = Vec::new();
        let mut mass = 0.0;
        for t in order {
            if mass >= 0.5 * total {
                break;
            }
            head.push(t as u32);
            mass += counts[t];
        }
        head.sort_unstable();
        InsertionNull {
            s2: power(2),
            s3: power(3),
            max_excess: p.max_neighbour_excess,
            level: p.neighbour_level,
            simulated: Some(Collisions::new(counts)),
            head,
            typical: !counts.is_empty(),
            head_mass: if total > 0.0 { mass / total } else { 0.0 },
            total,
        }
    }

    /// (excess, randomness score) of one side's (neighbour, count) pairs. The excess is
    /// (C + 1)/(μ + 1) for C colliding pairs; the side looks random (score ≥ 1) when the excess
    /// is at most `max_excess`, or when C is not significantly above μ = C(n,2)·S2: its chance
    /// P(C_random ≥ C) stays at or above `level`. Up to [`SIMULATED_MAX_N`] occurrences the
    /// chance is read off simulated random insertions (C is skewed to the right there); above,
    /// it is the normal tail ½·erfc((C − μ) / σ√2) with
    /// σ² = C(n,2)(S2 − S2²) + 6·C(n,3)(S3 − S2²) (pairs sharing an occurrence are dependent,
    /// disjoint pairs are not). The score is the larger of `max_excess`/excess and
    /// chance/`level`.
    ///
    /// Random insertion also makes the neighbours *typical*: each is one of the head tokens (the
    /// most frequent ones, half of all positions: function words, punctuation, the row's start
    /// or end) with probability h, so their number is Binomial(n, h). A window whose neighbours
    /// are far more often rare tokens than that (a hashtag chain, the names before a colon, the
    /// last word of a sentence before a closing hashtag) is not an insertion either: the score is
    /// also capped by the larger of `max_excess`/deficit, with deficit (n·h + 1)/(X + 1), and
    /// P(X ≤ observed)/`level`: atypical means both half as typical as random or less, and
    /// unlikely by chance.
    ///
    /// `own`: the token the window itself put into this null, and how often (a window anchored
    /// at the start made every row it opens begin with its first word). The head share is read
    /// without that weight: a phrase opening 5 % of the rows would otherwise make its own first
    /// word a head token that none of its neighbours can be.
    pub(super) fn side(&self, counts: &[(u32, u32)], own: Option<(u32, f64)>) -> (f64, f64) {
        let n: f64 = counts.iter().map(|&(_, c)| c as f64).sum();
        let observed: f64 = counts
            .iter()
            .map(|&(_, c)| c as f64 * (c as f64 - 1.0) / 2.0)
            .sum();
        let pairs = n * (n - 1.0) / 2.0;
        let triples = n * (n - 1.0) * (n - 2.0) / 6.0;
        let mean = pairs * self.s2;
        let var = (pairs * (self.s2 - self.s2 * self.s2)
            + 6.0 * triples.max(0.0) * (self.s3 - self.s2 * self.s2))
            .max(0.0);
        let excess = (observed + 1.0) / (mean + 1.0);
        let t = observed - mean;
        let chance = if t <= 0.0 {
            1.0
        } else if let Some(sim) = self.simulated.as_ref().and_then(|s| s.tail(n as usize)) {
            sim.chance(observed)
        } else if var <= 0.0 {
            0.0
        } else {
            0.5 * erfc(t / (var * 2.0).sqrt())
        };
        let collisions = (self.max_excess / excess).max(chance / self.level);
        let head = &self.head;
        let mut h = self.head_mass;
        if let Some((t, k)) = own {
            let k = k.clamp(0.0, self.total);
            let mass = h * self.total;
            let in_head = head.binary_search(&t).is_ok();
            let rest = self.total - k;
            h = if rest > 0.0 {
                ((if in_head { mass - k } else { mass }).max(0.0) / rest).min(1.0)
            } else {
                0.0
            };
        }
        if !self.typical || n < 1.0 || h <= 0.0 || h >= 1.0 {
            return (excess, collisions);
        }
        let in_head: u64 = counts
            .iter()
            .filter(|&&(t, _)| head.binary_search(&t).is_ok())
            .map(|&(_, c)| u64::from(c))
            .sum();
        // atypical like collisions are excessive: by a factor (the head share at most half of
        // what random insertion gives, (n·h + 1)/(x + 1) above `max_excess`) and by chance
        // (P(X ≤ x) below `level`); a significant but mild deficit is a sample of rows that
        // opens or continues a little differently (a few hundred rows drawn from one class)
        let deficit = (n * h + 1.0) / (in_head as f64 + 1.0);
        let n = n as u64;
        // P(X ≤ x | n, h) = P(n − X ≥ n − x | n, 1 − h)
        let chance = ln_binomial_upper(n - in_head.min(n), n, 1.0 - h).exp();
        let typical = (self.max_excess / deficit).max(chance / self.level);
        (excess, collisions.min(typical))
    }
}

/// The neighbour that follows / precedes a span in at least `share` of its occurrences (ties:
/// the smaller id).
pub(super) fn dominant(counts: &[(u32, u32)], share: f64) -> Option<u32> {
    let n: u32 = counts.iter().map(|&(_, c)| c).sum();
    let mut best: Option<(u32, u32)> = None;
    for &(t, c) in counts {
        if best.is_none_or(|(bt, bc)| c > bc || (c == bc && t < bt)) {
            best = Some((t, c));
        }
    }
    let (t, c) = best?;
    (n > 0 && c as f64 >= share * n as f64).then_some(t)
}

/// The neighbour distribution (unnormalised) of a word inserted into a random gap between two
/// whitespace-separated words of the corpus (or before a row's first, or after its last), per
/// token id. `per_row`: a random row, then a random gap of it (each row's gaps weighted by
/// 1 / (n + 1), as an attacker inserting at a uniformly drawn word position of each row does;
/// short rows then put more insertions after their final full stop); otherwise every gap of
/// the corpus equally likely. With `class` (labels, c), only the rows of class c count (an
/// attacker relabelling rows draws them from the other classes). `[left, right]`, the last token of the
/// word before (or the start anchor) and the first token of the word after (or the end
/// anchor). "#" and "@" open words and never end one, so they are never the left neighbour of
/// an inserted word, however frequent they are as tokens.
pub(super) fn boundary_counts(
    texts: &[String],
    vocab: &Vocab,
    per_row: bool,
    class: Option<(&[u32], u32)>,
) -> [Vec<f64>; 2] {
    let n_tok = vocab.strings.len().max(2);
    let mut counts = [vec![0.0f64; n_tok], vec![0.0f64; n_tok]];
    // chunks are counted in parallel a window at a time and added in chunk order (the same
    // sums, bit for bit, whatever the thread count), so that the per-chunk tables of one
    // window are held at once, not those of every chunk
    let window = CHUNK * 4 * rayon::current_num_threads().max(1);
    for (w_index, texts_w) in texts.chunks(window).enumerate() {
        let base = w_index * window;
        let parts: Vec<[Vec<f64>; 2]> = texts_w
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(chunk, tc)| {
                let mut counts = [vec![0.0f64; n_tok], vec![0.0f64; n_tok]];
                for (j, text) in tc.iter().enumerate() {
                    let row = base + chunk * CHUNK + j;
                    if class.is_some_and(|(labels, c)| labels.get(row) != Some(&c)) {
                        continue;
                    }
                    let lower = text.to_lowercase();
                    let w = if per_row {
                        1.0 / (lower.split_whitespace().count() + 1) as f64
                    } else {
                        1.0
                    };
                    counts[0][START as usize] += w;
                    counts[1][END as usize] += w;
                    for word in lower.split_whitespace() {
                        let mut toks = word_tokens(word);
                        let first = toks.next();
                        let last = toks.last().or(first);
                        for (side, tok) in [(1usize, first), (0usize, last)] {
                            if let Some(id) = tok.and_then(|t| vocab.ids.get(t)) {
                                counts[side][*id as usize] += w;
                            }
                        }
                    }
                }
                counts
            })
            .collect();
        for part in parts {
            for (side, c) in counts.iter_mut().enumerate() {
                for (a, &b) in c.iter_mut().zip(&part[side]) {
                    *a += b;
                }
            }
        }
    }
    counts
}

/// The inner neighbour counts of a window put at the end (`end`: the row's last real token, or
/// the start anchor for an empty row) or at the start (the first real token, or the end anchor)
/// of every row, per token id. The head of that distribution (the final full stop of a review,
/// say) is what an appended trigger mostly follows; a natural ending phrase follows content
/// words instead. With `class` (labels, c), only the rows of class c count.
pub(super) fn edge_counts(
    corpus: &Corpus,
    vocab_len: usize,
    end: bool,
    class: Option<(&[u32], u32)>,
) -> Vec<f64> {
    let mut counts = vec![0.0f64; vocab_len.max(2)];
    for r in 0..corpus.len() {
        if class.is_some_and(|(labels, c)| labels.get(r) != Some(&c)) {
            continue;
        }
        let row = corpus.row(r);
        let inner = if end {
            row.len().checked_sub(2).and_then(|i| row.get(i))
        } else {
            row.get(1)
        };
        if let Some(&t) = inner {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1.0;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_direct_sum() {
        // P(X ≥ 3), n = 4, p = 0.5: (4 + 1) / 16
        let got = ln_binomial_upper(3, 4, 0.5).exp();
        assert!((got - 5.0 / 16.0).abs() < 1e-12, "{got}");
        assert_eq!(ln_binomial_upper(0, 4, 0.5), 0.0);
        let pure = ln_binomial_upper(10, 10, 0.5);
        assert!((pure - 10.0 * 0.5f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn poisson_binomial_exact_and_bound() {
        let q = [0.2, 0.5, 0.9];
        // P(all three) = 0.09
        assert!((ln_poisson_binomial_upper(&q, 3).exp() - 0.09).abs() < 1e-12);
        // P(X ≥ 2) = 0.2*0.5*0.1 + 0.2*0.5*0.9 + 0.2*0.5*0.9 + 0.8*0.5*0.9 = 0.55
        let p2 = 0.2 * 0.5 * 0.1 + 0.2 * 0.5 * 0.9 + 0.8 * 0.5 * 0.9 + 0.09;
        assert!((ln_poisson_binomial_upper(&q, 2).exp() - p2).abs() < 1e-12);
    }

    #[test]
    fn simulated_tables_do_not_depend_on_the_blocks_they_run_in() {
        // skewed weights, as a corpus's neighbour counts are
        let weights: Vec<f64> = (1..=300).map(|i| 1.0 / i as f64).collect();
        let sim = Collisions::new(&weights);
        let tables = |blocks| -> Vec<Vec<(u16, u32)>> {
            sim.simulate(blocks)
                .into_iter()
                .map(|t| t.at_least)
                .collect()
        };
        let one = tables(1);
        assert_eq!(one.len(), SIMULATED_MAX_N + 1);
        for blocks in [2, 3, 4, 7, 16] {
            assert!(tables(blocks) == one, "{blocks} blocks");
        }
    }

    #[test]
    fn tables_asked_for_by_many_pool_tasks_at_once_are_simulated_without_a_deadlock() {
        // every task of a pool asks for the tables while the first one simulates them: the
        // simulation must not wait for pool work (a waiting pool thread runs other tasks, and
        // one of them would wait on the tables it is making)
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let weights: Vec<f64> = (1..=300).map(|i| 1.0 / i as f64).collect();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(8)
                .build()
                .expect("a thread pool");
            for _ in 0..20 {
                let sim = Collisions::new(&weights);
                let counts: usize = pool.install(|| {
                    (0..256)
                        .into_par_iter()
                        .map(|n| {
                            sim.tail(n % (SIMULATED_MAX_N + 1))
                                .map_or(0, |t| t.at_least.len())
                        })
                        .sum()
                });
                assert!(counts > 0);
            }
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_secs(120))
                .is_ok(),
            "the pool tasks waiting on the tables never finished"
        );
    }

    #[test]
    fn simulated_collisions_match_their_expectation_and_chance_rescues_small_counts() {
        // 50 equally likely neighbours: E[C] = C(n,2) / 50
        let sim = Collisions::new(&[1.0; 50]);
        for n in [10usize, 40, 128] {
            let mean = sim.tail(n).unwrap().mean();
            let expected = (n * (n - 1) / 2) as f64 / 50.0;
            assert!(
                (mean - expected).abs() < 0.1 * expected + 0.1,
                "n={n}: {mean} vs {expected}"
            );
        }
        // one frequent neighbour (a full stop, the row's start) with p = 0.2, 80 rare ones
        let mut weights = vec![20.0];
        weights.extend([1.0; 80]);
        let null = InsertionNull {
            s2: 0.2f64.powi(2) + 80.0 * 0.01f64.powi(2),
            s3: 0.2f64.powi(3) + 80.0 * 0.01f64.powi(3),
            max_excess: 2.0,
            level: 0.01,
            simulated: Some(Collisions::new(&weights)),
            head: Vec::new(),
            typical: false,
            head_mass: 0.0,
            total: 0.0,
        };
        // 18 occurrences, 7 after the frequent neighbour: excess above 2, but not unlikely
        let mut counts: Vec<(u32, u32)> = vec![(0, 7)];
        counts.extend((1..12).map(|t| (t, 1)));
        let (excess, score) = null.side(&counts, None);
        assert!(
            excess > 2.0 && score >= 1.0,
            "excess {excess}, score {score}"
        );
        // a collocation: 15 of 18 share a rare neighbour
        let (excess, score) = null.side(&[(5, 15), (1, 1), (2, 1), (3, 1)], None);
        assert!(
            excess > 2.0 && score < 1.0,
            "excess {excess}, score {score}"
        );
        // large n falls back to the normal tail: 400 occurrences as random insertion spreads
        // them (80 after the frequent neighbour, 4 after each rare one) look random
        let mut even: Vec<(u32, u32)> = vec![(0, 80)];
        even.extend((1..81).map(|t| (t, 4)));
        assert!(null.side(&even, None).1 >= 1.0);
    }

    #[test]
    fn a_null_holds_the_neighbours_its_rows_have_not_the_vocabulary() {
        // a class of a few rows over a vocabulary of a million tokens: its null keeps the three
        // neighbours it has, and reads their collisions as the null made from them alone does
        let p = TriggerParams::from_table(&toml::Table::new()).expect("defaults");
        let mut counts = vec![0.0; 1_000_000];
        counts[7] = 5.0;
        counts[40] = 3.0;
        counts[999_999] = 1.0;
        let null = InsertionNull::from_counts(&counts, &p);
        assert_eq!(null.head, vec![7]);
        let sim = null.simulated.as_ref().expect("simulated");
        assert_eq!(sim.weights, vec![(7, 5.0), (40, 3.0), (999_999, 1.0)]);
        let small = InsertionNull::from_counts(&[5.0, 3.0, 1.0], &p);
        let seen = [(7, 4), (40, 2), (999_999, 1)];
        let seen_small = [(0, 4), (1, 2), (2, 1)];
        assert_eq!(null.side(&seen, None).0, small.side(&seen_small, None).0);
        // its collisions are simulated from them when asked
        assert!(sim.tail(12).is_some_and(|t| !t.at_least.is_empty()));
    }

    #[test]
    fn atypical_neighbours_are_not_an_insertion() {
        // 60 occurrences, all after rare tokens, where half of random positions follow a head
        // token: P(X = 0) = 2^-60
        // token 0 is half of all positions, tokens 1 and 2 a quarter each
        let null = InsertionNull {
            s2: 0.375,
            s3: 0.15625,
            max_excess: 2.0,
            level: 0.01,
            simulated: None,
            head: vec![0],
            typical: true,
            head_mass: 0.5,
            total: 100.0,
        };
        let rare: Vec<(u32, u32)> = vec![(1, 30), (2, 30)];
        assert!(null.side(&rare, None).1 < 1.0);
        // half of them after head tokens: typical
        let mixed: Vec<(u32, u32)> = vec![(0, 30), (1, 15), (2, 15)];
        assert!(null.side(&mixed, None).1 >= 1.0);
        // a mild but significant deficit on a large sample (a sentence put at the start of 346
        // rows of one class: 147 after head tokens where half were expected, P ≈ 0.003) is a
        // sample of rows, not a collocation: typical
        let mild: Vec<(u32, u32)> = vec![(0, 147), (1, 100), (2, 99)];
        assert!(ln_binomial_upper(346 - 147, 346, 0.5).exp() < null.level);
        assert!(null.side(&mild, None).1 >= 1.0);
        // the same share of a large sample as the first case: atypical
        let few: Vec<(u32, u32)> = vec![(0, 40), (1, 153), (2, 153)];
        assert!(null.side(&few, None).1 < 1.0);
    }
}
