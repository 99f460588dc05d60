//! The grid's loop: inject each variant, then scan it with every detector setting and
//! representation.

use super::model::ModelRepresentation;
use super::table::{csv, markdown, percent};
use super::{load, DetectorSetting, EvalError, EvalResults, EvalRow, Skipped};
use crate::inject::{self, Attack, InjectError, InjectOptions, Position};
use crate::pipeline::{scan, ScanError, ScanOptions};
use poisongate_detectors::metrics::Evaluation;
use poisongate_detectors::registry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// A representation computed from a model folder: `model:DIR`.
const MODEL_PREFIX: &str = "model:";

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

    // model folders of `model:DIR` representations, each loaded once
    let mut models: BTreeMap<PathBuf, ModelRepresentation> = BTreeMap::new();
    let mut results = EvalResults::default();
    for d in &ex.dataset {
        let path = base.join(&d.path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = d.name.clone().unwrap_or_else(|| stem.clone());
        let (model_reprs, file_reprs): (Vec<&String>, Vec<&String>) = d
            .representations
            .iter()
            .partition(|r| r.starts_with(MODEL_PREFIX));
        let model_dirs: Vec<PathBuf> = model_reprs
            .iter()
            .map(|r| base.join(&r[MODEL_PREFIX.len()..]))
            .collect();
        for dir in &model_dirs {
            if !models.contains_key(dir) && needs.iter().any(|&n| n) {
                log(&format!("load model {}", dir.display()));
                models.insert(
                    dir.clone(),
                    ModelRepresentation::load(dir, ex.model_max_tokens)?,
                );
            }
        }
        let reprs: Vec<(String, PathBuf)> = file_reprs
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    path.with_file_name(format!("{stem}.{r}.npy")),
                )
            })
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
            let attack = Attack::from_params(
                &a.kind,
                inject::AttackParams {
                    triggers: a.triggers.clone(),
                    triggers_per_row: a.triggers_per_row,
                    phrase: a.phrase.clone(),
                    response: a.response.clone(),
                    response_suffix: a.response_suffix.clone(),
                    responses: None,
                },
            )
            .map_err(inj_err)?;
            let position = a
                .position
                .as_deref()
                .map(Position::parse)
                .transpose()
                .map_err(inj_err)?
                .unwrap_or_else(|| attack.default_position());
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
            // embeddings of this file's own text, per model, made when a setting needs them
            let mut computed: Vec<(String, PathBuf)> = Vec::new();
            let wanted = ex
                .detectors
                .iter()
                .zip(&needs)
                .any(|(s, &n)| n && s.applies_to(&v.attack));
            if wanted {
                for dir in &model_dirs {
                    let Some(m) = models.get_mut(dir) else {
                        continue;
                    };
                    let dst =
                        work.join(format!("{}.{}.npy", file_name(&v.path), file_safe(&m.name)));
                    let text_column = d.text_column.as_deref().unwrap_or("text");
                    let fresh = m.write(&path, &v.path, text_column, &dst, log)?;
                    if fresh > 0 {
                        log(&format!(
                            "embedded {fresh} new texts of {} with {}",
                            file_name(&v.path),
                            m.name
                        ));
                    }
                    computed.push((m.name.clone(), dst));
                }
            }
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
                    if v.representations.is_empty() && computed.is_empty() {
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
                        .chain(&computed)
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
            if !ex.keep_data {
                for (_, p) in &computed {
                    let _ = std::fs::remove_file(p);
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
