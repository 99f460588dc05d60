//! The grid's tables: `results.csv` and `results.md`.

use super::{EvalResults, EvalRow};

/// A rate as a percentage without float noise: 0.005 -> `0.5`, 0.1 -> `10`.
pub(super) fn percent(rate: f64) -> String {
    let s = format!("{:.4}", rate * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// CSV header of [`csv`].
pub const CSV_HEADER: &str = "dataset,attack,rate,seed,target_label,position,edits,data,data_sha256,rows,poisoned,representation,setting,detector,flagged,flagged_fraction,tp,fp,fn,clean_flagged_fraction,precision,recall,f1,auroc,seconds,reconciled";

fn csv_field(s: &str) -> String {
    crate::escape::csv_field(s).into_owned()
}

/// A data-derived Markdown table cell (see [`crate::escape::markdown_cell`]).
fn md(s: &str) -> String {
    crate::escape::markdown_cell(s).into_owned()
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
        let (dataset, attack, repr, setting, detector) =
            (md(dataset), md(attack), md(repr), md(setting), md(detector));
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
            md(&targets(rows)),
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
            md(&row.dataset),
            md(&row.attack),
            row.rate.map_or("-".to_string(), |x| format!("{} %", percent(x))),
            row.seed.map_or("-".to_string(), |x| x.to_string()),
            md(row.target_label.as_deref().unwrap_or("-")),
            row.rows,
            row.poisoned,
            md(&row.representation),
            md(&row.setting),
            md(&row.detector),
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
                md(&k.dataset),
                md(&k.attack),
                md(&k.setting),
                md(&k.reason)
            );
            if seen.insert(line.clone()) {
                s += &line;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Skipped;
    use poisongate_detectors::metrics::Evaluation;

    const HOSTILE: &str = "pos|itive\n| x | y |\u{1b}[31m<b>&";

    fn row(seed: u64) -> EvalRow {
        EvalRow {
            dataset: "data\u{1b}[2J|set".into(),
            attack: "badnets".into(),
            rate: Some(0.01),
            seed: Some(seed),
            target_label: Some(HOSTILE.into()),
            position: None,
            edits: 0,
            data: "a,\"b\"\n.jsonl".into(),
            data_sha256: "00".into(),
            rows: 10,
            poisoned: 1,
            representation: "text".into(),
            setting: "s|1".into(),
            detector: "TRIG001".into(),
            eval: Evaluation {
                flagged: 1,
                tp: 1,
                fp: 0,
                fn_: 0,
                precision: 1.0,
                recall: 1.0,
                f1: 1.0,
                auroc: None,
            },
            seconds: 0.5,
            reconciled: true,
        }
    }

    fn results() -> EvalResults {
        EvalResults {
            rows: vec![row(0), row(1)],
            skipped: vec![Skipped {
                dataset: "d\nx".into(),
                attack: "a|b".into(),
                setting: "s".into(),
                reason: "why\u{1b}[0m".into(),
            }],
        }
    }

    /// Split a Markdown table row into cells at unescaped pipes.
    fn cells(line: &str) -> usize {
        let b = line.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\'))
            .count()
            .saturating_sub(1)
    }

    #[test]
    fn markdown_cells_from_data_cannot_break_rows_or_reach_a_terminal_raw() {
        let md = markdown(&results(), "t");
        assert!(!md.contains('\u{1b}'), "{md}");
        assert!(!md.contains("<b>"));
        assert!(md.contains("pos\\|itive\\n\\| x \\| y \\|\\x1b[31m&lt;b&gt;&amp;"));
        // every table line keeps its header's number of cells
        for table in md.split("\n\n").filter(|t| t.starts_with('|')) {
            let lines: Vec<&str> = table.lines().collect();
            let want = cells(lines[0]);
            for l in &lines {
                assert_eq!(cells(l), want, "{l}");
            }
        }
        assert!(md.contains("- d\\nx / a\\|b / s: why\\x1b[0m\n"));
    }

    #[test]
    fn csv_fields_from_data_are_quoted_and_escaped() {
        let text = csv(&results());
        assert!(!text.contains('\u{1b}'));
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.starts_with("data\\x1b[2J|set,badnets,0.01,0,\"pos|itive"),
            "{line}"
        );
        // a minimal RFC 4180 reader finds every row with the header's field count
        let header_fields = CSV_HEADER.split(',').count();
        let (mut fields, mut rows, mut quoted, mut prev) = (1, 0, false, '\0');
        for c in text.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields += 1,
                '\n' if !quoted => {
                    assert_eq!(fields, header_fields, "row {rows}");
                    rows += 1;
                    fields = 1;
                }
                _ => {}
            }
            prev = c;
        }
        assert_eq!((rows, quoted, prev), (3, false, '\n'));
    }
}
