//! The scan's last steps, whichever engine ran the detectors: the flags combined into one
//! verdict per row, plain redundancy (`--dedup`), the evaluation against ground truth, the
//! report, and the staged outputs.

use super::*;

/// What the detectors gave, with everything the verdict, the report and the outputs need.
pub(super) struct Detected {
    pub(super) t0: Instant,
    pub(super) planned: Vec<Planned>,
    pub(super) skipped: Vec<Skipped>,
    pub(super) format: RowLayout,
    pub(super) format_reason: String,
    pub(super) inputs: Vec<InputEntry>,
    /// The readable rows' columns (the texts and ids of the reported rows at least).
    pub(super) table: Table,
    pub(super) rows: invalid::Rows,
    pub(super) label_idx: Option<Vec<u32>>,
    pub(super) model_info: Option<serde_json::Value>,
    pub(super) dedup_params: Option<duplicates::DupParams>,
    /// Per planned detector: its scores over the readable rows, seconds and summary.
    pub(super) per_detector: Vec<(Scores, f64, serde_json::Value)>,
    pub(super) total: usize,
    pub(super) quarantine_invalid: bool,
}

/// Combine the detectors' flags into the verdict, write the report and the outputs.
pub(super) fn conclude(opts: &ScanOptions, d: Detected) -> Result<ScanOutcome, ScanError> {
    let Detected {
        t0,
        planned,
        skipped,
        format,
        format_reason,
        inputs,
        table,
        rows,
        label_idx,
        model_info,
        dedup_params,
        per_detector,
        total,
        quarantine_invalid,
    } = d;
    let n = table.n_rows;
    // ---- combine: a row is quarantined when any detector flags it ----
    let mut combined = vec![0f64; n];
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); n];
    for (scores, _, _) in &per_detector {
        for i in 0..n {
            combined[i] = combined[i].max(scores.score[i]);
            if let Some(r) = &scores.reason[i] {
                reasons[i].push(r.clone());
            }
        }
    }
    let quarantined = reasons.iter().filter(|r| !r.is_empty()).count();

    // ---- plain redundancy (--dedup): never poison, removed only when asked ----
    let (duplicate_of, dedup_section) = match (&dedup_params, table.texts.as_deref()) {
        (Some(p), Some(texts)) => {
            let flagged: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
            let (clusters, key) = dedup_clusters(&table, texts, &format, p);
            // rows with responses have no labels: there the clusters hold the whole key
            let (dup, mut section) =
                keep_first(&clusters, label_idx.as_deref(), &flagged, opts.dedup);
            section.key = key.0;
            section.note = key.1;
            (Some(dup), Some(section))
        }
        _ => (None, None),
    };
    let duplicate_rows = duplicate_of
        .as_ref()
        .map_or(0, |d| d.iter().filter(|x| x.is_some()).count());

    // ---- evaluation (ground truth never reaches a detector) ----
    let evaluation = table.ground_truth.as_ref().map(|truth| {
        let flags: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
        let mut by_code = BTreeMap::new();
        for (p, (scores, _, _)) in planned.iter().zip(&per_detector) {
            let f: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
            by_code.insert(
                p.detector.meta().code.to_string(),
                metrics::evaluate(&f, &scores.score, truth),
            );
        }
        EvaluationSection {
            ground_truth_column: opts.ground_truth_column.clone().unwrap_or_default(),
            positives: truth.iter().filter(|t| **t).count(),
            combined: metrics::evaluate(&flags, &combined, truth),
            detectors: by_code,
        }
    });

    // ---- report body ----
    let mut settings = settings_json(opts, &planned);
    settings["format"] = json!({"name": format.name(), "reason": format_reason});
    if let RowLayout::Fields(fields) = &format {
        // {name: "fields", prompt: [paths], response: path, reason}
        if let (Some(f), serde_json::Value::Object(paths)) =
            (settings["format"].as_object_mut(), fields.to_json())
        {
            f.extend(paths);
        }
    }
    if let Some(mut info) = model_info {
        // the files are inputs (with their digests); the rest is how they were used
        if let Some(o) = info.as_object_mut() {
            o.remove("files");
        }
        settings["model"] = info;
    }
    let settings_digest = hex::encode(Sha256::digest(settings.to_string().as_bytes()));
    let detectors: Vec<DetectorEntry> = planned
        .iter()
        .zip(per_detector)
        .map(|(p, (scores, seconds, summary))| DetectorEntry {
            code: p.detector.meta().code,
            name: p.detector.meta().name,
            version: p.detector.meta().version,
            params: p.configured.params(),
            flagged: scores.reason.iter().filter(|r| r.is_some()).count(),
            summary,
            seconds,
        })
        .collect();
    let mut top: Vec<usize> = (0..n).filter(|&i| !reasons[i].is_empty()).collect();
    top.sort_by(|&a, &b| combined[b].total_cmp(&combined[a]).then(a.cmp(&b)));
    top.truncate(opts.report_rows);
    // excerpts of the listed rows, by their row number in the file
    let excerpts: BTreeMap<usize, String> = match &table.texts {
        Some(texts) => top
            .iter()
            .filter_map(|&i| texts.get(i).map(|t| (rows.orig[i], html::excerpt(t))))
            .collect(),
        None => BTreeMap::new(),
    };
    let quarantined_rows = top
        .into_iter()
        .map(|i| QuarantinedRow {
            row: rows.orig[i],
            id: table.ids.as_ref().and_then(|ids| ids.get(i).cloned()),
            score: combined[i],
            reasons: reasons[i].clone(),
        })
        .collect();
    let invalid_rows = rows.invalid.len();
    // a row that could not be read did not pass the gate either
    let fraction = if total == 0 {
        0.0
    } else {
        (quarantined + invalid_rows) as f64 / total as f64
    };
    let passed = fraction <= opts.max_quarantine_fraction;
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "poisongate",
            version: env!("CARGO_PKG_VERSION"),
        },
        settings,
        settings_digest,
        inputs,
        detectors,
        skipped_detectors: skipped,
        outputs: Vec::new(),
        reconciliation: Reconciliation {
            input_rows: total,
            clean_rows: n - quarantined - duplicate_rows,
            quarantined_rows: quarantined,
            invalid_rows,
            duplicate_rows,
            balanced: true,
        },
        dedup: dedup_section,
        invalid: quarantine_invalid.then(|| rows.section()),
        quarantined_rows,
        verdict: Verdict {
            status: if passed { "pass" } else { "fail" },
            quarantined_fraction: fraction,
            max_quarantine_fraction: opts.max_quarantine_fraction,
            exit_code: if passed { 0 } else { 1 },
        },
        evaluation,
        run: Run {
            threads: rayon::current_num_threads(),
            seconds: 0.0,
        },
    };

    // ---- emit: all files staged, then the folder renamed into place ----
    if let Some(out) = &opts.out {
        let verdicts: Vec<Option<Quarantine>> = (0..n)
            .map(|i| {
                (!reasons[i].is_empty()).then(|| Quarantine {
                    score: combined[i],
                    reasons: reasons[i].clone(),
                    invalid: false,
                })
            })
            .collect();
        let verdicts = rows.verdicts(&verdicts);
        // the kept row a duplicate points to, by row numbers in the file
        let duplicate_of: Option<Vec<Option<usize>>> = duplicate_of.as_ref().map(|d| {
            let mapped: Vec<Option<usize>> = d
                .iter()
                .map(|k| k.and_then(|k| rows.orig.get(k).copied()))
                .collect();
            rows.spread(&mapped, None)
        });
        let ids: Option<Vec<String>> = table
            .ids
            .as_ref()
            .map(|ids| rows.spread(ids, String::new()));
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
        write_outputs(
            opts,
            &table,
            &verdicts,
            duplicate_of.as_deref(),
            ids.as_deref(),
            &excerpts,
            out,
            &mut report,
        )?;
    } else {
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
    }
    // per row of the file: an invalid row scores 0 and gives its reason
    let mut all_reasons = rows.spread(&reasons, Vec::new());
    for (&row, r) in &rows.invalid {
        if let Some(slot) = all_reasons.get_mut(row) {
            *slot = vec![r.reason()];
        }
    }
    Ok(ScanOutcome {
        report,
        scores: rows.spread(&combined, 0.0),
        reasons: all_reasons,
    })
}
