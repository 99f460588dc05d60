//! The outputs: staged, reconciled, described, attested, then renamed into place.

use super::*;

/// Stage every output in a temporary folder inside `out`, check the reconciliation against
/// what was written, render `report.html`, describe everything in `bom.cdx.json` (CycloneDX),
/// attest everything in `provenance.intoto.json`, then
/// rename the files into place. On error nothing is left behind (a folder this call created is
/// removed again; in an existing folder, the files this call already renamed are removed).
pub(super) fn write_outputs(
    opts: &ScanOptions,
    table: &Table,
    verdicts: &[Option<Quarantine>],
    duplicate_of: Option<&[Option<usize>]>,
    excerpts: &BTreeMap<usize, String>,
    out: &Path,
    report: &mut Report,
) -> Result<(), ScanError> {
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut renamed: Vec<PathBuf> = Vec::new();
    let result = (|| {
        let staging = tempfile::Builder::new()
            .prefix(".poisongate-staging-")
            .tempdir_in(out)
            .map_err(io_err(out))?;
        let split = emit::write_split_dedup(
            &opts.data,
            table.format,
            &table.digest.sha256,
            verdicts,
            duplicate_of,
            table.ids.as_deref(),
            staging.path(),
        )?;
        let (clean, quarantine): (OutputFile, OutputFile) = (split.clean, split.quarantine);
        let dups = split.duplicates;
        let dup_rows = dups.as_ref().map_or(0, |d| d.rows);
        let rec = &mut report.reconciliation;
        rec.clean_rows = clean.rows;
        rec.quarantined_rows = quarantine.rows;
        rec.balanced = clean.rows + quarantine.rows + dup_rows == rec.input_rows
            && dup_rows == rec.duplicate_rows;
        if !rec.balanced {
            return Err(ScanError::Config(format!(
                "reconciliation failed: {} input rows, but {} clean + {} quarantined + {} duplicates written ({} duplicates expected)",
                rec.input_rows, clean.rows, quarantine.rows, dup_rows, rec.duplicate_rows
            )));
        }
        report.outputs = [("clean", &clean), ("quarantine", &quarantine)]
            .into_iter()
            .chain(dups.as_ref().map(|d| ("duplicates", d)))
            .map(|(role, f)| OutputEntry {
                role,
                path: file_name(&f.path),
                rows: f.rows,
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            })
            .collect();
        let report_path = staging.path().join("report.json");
        let mut text = serde_json::to_string_pretty(report)
            .map_err(|e| ScanError::Config(format!("cannot serialise the report: {e}")))?;
        text.push('\n');
        let report_sha = hex::encode(Sha256::digest(text.as_bytes()));
        std::fs::write(&report_path, &text).map_err(io_err(&report_path))?;
        let html_path = staging.path().join(html::FILE_NAME);
        let page = html::render(report, excerpts);
        let html_sha = hex::encode(Sha256::digest(page.as_bytes()));
        std::fs::write(&html_path, page).map_err(io_err(&html_path))?;
        // the bill of materials is a function of the report's bytes, as `poisongate bom` makes it
        let bom_path = staging.path().join(bom::FILE_NAME);
        let bom_bytes = bom::from_report_text(&text)
            .map_err(|e| ScanError::Config(format!("cannot make {}: {e}", bom::FILE_NAME)))?;
        let bom_sha = hex::encode(Sha256::digest(&bom_bytes));
        std::fs::write(&bom_path, bom_bytes).map_err(io_err(&bom_path))?;
        let subjects: Vec<provenance::Subject> = [
            (file_name(&clean.path), clean.sha256.clone()),
            (file_name(&quarantine.path), quarantine.sha256.clone()),
        ]
        .into_iter()
        .chain(
            dups.as_ref()
                .map(|d| (file_name(&d.path), d.sha256.clone())),
        )
        .chain([
            ("report.json".to_string(), report_sha),
            (html::FILE_NAME.to_string(), html_sha),
            (bom::FILE_NAME.to_string(), bom_sha),
        ])
        .map(|(name, sha256)| provenance::Subject { name, sha256 })
        .collect();
        let prov_path = staging.path().join(provenance::FILE_NAME);
        let statement = provenance::statement(report, &subjects);
        std::fs::write(&prov_path, provenance::to_bytes(&statement)).map_err(io_err(&prov_path))?;
        // the statement last: a folder holding it holds everything it names
        let mut files = vec![&clean.path, &quarantine.path];
        files.extend(dups.as_ref().map(|d| &d.path));
        files.extend([&report_path, &html_path, &bom_path, &prov_path]);
        for f in files {
            let dest = out.join(file_name(f));
            std::fs::rename(f, &dest).map_err(io_err(&dest))?;
            renamed.push(dest);
        }
        Ok(())
    })();
    if result.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(out);
        } else {
            for f in &renamed {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    result
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
