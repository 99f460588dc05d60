//! `report.html`: a self-contained, human-readable rendering of [`Report`] (no scripts, fonts
//! or network access; inline CSS only). `report.json` stays the source of truth: everything
//! shown here is taken from the report, plus optional short text excerpts of the listed
//! quarantined rows. Every string that comes from data is escaped with [`escape`].

use crate::report::Report;
use poisongate_detectors::metrics::Evaluation;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

mod reference;
use reference::reference_section;

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
.hists{display:flex;flex-wrap:wrap;gap:.5em 1.5em}
figure.hist{margin:.5em 0;flex:1 1 420px;max-width:540px}
figure.hist figcaption{font-size:.85em;color:#444}
svg.hist{display:block;width:100%;height:auto;font-family:inherit}
@media print{body{max-width:none;margin:0}.banner{border-width:1px}h2{break-after:avoid}tr{break-inside:avoid}figure.hist{break-inside:avoid}}
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

/// Per-class columns of an embedding detector's summary: header and key in each class object.
const ACT001_COLUMNS: &[(&str, &str)] = &[
    ("minor share", "minor_share"),
    ("silhouette", "silhouette"),
    ("null silhouette", "null_silhouette"),
    ("ratio", "silhouette_ratio"),
    ("decision", "decision"),
    ("flagged", "flagged"),
];
const SPEC002_COLUMNS: &[(&str, &str)] = &[
    ("k", "k"),
    ("separation", "separation"),
    ("robust kept", "robust_kept_fraction"),
    ("z cut", "z_threshold"),
    ("flagged", "flagged"),
];

/// A per-class table of `summary.classes` with the class, its rows and `columns` (numbers with
/// three decimals, other values as text; a skipped class shows why), when present.
fn class_table(summary: &Value, columns: &[(&str, &str)]) -> Option<String> {
    let classes = summary.get("classes")?.as_array()?;
    let mut s = String::from("<table><tr><th>class</th><th>rows</th>");
    for (h, _) in columns {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str(
        "</tr>
",
    );
    for c in classes {
        s.push_str("<tr>");
        cell(&mut s, &text_of(c.get("class")));
        num(&mut s, text_of(c.get("rows")));
        if let Some(why) = c.get("skipped").and_then(Value::as_str) {
            let _ = write!(
                s,
                "<td colspan=\"{}\">skipped: {}</td>",
                columns.len(),
                escape(why)
            );
        } else {
            for (_, key) in columns {
                match c.get(*key) {
                    Some(Value::Number(n)) if n.is_f64() => {
                        num(&mut s, fixed(n.as_f64().unwrap_or(f64::NAN), 3))
                    }
                    Some(Value::Number(n)) => num(&mut s, n),
                    v => cell(&mut s, &text_of(v)),
                }
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>");
    Some(s)
}

/// A JSON value as plain text (`-` for none or null).
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(t)) => t.clone(),
        Some(other) => other.to_string(),
    }
}

/// Field `k` of a summary entry as shown in a table: strings as they are, fractions with three
/// decimals, other values as JSON, nothing when absent.
fn entry_text(entry: &Value, k: &str) -> String {
    match entry.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) if !(n.is_u64() || n.is_i64()) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| format!("{f:.3}")),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// TRIG001's `summary.triggers` rendered as table rows, when present.
fn trigger_rows(summary: &Value) -> Option<String> {
    let triggers = summary.get("triggers")?.as_array()?;
    let mut s = String::new();
    for t in triggers {
        let text = |k: &str| entry_text(t, k);
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
        num(&mut s, escape(&text("natural_carriers")));
        num(&mut s, escape(&text("lone_carriers")));
        num(&mut s, escape(&text("word_carriers")));
        cell(&mut s, &examples);
        s.push_str("</tr>\n");
    }
    Some(s)
}

/// TRIG001's candidates that passed its tests but were not named, each with why it abstained
/// (`summary.near_misses` with an `abstained` reason), as table rows; empty when there is none.
fn abstention_rows(summary: &Value) -> String {
    let mut s = String::new();
    let Some(near) = summary.get("near_misses").and_then(Value::as_array) else {
        return s;
    };
    for c in near {
        let Some(Value::String(why)) = c.get("abstained") else {
            continue;
        };
        let text = |k: &str| entry_text(c, k);
        s.push_str("<tr>");
        code_cell(&mut s, &text("phrase"));
        cell(&mut s, &text("target"));
        num(&mut s, escape(&text("support")));
        num(&mut s, escape(&text("purity")));
        cell(&mut s, why);
        s.push_str("</tr>\n");
    }
    s
}

/// `v` with `decimals` digits after the point, `-0.00` shown as `0.00`; `-` when not finite.
/// Deterministic: the same number always gives the same text.
pub fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "-".to_string();
    }
    let t = format!("{v:.decimals$}");
    if t.starts_with('-') && t[1..].chars().all(|c| c == '0' || c == '.') {
        t[1..].to_string()
    } else {
        t
    }
}

/// Width and height of the histogram's view box, and its plot area.
const SVG_W: f64 = 520.0;
const SVG_H: f64 = 160.0;
const PLOT_L: f64 = 44.0;
const PLOT_R: f64 = 508.0;
const PLOT_T: f64 = 34.0;
const PLOT_B: f64 = 128.0;

/// An inline SVG bar chart of one class's z histogram (`counts` over equal-width bins of
/// [`lo`, `hi`]), with a solid vertical line at the flagging cut `cut` and a dashed one at the
/// Bonferroni z `bonferroni`, each labelled. The x axis is widened to show both lines when they
/// lie beyond the data (within the detector's clip range, -10 to 20). Bins at or beyond the cut
/// are drawn darker red. No scripts, fonts or external references.
pub fn z_histogram_svg(
    counts: &[u64],
    lo: f64,
    hi: f64,
    cut: Option<f64>,
    bonferroni: Option<f64>,
    label: &str,
) -> String {
    let mut s = String::new();
    let marks = |v: Option<f64>| v.filter(|v| v.is_finite() && (-10.0..=20.0).contains(v));
    let (cut, bonf) = (marks(cut), marks(bonferroni));
    let mut dlo = lo;
    let mut dhi = hi;
    for m in [cut, bonf].into_iter().flatten() {
        dlo = dlo.min(m);
        dhi = dhi.max(m);
    }
    if !(dlo.is_finite() && dhi.is_finite()) || dhi <= dlo || counts.is_empty() {
        return s;
    }
    let x = |v: f64| PLOT_L + (v - dlo) / (dhi - dlo) * (PLOT_R - PLOT_L);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let _ = writeln!(
        s,
        "<svg class=\"hist\" viewBox=\"0 0 {SVG_W} {SVG_H}\" role=\"img\" aria-label=\"{}\">\
         <title>{}</title>",
        escape(label),
        escape(label)
    );
    let _ = writeln!(
        s,
        "<rect x=\"{PLOT_L}\" y=\"{PLOT_T}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" \
         stroke=\"#ccc\" stroke-width=\"0.5\"/>",
        fixed(PLOT_R - PLOT_L, 1),
        fixed(PLOT_B - PLOT_T, 1)
    );
    let width = (hi - lo) / counts.len() as f64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (b0, b1) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
        // at least one unit tall, so a bin of a few rows beside a tall bulk stays visible
        let h = (c as f64 / max * (PLOT_B - PLOT_T)).max(1.0);
        let fill = if cut.is_some_and(|k| b0 >= k) {
            "#c62828"
        } else {
            "#6b8fbf"
        };
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"><title>z {} to {}: \
             {c} rows</title></rect>",
            fixed(x(b0), 2),
            fixed(PLOT_B - h, 2),
            fixed((x(b1) - x(b0) - 0.5).max(0.5), 2),
            fixed(h, 2),
            fixed(b0, 2),
            fixed(b1, 2)
        );
    }
    // axes: count scale on the left, z ticks below
    let _ = writeln!(
        s,
        "<g font-size=\"11\" fill=\"#444\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{PLOT_B}\" text-anchor=\"end\">0</text>",
        fixed(PLOT_L - 4.0, 1),
        fixed(PLOT_T + 9.0, 1),
        max as u64,
        fixed(PLOT_L - 4.0, 1)
    );
    let mut ticks = vec![dlo, dhi];
    if dlo < 0.0 && dhi > 0.0 {
        ticks.push(0.0);
    }
    for t in ticks {
        let anchor = if t == dlo {
            "start"
        } else if t == dhi {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            "<line x1=\"{0}\" y1=\"{PLOT_B}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#444\"/>\
             <text x=\"{0}\" y=\"{2}\" text-anchor=\"{anchor}\">{3}</text>",
            fixed(x(t), 2),
            fixed(PLOT_B + 4.0, 1),
            fixed(PLOT_B + 16.0, 1),
            fixed(t, 1)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">robust z (rows per bin)</text></g>",
        fixed((PLOT_L + PLOT_R) / 2.0, 1),
        fixed(SVG_H - 4.0, 1)
    );
    // threshold lines, each labelled on its own row above the plot (the lines stop below the
    // labels, so neither crosses the other's text)
    let mid = (PLOT_L + PLOT_R) / 2.0;
    for (v, text, dash, row) in [
        (cut, "cut", "", 12.0),
        (bonf, "Bonferroni", " stroke-dasharray=\"5,3\"", 26.0),
    ] {
        let Some(v) = v else { continue };
        let xv = x(v);
        let (tx, anchor) = if xv > mid {
            (xv - 3.0, "end")
        } else {
            (xv + 3.0, "start")
        };
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{PLOT_B}\" stroke=\"#111\" \
             stroke-width=\"1.5\"{dash}/><text x=\"{2}\" y=\"{row}\" font-size=\"11\" \
             text-anchor=\"{anchor}\" fill=\"#111\">{text} z = {3}</text>",
            fixed(xv, 2),
            fixed(PLOT_T - 4.0, 1),
            fixed(tx, 2),
            fixed(v, 2)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// SPEC001's per-class z histograms as figures, when its summary has any class.
fn spectral_figures(summary: &Value) -> Option<String> {
    let classes = summary.get("classes")?.as_array()?;
    let mut s = String::new();
    for c in classes {
        let name = match c.get("class") {
            Some(Value::String(v)) => v.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let rows = c.get("rows").and_then(Value::as_u64).unwrap_or(0);
        if let Some(reason) = c.get("skipped").and_then(Value::as_str) {
            let _ = writeln!(
                s,
                "<figure class=\"hist\"><figcaption>class <code>{}</code> ({rows} rows): \
                 skipped, {}</figcaption></figure>",
                escape(&name),
                escape(reason)
            );
            continue;
        }
        let f = |k: &str| c.get(k).and_then(Value::as_f64);
        let cut = f("z_threshold");
        let bonf = f("bonferroni_z");
        let flagged = c.get("flagged").and_then(Value::as_u64).unwrap_or(0);
        let decision = c
            .get("mixture")
            .and_then(|m| m.get("decision"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let h = c.get("z_histogram");
        let counts: Option<Vec<u64>> = h
            .and_then(|h| h.get("counts"))
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let lo = h.and_then(|h| h.get("lo")).and_then(Value::as_f64);
        let hi = h.and_then(|h| h.get("hi")).and_then(Value::as_f64);
        let label = format!(
            "Histogram of robust z for class {name}; cut {}; Bonferroni z {}",
            cut.map_or("none".to_string(), |v| fixed(v, 2)),
            bonf.map_or("-".to_string(), |v| fixed(v, 2))
        );
        let svg = match (counts, lo, hi) {
            (Some(counts), Some(lo), Some(hi)) => {
                z_histogram_svg(&counts, lo, hi, cut, bonf, &label)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "<figure class=\"hist\">{}<figcaption>class <code>{}</code>: {rows} rows, {flagged} \
             flagged; {}</figcaption></figure>",
            if svg.is_empty() {
                "<p>No histogram (degenerate class).</p>".to_string()
            } else {
                svg
            },
            escape(&name),
            escape(decision)
        );
    }
    Some(s)
}

/// A cell of comma-joined rows, with an ellipsis when the cluster has more than are listed.
fn rows_text(cluster: &Value) -> String {
    let rows: Vec<String> = cluster
        .get("rows")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let size = cluster
        .get("size")
        .and_then(Value::as_u64)
        .unwrap_or(rows.len() as u64);
    let mut t = rows.join(", ");
    if (rows.len() as u64) < size {
        t.push_str(", …");
    }
    t
}

/// Rows of the duplicate-cluster table for one DUP detector's summary: (clusters found,
/// clusters listed, table rows).
fn duplicate_rows(
    code: &str,
    summary: &Value,
    excerpts: &BTreeMap<usize, String>,
) -> (u64, usize, String) {
    let (total, list) = if code == "DUP003" {
        let a = summary.get("amplification");
        (
            a.and_then(|a| a.get("amplified_clusters"))
                .and_then(Value::as_u64),
            a.and_then(|a| a.get("clusters")).and_then(Value::as_array),
        )
    } else {
        (
            summary.get("conflicting_clusters").and_then(Value::as_u64),
            summary.get("conflicts").and_then(Value::as_array),
        )
    };
    let list = list.map(Vec::as_slice).unwrap_or(&[]);
    let mut s = String::new();
    for c in list {
        s.push_str("<tr>");
        let _ = write!(s, "<td class=\"id\"><code>{}</code></td>", escape(code));
        num(&mut s, c.get("size").and_then(Value::as_u64).unwrap_or(0));
        num(
            &mut s,
            c.get("distinct_texts").and_then(Value::as_u64).unwrap_or(0),
        );
        code_cell(
            &mut s,
            c.get("labels").and_then(Value::as_str).unwrap_or("-"),
        );
        s.push_str("<td>");
        s.push_str(&escape(&rows_text(c)));
        let first_excerpt = c
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_u64().and_then(|r| usize::try_from(r).ok()))
            .find_map(|r| excerpts.get(&r).map(|t| (r, t)));
        if let Some((r, t)) = first_excerpt {
            let _ = write!(s, "<div class=\"excerpt\">row {r}: {}</div>", escape(t));
        }
        s.push_str("</td></tr>\n");
    }
    (total.unwrap_or(list.len() as u64), list.len(), s)
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
        rec.quarantined_rows + rec.invalid_rows,
        rec.input_rows,
        100.0 * v.quarantined_fraction,
        100.0 * v.max_quarantine_fraction
    );

    // reconciliation
    let _ = write!(
        s,
        "<section id=\"reconciliation\"><h2>Reconciliation</h2>\n<table><tr><th>input rows</th>\
         <th>clean rows</th><th>quarantined rows</th><th>invalid rows</th>\
         <th>duplicate rows removed</th><th>balanced</th></tr>\n<tr>"
    );
    num(&mut s, rec.input_rows);
    num(&mut s, rec.clean_rows);
    num(&mut s, rec.quarantined_rows);
    num(&mut s, rec.invalid_rows);
    num(&mut s, rec.duplicate_rows);
    cell(&mut s, if rec.balanced { "yes" } else { "NO" });
    s.push_str("</tr></table>\n");
    if let Some(inv) = &report.invalid {
        let _ = writeln!(
            s,
            "<section id=\"invalid\"><h2>Invalid rows</h2>\n<p><code>--invalid-rows {}</code>: \
             {} rows could not be read; they are in the quarantine output unchanged, and no \
             detector saw them. They count towards the gate.</p>",
            escape(inv.policy),
            inv.rows
        );
        if !inv.reasons.is_empty() {
            s.push_str(
                "<table><tr><th>reason</th><th>rows</th><th>first rows (0-based)</th>\
                 <th>first problem</th></tr>\n",
            );
            for (reason, r) in &inv.reasons {
                s.push_str("<tr>");
                cell(&mut s, reason);
                num(&mut s, r.rows);
                let first: Vec<String> = r
                    .first
                    .iter()
                    .map(|e| format!("{} ({})", e.row, e.at))
                    .collect();
                cell(&mut s, &first.join(", "));
                cell(&mut s, r.first.first().map_or("", |e| e.message.as_str()));
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
        s.push_str("</section>\n");
    }
    match &report.dedup {
        Some(d) => {
            let _ = writeln!(
                s,
                "<p><code>--dedup {}</code>: {} plain redundant rows (same normalised {} as a row \
                 kept in the clean output) moved to the duplicates output, from {} \
                 clusters. Redundancy is not poison and does not count towards the gate.{}</p>",
                escape(d.mode),
                d.removed_rows,
                escape(&d.key.join(", ")),
                d.clusters_with_removals,
                d.note
                    .as_ref()
                    .map(|n| format!(" Note: {}.", escape(n)))
                    .unwrap_or_default()
            );
        }
        None => s.push_str(
            "<p>Duplicates kept (<code>--dedup none</code>): plain redundancy is reported by \
             DUP001/DUP003, not removed.</p>\n",
        ),
    }
    s.push_str("</section>\n");

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
        "</table>\n<p>Settings digest: <span class=\"digest\">{}</span>; seed {}.</p>\n\
         <p>Beside this page: the bill of materials <a href=\"{}\">{}</a> (CycloneDX {}) and \
         the in-toto statement <a href=\"{}\">{}</a>, which lists every file by SHA-256.</p>\
         </section>\n",
        escape(&report.settings_digest),
        escape(
            &report
                .settings
                .get("seed")
                .map(Value::to_string)
                .unwrap_or_default()
        ),
        crate::bom::FILE_NAME,
        crate::bom::FILE_NAME,
        crate::bom::SPEC_VERSION,
        crate::provenance::FILE_NAME,
        crate::provenance::FILE_NAME,
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

    // TRIG001 findings, and the candidates it abstained on
    let trig = report.detectors.iter().find(|d| d.code == "TRIG001");
    if let Some(rows) = trig.and_then(|d| trigger_rows(&d.summary)) {
        let _ = write!(
            s,
            "<section id=\"triggers\"><h2>TRIG001 trigger findings</h2>\n<table><tr>\
             <th>trigger</th><th>target</th><th>support</th><th>purity</th><th>score</th>\
             <th>natural carriers not flagged</th><th>lone carriers not flagged</th>\
             <th>rows with its group's other words, flagged</th><th>example rows</th></tr>\n{}</table>\n",
            if rows.is_empty() {
                "<tr><td colspan=\"9\">no trigger found</td></tr>\n".to_string()
            } else {
                rows
            }
        );
        let abstained = trig
            .map(|d| abstention_rows(&d.summary))
            .unwrap_or_default();
        if !abstained.is_empty() {
            let _ = write!(
                s,
                "<h3 id=\"abstentions\">Candidates not named, and why</h3>\n<p>Windows that \
                 passed the trigger tests but do not behave like a planted trigger, so no row \
                 was flagged for them: natural label cues, openings and endings of the \
                 domain.</p>\n<table><tr><th>window</th><th>target</th><th>support</th>\
                 <th>purity</th><th>why it was not named</th></tr>\n{abstained}</table>\n"
            );
        }
        s.push_str("</section>\n");
    }

    // SPEC001 score distributions
    if let Some(figs) = report
        .detectors
        .iter()
        .find(|d| d.code == "SPEC001")
        .and_then(|d| spectral_figures(&d.summary))
    {
        let _ = write!(
            s,
            "<section id=\"spectral\"><h2>SPEC001 score distributions per class</h2>\n<p>Robust \
             z of each row along its class's top direction (clipped to -10…20). Solid line: the \
             flagging cut (only in a class that split; red bars are at or beyond it). Dashed \
             line: the Bonferroni z.</p>\n<div class=\"hists\">\n{figs}</div></section>\n"
        );
    }

    // ACT001 and SPEC002 per-class decisions
    for (code, title, columns) in [
        (
            "ACT001",
            "ACT001 activation clustering per class",
            ACT001_COLUMNS,
        ),
        (
            "SPEC002",
            "SPEC002 robust spectral per class",
            SPEC002_COLUMNS,
        ),
    ] {
        let Some(d) = report.detectors.iter().find(|d| d.code == code) else {
            continue;
        };
        if let Some(table) = class_table(&d.summary, columns) {
            let target = match d.summary.get("targeted_class") {
                Some(Value::String(t)) => format!("<p>Targeted class: {}</p>\n", escape(t)),
                _ => String::new(),
            };
            let _ = write!(
                s,
                "<section id=\"{}\"><h2>{title}</h2>\n{target}{table}</section>\n",
                code.to_lowercase()
            );
        }
    }

    // duplicate clusters
    let dups: Vec<_> = report
        .detectors
        .iter()
        .filter(|d| matches!(d.code, "DUP001" | "DUP002" | "DUP003"))
        .collect();
    if !dups.is_empty() {
        s.push_str(
            "<section id=\"duplicates\"><h2>Duplicate and label-conflict clusters</h2>\n<ul>\n",
        );
        let mut rows = String::new();
        for d in &dups {
            let (total, listed, r) = duplicate_rows(d.code, &d.summary, excerpts);
            let what = if d.code == "DUP003" {
                "amplified clusters"
            } else {
                "clusters with conflicting labels"
            };
            let _ = writeln!(
                s,
                "<li><code>{}</code>: {total} {what}{}</li>",
                escape(d.code),
                if listed as u64 == total {
                    String::new()
                } else {
                    format!(" ({listed} listed)")
                }
            );
            rows.push_str(&r);
        }
        s.push_str("</ul>\n");
        if !rows.is_empty() {
            let _ = write!(
                s,
                "<table><tr><th>detector</th><th>size</th><th>distinct texts</th>\
                 <th>labels</th><th>member rows</th></tr>\n{rows}</table>\n"
            );
        }
        s.push_str("</section>\n");
    }

    if let Some(section) = reference_section(report) {
        s.push_str(&section);
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
    fn trig001_abstentions_are_listed_with_their_reason_escaped() {
        let summary = serde_json::json!({
            "triggers": [],
            "near_misses": [
                {"phrase": "<s> new york - stocks", "target": "World", "support": 5,
                 "purity": 1.0, "abstained": "continues only 0.06 <of> the rows"},
                {"phrase": "and", "target": "1", "support": 900, "purity": 0.6,
                 "abstained": null},
            ]
        });
        let rows = abstention_rows(&summary);
        assert_eq!(rows.matches("<tr>").count(), 1, "{rows}");
        assert!(
            rows.contains("<code>&lt;s&gt; new york - stocks</code>"),
            "{rows}"
        );
        assert!(
            rows.contains("continues only 0.06 &lt;of&gt; the rows"),
            "{rows}"
        );
        assert_eq!(abstention_rows(&serde_json::json!({})), "");
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn html_fixed_is_deterministic_and_has_no_negative_zero() {
        assert_eq!(fixed(-0.0001, 2), "0.00");
        assert_eq!(fixed(-1.005, 1), "-1.0");
        assert_eq!(fixed(1.23456, 2), "1.23");
        assert_eq!(fixed(f64::NAN, 2), "-");
        assert_eq!(fixed(f64::INFINITY, 2), "-");
    }

    #[test]
    fn html_histogram_svg_marks_cut_and_bonferroni() {
        let counts = [5, 40, 12, 0, 2, 3];
        let svg = z_histogram_svg(&counts, -2.0, 4.0, Some(2.5), Some(4.9), "a <b>");
        assert!(svg.starts_with("<svg class=\"hist\""), "{svg}");
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("cut z = 2.50"), "{svg}");
        assert!(svg.contains("Bonferroni z = 4.90"), "{svg}");
        assert!(svg.contains("stroke-dasharray"));
        assert!(svg.contains("aria-label=\"a &lt;b&gt;\""));
        // five non-empty bins plus the plot background; bins beyond the cut are red
        assert_eq!(svg.matches("<rect").count(), 6);
        assert_eq!(svg.matches("#c62828").count(), 1);
        // the axis is widened to show the Bonferroni line
        assert!(svg.contains(">4.9</text>"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(
            svg,
            z_histogram_svg(&counts, -2.0, 4.0, Some(2.5), Some(4.9), "a <b>")
        );
        // no cut: only the dashed line
        let no_cut = z_histogram_svg(&counts, -2.0, 4.0, None, Some(3.0), "x");
        assert!(!no_cut.contains("cut z") && no_cut.contains("Bonferroni z = 3.00"));
        assert!(z_histogram_svg(&[], 0.0, 1.0, None, None, "x").is_empty());
    }

    #[test]
    fn html_duplicate_rows_escape_labels_and_mark_truncation() {
        let summary = serde_json::json!({
            "conflicting_clusters": 3,
            "conflicts": [{"rows": [1, 7], "size": 4, "labels": "<b>x2,'y'x2", "distinct_texts": 1}],
        });
        let mut ex = BTreeMap::new();
        ex.insert(7, "<script>".to_string());
        let (total, listed, rows) = duplicate_rows("DUP001", &summary, &ex);
        assert_eq!((total, listed), (3, 1));
        assert!(rows.contains("&lt;b&gt;x2,&#39;y&#39;x2"), "{rows}");
        assert!(rows.contains("1, 7, …"), "{rows}");
        assert!(rows.contains("row 7: &lt;script&gt;"), "{rows}");
        assert!(!rows.contains("<script") && !rows.contains("<b>"));
    }

    #[test]
    fn html_class_table_formats_numbers_escapes_text_and_shows_skips() {
        let summary = serde_json::json!({"classes": [
            {"class": "<b>", "rows": 10, "skipped": "too few rows & <small>"},
            {"class": "1", "rows": 3610, "minor_share": 0.1861, "silhouette": 0.2, "null_silhouette": 0.1,
             "silhouette_ratio": 2.0, "decision": "split: a<b", "flagged": 670}
        ]});
        let t = class_table(&summary, ACT001_COLUMNS).unwrap();
        assert!(t.contains("<td>&lt;b&gt;</td>"), "{t}");
        assert!(t.contains("<td colspan=\"6\">skipped: too few rows &amp; &lt;small&gt;</td>"));
        assert!(t.contains("<td class=\"num\">0.186</td>"));
        assert!(t.contains("<td class=\"num\">670</td>"));
        assert!(t.contains("<td>split: a&lt;b</td>"));
        assert!(class_table(&serde_json::json!({}), ACT001_COLUMNS).is_none());
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
