//! Evaluation of detectors on a folder of benchmark sets with ground truth, such as
//! `../shared/benchmarks`: every `<set>.jsonl` (`id, text, label, poison`) listed in
//! `INDEX.tsv`, with each representation file `<set>.<repr>.npy` beside it.
//!
//! `poisongate benchmark DIR` prints the resulting table; the numbers are exactly what
//! `poisongate scan --ground-truth-column poison` reports for each run.

use crate::pipeline::{scan, ScanError, ScanOptions};
use std::path::{Path, PathBuf};

/// One scan of one set with one representation (or none, for text-only detectors).
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Set name (e.g. `sst2-badnets-10`).
    pub set: String,
    /// Representation (`minilm`, `mlp`) or `-` for text only.
    pub representation: String,
    /// Rows in the set.
    pub rows: usize,
    /// Poisoned rows in the ground truth.
    pub poisoned: usize,
    /// Detector code, or `combined`.
    pub detector: String,
    /// Rows flagged.
    pub flagged: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// AUROC (`None` on a set without poison).
    pub auroc: Option<f64>,
}

impl BenchRow {
    /// Flagged rows as a fraction of all rows.
    pub fn flagged_fraction(&self) -> f64 {
        self.flagged as f64 / self.rows.max(1) as f64
    }
}

/// Set names listed in `dir/INDEX.tsv` (first column, header skipped), in file order.
pub fn sets(dir: &Path) -> Result<Vec<String>, ScanError> {
    let index = dir.join("INDEX.tsv");
    let text = std::fs::read_to_string(&index).map_err(|source| ScanError::Io {
        path: index.clone(),
        source,
    })?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// Scan every set × representation with the detectors selected by `select` and return one
/// row per detector (plus `combined`) per scan. Representations whose file is absent are
/// skipped; `representations` empty means text only. `detector_params` are the per-detector
/// parameter tables of every scan.
pub fn run(
    dir: &Path,
    select: &[String],
    representations: &[&str],
    detector_params: &std::collections::BTreeMap<String, toml::Table>,
) -> Result<Vec<BenchRow>, ScanError> {
    let mut rows = Vec::new();
    for set in sets(dir)? {
        let data = dir.join(format!("{set}.jsonl"));
        let reprs: Vec<(String, Option<PathBuf>)> = if representations.is_empty() {
            vec![("-".into(), None)]
        } else {
            representations
                .iter()
                .map(|r| (r.to_string(), Some(dir.join(format!("{set}.{r}.npy")))))
                .filter(|(_, p)| p.as_ref().is_some_and(|p| p.exists()))
                .collect()
        };
        for (repr, emb) in reprs {
            let mut o = ScanOptions::new(&data);
            o.id_column = Some("id".into());
            o.ground_truth_column = Some("poison".into());
            o.embeddings = emb;
            o.select = Some(select.to_vec());
            o.detector_params = detector_params.clone();
            let outcome = scan(&o)?;
            let Some(ev) = &outcome.report.evaluation else {
                continue;
            };
            let n = outcome.report.reconciliation.input_rows;
            let mut push = |detector: &str, e: &poisongate_detectors::metrics::Evaluation| {
                rows.push(BenchRow {
                    set: set.clone(),
                    representation: repr.clone(),
                    rows: n,
                    poisoned: ev.positives,
                    detector: detector.to_string(),
                    flagged: e.flagged,
                    precision: e.precision,
                    recall: e.recall,
                    f1: e.f1,
                    auroc: e.auroc,
                })
            };
            for (code, e) in &ev.detectors {
                push(code, e);
            }
            if ev.detectors.len() > 1 {
                push("combined", &ev.combined);
            }
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| set | repr | detector | rows | poisoned | flagged | flagged % | precision | recall | F1 | AUROC |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.3} | {:.3} | {:.3} | {} |\n",
            crate::escape::markdown_cell(&r.set),
            crate::escape::markdown_cell(&r.representation),
            crate::escape::markdown_cell(&r.detector),
            r.rows,
            r.poisoned,
            r.flagged,
            100.0 * r.flagged_fraction(),
            r.precision,
            r.recall,
            r.f1,
            r.auroc.map_or("n/a".to_string(), |a| format!("{a:.3}"))
        );
    }
    s
}
