//! DUP002's embedding relation: exact groups linked when their rows' embeddings are near
//! neighbours at a high cosine.

use super::exact::Core;

impl Core {
    /// DUP002: link exact groups whose rows are among each other's `knn` neighbours with
    /// cosine ≥ `cosine` (measure `embedding_cosine`; a pair already found by text keeps its
    /// text similarity). Returns the number of new group pairs; the clusters are recomputed by
    /// [`Core::drop_explained_contrasts`].
    pub(super) fn rows_with_embedding_neighbour(
        &self,
        knn: &crate::knn::Knn,
        cosine: f64,
    ) -> usize {
        (0..self.n_rows)
            .filter(|&i| {
                knn.neighbours(i)
                    .iter()
                    .zip(knn.sims(i))
                    .take_while(|(_, &c)| c as f64 >= cosine)
                    .any(|(&j, _)| self.group_of[j as usize] != self.group_of[i])
            })
            .count()
    }

    pub(super) fn add_embedding_pairs(&mut self, knn: &crate::knn::Knn, cosine: f64) -> usize {
        let mut added = 0;
        for i in 0..self.n_rows {
            for (&j, &c) in knn.neighbours(i).iter().zip(knn.sims(i)) {
                if (c as f64) < cosine {
                    break;
                }
                let (gi, gj) = (self.group_of[i], self.group_of[j as usize]);
                if gi == gj {
                    continue;
                }
                let key = (gi.min(gj), gi.max(gj));
                if let std::collections::btree_map::Entry::Vacant(e) = self.edges.entry(key) {
                    e.insert((c as f64, "embedding_cosine"));
                    added += 1;
                }
            }
        }
        added
    }
}
