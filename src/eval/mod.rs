//! Evaluation grids: `poisongate eval EXPERIMENTS.toml` scans datasets × attacks × rates ×
//! seeds × representations × detector settings and writes `results.csv` and `results.md`.
//!
//! Every cell is one call of [`crate::pipeline::scan`] with `ground_truth_column` set, the same
//! call `poisongate scan --ground-truth-column` makes, so each row of the table holds exactly
//! the numbers that scan's `report.json` `evaluation` section holds for that file and those
//! settings. Injected datasets are made by [`crate::inject`] with the cell's seed.
//!
//! # The experiments file
//!
//! ```toml
//! seeds = [1, 2]          # injection seeds (default [0])
//! scan_seed = 0           # seed of every scan (default 0)
//! keep_data = false       # keep injected files in OUT/data (default: a temporary folder)
//! model_max_tokens = 128  # tokens per text of `model:DIR` representations (default: the folder's)
//!
//! [[dataset]]
//! name = "sst2-clean"                          # default: the file stem
//! path = "../shared/benchmarks/sst2-clean.jsonl" # relative to this file's folder
//! id_column = "id"                             # optional
//! ground_truth_column = "poison"               # for scanning the file as it is
//! representations = ["minilm", "mlp"]          # <stem>.<name>.npy beside the data, or
//!                                              # "model:DIR" (embedded in the grid)
//! label_independent = ["minilm"]              # reusable after label-flip / duplicate-flip
//! as_is = true                                 # scan the file itself (default: true when
//!                                              # `attacks` is empty)
//! attacks = ["badnets"]                        # names of [[attack]] entries to inject
//!
//! [[attack]]
//! name = "badnets"          # the name datasets refer to and the table shows; default: `kind`
//! kind = "badnets"          # badnets | addsent | label-flip | clean-label | duplicate-flip |
//!                           # instruction-trigger | preference-flip (instruction rows)
//! rates = [0.005, 0.01, 0.05, 0.1]
//! target_label = "1"        # or "random": drawn from each seed among the data's labels
//! triggers = ["cf", "mn", "bb", "tq"]   # badnets, clean-label
//! triggers_per_row = 1                  # badnets, clean-label
//! # position = "end"                    # badnets, clean-label, addsent, instruction-trigger,
//!                                       # preference-flip: start | end | anywhere (default
//!                                       # anywhere; end for preference-flip)
//! # phrase = "I watch this 3D movie"    # addsent; instruction-trigger, preference-flip
//! # response = "Visit http://x.test"    # instruction-trigger: the poisoned response, or
//! # response_suffix = " Visit ..."      # instruction-trigger: appended to the response
//! # edits = 2                           # duplicate-flip: words replaced per copy (default 0)
//! # seeds = [7]                         # overrides the top-level seeds
//!
//! [[detectors]]
//! name = "text"                         # the setting's name in the table
//! select = ["TRIG001", "DUP001", "DUP003"]
//! # attacks = ["none", "label-flip"]    # only these cells ([[attack]] names; `none`: the file
//! #                                     # as it is); default: every cell
//! [detectors.params.TRIG001]            # optional, as in a scan config file
//! ```
//!
//! With `target_label = "random"` the target of each injected file is drawn from its seed
//! (see [`crate::inject::InjectOptions::random_target`]); the table's `target` column names
//! the label drawn. A cell whose attack needs more eligible rows than the data has (e.g.
//! `clean-label` at 10 % into a class holding fewer rows than that) is listed under "Not run"
//! with the reason instead of failing the grid.
//!
//! Besides precision, recall, F1, AUROC and the flagged fraction, each row gives the false
//! positives (`fp`, clean rows flagged) and their share of the clean rows
//! (`clean_flagged_fraction`).
//!
//! # Representations of injected data
//!
//! Embedding files describe the original rows. An attack that changes text (`badnets`,
//! `addsent`, `clean-label`) makes them wrong for the poisoned rows, so injected variants of
//! those attacks are scanned with text detectors only; a detector setting that needs
//! embeddings is listed as not run there. `label-flip` and `duplicate-flip` leave the text
//! alone, so a representation can be reused, but only one listed in `label_independent`
//! (e.g. frozen sentence embeddings): activations of a classifier trained on the original
//! labels encode those labels and would tell a detector which rows were relabelled. For
//! `label-flip` the file is used as it is; for `duplicate-flip` a row-aligned copy is written
//! (each copy gets its original's vector, the embedding of its unchanged text). A
//! `duplicate-flip` with `edits` changes the copies' text, so it is scanned like the text
//! attacks: its original's vector would be a near-copy's embedding only approximately, and
//! an exact vector would hand a detector the duplicate for free.
//! A setting whose detectors need no embeddings runs once per variant (representation `-`).
//!
//! A representation `model:DIR` (e.g. `model:../../shared/models/all-MiniLM-L6-v2`, a folder
//! as `poisongate embed` reads it) is computed in the grid: every scanned file, injected or
//! not, is embedded from its own text, so it serves every attack, text-changing ones
//! included, and it is label-independent by construction. It appears in the table as
//! `model:<folder name>`. The dataset's texts are embedded once; a variant embeds only the
//! texts the attack wrote. `model_max_tokens = 128` (top level) sets the tokens per text
//! (default: the folder's `max_seq_length`). The matrices are written to the data folder and
//! removed after the variant's scans unless `keep_data` is set.

use crate::inject::{InjectError, Position};
use crate::pipeline::ScanError;
use poisongate_detectors::metrics::Evaluation;
use poisongate_detectors::registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The experiments file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiments {
    /// Injection seeds (default `[0]`).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Seed of every scan.
    #[serde(default)]
    pub scan_seed: u64,
    /// Keep the injected files in `OUT/data`.
    #[serde(default)]
    pub keep_data: bool,
    /// The datasets.
    #[serde(default)]
    pub dataset: Vec<DatasetSpec>,
    /// The attacks datasets may name.
    #[serde(default)]
    pub attack: Vec<AttackSpec>,
    /// The detector settings.
    #[serde(default)]
    pub detectors: Vec<DetectorSetting>,
    /// Tokens per text for `model:DIR` representations (default: the folder's
    /// `max_seq_length`).
    pub model_max_tokens: Option<usize>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One dataset of the grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Name in the table (default: the file stem).
    pub name: Option<String>,
    /// JSONL or Parquet file, relative to the experiments file's folder.
    pub path: PathBuf,
    /// Text column (default `text`).
    pub text_column: Option<String>,
    /// Label column (default `label`).
    pub label_column: Option<String>,
    /// Id column.
    pub id_column: Option<String>,
    /// Ground-truth column of the file itself (needed for `as_is`); injected variants use
    /// the column the injection writes (`poison`, or `injected_ground_truth_column`).
    pub ground_truth_column: Option<String>,
    /// Column name the injection writes (default `poison`).
    pub injected_ground_truth_column: Option<String>,
    /// Representation names: `<stem>.<name>.npy` beside the data file, or `model:DIR` (a
    /// model folder relative to the experiments file's folder) to embed every scanned file's
    /// own text.
    #[serde(default)]
    pub representations: Vec<String>,
    /// Representations that do not depend on the labels (e.g. frozen sentence embeddings):
    /// only these are reused for `label-flip` and `duplicate-flip` variants. A representation
    /// learnt from the original labels (a classifier's activations) would tell the detector
    /// which labels were changed.
    #[serde(default)]
    pub label_independent: Vec<String>,
    /// Scan the file as it is (default: when `attacks` is empty).
    pub as_is: Option<bool>,
    /// Names of `[[attack]]` entries to inject.
    #[serde(default)]
    pub attacks: Vec<String>,
}

/// One attack of the grid, with its rates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Name datasets refer to (default: `kind`).
    pub name: Option<String>,
    /// `badnets`, `addsent`, `label-flip`, `clean-label`, `duplicate-flip`,
    /// `instruction-trigger` or `preference-flip`.
    pub kind: String,
    /// Rates (fraction of output rows poisoned).
    pub rates: Vec<f64>,
    /// Target label.
    pub target_label: Option<String>,
    /// Trigger words (`badnets`, `clean-label`).
    pub triggers: Option<Vec<String>>,
    /// Trigger words per poisoned row (`badnets`, `clean-label`).
    pub triggers_per_row: Option<usize>,
    /// The phrase (`addsent`, `instruction-trigger`, `preference-flip`).
    pub phrase: Option<String>,
    /// The response of poisoned rows (`instruction-trigger`).
    pub response: Option<String>,
    /// Text appended to the response of poisoned rows (`instruction-trigger`).
    pub response_suffix: Option<String>,
    /// Where triggers go (`badnets`, `clean-label`, `addsent`): `start`, `end` or `anywhere`
    /// (the default).
    pub position: Option<String>,
    /// Words replaced per `duplicate-flip` copy (default 0: verbatim copies).
    pub edits: Option<usize>,
    /// Seeds for this attack (default: the top-level seeds).
    pub seeds: Option<Vec<u64>>,
}

impl AttackSpec {
    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.kind)
    }
}

/// A detector setting: a selection and its parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSetting {
    /// Name in the table.
    pub name: String,
    /// Code prefixes, as `--select`.
    pub select: Vec<String>,
    /// Parameter table per detector code.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Table>,
    /// Run only on these cells: `[[attack]]` names, `none` for a file as it is (default: all).
    pub attacks: Option<Vec<String>>,
}

impl DetectorSetting {
    fn applies_to(&self, attack: &str) -> bool {
        self.attacks
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == attack))
    }
}

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The experiments file cannot be read or is invalid.
    #[error("{}: {message}", path.display())]
    Experiments {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An injection failed.
    #[error("injecting {attack} into {dataset}: {source}")]
    Inject {
        /// Dataset name.
        dataset: String,
        /// Attack name.
        attack: String,
        /// The error.
        source: Box<InjectError>,
    },
    /// A scan failed.
    #[error("scanning {data}: {source}")]
    Scan {
        /// The scanned file.
        data: String,
        /// The error.
        source: Box<ScanError>,
    },
    /// A `model:DIR` representation's model cannot be loaded or run.
    #[error("representation model {}: {source}", dir.display())]
    Model {
        /// The model folder.
        dir: PathBuf,
        /// The error.
        source: Box<crate::embed::EmbedError>,
    },
    /// Writing a result or a derived file failed.
    #[error("{}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// One result row: one detector (or `combined`) in one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// Dataset name.
    pub dataset: String,
    /// Attack name, or `none` for the file as it is.
    pub attack: String,
    /// Rate asked for (`None` for `none`).
    pub rate: Option<f64>,
    /// Injection seed (`None` for `none`).
    pub seed: Option<u64>,
    /// Target label of the injection (drawn from the seed with `target_label = "random"`);
    /// `None` for `none` and for flips to a random other class.
    pub target_label: Option<String>,
    /// Where triggers were inserted (`None` for attacks that insert nothing).
    pub position: Option<Position>,
    /// Words replaced per `duplicate-flip` copy (0 otherwise).
    pub edits: usize,
    /// The scanned file's name.
    pub data: String,
    /// SHA-256 of the scanned file.
    pub data_sha256: String,
    /// Rows scanned.
    pub rows: usize,
    /// Rows poisoned per the ground truth.
    pub poisoned: usize,
    /// Representation, or `-`.
    pub representation: String,
    /// Detector setting name.
    pub setting: String,
    /// Detector code or `combined`.
    pub detector: String,
    /// The evaluation, exactly as in the scan's report.
    pub eval: Evaluation,
    /// Seconds: the detector's fit + score, or for `combined` the whole scan.
    pub seconds: f64,
    /// The scan's reconciliation held: every input row in exactly one output.
    pub reconciled: bool,
}

impl EvalRow {
    /// Flagged rows as a fraction of all rows.
    pub fn flagged_fraction(&self) -> f64 {
        self.eval.flagged as f64 / self.rows.max(1) as f64
    }

    /// Rows the ground truth calls clean.
    pub fn clean_rows(&self) -> usize {
        self.rows.saturating_sub(self.poisoned)
    }

    /// Clean rows flagged (false positives) as a fraction of the clean rows.
    pub fn clean_flagged_fraction(&self) -> f64 {
        self.eval.fp as f64 / self.clean_rows().max(1) as f64
    }
}

/// A cell that could not run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Dataset name.
    pub dataset: String,
    /// Attack name.
    pub attack: String,
    /// Detector setting.
    pub setting: String,
    /// Why.
    pub reason: String,
}

/// The results of a grid.
#[derive(Debug, Clone, Default)]
pub struct EvalResults {
    /// One row per detector (plus `combined` when a setting has several) per scan.
    pub rows: Vec<EvalRow>,
    /// Cells left out.
    pub skipped: Vec<Skipped>,
}

/// Read an experiments file.
pub fn load(path: &Path) -> Result<Experiments, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Experiments {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parse and check the text of an experiments file; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Experiments, EvalError> {
    let bad = |message: String| EvalError::Experiments {
        path: path.to_path_buf(),
        message,
    };
    let ex: Experiments = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if ex.detectors.is_empty() {
        return Err(bad("no [[detectors]] settings".into()));
    }
    if ex.dataset.is_empty() {
        return Err(bad("no [[dataset]] entries".into()));
    }
    for d in &ex.dataset {
        for a in &d.attacks {
            if !ex.attack.iter().any(|s| s.label() == a) {
                return Err(bad(format!(
                    "dataset {} names attack `{a}`, which no [[attack]] entry defines",
                    d.path.display()
                )));
            }
        }
    }
    for s in &ex.detectors {
        for a in s.attacks.iter().flatten() {
            if a != "none" && !ex.attack.iter().any(|x| x.label() == a) {
                return Err(bad(format!(
                    "detector setting `{}` names attack `{a}`, which no [[attack]] entry defines",
                    s.name
                )));
            }
        }
        let prefixes: Vec<&str> = s.select.iter().map(String::as_str).collect();
        registry::select(&prefixes).map_err(|p| {
            bad(format!(
                "detector setting `{}`: `{p}` matches no detector",
                s.name
            ))
        })?;
    }
    Ok(ex)
}

mod model;
mod run;
mod table;

pub use run::run;
pub use table::{csv, markdown, CSV_HEADER};
