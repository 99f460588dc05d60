//! Which detectors run on the data, with their checked parameters.

use super::*;
use poisongate_detectors::duplicates::reference::ReferenceState;

pub(super) struct Planned {
    pub(super) detector: &'static dyn Detector,
    pub(super) configured: Box<dyn Configured>,
}

/// Decide which detectors run, with their checked parameters. Returns the plan and the
/// detectors left out (only when no explicit selection was made).
pub(super) fn plan(
    opts: &ScanOptions,
    format: &RowLayout,
    reference: Option<&std::sync::Arc<ReferenceState>>,
) -> Result<(Vec<Planned>, Vec<Skipped>), ScanError> {
    for (code, table) in &opts.detector_params {
        let Some(d) = registry::find(code) else {
            return Err(ScanError::Config(format!(
                "parameters given for unknown detector `{code}` (see `poisongate list`)"
            )));
        };
        // every table is checked, also that of a detector this scan does not run: a misspelt
        // parameter of an opt-in detector must not pass unnoticed
        d.configure(table)?;
    }
    let chosen: Vec<&'static dyn Detector> = match &opts.select {
        Some(prefixes) => {
            let p: Vec<&str> = prefixes.iter().map(String::as_str).collect();
            registry::select(&p).map_err(|bad| {
                ScanError::Config(format!(
                    "--select {bad} matches no detector (see `poisongate list`)"
                ))
            })?
        }
        // a trusted corpus adds the detectors that judge against it
        None => registry::REGISTRY
            .iter()
            .copied()
            .filter(|d| {
                let code = d.meta().code;
                !registry::is_opt_in(code)
                    && (reference.is_some() || !registry::needs_reference(code))
            })
            .collect(),
    };
    // the detectors a trusted corpus informs: REF001 to REF003 judge against it, DUP001 and
    // DUP002 take its labels as confirmed, TRIG001 withdraws the associations it holds
    let uses_reference = |code: &str| {
        registry::needs_reference(code) || ["DUP001", "DUP002", "TRIG001"].contains(&code)
    };
    if reference.is_some() && format.has_responses() {
        return Err(ScanError::Config(format!(
            "--reference judges text-label rows against a trusted text-label corpus; the data \
             is read as {}",
            format.name()
        )));
    }
    let needs = chosen
        .iter()
        .any(|d| registry::needs_reference(d.meta().code));
    let uses = chosen.iter().any(|d| uses_reference(d.meta().code));
    match (reference.is_some(), needs, uses) {
        (false, true, _) => return Err(ScanError::Config(
            "REF001, REF002 and REF003 judge the data against a trusted corpus: pass --reference \
                 FILE (written by `poisongate fit`)"
                .into(),
        )),
        (true, _, false) => {
            return Err(ScanError::Config(
                "--reference is given but --select names no detector that uses it (REF001, \
                 REF002, REF003, DUP001, DUP002, TRIG001)"
                    .into(),
            ))
        }
        _ => {}
    }
    let has_embeddings =
        opts.embeddings.is_some() || opts.embedding_column.is_some() || opts.model.is_some();
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for d in chosen {
        let empty = toml::Table::new();
        let params = opts.detector_params.get(d.meta().code).unwrap_or(&empty);
        let configured = match reference {
            Some(state) if registry::needs_reference(d.meta().code) => {
                super::reference::configured(opts, d.meta().code, state)?
            }
            Some(state) if d.meta().code == "TRIG001" => {
                poisongate_detectors::trigger::configure_with_reference(
                    params,
                    std::sync::Arc::clone(state),
                )?
            }
            // the trusted corpus confirms the labels of the rows it holds
            Some(state) => match duplicates::configure_with_reference(
                d.meta().code,
                params,
                std::sync::Arc::clone(state),
            )? {
                Some(c) => c,
                None => d.configure(params)?,
            },
            None => d.configure(params)?,
        };
        let needs = configured.needs();
        let missing = if format.has_responses() && needs.labels {
            Some("needs a label column; instruction, chat and preference rows have none")
        } else if !format.has_responses() && needs.responses {
            Some("needs prompt and response rows (--format alpaca, chat, sharegpt or preference)")
        } else {
            None
        };
        if let Some(reason) = missing {
            if opts.select.is_some() {
                return Err(ScanError::Config(format!(
                    "{} {reason} (the data is read as {})",
                    d.meta().code,
                    format.name()
                )));
            }
            skipped.push(Skipped {
                code: d.meta().code,
                reason: reason.into(),
            });
            continue;
        }
        if configured.needs().embeddings && !has_embeddings {
            if opts.select.is_some() {
                return Err(ScanError::Config(format!(
                    "{} needs embeddings: pass --embeddings FILE, --embedding-column COLUMN or --model DIR",
                    d.meta().code
                )));
            }
            skipped.push(Skipped {
                code: d.meta().code,
                reason:
                    "needs embeddings; none given (--embeddings, --embedding-column or --model)"
                        .into(),
            });
            continue;
        }
        planned.push(Planned {
            detector: d,
            configured,
        });
    }
    if planned.is_empty() {
        return Err(ScanError::Config(
            "no detector can run on the given inputs".into(),
        ));
    }
    Ok((planned, skipped))
}
