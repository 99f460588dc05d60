//! `report.html`: a self-contained, human-readable rendering of [`Report`] (no scripts, fonts
//! or network access; inline CSS only). `report.json` stays the source of truth: everything
//! shown here is taken from the report, plus optional short text excerpts of the listed
//! quarantined rows. Every string that comes from data is escaped with [`escape`].

use crate::report::Report;
use poisongate_detectors::metrics::Evaluation;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// File name of the rendering inside the output folder.
pub const FILE_NAME: &str = "report.html";

/// Longest text excerpt shown per quarantined row, in characters.
pub const EXCERPT_CHARS: usize = 200;

/// Escape `&`, `<`, `>`, `"` and `'` for use in HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first [`EXCERPT_CHARS`] characters of `text`, with an ellipsis when cut.
pub fn excerpt(text: &str) -> String {
    let mut e: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        e.push('…');
    }
    e
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.id code{word-break:normal;white-space:nowrap}
code,.digest{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
.banner{padding:.8em 1em;border-radius:4px;font-size:1.2em;font-weight:bold}
.pass{background:#e3f5e1;border:2px solid #2e7d32;color:#1b5e20}
.fail{background:#fdecea;border:2px solid #c62828;color:#8e0000}
.excerpt{color:#555;font-size:.85em;white-space:pre-wrap}
@media print{body{max-width:none;margin:0}.banner{border-width:1px}h2{break-after:avoid}tr{break-inside:avoid}}
";

fn num(s: &mut String, v: impl std::fmt::Display) {
    let _ = write!(s, "<td class=\"num\">{v}</td>");
}

fn cell(s: &mut String, v: &str) {
    let _ = write!(s, "<td>{}</td>", escape(v));
}

fn code_cell(s: &mut String, v: &str) {
    let _ = write!(s, "<td><code>{}</code></td>", escape(v));
}

fn eval_row(s: &mut String, name: &str, e: &Evaluation) {
    s.push_str("<tr>");
    cell(s, name);
    num(s, e.flagged);
    num(s, e.tp);
    num(s, e.fp);
    num(s, e.fn_);
    num(s, format!("{:.3}", e.precision));
    num(s, format!("{:.3}", e.recall));
    num(s, format!("{:.3}", e.f1));
    num(s, e.auroc.map_or("-".to_string(), |a| format!("{a:.3}")));
    s.push_str("</tr>\n");
}

/// TRIG001's `summary.triggers` rendered as table rows, when present.
fn trigger_rows(summary: &Value) -> Option<String> {
    let triggers = summary.get("triggers")?.as_array()?;
    let mut s = String::new();
    for t in triggers {
        let text = |k: &str| match t.get(k) {
            Some(Value::String(v)) => v.clone(),
            Some(Value::Number(n)) if !(n.is_u64() || n.is_i64()) => n
                .as_f64()
                .map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let examples = t
            .get("example_rows")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        s.push_str("<tr>");
        code_cell(&mut s, &text("trigger"));
        cell(&mut s, &text("target"));
        num(&mut s, escape(&text("support")));
        num(&mut s, escape(&text("purity")));
        num(&mut s, escape(&text("score")));
        cell(&mut s, &examples);
        s.push_str("</tr>\n");
    }
    Some(s)
}

/// Render the report as one self-contained HTML page. `excerpts` maps a 0-based input row to a
/// short text excerpt (see [`excerpt`]) shown under that row in the quarantine table.
pub fn render(report: &Report, excerpts: &BTreeMap<usize, String>) -> String {
    let mut s = String::new();
    let v = &report.verdict;
    let rec = &report.reconciliation;
    let data_name = report.inputs.first().map(|i| i.path.as_str()).unwrap_or("");
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>poisongate report: {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        escape(data_name)
    );
    let _ = write!(
        s,
        "<h1>poisongate {} scan report</h1>\n<p>Rendered from <code>report.json</code> \
         (schema {}), which is the source of truth.</p>\n",
        escape(report.tool.version),
        escape(report.schema_version)
    );

    // verdict
    let _ = writeln!(
        s,
        "<section id=\"verdict\"><div class=\"banner {}\">Gate {}: {} of {} rows quarantined \
         ({:.2}%; policy allows at most {:.2}%)</div></section>",
        if v.status == "pass" { "pass" } else { "fail" },
        escape(&v.status.to_uppercase()),
        rec.quarantined_rows,
        rec.input_rows,
        100.0 * v.quarantined_fraction,
        100.0 * v.max_quarantine_fraction
    );

    // reconciliation
    let _ = write!(
        s,
        "<section id=\"reconciliation\"><h2>Reconciliation</h2>\n<table><tr><th>input rows</th>\
         <th>clean rows</th><th>quarantined rows</th><th>balanced</th></tr>\n<tr>"
    );
    num(&mut s, rec.input_rows);
    num(&mut s, rec.clean_rows);
    num(&mut s, rec.quarantined_rows);
    cell(&mut s, if rec.balanced { "yes" } else { "NO" });
    s.push_str("</tr></table></section>\n");

    // files
    s.push_str(
        "<section id=\"files\"><h2>Inputs and outputs</h2>\n<table><tr><th>kind</th><th>role</th>\
         <th>path</th><th>rows</th><th>bytes</th><th>SHA-256</th></tr>\n",
    );
    let files = report
        .inputs
        .iter()
        .map(|i| ("input", i.role, &i.path, i.rows, i.bytes, &i.sha256))
        .chain(
            report
                .outputs
                .iter()
                .map(|o| ("output", o.role, &o.path, o.rows, o.bytes, &o.sha256)),
        );
    for (kind, role, path, rows, bytes, sha) in files {
        s.push_str("<tr>");
        cell(&mut s, kind);
        cell(&mut s, role);
        code_cell(&mut s, path);
        num(&mut s, rows);
        num(&mut s, bytes);
        let _ = write!(s, "<td class=\"digest\">{}</td>", escape(sha));
        s.push_str("</tr>\n");
    }
    let _ = write!(
        s,
        "</table>\n<p>Settings digest: <span class=\"digest\">{}</span>; seed {}.</p></section>\n",
        escape(&report.settings_digest),
        escape(
            &report
                .settings
                .get("seed")
                .map(Value::to_string)
                .unwrap_or_default()
        )
    );

    // detectors
    s.push_str(
        "<section id=\"detectors\"><h2>Detectors</h2>\n<table><tr><th>code</th><th>name</th>\
         <th>version</th><th>flagged</th><th>seconds</th><th>parameters</th></tr>\n",
    );
    for d in &report.detectors {
        s.push_str("<tr>");
        let _ = write!(s, "<td class=\"id\"><code>{}</code></td>", escape(d.code));
        cell(&mut s, d.name);
        num(&mut s, d.version);
        num(&mut s, d.flagged);
        num(&mut s, format!("{:.2}", d.seconds));
        code_cell(&mut s, &d.params.to_string());
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    if !report.skipped_detectors.is_empty() {
        s.push_str("<p>Skipped:</p><ul>\n");
        for k in &report.skipped_detectors {
            let _ = writeln!(
                s,
                "<li><code>{}</code>: {}</li>",
                escape(k.code),
                escape(&k.reason)
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n");

    // TRIG001 findings
    if let Some(rows) = report
        .detectors
        .iter()
        .find(|d| d.code == "TRIG001")
        .and_then(|d| trigger_rows(&d.summary))
    {
        let _ = write!(
            s,
            "<section id=\"triggers\"><h2>TRIG001 trigger findings</h2>\n<table><tr>\
             <th>trigger</th><th>target</th><th>support</th><th>purity</th><th>score</th>\
             <th>example rows</th></tr>\n{}</table></section>\n",
            if rows.is_empty() {
                "<tr><td colspan=\"6\">no trigger found</td></tr>\n".to_string()
            } else {
                rows
            }
        );
    }

    // quarantined rows
    let _ = writeln!(
        s,
        "<section id=\"quarantined\"><h2>Top quarantined rows ({} listed of {})</h2>",
        report.quarantined_rows.len(),
        rec.quarantined_rows
    );
    if report.quarantined_rows.is_empty() {
        s.push_str("<p>No row was quarantined.</p>\n");
    } else {
        s.push_str(
            "<table><tr><th>row</th><th>id</th><th>score</th><th>reasons and excerpt</th></tr>\n",
        );
        for q in &report.quarantined_rows {
            s.push_str("<tr>");
            num(&mut s, q.row);
            cell(&mut s, q.id.as_deref().unwrap_or(""));
            num(&mut s, format!("{:.3}", q.score));
            s.push_str("<td>");
            for r in &q.reasons {
                let _ = write!(s, "<code>{}</code><br>", escape(r));
            }
            if let Some(t) = excerpts.get(&q.row) {
                let _ = write!(s, "<div class=\"excerpt\">{}</div>", escape(t));
            }
            s.push_str("</td></tr>\n");
        }
        s.push_str("</table>\n");
    }
    s.push_str("</section>\n");

    // evaluation
    if let Some(ev) = &report.evaluation {
        let _ = write!(
            s,
            "<section id=\"evaluation\"><h2>Evaluation against <code>{}</code> ({} poisoned \
             rows)</h2>\n<table><tr><th>detector</th><th>flagged</th><th>tp</th><th>fp</th>\
             <th>fn</th><th>precision</th><th>recall</th><th>F1</th><th>AUROC</th></tr>\n",
            escape(&ev.ground_truth_column),
            ev.positives
        );
        for (code, e) in &ev.detectors {
            eval_row(&mut s, code, e);
        }
        eval_row(&mut s, "combined", &ev.combined);
        s.push_str("</table></section>\n");
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn excerpt_cuts_on_characters() {
        let long = "é".repeat(EXCERPT_CHARS + 5);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
