//! Response embeddings: groups of near-duplicate responses, the same answer written in
//! several wordings (a paraphrased template).
//!
//! Greedy leader clustering on unit-length vectors: every row's density is the number of
//! other rows whose cosine with it is at least the similarity; rows are taken in order of
//! density (ties by row), and a row that no earlier centre holds becomes a centre and holds
//! every row within the similarity that no earlier centre holds. So a row belongs to the
//! earliest centre within the similarity, and a row of the data outside the rows clustered is
//! assigned by the same rule (`assign`). Every member is within the similarity of its centre,
//! so a group cannot chain across topics. Deterministic: the densities are computed per row
//! and the order is total.

use super::features::{tokens, Property, PropertyKind, Side};
use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows per block of the cosine matrix (the block × all-rows product is held at once).
const BLOCK: usize = 256;

/// One group of near-duplicate responses.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    /// The centre's row (among the rows clustered).
    pub centre: u32,
    /// Member rows, ascending (the centre included).
    pub rows: Vec<u32>,
    /// Distinct wordings among the members (their token texts).
    pub wordings: usize,
    /// Rows of the most frequent wording.
    pub largest_wording: usize,
}

/// The groups found, and the centres every row of the data is assigned by.
pub(super) struct Clusters {
    /// Unit-length vectors of every centre, in the order chosen.
    centres: Array2<f32>,
    /// Per centre, its index in `kept` when its group is large enough.
    kept_of: Vec<Option<usize>>,
    /// The groups of at least the minimum size, in the order their centres were chosen.
    pub kept: Vec<Cluster>,
    /// The cosine a member has at least with its centre.
    pub similarity: f32,
}

/// Rows scaled to unit length (a zero row stays zero).
pub(super) fn unit_rows(m: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = m.to_owned();
    for mut r in out.axis_iter_mut(Axis(0)) {
        let n = r.dot(&r).sqrt();
        if n > 0.0 {
            r.mapv_inplace(|x| x / n);
        }
    }
    out
}

impl Clusters {
    /// Cluster the rows of `unit` (unit-length), whose responses have the token texts
    /// `wording`; groups of fewer than `min_rows` rows are not kept.
    pub fn find(unit: &Array2<f32>, wording: &[String], similarity: f32, min_rows: usize) -> Self {
        let n = unit.nrows();
        // densities, one block of rows against all rows at a time
        let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
        let density: Vec<u32> = starts
            .par_iter()
            .flat_map_iter(|&b| {
                let e = (b + BLOCK).min(n);
                let sims = unit.slice(s![b..e, ..]).dot(&unit.t());
                (0..e - b)
                    .map(|r| {
                        sims.row(r)
                            .iter()
                            .filter(|&&c| c >= similarity)
                            .count()
                            .saturating_sub(1) as u32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| density[i] as usize + 1 >= min_rows)
            .collect();
        order.sort_by(|&a, &b| density[b].cmp(&density[a]).then(a.cmp(&b)));
        let mut owner: Vec<Option<usize>> = vec![None; n];
        let mut centre_rows: Vec<usize> = Vec::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for c in order {
            if owner[c].is_some() {
                continue;
            }
            let k = centre_rows.len();
            let sims = unit.dot(&unit.row(c));
            let mut members = Vec::new();
            for (j, &x) in sims.iter().enumerate() {
                if owner[j].is_none() && (x >= similarity || j == c) {
                    owner[j] = Some(k);
                    members.push(j as u32);
                }
            }
            centre_rows.push(c);
            groups.push(members);
        }
        let d = unit.ncols();
        let mut centres = Array2::<f32>::zeros((centre_rows.len(), d));
        for (k, &c) in centre_rows.iter().enumerate() {
            centres.row_mut(k).assign(&unit.row(c));
        }
        let mut kept = Vec::new();
        let mut kept_of = vec![None; centre_rows.len()];
        for (k, rows) in groups.into_iter().enumerate() {
            if rows.len() < min_rows {
                continue;
            }
            let mut words: Vec<&str> = rows
                .iter()
                .map(|&r| wording.get(r as usize).map_or("", String::as_str))
                .collect();
            words.sort_unstable();
            let (mut distinct, mut largest, mut run) = (0, 0, 0);
            for (i, w) in words.iter().enumerate() {
                if i == 0 || words[i - 1] != *w {
                    distinct += 1;
                    run = 0;
                }
                run += 1;
                largest = largest.max(run);
            }
            kept_of[k] = Some(kept.len());
            kept.push(Cluster {
                centre: centre_rows[k] as u32,
                rows,
                wordings: distinct,
                largest_wording: largest,
            });
        }
        Clusters {
            centres,
            kept_of,
            kept,
            similarity,
        }
    }

    /// The kept group a unit-length vector belongs to: that of the earliest centre within
    /// the similarity, when that group was kept.
    pub fn assign(&self, v: ndarray::ArrayView1<'_, f32>) -> Option<usize> {
        let sims = self.centres.dot(&v);
        let k = sims.iter().position(|&x| x >= self.similarity)?;
        self.kept_of[k]
    }
}

/// The response groups of a fit as response properties: each kept group whose most frequent
/// wording holds less than `cover` of its rows (a group of one wording is already a template).
pub(super) struct ClusterProperties {
    /// The groups and the centres that assign rows.
    pub clusters: Clusters,
    /// Per kept group, its property id when it became one.
    pub property_of: Vec<Option<u32>>,
}

impl ClusterProperties {
    /// Cluster the responses of the rows learnt (`unit`: their unit-length embeddings) and
    /// append the groups to `props` and `of_row` (ids after every existing one, so each row's
    /// list stays ascending).
    pub fn append(
        props: &mut Vec<Property>,
        of_row: &mut [Vec<u32>],
        unit: &Array2<f32>,
        responses: &[String],
        similarity: f32,
        min_rows: usize,
        cover: f64,
    ) -> ClusterProperties {
        let wording: Vec<String> = responses.iter().map(|r| tokens(r).join(" ")).collect();
        let clusters = Clusters::find(unit, &wording, similarity, min_rows);
        let property_of = clusters
            .kept
            .iter()
            .map(|c| {
                if c.largest_wording as f64 >= cover * c.rows.len() as f64 {
                    return None;
                }
                let id = props.len() as u32;
                for &r in &c.rows {
                    if let Some(l) = of_row.get_mut(r as usize) {
                        l.push(id);
                    }
                }
                props.push(Property {
                    side: Side::Response,
                    kind: PropertyKind::Cluster,
                    text: wording[c.centre as usize].clone(),
                    count: c.rows.len(),
                });
                Some(id)
            })
            .collect();
        ClusterProperties {
            clusters,
            property_of,
        }
    }

    /// The property id of the group a unit-length response vector belongs to.
    pub fn property(&self, v: ndarray::ArrayView1<'_, f32>) -> Option<u32> {
        self.clusters
            .assign(v)
            .and_then(|k| self.property_of.get(k).copied().flatten())
    }

    /// Property ids that are groups.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.property_of.iter().flatten().copied()
    }
}

/// Mean over `rows` (ascending) of the share of each row's `k` nearest rows of `unit` (by
/// cosine, itself excluded, ties by row) that are in `rows`.
pub(super) fn neighbour_share(unit: &Array2<f32>, rows: &[u32], k: usize) -> f64 {
    if rows.is_empty() || k == 0 {
        return 0.0;
    }
    let shares: Vec<f64> = rows
        .par_iter()
        .map(|&i| {
            let sims = unit.dot(&unit.row(i as usize));
            let mut order: Vec<usize> = (0..sims.len()).filter(|&j| j != i as usize).collect();
            order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
            order.truncate(k);
            if order.is_empty() {
                return 0.0;
            }
            let inside = order
                .iter()
                .filter(|&&j| rows.binary_search(&(j as u32)).is_ok())
                .count();
            inside as f64 / order.len() as f64
        })
        .collect();
    shares.iter().sum::<f64>() / rows.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(rows: &[[f32; 3]]) -> Array2<f32> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        unit_rows(
            Array2::from_shape_vec((rows.len(), 3), flat)
                .unwrap()
                .view(),
        )
    }

    #[test]
    fn near_vectors_form_one_group_and_far_ones_none() {
        let m = unit(&[
            [1.0, 0.0, 0.0],
            [0.99, 0.05, 0.0],
            [0.98, 0.0, 0.05],
            [0.0, 1.0, 0.0],
            [0.97, 0.02, 0.02],
            [0.0, 0.0, 1.0],
        ]);
        let w: Vec<String> = ["a", "b", "c", "d", "a", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = Clusters::find(&m, &w, 0.95, 3);
        assert_eq!(c.kept.len(), 1);
        assert_eq!(c.kept[0].rows, vec![0, 1, 2, 4]);
        assert_eq!(c.kept[0].wordings, 3);
        assert_eq!(c.kept[0].largest_wording, 2);
        assert_eq!(c.assign(m.row(1)), Some(0));
        assert_eq!(c.assign(m.row(3)), None);
    }
}
