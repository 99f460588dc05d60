//! DEN001 dense clusters: tight, label-pure groups of rows denser than their class explains.
//!
//! Not in [`crate::REGISTRY`]: at its defaults it flags 6.4 % of sst2-clean (`.mlp.npy`) and
//! 4.7 % of sms-spam-clean (`.minilm.npy`, duplicated ham messages), above the 1 % the app's
//! run-everything default allows, and reaches F1 0.23 / 0.37 on sst2-addsent-10 /
//! sst2-badnets-cleanlabel-10 (MiniLM): the per-row density separates poison only weakly
//! (robust-z AUROC 0.74–0.75), although poison rows' neighbours are 65 % / 94 % poison.

use crate::knn::{self, Knn};
use crate::linalg;
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use serde_json::json;

const CODE: &str = "DEN001";

static META: Meta = Meta {
    code: CODE,
    name: "dense-cluster",
    summary: "Tight label-pure groups of rows, denser than their class's neighbourhoods explain",
    docs: r#"# DEN001 dense-cluster

## What it detects
Rows that share an inserted phrase, a template or a trigger sit unusually close together in an
embedding space and mostly have each other as nearest neighbours (AddSent phrases, clean-label
trigger words, near-duplicated injected rows).

## Method
1. Exact k nearest neighbours by cosine (shared kNN module, the row itself excluded);
   density m_i = mean cosine similarity to the k neighbours.
2. Per class c: robust z_i = (m_i − median_c(m)) / (1.4826 · MAD_c(m)), so each class is judged
   against its own neighbourhood statistics.
3. Candidates: z_i ≥ `min_z`. Candidates i and j of the same label are linked when each is among
   the other's k nearest neighbours (mutual kNN); groups are the connected components.
4. A group is flagged when it has at least `min_group` rows, its purity (share of its members'
   neighbours carrying the group's label) is at least `min_purity`, and it holds at most
   `max_class_share` of its class (a poison group is a minority; a whole class that is dense is
   the class, not an attack).

Score: for members of a flagged group max(1, z_i / `min_z`); otherwise
min(max(z_i, 0) / `min_z`, 0.999): graded but below the threshold. Classes with fewer than
`min_class_rows` rows are not scored.

## Parameters
- `k` (default 10): neighbours per row.
- `min_z` (default 1.5): robust z of the density a candidate needs.
- `min_group` (default 20): smallest group flagged.
- `min_purity` (default 0.9): share of the group's neighbours with the group's label.
- `max_class_share` (default 1/3): largest share of a class one group may hold.
- `min_class_rows` (default 50): smaller classes are not scored.

## Known false positives
Natural templates and boilerplate (spam campaigns, form letters, repeated rows): they are dense,
label-pure groups just like an inserted phrase. Duplicated rows form such groups too.

## Known limits
Poison that does not move rows together in the embedding (single rare trigger words in a
sentence encoder) is not found.

## References
AddSent: Jiazhu Dai, Chuanshuai Chen, Yufeng Li. A backdoor
attack against LSTM-based text classification systems. IEEE Access 7, 2019. Mutual kNN
graphs: Markus Maier, Matthias Hein, Ulrike von Luxburg. Optimal construction of
k-nearest-neighbor graphs for identifying noisy clusters. Theoretical Computer Science 410, 2009.
"#,
    version: 1,
};

/// DEN001: dense clusters. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DenseCluster;

/// Checked parameters of DEN001 (see the detector's docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct DensityParams {
    /// Neighbours per row.
    pub k: usize,
    /// Robust z of the density a candidate needs.
    pub min_z: f64,
    /// Smallest group flagged.
    pub min_group: usize,
    /// Share of the group's neighbours with the group's label.
    pub min_purity: f64,
    /// Largest share of a class one group may hold.
    pub max_class_share: f64,
    /// Smaller classes are not scored.
    pub min_class_rows: usize,
}

impl Detector for DenseCluster {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = DensityParams {
            k: r.usize("k", 10, 1, 1000)?,
            min_z: r.f64("min_z", 1.5, 0.0, 100.0)?,
            min_group: r.usize("min_group", 20, 2, usize::MAX)?,
            min_purity: r.f64("min_purity", 0.9, 0.0, 1.0)?,
            max_class_share: r.f64("max_class_share", 1.0 / 3.0, 0.0, 1.0)?,
            min_class_rows: r.usize("min_class_rows", 50, 2, usize::MAX)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

impl Configured for DensityParams {
    fn needs(&self) -> Needs {
        Needs {
            text: false,
            labels: true,
            embeddings: true,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "k": self.k,
            "min_z": self.min_z,
            "min_group": self.min_group,
            "min_purity": self.min_purity,
            "max_class_share": self.max_class_share,
            "min_class_rows": self.min_class_rows,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let n = data.n_rows;
        let n_classes = data
            .n_classes()
            .max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
        let by_class = linalg::rows_by_class(labels, n_classes);
        let mut z = vec![0f64; n];
        let mut scored = vec![false; n];
        let mut flagged = vec![false; n];
        let mut class_stats = Vec::with_capacity(n_classes);
        let knn: Knn = if n > self.k {
            knn::knn_search(&x, self.k, &crate::KnnOptions::default()).map_err(|problem| {
                DetectError::Numeric {
                    code: CODE,
                    problem,
                }
            })?
        } else {
            Knn {
                k: 0,
                idx: Vec::new(),
                sim: Vec::new(),
                method: json!(null),
            }
        };
        let density: Vec<f64> = (0..if knn.k > 0 { n } else { 0 })
            .map(|i| knn.sims(i).iter().map(|&s| s as f64).sum::<f64>() / knn.k as f64)
            .collect();
        for (c, rows) in by_class.iter().enumerate() {
            let name = data
                .class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.to_string());
            if knn.k == 0 || rows.len() < self.min_class_rows {
                class_stats.push(json!({"class": name, "rows": rows.len(), "skipped": true}));
                continue;
            }
            let m: Vec<f64> = rows.iter().map(|&r| density[r]).collect();
            let med = linalg::median(&m);
            let dev: Vec<f64> = m.iter().map(|v| (v - med).abs()).collect();
            let scale = 1.4826 * linalg::median(&dev);
            if scale > 0.0 && scale.is_finite() {
                for &r in rows {
                    z[r] = (density[r] - med) / scale;
                    scored[r] = true;
                }
            }
            class_stats.push(json!({
                "class": name, "rows": rows.len(), "skipped": scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !scale.is_finite(),
                "density_median": med, "density_robust_scale": scale,
                "candidates": rows.iter().filter(|&&r| scored[r] && z[r] >= self.min_z).count(),
            }));
        }
        // groups of candidates linked by mutual kNN within one label
        let cand: Vec<bool> = (0..n).map(|i| scored[i] && z[i] >= self.min_z).collect();
        let mut parent: Vec<usize> = (0..n).collect();
        for i in (0..n).filter(|&i| cand[i]) {
            for &j in knn.neighbours(i) {
                let j = j as usize;
                if j > i
                    && cand[j]
                    && labels[j] == labels[i]
                    && knn.neighbours(j).contains(&(i as u32))
                {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
            }
        }
        let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for i in (0..n).filter(|&i| cand[i]) {
            let root = find(&mut parent, i);
            members.entry(root).or_default().push(i);
        }
        let mut groups = Vec::new();
        for rows in members.values().filter(|g| g.len() >= self.min_group) {
            let label = labels[rows[0]];
            let same: usize = rows
                .iter()
                .map(|&r| {
                    knn.neighbours(r)
                        .iter()
                        .filter(|&&j| labels[j as usize] == label)
                        .count()
                })
                .sum();
            let purity = same as f64 / (rows.len() * knn.k) as f64;
            let class_rows = by_class.get(label as usize).map_or(0, Vec::len).max(1);
            let share = rows.len() as f64 / class_rows as f64;
            let accepted = purity >= self.min_purity && share <= self.max_class_share;
            if accepted {
                for &r in rows {
                    flagged[r] = true;
                }
            }
            groups.push(json!({
                "class": data.class_names.get(label as usize).cloned().unwrap_or_else(|| label.to_string()),
                "size": rows.len(), "purity": purity, "class_share": share,
                "first_row": rows[0], "flagged": accepted,
            }));
        }
        let score: Vec<f64> = (0..n)
            .map(|i| {
                let r = z[i].max(0.0) / self.min_z.max(1e-9);
                if flagged[i] {
                    r.max(1.0)
                } else {
                    r.min(0.999)
                }
            })
            .collect();
        let n_flagged = flagged.iter().filter(|&&f| f).count();
        Ok(Box::new(DensityFit {
            score,
            flagged,
            z,
            names: data.class_names.to_vec(),
            summary: json!({
                "k": knn.k, "flagged": n_flagged, "classes": class_stats, "groups": groups,
            }),
        }))
    }
}

/// Fitted DEN001: per-row scores computed over the whole dataset.
#[derive(Debug, Clone)]
struct DensityFit {
    score: Vec<f64>,
    flagged: Vec<bool>,
    z: Vec<f64>,
    names: Vec<String>,
    summary: serde_json::Value,
}

impl Fitted for DensityFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let (s, e) = (batch.start, batch.start + batch.rows.n_rows);
        let out_of_range = || DetectError::Data {
            code: CODE,
            problem: format!("batch rows {s}..{e} outside the fitted data"),
        };
        let score = self.score.get(s..e).ok_or_else(out_of_range)?;
        let flagged = self.flagged.get(s..e).ok_or_else(out_of_range)?;
        let labels = batch.rows.labels;
        let reason = flagged
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                f.then(|| {
                    let class = labels
                        .and_then(|l| l.get(i))
                        .and_then(|&l| self.names.get(l as usize))
                        .cloned()
                        .unwrap_or_default();
                    format!("{CODE}:class={class} z={:.2}", self.z[s + i])
                })
            })
            .collect();
        Ok(Scores {
            score: score.to_vec(),
            reason,
        })
    }

    fn summary(&self) -> serde_json::Value {
        self.summary.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gaussian, Rng};

    #[test]
    fn planted_tight_group_is_found() {
        let mut rng = Rng(9);
        let (n, d) = (3000, 24);
        let x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: n,
            texts: None,
            labels: Some(&labels),
            class_names: &names,
            embeddings: Some(x.view()),
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let cfg = DenseCluster.configure(&toml::Table::new()).unwrap();
        let clean = cfg.fit(&view).unwrap().score(&view.as_batch()).unwrap();
        assert!(clean.reason.iter().filter(|r| r.is_some()).count() <= n / 100);
        // 60 rows of class 1 share a strong common component (an inserted phrase)
        let dir: Vec<f32> = (0..d).map(|_| rng.gauss() as f32).collect();
        let mut truth = vec![false; n];
        let mut poisoned = x.clone();
        for i in (1..n).step_by(2).take(60) {
            truth[i] = true;
            for k in 0..d {
                poisoned[[i, k]] = 0.4 * x[[i, k]] + 2.0 * dir[k];
            }
        }
        let view = DatasetView {
            embeddings: Some(poisoned.view()),
            response_embeddings: None,
            ..view
        };
        let fitted = cfg.fit(&view).unwrap();
        let s = fitted.score(&view.as_batch()).unwrap();
        let flags: Vec<bool> = s.reason.iter().map(Option::is_some).collect();
        let e = crate::metrics::evaluate(&flags, &s.score, &truth);
        assert!(
            e.recall > 0.9 && e.precision > 0.9,
            "{e:?} {}",
            fitted.summary()
        );
    }
}
