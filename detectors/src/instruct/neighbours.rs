//! Step 2: the prompts' nearest neighbours, by cosine of TF-IDF vectors over prompt tokens.
//!
//! Written here because the search needs one thing no nearest-neighbour crate offers: the
//! similarity with a feature's own tokens taken out of both prompts, so that a trigger does not
//! choose its row's neighbours. An inverted index gives each row's similarity to every other
//! row in time proportional to the postings of its tokens.

use rayon::prelude::*;

/// Unit-length TF-IDF vectors of the prompts, and their postings.
pub(super) struct Index {
    /// Per row: (token, weight), sorted by token.
    pub rows: Vec<Vec<(u32, f32)>>,
    /// Per token: (row, weight), rows ascending.
    postings: Vec<Vec<(u32, f32)>>,
    /// Per token, its idf.
    idf: Vec<f64>,
}

impl Index {
    /// tf = 1 + ln(count), idf = ln((n + 1) / (df + 1)) + 1, each row scaled to unit length.
    pub fn build(rows: &[Vec<u32>], vocab_len: usize) -> Index {
        let n = rows.len() as f64;
        let mut df = vec![0u32; vocab_len];
        let counted: Vec<Vec<(u32, u32)>> = rows
            .iter()
            .map(|t| {
                let mut s = t.clone();
                s.sort_unstable();
                let mut c: Vec<(u32, u32)> = Vec::new();
                for w in s {
                    match c.last_mut() {
                        Some((x, k)) if *x == w => *k += 1,
                        _ => c.push((w, 1)),
                    }
                }
                c
            })
            .collect();
        for c in &counted {
            for &(w, _) in c {
                df[w as usize] += 1;
            }
        }
        let idf: Vec<f64> = df
            .iter()
            .map(|&d| ((n + 1.0) / (d as f64 + 1.0)).ln() + 1.0)
            .collect();
        let vecs: Vec<Vec<(u32, f32)>> = counted.iter().map(|c| weigh(c, &idf)).collect();
        let mut postings = vec![Vec::new(); vocab_len];
        for (i, v) in vecs.iter().enumerate() {
            for &(w, x) in v {
                postings[w as usize].push((i as u32, x));
            }
        }
        Index {
            rows: vecs,
            postings,
            idf,
        }
    }

    /// The unit TF-IDF vector of a prompt outside the index (its tokens as ids of the index's
    /// vocabulary; unknown tokens left out by the caller), with the index's idf.
    pub fn vector(&self, tokens: &[u32]) -> Vec<(u32, f32)> {
        let mut s: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&w| (w as usize) < self.idf.len())
            .collect();
        s.sort_unstable();
        let mut c: Vec<(u32, u32)> = Vec::new();
        for w in s {
            match c.last_mut() {
                Some((x, k)) if *x == w => *k += 1,
                _ => c.push((w, 1)),
            }
        }
        weigh(&c, &self.idf)
    }

    /// Similarity of the vector `v` to every row of the index, without the tokens `removed`
    /// (sorted) on its side.
    pub fn similarities_to(&self, v: &[(u32, f32)], removed: &[u32]) -> Vec<f32> {
        let mut s = vec![0f32; self.rows.len()];
        for &(w, x) in v {
            if removed.binary_search(&w).is_ok() {
                continue;
            }
            for &(j, y) in &self.postings[w as usize] {
                s[j as usize] += x * y;
            }
        }
        s
    }

    /// Rows holding token `w`.
    pub fn document_frequency(&self, w: u32) -> usize {
        self.postings.get(w as usize).map_or(0, Vec::len)
    }

    /// Similarity of row `i` to every row (its own entry included).
    pub fn similarities(&self, i: usize) -> Vec<f32> {
        let mut s = vec![0f32; self.rows.len()];
        for &(w, x) in &self.rows[i] {
            for &(j, y) in &self.postings[w as usize] {
                s[j as usize] += x * y;
            }
        }
        s
    }

    /// Take out of `sims` (row `i`'s similarities) the terms of the tokens `removed`.
    pub fn remove_tokens(&self, i: usize, removed: &[u32], sims: &mut [f32]) {
        for &(w, x) in &self.rows[i] {
            if removed.binary_search(&w).is_ok() {
                for &(j, y) in &self.postings[w as usize] {
                    sims[j as usize] -= x * y;
                }
            }
        }
    }
}

impl Index {
    /// Per row, the length its vector keeps once the tokens `removed` (sorted) are taken
    /// out: dividing a similarity from [`Index::remove_tokens`] by both rows' remaining
    /// lengths gives the cosine of the shortened vectors.
    pub fn remaining_norms(&self, removed: &[u32]) -> Vec<f32> {
        let mut sq = vec![1f32; self.rows.len()];
        for &w in removed {
            if let Some(p) = self.postings.get(w as usize) {
                for &(j, y) in p {
                    sq[j as usize] -= y * y;
                }
            }
        }
        sq.into_iter().map(|x| x.max(0.0).sqrt()).collect()
    }
}

/// tf = 1 + ln(count) times idf, scaled to unit length, from sorted (token, count) pairs.
fn weigh(c: &[(u32, u32)], idf: &[f64]) -> Vec<(u32, f32)> {
    let v: Vec<(u32, f64)> = c
        .iter()
        .map(|&(w, k)| (w, (1.0 + (k as f64).ln()) * idf[w as usize]))
        .collect();
    let norm = v.iter().map(|(_, x)| x * x).sum::<f64>().sqrt().max(1e-12);
    v.into_iter().map(|(w, x)| (w, (x / norm) as f32)).collect()
}

/// The `k` rows with the highest similarity among those `allowed`, ties to the lower row;
/// only similarities above 1e-9 count (a row sharing no token is no neighbour).
pub(super) fn top_k(sims: &[f32], k: usize, allowed: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (j, &s) in sims.iter().enumerate() {
        if s <= 1e-9 || !allowed(j) {
            continue;
        }
        if best.len() == k {
            // the worst kept is last
            let (ws, wj) = best[k - 1];
            if s < ws || (s == ws && j as u32 > wj) {
                continue;
            }
        }
        let pos = best.partition_point(|&(bs, bj)| bs > s || (bs == s && bj < j as u32));
        best.insert(pos, (s, j as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, j)| j).collect()
}

/// Each row's `k` nearest rows among `pool` (itself excluded), in parallel.
pub(super) fn leave_one_out(index: &Index, pool: &[bool], k: usize) -> Vec<Vec<u32>> {
    (0..index.rows.len())
        .into_par_iter()
        .map(|i| {
            if !pool[i] {
                return Vec::new();
            }
            let s = index.similarities(i);
            top_k(&s, k, |j| j != i && pool[j])
        })
        .collect()
}
