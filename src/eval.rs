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
//!
//! [[dataset]]
//! name = "sst2-clean"                          # default: the file stem
//! path = "../shared/benchmarks/sst2-clean.jsonl" # relative to this file's folder
//! id_column = "id"                             # optional
//! ground_truth_column = "poison"               # for scanning the file as it is
//! representations = ["minilm", "mlp"]          # <stem>.<name>.npy beside the data
//! label_independent = ["minilm"]              # reusable after label-flip / duplicate-flip
//! as_is = true                                 # scan the file itself (default: true when
//!                                              # `attacks` is empty)
//! attacks = ["badnets"]                        # names of [[attack]] entries to inject
//!
//! [[attack]]
//! name = "badnets"          # the name datasets refer to and the table shows; default: `kind`
//! kind = "badnets"          # badnets | addsent | label-flip | clean-label | duplicate-flip
//! rates = [0.005, 0.01, 0.05, 0.1]
//! target_label = "1"        # or "random": drawn from each seed among the data's labels
//! triggers = ["cf", "mn", "bb", "tq"]   # badnets, clean-label
//! triggers_per_row = 1                  # badnets, clean-label
//! # position = "end"                    # badnets, clean-label, addsent: start | end | anywhere
//! # phrase = "I watch this 3D movie"    # addsent
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

use crate::inject::{self, Attack, InjectError, InjectOptions, Position};
use crate::pipeline::{scan, ScanError, ScanOptions};
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
    /// Representation names: `<stem>.<name>.npy` beside the data file.
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
    /// `badnets`, `addsent`, `label-flip`, `clean-label` or `duplicate-flip`.
    pub kind: String,
    /// Rates (fraction of output rows poisoned).
    pub rates: Vec<f64>,
    /// Target label.
    pub target_label: Option<String>,
    /// Trigger words (`badnets`, `clean-label`).
    pub triggers: Option<Vec<String>>,
    /// Trigger words per poisoned row (`badnets`, `clean-label`).
    pub triggers_per_row: Option<usize>,
    /// The phrase (`addsent`).
    pub phrase: Option<String>,
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
    let bad = |message: String| EvalError::Experiments {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let ex: Experiments = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
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

/// Whether a setting's detectors need embeddings (with its parameters).
fn needs_embeddings(s: &DetectorSetting) -> Result<bool, ScanError> {
    let prefixes: Vec<&str> = s.select.iter().map(String::as_str).collect();
    let chosen = registry::select(&prefixes)
        .map_err(|p| ScanError::Config(format!("--select {p} matches no detector")))?;
    let empty = toml::Table::new();
    let params = upper(&s.params);
    for d in chosen {
        let p = params.get(d.meta().code).unwrap_or(&empty);
        if d.configure(p)?.needs().embeddings {
            return Ok(true);
        }
    }
    Ok(false)
}

fn upper(p: &BTreeMap<String, toml::Table>) -> BTreeMap<String, toml::Table> {
    p.iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect()
}

/// A file to scan: the dataset itself or an injected variant.
struct Variant {
    attack: String,
    rate: Option<f64>,
    seed: Option<u64>,
    target_label: Option<String>,
    position: Option<Position>,
    edits: usize,
    path: PathBuf,
    ground_truth: String,
    /// (name, embeddings file) usable with this file.
    representations: Vec<(String, PathBuf)>,
    /// Representations of the dataset left out for this file, each with the reason.
    excluded: Vec<String>,
}

/// A rate as a percentage without float noise: 0.005 -> `0.5`, 0.1 -> `10`.
fn percent(rate: f64) -> String {
    let s = format!("{:.4}", rate * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn rate_tag(rate: f64) -> String {
    format!("{}pct", percent(rate))
}

/// An attack name made safe for a file name: characters other than ASCII letters, digits,
/// `-`, `_` and `.` become `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Run the grid described by `experiments_path`, writing `results.csv` and `results.md` into
/// `out` (and the injected files into `out/data` with `keep_data`). Progress lines go to
/// `log`.
pub fn run(
    experiments_path: &Path,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<EvalResults, EvalError> {
    let ex = load(experiments_path)?;
    let base = experiments_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let write_err = |path: &Path, e: &dyn std::fmt::Display| EvalError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| write_err(out, &e))?;
    let tmp = tempfile::tempdir().map_err(|e| write_err(out, &e))?;
    let work = if ex.keep_data {
        let d = out.join("data");
        std::fs::create_dir_all(&d).map_err(|e| write_err(&d, &e))?;
        d
    } else {
        tmp.path().to_path_buf()
    };
    let mut needs = Vec::new();
    for s in &ex.detectors {
        needs.push(needs_embeddings(s).map_err(|source| EvalError::Scan {
            data: format!("detector setting `{}`", s.name),
            source: Box::new(source),
        })?);
    }

    let mut results = EvalResults::default();
    for d in &ex.dataset {
        let path = base.join(&d.path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = d.name.clone().unwrap_or_else(|| stem.clone());
        let reprs: Vec<(String, PathBuf)> = d
            .representations
            .iter()
            .map(|r| (r.clone(), path.with_file_name(format!("{stem}.{r}.npy"))))
            .collect();
        for (r, p) in &reprs {
            if !p.exists() {
                return Err(EvalError::Experiments {
                    path: experiments_path.to_path_buf(),
                    message: format!(
                        "dataset {name}: representation `{r}` file {} not found",
                        p.display()
                    ),
                });
            }
        }
        let mut variants = Vec::new();
        if d.as_is.unwrap_or(d.attacks.is_empty()) {
            let gt = d
                .ground_truth_column
                .clone()
                .ok_or_else(|| EvalError::Experiments {
                    path: experiments_path.to_path_buf(),
                    message: format!(
                        "dataset {name} is scanned as it is but has no ground_truth_column"
                    ),
                })?;
            variants.push(Variant {
                attack: "none".into(),
                rate: None,
                seed: None,
                target_label: None,
                position: None,
                edits: 0,
                path: path.clone(),
                ground_truth: gt,
                representations: reprs.clone(),
                excluded: Vec::new(),
            });
        }
        let gt_injected = d
            .injected_ground_truth_column
            .clone()
            .unwrap_or_else(|| inject::DEFAULT_GROUND_TRUTH.to_string());
        for a_name in &d.attacks {
            let Some(a) = ex.attack.iter().find(|s| s.label() == a_name) else {
                continue; // checked in load()
            };
            let inj_err = |source: InjectError| EvalError::Inject {
                dataset: name.clone(),
                attack: a_name.clone(),
                source: Box::new(source),
            };
            let attack = Attack::from_parts(
                &a.kind,
                a.triggers.clone(),
                a.triggers_per_row,
                a.phrase.clone(),
            )
            .map_err(inj_err)?;
            let position = a
                .position
                .as_deref()
                .map(Position::parse)
                .transpose()
                .map_err(inj_err)?
                .unwrap_or_default();
            let edits = a.edits.unwrap_or(0);
            let random_target = a.target_label.as_deref() == Some(inject::RANDOM_TARGET);
            let seeds = a.seeds.clone().unwrap_or_else(|| ex.seeds.clone());
            for &rate in &a.rates {
                for &seed in &seeds {
                    let ext = path
                        .extension()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let file = work.join(format!(
                        "{name}.{}.{}.s{seed}.{ext}",
                        file_safe(a_name),
                        rate_tag(rate)
                    ));
                    let mut o = InjectOptions::new(&path, &file, attack.clone(), rate);
                    if random_target {
                        o.random_target = true;
                    } else {
                        o.target_label = a.target_label.clone();
                    }
                    o.position = position;
                    o.edits = edits;
                    o.seed = seed;
                    if let Some(t) = &d.text_column {
                        o.text_column = t.clone();
                    }
                    if let Some(l) = &d.label_column {
                        o.label_column = l.clone();
                    }
                    o.id_column = d.id_column.clone();
                    o.ground_truth_column = gt_injected.clone();
                    if d.ground_truth_column.as_deref() == Some(gt_injected.as_str()) {
                        o.ground_truth_policy = inject::GroundTruthPolicy::Merge;
                    }
                    log(&format!(
                        "inject {a_name} rate {rate} seed {seed} into {name}"
                    ));
                    let injected = match inject::inject_rows(&o) {
                        Ok(i) => i,
                        Err(e @ InjectError::TooFewRows { .. }) => {
                            for s in ex.detectors.iter().filter(|s| s.applies_to(a_name)) {
                                results.skipped.push(Skipped {
                                    dataset: name.clone(),
                                    attack: a_name.clone(),
                                    setting: s.name.clone(),
                                    reason: format!("rate {rate}, seed {seed}: {e}"),
                                });
                            }
                            continue;
                        }
                        Err(e) => return Err(inj_err(e)),
                    };
                    let mut representations = Vec::new();
                    let mut excluded = Vec::new();
                    let aligned = injected.sources.iter().enumerate().all(|(i, &s)| i == s);
                    for (r, p) in &reprs {
                        if o.changes_text() {
                            excluded.push(format!(
                                "{r}: {a_name} changes text; the representations describe the original rows"
                            ));
                        } else if !d.label_independent.contains(r) {
                            excluded.push(format!(
                                "{r}: not listed as label_independent; a representation learnt from the \
                                 original labels (e.g. a classifier's activations) would leak them \
                                 after relabelling"
                            ));
                        } else if aligned {
                            representations.push((r.clone(), p.clone()));
                        } else {
                            let dst = file.with_extension(format!("{r}.npy"));
                            follow_rows(p, &injected.sources, &dst)?;
                            representations.push((r.clone(), dst));
                        }
                    }
                    variants.push(Variant {
                        attack: a_name.clone(),
                        rate: Some(rate),
                        seed: Some(seed),
                        target_label: injected.manifest.target_label.clone(),
                        position: attack.changes_text().then_some(position),
                        edits,
                        path: file,
                        ground_truth: gt_injected.clone(),
                        representations,
                        excluded,
                    });
                }
            }
        }

        for v in &variants {
            for (s, &needs_emb) in ex.detectors.iter().zip(&needs) {
                if !s.applies_to(&v.attack) {
                    continue;
                }
                let reprs: Vec<(String, Option<PathBuf>)> = if needs_emb {
                    for reason in &v.excluded {
                        results.skipped.push(Skipped {
                            dataset: name.clone(),
                            attack: v.attack.clone(),
                            setting: s.name.clone(),
                            reason: reason.clone(),
                        });
                    }
                    if v.representations.is_empty() {
                        if v.excluded.is_empty() {
                            results.skipped.push(Skipped {
                                dataset: name.clone(),
                                attack: v.attack.clone(),
                                setting: s.name.clone(),
                                reason: "needs embeddings; the dataset lists no representations"
                                    .into(),
                            });
                        }
                        continue;
                    }
                    v.representations
                        .iter()
                        .map(|(r, p)| (r.clone(), Some(p.clone())))
                        .collect()
                } else {
                    vec![("-".to_string(), None)]
                };
                for (repr, emb) in reprs {
                    let mut o = ScanOptions::new(&v.path);
                    if let Some(t) = &d.text_column {
                        o.text_column = t.clone();
                    }
                    if let Some(l) = &d.label_column {
                        o.label_column = l.clone();
                    }
                    o.id_column = d.id_column.clone();
                    o.ground_truth_column = Some(v.ground_truth.clone());
                    o.embeddings = emb;
                    o.select = Some(s.select.clone());
                    o.detector_params = upper(&s.params);
                    o.seed = ex.scan_seed;
                    log(&format!(
                        "scan {} [{}] with {}",
                        file_name(&v.path),
                        repr,
                        s.name
                    ));
                    let outcome = scan(&o).map_err(|source| EvalError::Scan {
                        data: v.path.display().to_string(),
                        source: Box::new(source),
                    })?;
                    let report = &outcome.report;
                    let Some(ev) = &report.evaluation else {
                        continue;
                    };
                    let sha = report
                        .inputs
                        .first()
                        .map(|i| i.sha256.clone())
                        .unwrap_or_default();
                    let row = |detector: &str, e: &Evaluation, seconds: f64| EvalRow {
                        dataset: name.clone(),
                        attack: v.attack.clone(),
                        rate: v.rate,
                        seed: v.seed,
                        target_label: v.target_label.clone(),
                        position: v.position,
                        edits: v.edits,
                        data: file_name(&v.path),
                        data_sha256: sha.clone(),
                        rows: report.reconciliation.input_rows,
                        poisoned: ev.positives,
                        representation: repr.clone(),
                        setting: s.name.clone(),
                        detector: detector.to_string(),
                        eval: e.clone(),
                        seconds,
                        reconciled: report.reconciliation.balanced,
                    };
                    for det in &report.detectors {
                        if let Some(e) = ev.detectors.get(det.code) {
                            results.rows.push(row(det.code, e, det.seconds));
                        }
                    }
                    if ev.detectors.len() > 1 {
                        results
                            .rows
                            .push(row("combined", &ev.combined, report.run.seconds));
                    }
                }
            }
        }
    }
    let csv_path = out.join("results.csv");
    std::fs::write(&csv_path, csv(&results)).map_err(|e| write_err(&csv_path, &e))?;
    let md_path = out.join("results.md");
    let title = format!(
        "Results of `poisongate eval {}`",
        experiments_path.display()
    );
    std::fs::write(&md_path, markdown(&results, &title)).map_err(|e| write_err(&md_path, &e))?;
    Ok(results)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Write `dst`: the rows of the `.npy` matrix `src` in the order `sources`.
fn follow_rows(src: &Path, sources: &[usize], dst: &Path) -> Result<(), EvalError> {
    let (m, _) = crate::ingest::read_embeddings(src, None).map_err(|e| EvalError::Scan {
        data: src.display().to_string(),
        source: Box::new(ScanError::Ingest(e)),
    })?;
    let mut out = ndarray::Array2::<f32>::zeros((sources.len(), m.ncols()));
    for (i, &s) in sources.iter().enumerate() {
        if s >= m.nrows() {
            return Err(EvalError::Write {
                path: src.to_path_buf(),
                message: format!("{} rows, but row {} is needed", m.nrows(), s + 1),
            });
        }
        out.row_mut(i).assign(&m.row(s));
    }
    ndarray_npy::write_npy(dst, &out).map_err(|e| EvalError::Write {
        path: dst.to_path_buf(),
        message: e.to_string(),
    })
}

/// CSV header of [`csv`].
pub const CSV_HEADER: &str = "dataset,attack,rate,seed,target_label,position,edits,data,data_sha256,rows,poisoned,representation,setting,detector,flagged,flagged_fraction,tp,fp,fn,clean_flagged_fraction,precision,recall,f1,auroc,seconds,reconciled";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows as CSV: one header line, then one line per row. Floats are written in Rust's
/// shortest round-trip form, so they parse back to exactly the scan's values.
pub fn csv(r: &EvalResults) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for row in &r.rows {
        let e = &row.eval;
        let fields = [
            csv_field(&row.dataset),
            csv_field(&row.attack),
            row.rate.map_or(String::new(), |x| x.to_string()),
            row.seed.map_or(String::new(), |x| x.to_string()),
            row.target_label.as_deref().map_or(String::new(), csv_field),
            row.position.map_or(String::new(), |p| p.name().to_string()),
            row.edits.to_string(),
            csv_field(&row.data),
            row.data_sha256.clone(),
            row.rows.to_string(),
            row.poisoned.to_string(),
            csv_field(&row.representation),
            csv_field(&row.setting),
            csv_field(&row.detector),
            e.flagged.to_string(),
            row.flagged_fraction().to_string(),
            e.tp.to_string(),
            e.fp.to_string(),
            e.fn_.to_string(),
            row.clean_flagged_fraction().to_string(),
            e.precision.to_string(),
            e.recall.to_string(),
            e.f1.to_string(),
            e.auroc.map_or(String::new(), |a| a.to_string()),
            format!("{:.3}", row.seconds),
            row.reconciled.to_string(),
        ];
        s += &fields.join(",");
        s.push('\n');
    }
    s
}

/// Mean, minimum and maximum of some values.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, lo, hi)
}

/// The target labels of some rows, in seed order, `-` where there is none.
fn targets(rows: &[&EvalRow]) -> String {
    let t: Vec<&str> = rows
        .iter()
        .map(|r| r.target_label.as_deref().unwrap_or("-"))
        .collect();
    if t.iter().all(|x| *x == t[0]) {
        t[0].to_string()
    } else {
        t.join(", ")
    }
}

/// Injected cells summarised over their seeds: mean (min–max) per metric.
fn seed_summary(r: &EvalResults) -> String {
    type Key = (String, String, String, String, String, String);
    let mut groups: Vec<(Key, Vec<&EvalRow>)> = Vec::new();
    for row in r.rows.iter().filter(|x| x.seed.is_some()) {
        let key: Key = (
            row.dataset.clone(),
            row.attack.clone(),
            row.rate.map(percent).unwrap_or_default(),
            row.representation.clone(),
            row.setting.clone(),
            row.detector.clone(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Injected datasets, over seeds\n\nMean (min–max) over the injection seeds.\n\n\
         | dataset | attack | rate | seeds | targets | poisoned | repr | setting | detector | flagged % | fp | clean flagged % | precision | recall | F1 | AUROC |\n\
         | --- | --- | ---: | ---: | --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let cell = |v: &[f64]| {
        let (m, lo, hi) = spread(v);
        if (hi - lo).abs() < 5e-4 {
            format!("{m:.3}")
        } else {
            format!("{m:.3} ({lo:.3}–{hi:.3})")
        }
    };
    for ((dataset, attack, rate, repr, setting, detector), rows) in &groups {
        let get = |f: &dyn Fn(&EvalRow) -> f64| rows.iter().map(|x| f(x)).collect::<Vec<_>>();
        let aurocs: Vec<f64> = rows.iter().filter_map(|x| x.eval.auroc).collect();
        let (pm, _, _) = spread(&get(&|x| x.poisoned as f64));
        let pct = |v: &[f64]| {
            let (m, lo, hi) = spread(v);
            if (hi - lo).abs() < 5e-3 {
                format!("{m:.2}")
            } else {
                format!("{m:.2} ({lo:.2}–{hi:.2})")
            }
        };
        let (fm, flo, fhi) = spread(&get(&|x| x.eval.fp as f64));
        s += &format!(
            "| {dataset} | {attack} | {rate} % | {} | {} | {pm:.0} | {repr} | {setting} | {detector} | {} | {} | {} | {} | {} | {} | {} |\n",
            rows.len(),
            targets(rows),
            pct(&get(&|x| 100.0 * x.flagged_fraction())),
            if fhi > flo {
                format!("{fm:.1} ({flo:.0}–{fhi:.0})")
            } else {
                format!("{fm:.0}")
            },
            pct(&get(&|x| 100.0 * x.clean_flagged_fraction())),
            cell(&get(&|x| x.eval.precision)),
            cell(&get(&|x| x.eval.recall)),
            cell(&get(&|x| x.eval.f1)),
            if aurocs.is_empty() {
                "n/a".to_string()
            } else {
                cell(&aurocs)
            },
        );
    }
    s.push('\n');
    s
}

/// The rows as Markdown: injected cells summarised over seeds, then every row (three
/// decimals), then the cells not run.
pub fn markdown(r: &EvalResults, title: &str) -> String {
    let mut s = format!("# {title}\n\n");
    s += "Every row is one in-process `poisongate scan --ground-truth-column` of the named file \
          with the named detector selection; the numbers are the report's `evaluation` section. \
          Injected files are re-made byte for byte from the seed (`results.csv` lists each \
          file's SHA-256). Seconds are wall-clock on the machine that ran it; everything else is \
          deterministic.\n\n";
    s += &seed_summary(r);
    s += "## Every scan\n\n";
    s += "| dataset | attack | rate | seed | target | rows | poisoned | repr | setting | detector | flagged | flagged % | fp | clean flagged % | precision | recall | F1 | AUROC | seconds |\n";
    s += "| --- | --- | ---: | ---: | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for row in &r.rows {
        let e = &row.eval;
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {:.3} | {:.3} | {:.3} | {} | {:.2} |\n",
            row.dataset,
            row.attack,
            row.rate.map_or("-".to_string(), |x| format!("{} %", percent(x))),
            row.seed.map_or("-".to_string(), |x| x.to_string()),
            row.target_label.as_deref().unwrap_or("-"),
            row.rows,
            row.poisoned,
            row.representation,
            row.setting,
            row.detector,
            e.flagged,
            100.0 * row.flagged_fraction(),
            e.fp,
            100.0 * row.clean_flagged_fraction(),
            e.precision,
            e.recall,
            e.f1,
            e.auroc.map_or("n/a".to_string(), |a| format!("{a:.3}")),
            row.seconds
        );
    }
    if !r.skipped.is_empty() {
        s += "\n## Not run\n\n";
        let mut seen = std::collections::BTreeSet::new();
        for k in &r.skipped {
            let line = format!(
                "- {} / {} / {}: {}\n",
                k.dataset, k.attack, k.setting, k.reason
            );
            if seen.insert(line.clone()) {
                s += &line;
            }
        }
    }
    s
}
