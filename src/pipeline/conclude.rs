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
    /// Per planned detector: its flags over the readable rows.
    pub(super) per_detector: Vec<Flags>,
    /// Per readable row: the highest score any detector gave it.
    pub(super) combined: Vec<f64>,
    /// The texts and ids of flagged rows when `table` does not hold them (the streaming scan).
    pub(super) shown: Option<Shown>,
    pub(super) total: usize,
    pub(super) quarantine_invalid: bool,
    /// A partitioned scan's engine and partition count.
    pub(super) engine: Option<(String, usize)>,
}

/// One detector's flags: the flagged rows with score and reason, every row's score only when
/// the evaluation needs it, so a scan holds O(flagged) per detector, not O(rows).
pub(super) struct Flags {
    /// Flagged rows (indices into the readable rows) in row order: (row, score, reason).
    pub(super) flagged: Vec<(usize, f64, String)>,
    /// Every readable row's score (kept when there is ground truth to evaluate against).
    pub(super) scores: Option<Vec<f64>>,
    pub(super) seconds: f64,
    pub(super) summary: serde_json::Value,
}

impl Flags {
    /// An empty set of flags, to which batches of scores are added in row order.
    pub(super) fn new(keep_scores: bool, summary: serde_json::Value) -> Flags {
        Flags {
            flagged: Vec::new(),
            scores: keep_scores.then(Vec::new),
            seconds: 0.0,
            summary,
        }
    }

    /// Add the scores of rows `start..start + scores.len()`, folding them into `combined`.
    pub(super) fn add(&mut self, start: usize, scores: Scores, combined: &mut Vec<f64>) {
        let end = start + scores.score.len();
        if combined.len() < end {
            combined.resize(end, 0.0);
        }
        for (i, (s, r)) in scores.score.iter().zip(scores.reason).enumerate() {
            let row = start + i;
            combined[row] = combined[row].max(*s);
            if let Some(r) = r {
                self.flagged.push((row, *s, r));
            }
        }
        if let Some(all) = self.scores.as_mut() {
            all.extend(scores.score);
        }
    }
}

/// The texts and ids of the flagged rows, by index into the readable rows.
pub(super) struct Shown {
    pub(super) texts: BTreeMap<usize, String>,
    pub(super) ids: Option<BTreeMap<usize, String>>,
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
        combined,
        shown,
        total,
        quarantine_invalid,
        engine,
    } = d;
    let n = table.n_rows;
    // ---- combine: a row is quarantined when any detector flags it ----
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for f in &per_detector {
        for (row, _, r) in &f.flagged {
            reasons.entry(*row).or_default().push(r.clone());
        }
    }
    let quarantined = reasons.len();
    let is_flagged = || {
        let mut v = vec![false; n];
        for &i in reasons.keys() {
            if let Some(x) = v.get_mut(i) {
                *x = true;
            }
        }
        v
    };

    // ---- plain redundancy (--dedup): never poison, removed only when asked ----
    let (duplicate_of, dedup_section) = match (&dedup_params, table.texts.as_deref()) {
        (Some(p), Some(texts)) => {
            let flagged = is_flagged();
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
        let flags = is_flagged();
        let mut by_code = BTreeMap::new();
        for (p, f) in planned.iter().zip(&per_detector) {
            let mut mine = vec![false; n];
            for (i, _, _) in &f.flagged {
                if let Some(x) = mine.get_mut(*i) {
                    *x = true;
                }
            }
            let zeros;
            let scores = match &f.scores {
                Some(s) => s.as_slice(),
                None => {
                    zeros = vec![0.0; n];
                    &zeros
                }
            };
            by_code.insert(
                p.detector.meta().code.to_string(),
                metrics::evaluate(&mine, scores, truth),
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
    if let Some((name, partitions)) = engine {
        settings["engine"] = json!(name);
        settings["partitions"] = json!(partitions);
    }
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
        .map(|(p, f)| DetectorEntry {
            code: p.detector.meta().code,
            name: p.detector.meta().name,
            version: p.detector.meta().version,
            params: p.configured.params(),
            flagged: f.flagged.len(),
            summary: f.summary,
            seconds: f.seconds,
        })
        .collect();
    let score_of = |i: usize| combined.get(i).copied().unwrap_or(0.0);
    let mut top: Vec<usize> = reasons.keys().copied().collect();
    top.sort_by(|&a, &b| score_of(b).total_cmp(&score_of(a)).then(a.cmp(&b)));
    top.truncate(opts.report_rows);
    let text_of = |i: usize| -> Option<&str> {
        match &shown {
            Some(s) => s.texts.get(&i).map(String::as_str),
            None => table
                .texts
                .as_ref()
                .and_then(|t| t.get(i))
                .map(String::as_str),
        }
    };
    let id_of = |i: usize| -> Option<String> {
        match &shown {
            Some(s) => s.ids.as_ref().and_then(|ids| ids.get(&i).cloned()),
            None => table.ids.as_ref().and_then(|ids| ids.get(i).cloned()),
        }
    };
    // excerpts of the listed rows, by their row number in the file
    let excerpts: BTreeMap<usize, String> = top
        .iter()
        .filter_map(|&i| text_of(i).map(|t| (rows.orig[i], html::excerpt(t))))
        .collect();
    let quarantined_rows = top
        .into_iter()
        .map(|i| QuarantinedRow {
            row: rows.orig[i],
            id: id_of(i),
            score: score_of(i),
            reasons: reasons.get(&i).cloned().unwrap_or_default(),
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
    let staged = if let Some(out) = &opts.out {
        let verdicts = rows.verdicts(reasons.iter().map(|(&i, r)| {
            (
                i,
                Quarantine {
                    score: score_of(i),
                    reasons: r.clone(),
                    invalid: false,
                },
            )
        }));
        // the kept row a duplicate points to, by row numbers in the file
        let duplicate_of: Option<Vec<Option<usize>>> = duplicate_of.as_ref().map(|d| {
            let mapped: Vec<Option<usize>> = d
                .iter()
                .map(|k| k.and_then(|k| rows.orig.get(k).copied()))
                .collect();
            rows.spread(&mapped, None)
        });
        // ids are written beside duplicates only
        let ids = table
            .ids
            .as_ref()
            .filter(|_| duplicate_of.is_some())
            .map(|ids| rows.spread_borrowed(ids, String::new()));
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
        let staged = write_outputs(
            opts,
            &table,
            &verdicts,
            duplicate_of.as_deref(),
            ids.as_deref(),
            &excerpts,
            out,
            &mut report,
        )?;
        // what only the outputs needed is freed while their files are fsynced
        drop(ids);
        drop((table, verdicts, duplicate_of, excerpts));
        Some(staged)
    } else {
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
        None
    };
    // per row of the file: an invalid row scores 0 and gives its reason
    let mut all_reasons: BTreeMap<usize, Vec<String>> = reasons
        .into_iter()
        .map(|(i, r)| (rows.orig[i], r))
        .collect();
    for (&row, r) in &rows.invalid {
        all_reasons.insert(row, vec![r.reason()]);
    }
    let outcome = ScanOutcome {
        report,
        scores: rows.spread_owned(combined, 0.0),
        reasons: all_reasons,
    };
    if let Some(staged) = staged {
        staged.publish()?;
    }
    Ok(outcome)
}
