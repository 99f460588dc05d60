//! Which rows an attack poisons and how: counts, draws and the plan of output rows.

use super::*;

/// Labels as `scan` sees them: the sorted distinct values (integers numerically).
pub(super) fn label_values(labels: &[String], kind: Option<LabelKind>) -> Vec<String> {
    let mut names: Vec<String> = labels.to_vec();
    names.sort();
    names.dedup();
    if kind == Some(LabelKind::Integer) {
        names.sort_by_key(|s| s.parse::<i128>().unwrap_or(0));
    }
    names
}

/// `k` distinct items of `pool`, uniformly, in increasing order (partial Fisher–Yates).
pub(super) fn draw(pool: &[usize], k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut v = pool.to_vec();
    for i in 0..k.min(v.len()) {
        let j = i + rng.below(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(k);
    v.sort_unstable();
    v
}

/// Copies an attack may add per input row, at most (see [`MIN_COPIES_ALLOWED`]).
const MAX_COPIES_PER_ROW: usize = 100;
/// Copies an attack may always add, however small its input.
const MIN_COPIES_ALLOWED: usize = 1_000_000;

pub(super) fn round_count(x: f64) -> usize {
    // rates are in [0, 1) and n a row count, so this is a small non-negative number
    x.round().max(0.0) as usize
}

/// The rows poisoned for a rate over `n` input rows.
pub(super) fn poisoned_count(attack: &Attack, rate: f64, n: usize) -> usize {
    match attack {
        Attack::DuplicateFlip | Attack::Amplify => round_count(rate * n as f64 / (1.0 - rate)),
        _ => round_count(rate * n as f64),
    }
}

pub(super) fn rate_definition(attack: &Attack) -> &'static str {
    match attack {
        Attack::DuplicateFlip => {
            "k = round(rate * n / (1 - rate)) flipped copies are added to the n input rows, so k / (n + k) ~ rate"
        }
        Attack::Amplify => {
            "k = round(rate * n / (1 - rate)) copies of one row are added to the n input rows, so k / (n + k) ~ rate"
        }
        _ => "k = round(rate * n) of the n rows are poisoned in place; the output has n rows",
    }
}

/// The output rows, the sorted label values and the target's index among them.
pub(super) type Plan = (Vec<OutRow>, Vec<String>, Option<usize>);

/// Build the per-row plan: the output rows, the sorted label values and the target's index.
/// The first `emitted` rows of `table` are the data; the rows after them, when there are any,
/// come from `--copies-from` and are only the sources of copies.
pub(super) fn plan(
    opts: &InjectOptions,
    table: &Table,
    existing_truth: Option<&[bool]>,
    emitted: usize,
) -> Result<Plan, InjectError> {
    let n = table.n_rows;
    let source_start = if emitted < n { emitted } else { 0 };
    let labels = table.labels.as_deref().unwrap_or_default();
    let texts = table.texts.as_deref().unwrap_or_default();
    let values = label_values(labels, table.label_kind);
    let index: BTreeMap<&str, usize> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    let row_label: Vec<usize> = labels
        .iter()
        .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
        .collect();
    let target = match &opts.target_label {
        None if opts.random_target => {
            if values.is_empty() {
                return Err(InjectError::Config(
                    "a random target needs labels in the data".into(),
                ));
            }
            Some(SplitMix64(opts.seed ^ TARGET_SALT).below(values.len()))
        }
        Some(t) => Some(
            *index
                .get(t.as_str())
                .ok_or_else(|| InjectError::UnknownLabel {
                    path: opts.data.clone(),
                    label: t.clone(),
                    available: values.clone(),
                })?,
        ),
        None => None,
    };
    if opts.attack.needs_target() && target.is_none() {
        return Err(InjectError::Config(format!(
            "attack `{}` needs --target-label",
            opts.attack.name()
        )));
    }
    if target.is_none() && values.len() < 2 && opts.attack != Attack::Amplify {
        return Err(InjectError::Config(
            "flipping a label needs at least two label values in the data".into(),
        ));
    }
    let (mut eligible, mut rule): (Vec<usize>, &'static str) = match (&opts.attack, target) {
        (Attack::CleanLabel { .. }, Some(t)) => (
            (source_start..n).filter(|&i| row_label[i] == t).collect(),
            "rows with the target label",
        ),
        (_, Some(t)) => (
            (source_start..n).filter(|&i| row_label[i] != t).collect(),
            "rows whose label is not the target",
        ),
        (_, None) => ((source_start..n).collect(), "all rows"),
    };
    let min_words = EDIT_WORDS_PER_EDIT * opts.edits;
    let vocab: Vec<String> = if opts.edits > 0 {
        let words = |i: usize| texts.get(i).map_or(0, |t| t.split_whitespace().count());
        eligible.retain(|&i| words(i) >= min_words);
        rule = if target.is_some() {
            "rows whose label is not the target, with at least 5 words per edit"
        } else {
            "rows with at least 5 words per edit"
        };
        let set: std::collections::BTreeSet<&str> =
            texts.iter().flat_map(|t| t.split_whitespace()).collect();
        if set.len() < 2 {
            return Err(InjectError::Config(
                "edits need at least two distinct words in the data".into(),
            ));
        }
        set.into_iter().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    let k = opts
        .count
        .unwrap_or_else(|| poisoned_count(&opts.attack, opts.rate, emitted));
    // copies are held in memory before they are written: a hundred times the input (a rate
    // of 0.99), or a million, at most
    let most = emitted
        .saturating_mul(MAX_COPIES_PER_ROW)
        .max(MIN_COPIES_ALLOWED);
    if opts.attack.adds_copies() && k > most {
        return Err(InjectError::Config(format!(
            "{}: {} would add {k} copies to {emitted} rows; at most {most} (a hundred times \
             the rows, or a million)",
            opts.data.display(),
            match opts.count {
                Some(_) => "--count".to_string(),
                None => format!("rate {}", opts.rate),
            }
        )));
    }
    let needed = if opts.attack == Attack::Amplify {
        k.min(1)
    } else {
        k
    };
    if needed > eligible.len() {
        return Err(InjectError::TooFewRows {
            path: opts.data.clone(),
            attack: opts.attack.name(),
            rate: opts.rate,
            needed,
            eligible: eligible.len(),
            rule,
        });
    }
    let mut rng = SplitMix64(opts.seed);
    let chosen = draw(&eligible, needed, &mut rng);
    let old = |i: usize| existing_truth.is_some_and(|t| t[i]);
    let mut rows: Vec<OutRow> = (0..emitted)
        .map(|i| OutRow {
            src: i,
            text: None,
            label: None,
            id_suffix: None,
            cells: Vec::new(),
            truth: old(i),
            poisoned: false,
        })
        .collect();
    let flipped = |i: usize, rng: &mut SplitMix64| match target {
        Some(t) => t,
        None => {
            // uniformly one of the other classes
            let j = rng.below(values.len() - 1);
            if j >= row_label[i] {
                j + 1
            } else {
                j
            }
        }
    };
    match &opts.attack {
        Attack::Badnets {
            triggers,
            triggers_per_row,
        }
        | Attack::CleanLabel {
            triggers,
            triggers_per_row,
        } => {
            let relabel = matches!(opts.attack, Attack::Badnets { .. });
            for &i in &chosen {
                let mut t = texts.get(i).cloned().unwrap_or_default();
                for _ in 0..*triggers_per_row {
                    let w = &triggers[rng.below(triggers.len())];
                    t = insert_word(&t, w, opts.position, &mut rng);
                }
                let r = &mut rows[i];
                r.text = Some(t);
                r.label = if relabel { target } else { None };
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::Addsent { phrase } => {
            for &i in &chosen {
                let t = texts.get(i).cloned().unwrap_or_default();
                let r = &mut rows[i];
                r.text = Some(insert_word(&t, phrase, opts.position, &mut rng));
                r.label = target;
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::LabelFlip => {
            for &i in &chosen {
                let l = flipped(i, &mut rng);
                let r = &mut rows[i];
                r.label = Some(l);
                r.truth = true;
                r.poisoned = true;
            }
        }
        Attack::DuplicateFlip | Attack::Amplify => {
            let amplify = opts.attack == Attack::Amplify;
            // amplify copies one row k times; duplicate-flip each chosen row once
            let sources: Vec<usize> = if amplify {
                chosen.first().map_or_else(Vec::new, |&s| vec![s; k])
            } else {
                chosen.clone()
            };
            // each copy goes before original row `slot` (slot `emitted`: at the end)
            let mut copies: Vec<(usize, usize, OutRow)> = Vec::with_capacity(sources.len());
            for (c, &i) in sources.iter().enumerate() {
                let l = if amplify {
                    target
                } else {
                    Some(flipped(i, &mut rng))
                };
                let slot = rng.below(emitted + 1);
                let text = if opts.edits > 0 {
                    let t = texts.get(i).map_or("", String::as_str);
                    Some(
                        replace_words(t, opts.edits, &vocab, &mut rng).ok_or_else(|| {
                            InjectError::Config(format!(
                                "row {} has fewer than {} words to edit",
                                i + 1,
                                opts.edits
                            ))
                        })?,
                    )
                } else {
                    None
                };
                copies.push((
                    slot,
                    c,
                    OutRow {
                        src: i,
                        text,
                        label: l,
                        id_suffix: Some(if amplify {
                            format!("~amplify{c}")
                        } else {
                            format!("~dupflip{c}")
                        }),
                        cells: Vec::new(),
                        truth: true,
                        poisoned: true,
                    },
                ));
            }
            copies.sort_by_key(|&(slot, c, _)| (slot, c));
            let mut out = Vec::with_capacity(emitted + copies.len());
            let mut it = copies.into_iter().peekable();
            for (i, r) in rows.into_iter().enumerate() {
                while let Some((_, _, c)) = it.next_if(|(slot, _, _)| *slot <= i) {
                    out.push(c);
                }
                out.push(r);
            }
            out.extend(it.map(|(_, _, c)| c));
            rows = out;
        }
        Attack::InstructionTrigger { .. } | Attack::PreferenceFlip { .. } => {
            return Err(InjectError::Config(format!(
                "{} poisons instruction rows, not text-label rows",
                opts.attack.name()
            )))
        }
    }
    Ok((rows, values, target))
}
