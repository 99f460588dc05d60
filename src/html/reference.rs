//! report.html's section for a scan with `--reference`: the batch against the trusted corpus.

use super::{cell, code_cell, escape, fixed, num, text_of};
use crate::report::Report;
use serde_json::Value;
use std::fmt::Write as _;

/// `scan --reference`: the batch's label shares against the trusted corpus's, REF001's conflicts
/// with trusted rows, REF002's amplified clusters, REF003's surging windows and the triggers
/// TRIG001 withdrew.
pub(super) fn reference_section(report: &Report) -> Option<String> {
    let find = |code: &str| report.detectors.iter().find(|d| d.code == code);
    let (r1, r2, r3) = (find("REF001"), find("REF002"), find("REF003"));
    if r1.is_none() && r2.is_none() && r3.is_none() {
        return None;
    }
    let mut s = String::from("<section id=\"reference\"><h2>Against the trusted corpus</h2>\n");
    let list = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(d) = r1 {
        let sm = &d.summary;
        let _ = writeln!(
            s,
            "<p>{} trusted rows ({} distinct texts); {} new rows, {} with a trusted copy; \
             REF001: {} exact and {} near copies under a label the trusted corpus never gives them.</p>",
            text_of(sm.get("trusted_rows")),
            text_of(sm.get("trusted_texts")),
            text_of(sm.get("new_rows")),
            text_of(sm.get("new_rows_with_trusted_copy")),
            text_of(sm.get("exact_conflicts")),
            text_of(sm.get("near_conflicts")),
        );
        let drift = sm.get("label_drift").cloned().unwrap_or(Value::Null);
        let labels = list(&drift, "labels");
        if !labels.is_empty() {
            s.push_str(
                "<table><tr><th>label</th><th>trusted share</th><th>new share</th>\
                 <th>new rows</th><th>p (two-sided)</th></tr>\n",
            );
            for l in &labels {
                let f = |k: &str| l.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                s.push_str("<tr>");
                cell(&mut s, &text_of(l.get("label")));
                num(&mut s, fixed(f("trusted_share"), 3));
                num(&mut s, fixed(f("new_share"), 3));
                num(&mut s, text_of(l.get("new_rows")));
                num(&mut s, format!("{:.2e}", f("p_value")));
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
        let conflicts = list(sm, "conflicts");
        if !conflicts.is_empty() {
            s.push_str(
                "<table><tr><th>row</th><th>trusted row</th><th>measure</th><th>similarity</th>\
                 <th>label</th><th>trusted labels</th></tr>\n",
            );
            for c in &conflicts {
                s.push_str("<tr>");
                num(&mut s, text_of(c.get("row")));
                num(&mut s, text_of(c.get("trusted_row")));
                code_cell(&mut s, &text_of(c.get("measure")));
                num(
                    &mut s,
                    fixed(
                        c.get("similarity").and_then(Value::as_f64).unwrap_or(0.0),
                        2,
                    ),
                );
                cell(&mut s, &text_of(c.get("label")));
                cell(&mut s, &text_of(c.get("trusted_counts")));
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
    }
    if let Some(d) = r2 {
        let clusters = list(&d.summary, "amplified");
        let _ = writeln!(
            s,
            "<p>REF002: {} of {} clusters holding a new row copied beyond the trusted corpus's rate \
             (new share {}).</p>",
            text_of(d.summary.get("amplified_clusters")),
            text_of(d.summary.get("clusters_tested")),
            fixed(d.summary.get("new_share").and_then(Value::as_f64).unwrap_or(0.0), 3),
        );
        if !clusters.is_empty() {
            s.push_str(
                "<table><tr><th>trusted row</th><th>rows</th><th>trusted</th><th>new</th>\
                 <th>expected new</th><th>p</th></tr>\n",
            );
            for c in &clusters {
                s.push_str("<tr>");
                num(&mut s, text_of(c.get("trusted_row")));
                num(&mut s, text_of(c.get("cluster_rows")));
                num(&mut s, text_of(c.get("trusted")));
                num(&mut s, text_of(c.get("new")));
                num(
                    &mut s,
                    fixed(
                        c.get("expected_new").and_then(Value::as_f64).unwrap_or(0.0),
                        2,
                    ),
                );
                num(
                    &mut s,
                    format!(
                        "{:.2e}",
                        c.get("p_value").and_then(Value::as_f64).unwrap_or(1.0)
                    ),
                );
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
    }
    if let Some(d) = r3 {
        let windows = list(&d.summary, "windows");
        let _ = writeln!(
            s,
            "<p>REF003: {} word windows of {} whose rows of one label surge beyond the trusted \
             rate.</p>",
            windows.len(),
            text_of(d.summary.get("candidates")),
        );
        if !windows.is_empty() {
            s.push_str(
                "<table><tr><th>window</th><th>label</th><th>rows flagged</th>\
                 <th>new (label / all)</th><th>trusted (label / all)</th><th>surplus</th>\
                 <th>p</th></tr>\n",
            );
            for w in &windows {
                let f = |k: &str| w.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                s.push_str("<tr>");
                code_cell(&mut s, &text_of(w.get("window")));
                cell(&mut s, &text_of(w.get("label")));
                num(&mut s, text_of(w.get("rows_flagged")));
                num(
                    &mut s,
                    format!(
                        "{} / {}",
                        text_of(w.get("new_label_rows")),
                        text_of(w.get("new_rows"))
                    ),
                );
                num(
                    &mut s,
                    format!(
                        "{} / {}",
                        text_of(w.get("trusted_label_rows")),
                        text_of(w.get("trusted_rows"))
                    ),
                );
                num(&mut s, fixed(f("surplus_share"), 2));
                num(&mut s, format!("{:.2e}", f("p_value")));
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
    }
    if let Some(t) = find("TRIG001") {
        let withdrawn = list(&t.summary, "explained_by_reference");
        if !withdrawn.is_empty() {
            let names: Vec<String> = withdrawn
                .iter()
                .map(|w| format!("<code>{}</code>", escape(&text_of(w.get("trigger")))))
                .collect();
            let _ = writeln!(
                s,
                "<p>TRIG001 withdrew {} whose label association the trusted corpus already holds.</p>",
                names.join(", ")
            );
        }
    }
    s.push_str("</section>\n");
    Some(s)
}
