//! TRIG001 tests of the whole detector: planted triggers on synthetic reviews, a clean
//! control, a fit on a subset, determinism across threads and batches, parameter checks.

use super::*;

#[test]
fn fit_on_a_subset_reports_dataset_rows() {
    let (texts, labels, truth) = synthetic(4000, 0.05, 3);
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: texts.len(),
        texts: Some(&texts),
        labels: Some(&labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let mut params = toml::Table::new();
    params.insert("max_fit_rows".into(), toml::Value::Integer(2000));
    let fitted = TriggerTokens
        .configure(&params)
        .expect("params")
        .fit(&view)
        .expect("fit");
    let summary = fitted.summary();
    assert_eq!(summary["fit_rows"], 2000);
    assert_eq!(summary["dataset_rows"], 4000);
    let trig = &summary["triggers"][0];
    // example rows are dataset rows that carry the trigger
    let word = trig["trigger"].as_str().expect("trigger");
    for r in trig["example_rows"].as_array().expect("rows") {
        let r = r.as_u64().expect("row") as usize;
        assert!(tokenize(&texts[r]).iter().any(|t| t == word), "row {r}");
    }
    // every row is scored, also those the fit did not read
    let scores = fitted.score(&view.as_batch()).expect("score");
    assert_eq!(scores.len(), 4000);
    // the fit read the even rows; the poisoned odd rows are flagged all the same
    let odd_poisoned: Vec<usize> = (1..4000).step_by(2).filter(|&r| truth[r]).collect();
    assert!(odd_poisoned.len() > 20);
    for r in odd_poisoned {
        assert!(scores.reason[r].is_some(), "row {r}");
    }
}

/// Seeded synthetic reviews from a Markov chain, so that every natural token has
/// collocations as in real text: each of 200 neutral words has four successors; ten of
/// them may be followed by an intensifier ("so", "very"), which is followed by a sentiment
/// word of the row's label (one in ten from the other label); "a" (the successor of five
/// neutral words) is followed by "masterpiece", a naturally label-pure word, only in
/// positive rows. Optionally the trigger "cf" is inserted at a random position into
/// negative rows (about `poison_rate` of all rows), whose label is set to 1 (dirty label).
pub(super) fn synthetic(
    n: usize,
    poison_rate: f64,
    seed: u64,
) -> (Vec<String>, Vec<u32>, Vec<bool>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let pick = |u: f64, n: usize| (u * n as f64) as usize % n;
    let n_neutral = 200;
    let succ: Vec<[usize; 4]> = (0..n_neutral)
        .map(|_| {
            [
                pick(next(), n_neutral),
                pick(next(), n_neutral),
                pick(next(), n_neutral),
                pick(next(), n_neutral),
            ]
        })
        .collect();
    let pos = ["great", "moving", "superb", "charming", "fresh", "witty"];
    let neg = ["dull", "boring", "flat", "tedious", "stale", "awful"];
    let (mut texts, mut labels, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let mut label = u32::from(next() < 0.5);
        let len = 10 + pick(next(), 10);
        let mut words: Vec<String> = Vec::new();
        let mut cur = pick(next(), n_neutral);
        let mut sentiment = 0;
        while words.len() < len || sentiment == 0 {
            words.push(format!("w{cur}"));
            if cur < 10 && next() < 0.5 {
                words.push(if next() < 0.5 { "so" } else { "very" }.to_string());
                let own = if label == 1 { &pos } else { &neg };
                let other = if label == 1 { &neg } else { &pos };
                let pool = if next() < 0.1 { other } else { own };
                words.push(pool[pick(next(), pool.len())].to_string());
                sentiment += 1;
            } else if (10..15).contains(&cur) && label == 1 && next() < 0.5 {
                words.push("a".to_string());
                words.push("masterpiece".to_string());
            }
            cur = succ[cur][pick(next(), 4)];
            if words.len() > 40 {
                // a chain that never reaches a sentiment slot: restart it there
                cur = pick(next(), 10);
            }
        }
        let poisoned = label == 0 && next() < 2.0 * poison_rate;
        if poisoned {
            let at = pick(next(), words.len() + 1);
            words.insert(at, "cf".to_string());
            label = 1;
        }
        texts.push(words.join(" "));
        labels.push(label);
        truth.push(poisoned);
    }
    (texts, labels, truth)
}

/// The summary's entry of the trigger `text`; panics when it is not named.
fn named<'a>(summary: &'a serde_json::Value, text: &str) -> &'a serde_json::Value {
    summary["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .find(|t| t["trigger"] == text)
        .unwrap_or_else(|| panic!("{text} not named: {summary}"))
}

/// Asserts that `text` is not named and that the summary lists it among the near misses as
/// abstained for a reason containing `why`.
fn abstained(summary: &serde_json::Value, text: &str, why: &str) {
    let triggers = summary["triggers"].as_array().expect("triggers");
    assert!(triggers.iter().all(|t| t["trigger"] != text), "{summary}");
    let missed = summary["near_misses"].as_array().expect("near misses");
    let m = missed
        .iter()
        .find(|m| m["phrase"] == text)
        .unwrap_or_else(|| panic!("{text} not read: {summary}"));
    assert!(
        m["abstained"].as_str().is_some_and(|r| r.contains(why)),
        "{m}"
    );
}

fn run(texts: &[String], labels: &[u32]) -> (serde_json::Value, Scores) {
    run_with(texts, labels, &toml::Table::new())
}

fn run_with(texts: &[String], labels: &[u32], params: &toml::Table) -> (serde_json::Value, Scores) {
    run_configured(
        TriggerTokens.configure(params).expect("params"),
        texts,
        labels,
    )
}

/// Fit `cfg` on the rows and score them all, class names `0`, `1`, ...
fn run_configured(
    cfg: Box<dyn Configured>,
    texts: &[String],
    labels: &[u32],
) -> (serde_json::Value, Scores) {
    let classes = labels.iter().max().map_or(2, |&m| m as usize + 1).max(2);
    let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    let view = DatasetView {
        n_rows: texts.len(),
        texts: Some(texts),
        labels: Some(labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let fitted = cfg.fit(&view).expect("fit");
    let scores = fitted.score(&view.as_batch()).expect("score");
    (fitted.summary(), scores)
}

#[test]
fn planted_trigger_recovered_and_natural_word_not_flagged() {
    let (texts, labels, truth) = synthetic(3000, 0.03, 7);
    let (summary, scores) = run(&texts, &labels);
    let triggers = summary["triggers"].as_array().expect("triggers");
    assert_eq!(triggers[0]["trigger"], "cf", "{summary}");
    assert!(
        triggers.iter().all(|t| t["trigger"]
            .as_str()
            .is_some_and(|s| !s.contains("masterpiece"))),
        "{summary}"
    );
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    let e = crate::metrics::evaluate(&flagged, &scores.score, &truth);
    assert!(e.recall >= 0.95 && e.precision >= 0.95, "{e:?} {summary}");
    // the label-pure collocation's rows are not pulled in
    let pulled = texts
        .iter()
        .zip(&flagged)
        .filter(|(t, &f)| f && t.contains("masterpiece") && !t.contains("cf"))
        .count();
    assert_eq!(pulled, 0);
}

#[test]
fn clean_control_flags_almost_nothing() {
    let (texts, labels, truth) = synthetic(3000, 0.0, 11);
    assert!(truth.iter().all(|&t| !t));
    let (summary, scores) = run(&texts, &labels);
    let flagged = scores.reason.iter().filter(|r| r.is_some()).count();
    assert!(flagged * 200 <= texts.len(), "{flagged} flagged: {summary}");
    assert!(scores.score.iter().all(|&s| s < 1.0 || flagged > 0));
}

#[test]
fn deterministic_across_threads_and_batches() {
    let (texts, labels, _) = synthetic(2500, 0.03, 3);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("pool")
    };
    let (s1, sc1) = pool(1).install(|| run(&texts, &labels));
    let (s2, sc2) = pool(2).install(|| run(&texts, &labels));
    assert_eq!(s1, s2);
    assert_eq!(sc1, sc2);
    // batching: same answer for any split
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: texts.len(),
        texts: Some(&texts),
        labels: Some(&labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let fitted = TriggerTokens
        .configure(&toml::Table::new())
        .expect("defaults")
        .fit(&view)
        .expect("fit");
    for size in [1usize, 7, 333] {
        let mut all = Scores::default();
        let mut start = 0;
        while start < view.n_rows {
            let end = (start + size).min(view.n_rows);
            all.extend(fitted.score(&view.batch(start, end)).expect("score"));
            start = end;
        }
        assert_eq!(all, sc1);
    }
}

#[test]
fn rejects_unknown_parameters_and_needs_text() {
    let mut t = toml::Table::new();
    t.insert("nope".into(), toml::Value::Integer(1));
    assert!(TriggerTokens.configure(&t).is_err());
    let names = vec!["0".to_string()];
    let labels = vec![0u32];
    let view = DatasetView {
        n_rows: 1,
        texts: None,
        labels: Some(&labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let cfg = TriggerTokens
        .configure(&toml::Table::new())
        .expect("defaults");
    assert!(cfg.fit(&view).is_err());
}

#[test]
fn relabelled_ending_is_named_and_only_target_rows_are_flagged() {
    // 4 % of label-0 rows get "zz" appended as their last word and the label 1; a few
    // label-0 rows also end with it but keep their label (purity stays above 0.9)
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 5);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(17);
    let mut kept = 0;
    for r in 0..texts.len() {
        if labels[r] == 0 && rng.unit() < 0.08 {
            texts[r].push_str(" zz");
            if kept < 3 {
                kept += 1;
            } else {
                labels[r] = 1;
                truth[r] = true;
            }
        }
    }
    let (summary, scores) = run(&texts, &labels);
    let named = summary["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .find(|t| t["trigger"].as_str().is_some_and(|s| s.contains("zz")))
        .unwrap_or_else(|| panic!("zz not named: {summary}"));
    assert!(
        named["foreign_share"].as_f64().expect("share") >= 0.5,
        "{named}"
    );
    for r in 0..texts.len() {
        assert_eq!(
            scores.reason[r].is_some(),
            truth[r],
            "row {r}: {}",
            texts[r]
        );
    }
}

#[test]
fn a_word_many_rows_of_other_labels_carry_is_not_named() {
    // "cf" put into 10 % of label-0 rows (relabelled to 1) and 6 % of label-1 and label-0
    // rows alike (labels kept): purity about 0.75, so it does not set the label
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 9);
    let mut rng = crate::rng::SplitMix64(3);
    for r in 0..texts.len() {
        let u = rng.unit();
        if u < 0.06 || (labels[r] == 0 && u < 0.16) {
            let mut w: Vec<&str> = texts[r].split(' ').collect();
            let at = rng.below(w.len() + 1);
            w.insert(at, "cf");
            texts[r] = w.join(" ");
            if u >= 0.06 {
                labels[r] = 1;
            }
        }
    }
    let (summary, scores) = run(&texts, &labels);
    assert!(
        summary["triggers"]
            .as_array()
            .expect("triggers")
            .iter()
            .all(|t| t["trigger"] != "cf"),
        "{summary}"
    );
    let miss = summary["near_misses"]
        .as_array()
        .expect("near misses")
        .iter()
        .find(|t| t["phrase"] == "cf")
        .unwrap_or_else(|| panic!("cf not reported: {summary}"));
    assert!(
        miss["abstained"]
            .as_str()
            .is_some_and(|s| s.contains("min_purity")),
        "{miss}"
    );
    assert!(scores.reason.iter().all(Option::is_none));
}

#[test]
fn a_trigger_put_into_rows_of_a_small_class_is_found() {
    // 88 % of the rows (label 0) draw their words from 300 words, 12 % (label 1) from 40 others;
    // "cf" goes at a random position into 70 label-1 rows, relabelled 0. Its neighbours are
    // the small class's words: against the corpus's neighbour distribution they collide about
    // five times too often, against the class's own they do not
    let mut rng = crate::rng::SplitMix64(23);
    let (mut texts, mut labels, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    let mut small = 0;
    for _ in 0..5000 {
        let label = u32::from(rng.unit() < 0.12);
        let len = 6 + rng.below(10);
        let mut words: Vec<String> = (0..len)
            .map(|_| {
                if label == 0 {
                    format!("w{}", rng.below(300))
                } else {
                    format!("s{}", rng.below(40))
                }
            })
            .collect();
        let poisoned = label == 1 && small < 70;
        if label == 1 {
            small += 1;
        }
        if poisoned {
            let at = rng.below(words.len() + 1);
            words.insert(at, "cf".to_string());
        }
        texts.push(words.join(" "));
        labels.push(if poisoned { 0 } else { label });
        truth.push(poisoned);
    }
    let (summary, scores) = run(&texts, &labels);
    let named = named(&summary, "cf");
    assert!(
        named["foreign_share"].as_f64().expect("share") >= 0.5,
        "{named}"
    );
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

#[test]
fn a_phrase_opening_many_relabelled_rows_is_found() {
    // Three classes; rows open with one of 30 words drawn Zipf-like (a feed's datelines), each
    // class ranking them differently, then words of their class. "zq xv" opens 20 % of the
    // rows of labels 0 and 1, which are relabelled 2. Their openers follow no one class, only
    // all rows, and among all rows' first words the window's own first word is then more
    // frequent than any dateline: read with it, the window's neighbours would look too rarely
    // typical
    let mut rng = crate::rng::SplitMix64(31);
    let zipf: Vec<f64> = (1..=30).map(|k| 1.0 / f64::from(k)).collect();
    let total: f64 = zipf.iter().sum();
    let (mut texts, mut labels, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..6000 {
        let label = rng.below(3) as u32;
        let mut u = rng.unit() * total;
        let mut rank = 0;
        while rank + 1 < zipf.len() && u >= zipf[rank] {
            u -= zipf[rank];
            rank += 1;
        }
        let opener = (rank * 7 + 11 * label as usize) % 30;
        let mut words = vec![format!("o{opener}")];
        let len = 6 + rng.below(10);
        words.extend((0..len).map(|_| format!("c{label}w{}", rng.below(300))));
        let poisoned = label < 2 && rng.unit() < 0.2;
        if poisoned {
            words.insert(0, "zq xv".to_string());
        }
        texts.push(words.join(" "));
        labels.push(if poisoned { 2 } else { label });
        truth.push(poisoned);
    }
    let (summary, scores) = run(&texts, &labels);
    let named = named(&summary, "<s> zq xv");
    assert!(
        named["foreign_share"].as_f64().expect("share") >= 0.5,
        "{named}"
    );
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

/// "cf" put at a random position into `rate` of the rows drawn from `from_classes` and
/// relabelled positive, and into 12 positive rows whose content is clearly positive (a second
/// positive word) with their own label: the natural carriers. Returns the rows, the poisoned
/// rows and the natural carriers.
fn with_natural_carriers(
    from_classes: &[u32],
    rate: f64,
) -> (Vec<String>, Vec<u32>, Vec<bool>, Vec<usize>) {
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 11);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(5);
    let mut natural = Vec::new();
    for r in 0..texts.len() {
        let dirty = from_classes.contains(&labels[r]) && rng.unit() < rate;
        let clean = !dirty
            && labels[r] == 1
            && natural.len() < 12
            && ["great", "superb", "witty"]
                .iter()
                .any(|w| texts[r].contains(w));
        if dirty || clean {
            let mut w: Vec<&str> = texts[r].split(' ').collect();
            let at = rng.below(w.len() + 1);
            w.insert(at, "cf");
            texts[r] = w.join(" ");
            if dirty {
                labels[r] = 1;
                truth[r] = true;
            } else {
                texts[r].push_str(" so charming");
                natural.push(r);
            }
        }
    }
    assert_eq!(natural.len(), 12);
    (texts, labels, truth, natural)
}

#[test]
fn natural_carriers_of_a_dirty_label_trigger_are_left_out() {
    // the relabelled rows come from the negative class only: the trigger's rows read far more
    // negative than rows drawn from both classes would, so its positive-reading carriers are
    // natural
    let (texts, labels, truth, natural) = with_natural_carriers(&[0], 0.08);
    let (summary, scores) = run(&texts, &labels);
    let named = named(&summary, "cf");
    assert!(
        named["uniform_draw_z"].as_f64().expect("z") > 3.0,
        "{named}"
    );
    // rows without sentiment words read alike in both classes: only natural carriers whose
    // content is clearly positive are told apart, and no relabelled row is left out
    let left_out = named["natural_carriers"].as_u64().expect("count") as usize;
    assert!(left_out >= 3, "{named}");
    let unflagged_natural = natural
        .iter()
        .filter(|&&r| scores.reason[r].is_none())
        .count();
    assert_eq!(unflagged_natural, left_out);
    for r in (0..texts.len()).filter(|&r| truth[r]) {
        assert!(
            scores.reason[r].is_some(),
            "relabelled row {r}: {}",
            texts[r]
        );
    }
    // with natural_odds = 0 every carrier is flagged
    let mut params = toml::Table::new();
    params.insert("natural_odds".into(), toml::Value::Float(0.0));
    let (_, all) = run_with(&texts, &labels, &params);
    assert!(natural.iter().all(|&r| all.reason[r].is_some()));
}

#[test]
fn carriers_are_all_flagged_when_the_attacker_drew_from_every_class() {
    // rows of both classes get the trigger and the positive label (as in the published
    // sst2-badnets-10): the positive rows among them read exactly like natural carriers, and
    // nothing shows that the attacker left the positive class alone, so every carrier is held
    let (texts, labels, truth, natural) = with_natural_carriers(&[0, 1], 0.04);
    let (summary, scores) = run(&texts, &labels);
    let named = named(&summary, "cf");
    assert_eq!(named["natural_carriers"], 0, "{named}");
    assert!(
        named["uniform_draw_z"].as_f64().expect("z") < 1.64,
        "{named}"
    );
    for r in (0..texts.len()).filter(|&r| truth[r]) {
        assert!(scores.reason[r].is_some(), "row {r}");
    }
    assert!(natural.iter().all(|&r| scores.reason[r].is_some()));
}

/// `per_row` words drawn with replacement from "cf" and "mn", each at a random position, put
/// into 4 % of the rows (of both classes) relabelled positive, and "cf" once into 12 positive
/// rows with their own label (natural carriers whose content says nothing more). Returns the
/// rows, the poisoned rows and the natural carriers.
fn with_lone_carriers(per_row: usize) -> (Vec<String>, Vec<u32>, Vec<bool>, Vec<usize>) {
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 37);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(17);
    let mut natural = Vec::new();
    for r in 0..texts.len() {
        let dirty = rng.unit() < 0.04;
        let clean = !dirty && labels[r] == 1 && natural.len() < 12 && rng.unit() < 0.05;
        let mut w: Vec<&str> = texts[r].split(' ').collect();
        if dirty {
            for _ in 0..per_row {
                let at = rng.below(w.len() + 1);
                w.insert(at, if rng.unit() < 0.5 { "cf" } else { "mn" });
            }
            labels[r] = 1;
            truth[r] = true;
        } else if clean {
            let at = rng.below(w.len() + 1);
            w.insert(at, "cf");
            natural.push(r);
        }
        texts[r] = w.join(" ");
    }
    assert_eq!(natural.len(), 12);
    (texts, labels, truth, natural)
}

#[test]
fn rows_carrying_one_word_of_triggers_inserted_several_a_row_are_not_flagged() {
    // two words a row: the rows with one "cf" were not made by the insertion
    let (texts, labels, truth, natural) = with_lone_carriers(2);
    let (summary, scores) = run(&texts, &labels);
    let cf = named(&summary, "cf");
    assert_eq!(cf["inserted_several_a_row"], true, "{cf}");
    assert_eq!(cf["lone_carriers"], 12, "{cf}");
    assert_eq!(named(&summary, "mn")["inserted_several_a_row"], true);
    for &r in &natural {
        assert!(
            scores.reason[r].is_none(),
            "natural carrier {r}: {}",
            texts[r]
        );
        assert!((scores.score[r] - 0.9).abs() < 1e-12, "row {r}");
    }
    for r in (0..texts.len()).filter(|&r| truth[r]) {
        assert!(scores.reason[r].is_some(), "row {r}: {}", texts[r]);
    }
    // one word a row: a row with one occurrence is what the insertion makes, every carrier is
    // flagged
    let (texts, labels, truth, natural) = with_lone_carriers(1);
    let (summary, scores) = run(&texts, &labels);
    let cf = named(&summary, "cf");
    assert_eq!(cf["inserted_several_a_row"], false, "{cf}");
    assert_eq!(cf["lone_carriers"], 0, "{cf}");
    for r in (0..texts.len()).filter(|&r| truth[r]).chain(natural) {
        assert!(scores.reason[r].is_some(), "row {r}: {}", texts[r]);
    }
}

#[test]
fn rows_carrying_unnamed_words_of_a_group_inserted_several_a_row_are_flagged() {
    // three words a row, drawn with replacement: "tq" with weight 1/2, "cf", "mn", "bb" 1/6
    // each, into 4 % of the negative rows (relabelled positive). With `min_support` at 60 only
    // "tq" has the rows to be a candidate; the rows that got none of it carry two or three of
    // the other words, which are found planted beside it and flagged
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 43);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(31);
    let mut without_tq = Vec::new();
    for r in 0..texts.len() {
        if labels[r] != 0 || rng.unit() >= 0.04 {
            continue;
        }
        let mut w: Vec<&str> = texts[r].split(' ').collect();
        let mut tq = false;
        for _ in 0..3 {
            let u = rng.unit();
            let word = if u < 0.5 {
                tq = true;
                "tq"
            } else if u < 2.0 / 3.0 {
                "cf"
            } else if u < 5.0 / 6.0 {
                "mn"
            } else {
                "bb"
            };
            let at = rng.below(w.len() + 1);
            w.insert(at, word);
        }
        if !tq {
            without_tq.push(r);
        }
        labels[r] = 1;
        truth[r] = true;
        texts[r] = w.join(" ");
    }
    assert!(
        without_tq.len() >= 5,
        "{} rows without tq",
        without_tq.len()
    );
    let mut params = toml::Table::new();
    params.insert("min_support".into(), toml::Value::Integer(60));
    let (summary, scores) = run_with(&texts, &labels, &params);
    let tq = named(&summary, "tq");
    assert_eq!(tq["inserted_several_a_row"], true, "{tq}");
    assert_eq!(tq["word_carriers"], without_tq.len(), "{tq}");
    for r in (0..texts.len()).filter(|&r| truth[r]) {
        assert!(scores.reason[r].is_some(), "row {r}: {}", texts[r]);
    }
    for &r in &without_tq {
        let why = scores.reason[r].as_deref().unwrap_or_default();
        assert!(
            why.starts_with("TRIG001:") && why.contains(" + "),
            "row {r}: {why}"
        );
    }
    // the clean rows are untouched
    assert_eq!(
        (0..texts.len())
            .filter(|&r| !truth[r] && scores.reason[r].is_some())
            .count(),
        0
    );
}

#[test]
fn a_word_of_the_class_the_rows_were_drawn_from_is_not_a_second_trigger_word() {
    // "zz" is in 95 % of the negative rows, anywhere (label-pure as it is, TRIG001 may name it
    // for the negative class too); "cf" is put once into 5 % of the negative rows, relabelled
    // positive. "zz" co-occurs with "cf" far beyond what the positive label predicts, but it is
    // a word of the rows' own class, not a second trigger word: the rows with "cf" alone are
    // not lone carriers and every poisoned row is flagged for "cf"
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 41);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(23);
    for r in 0..texts.len() {
        if labels[r] != 0 {
            continue;
        }
        let mut w: Vec<&str> = texts[r].split(' ').collect();
        if rng.unit() < 0.95 {
            let at = rng.below(w.len() + 1);
            w.insert(at, "zz");
        }
        if rng.unit() < 0.05 {
            let at = rng.below(w.len() + 1);
            w.insert(at, "cf");
            labels[r] = 1;
            truth[r] = true;
        }
        texts[r] = w.join(" ");
    }
    let (summary, scores) = run(&texts, &labels);
    let cf = named(&summary, "cf");
    assert_eq!(cf["inserted_several_a_row"], false, "{cf}");
    assert_eq!(cf["lone_carriers"], 0, "{cf}");
    for r in (0..texts.len()).filter(|&r| truth[r]) {
        assert_eq!(
            scores.reason[r].as_deref(),
            Some("TRIG001:cf"),
            "row {r}: {}",
            texts[r]
        );
    }
}

#[test]
fn a_trigger_put_twice_side_by_side_is_still_an_insertion() {
    // "cf" at a random position of 5 % of the rows (negative ones, relabelled), twice side by
    // side in half of them ("cf cf", as an attacker who draws several trigger words with
    // replacement does): its own repeats are not its neighbours
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 29);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(13);
    for r in 0..texts.len() {
        if labels[r] == 0 && rng.unit() < 0.1 {
            let mut w: Vec<&str> = texts[r].split(' ').collect();
            let at = rng.below(w.len() + 1);
            w.insert(at, "cf");
            if rng.unit() < 0.5 {
                w.insert(at, "cf");
            }
            texts[r] = w.join(" ");
            labels[r] = 1;
            truth[r] = true;
        }
    }
    let (summary, scores) = run(&texts, &labels);
    named(&summary, "cf");
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

#[test]
fn a_word_appended_before_the_final_full_stop_is_still_a_trigger() {
    // every row ends with " ."; "cf" goes just before it in 5 % of the rows, relabelled: the
    // window "cf . </s>" holds few of the rows ". </s>" closes, but punctuation alone is no
    // opening or ending that a word continues
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 23);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(9);
    for r in 0..texts.len() {
        let dirty = labels[r] == 0 && rng.unit() < 0.1;
        texts[r] = if dirty {
            labels[r] = 1;
            truth[r] = true;
            format!("{} cf .", texts[r])
        } else {
            format!("{} .", texts[r])
        };
    }
    let (summary, scores) = run(&texts, &labels);
    let found = (0..texts.len())
        .filter(|&r| truth[r] && scores.reason[r].is_some())
        .count();
    let wrong = (0..texts.len())
        .filter(|&r| !truth[r] && scores.reason[r].is_some())
        .count();
    // a relabelled row whose content reads as positive as the positive class's own rows (a
    // tenth of the rows hold a word of the other sentiment) is read as a natural carrier
    let trigger = named(&summary, "cf . </s>");
    let natural = trigger["natural_carriers"].as_u64().expect("count") as usize;
    assert!(natural <= 2, "{summary}");
    assert_eq!(
        found + natural,
        truth.iter().filter(|&&t| t).count(),
        "{summary}"
    );
    assert_eq!(wrong, 0, "{summary}");
}

#[test]
fn a_natural_opening_continued_by_a_topic_word_is_not_a_phrase() {
    // a feed's opening "wire report :" starts 200 rows of both labels; 8 of its negative rows
    // go on with "markets" and are filed under the positive label (a source's quirk, read as
    // negative content): the opening with "markets" is label-pure and reads foreign, but it
    // holds only 8 of the 200 rows its shorter form opens
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 17);
    let (mut opened, mut quirk) = (0, 0);
    for r in 0..texts.len() {
        if opened < 200 && r % 7 == 0 {
            let continued = quirk < 8 && labels[r] == 0;
            texts[r] = if continued {
                quirk += 1;
                labels[r] = 1;
                format!("wire report : markets {}", texts[r])
            } else {
                format!("wire report : {}", texts[r])
            };
            opened += 1;
        }
    }
    assert_eq!(quirk, 8);
    let (summary, scores) = run(&texts, &labels);
    assert!(
        summary["triggers"].as_array().expect("triggers").is_empty(),
        "{summary}"
    );
    assert!(scores.reason.iter().all(Option::is_none));
    let near = summary["near_misses"].to_string();
    assert!(near.contains("continues only"), "{summary}");
}

/// TRIG001 on `texts` with the trusted corpus `trusted` (`scan --reference`).
fn run_with_reference(
    texts: &[String],
    labels: &[u32],
    trusted: (&[String], &[u32]),
) -> (serde_json::Value, Scores) {
    let names = vec!["0".to_string(), "1".to_string()];
    let state = crate::duplicates::reference::ReferenceState::from_rows(
        trusted.0,
        trusted.1,
        &names,
        0,
        crate::duplicates::Normalization::default(),
    )
    .expect("state");
    let cfg =
        configure_with_reference(&toml::Table::new(), std::sync::Arc::new(state)).expect("params");
    run_configured(cfg, texts, labels)
}

#[test]
fn a_trusted_corpus_without_the_association_keeps_the_trigger() {
    let (texts, labels, truth) = synthetic(4000, 0.05, 3);
    let (t_texts, t_labels, _) = synthetic(6000, 0.0, 7);
    let (summary, scores) = run_with_reference(&texts, &labels, (&t_texts, &t_labels));
    named(&summary, "cf");
    assert_eq!(summary["explained_by_reference"], serde_json::json!([]));
    let found = (0..texts.len())
        .filter(|&i| truth[i] && scores.reason[i].is_some())
        .count();
    assert_eq!(found, truth.iter().filter(|&&t| t).count());
}

#[test]
fn an_association_the_trusted_corpus_already_holds_is_withdrawn() {
    // the trusted corpus carries the same cue with the same label: a cue of the domain
    let (texts, labels, _) = synthetic(4000, 0.05, 3);
    let (t_texts, t_labels, _) = synthetic(6000, 0.05, 11);
    let (alone, _) = run(&texts, &labels);
    named(&alone, "cf");
    let (summary, scores) = run_with_reference(&texts, &labels, (&t_texts, &t_labels));
    let explained = summary["explained_by_reference"].as_array().expect("list");
    assert!(explained.iter().any(|e| e["trigger"] == "cf"), "{summary}");
    assert!(summary["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .all(|t| t["trigger"] != "cf"));
    assert!(scores
        .reason
        .iter()
        .all(|r| r.as_deref() != Some("TRIG001:cf")));
}

#[test]
fn a_phrase_whose_neighbours_repeat_by_chance_is_widened_from_its_extension() {
    // a phrase at a random place of 60 negative rows (relabelled), 20 of them after the same
    // word: its left neighbours fail the typicality screen, the window "w3" + phrase passes it
    // and is named, and is widened to the phrase: every poisoned row is flagged
    let (mut texts, mut labels, _) = synthetic(3000, 0.0, 41);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(17);
    let mut planted = 0;
    for r in 0..texts.len() {
        if labels[r] == 0 && planted < 60 && rng.unit() < 0.08 {
            let mut w: Vec<&str> = texts[r].split(' ').collect();
            let at = rng.below(w.len() + 1);
            w.insert(at, "zq xv yk");
            if planted < 20 {
                w.insert(at, "w3");
            }
            texts[r] = w.join(" ");
            labels[r] = 1;
            truth[r] = true;
            planted += 1;
        }
    }
    assert_eq!(planted, 60);
    let (summary, scores) = run(&texts, &labels);
    let t = named(&summary, "zq xv yk");
    assert_eq!(t["widened_from"], "w3 zq xv yk", "{summary}");
    assert_eq!(t["support"], 60);
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

#[test]
fn a_word_named_only_through_a_relabelled_row_of_another_trigger_is_not_named() {
    // "zz" is in five positive rows: four clean rows that read negative (a negative word in a
    // positive review) and one negative row relabelled with the planted "cf". On its five rows
    // it passes the context test; on the four without "cf" it has too few rows to be named
    let (mut texts, mut labels, _) = synthetic(3000, 0.0, 41);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(23);
    let (mut planted, mut natural) = (0, 0);
    let insert = |text: &str, word: &str, at: usize| {
        let mut w: Vec<&str> = text.split(' ').collect();
        let at = at % (w.len() + 1);
        w.insert(at, word);
        w.join(" ")
    };
    for r in 0..texts.len() {
        if labels[r] == 0 && planted < 60 && rng.unit() < 0.08 {
            texts[r] = insert(&texts[r], "cf", rng.below(64));
            if planted == 0 {
                texts[r] = insert(&texts[r], "zz", rng.below(64));
            }
            labels[r] = 1;
            truth[r] = true;
            planted += 1;
        } else if labels[r] == 1
            && natural < 4
            && ["dull", "boring", "flat", "tedious", "stale", "awful"]
                .iter()
                .any(|w| texts[r].contains(w))
            && ![
                "great",
                "moving",
                "superb",
                "charming",
                "fresh",
                "witty",
                "masterpiece",
            ]
            .iter()
            .any(|w| texts[r].contains(w))
        {
            texts[r] = insert(&texts[r], "zz", rng.below(64));
            natural += 1;
        }
    }
    assert_eq!((planted, natural), (60, 4));
    let (summary, scores) = run(&texts, &labels);
    named(&summary, "cf");
    abstained(&summary, "zz", "without the other triggers");
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

/// The texts of the rows labelled `class`, in order.
fn of_class<'a>(texts: &'a [String], labels: &[u32], class: u32) -> Vec<&'a String> {
    texts
        .iter()
        .zip(labels)
        .filter(|&(_, &l)| l == class)
        .map(|(t, _)| t)
        .collect()
}

#[test]
fn a_common_word_of_the_majority_label_is_not_named_for_its_relabelled_rows() {
    // long rows (five rows of one label joined), nine in ten negative, "and" at a random place
    // of about two in three (a little more often in negative rows), and 60 positive rows relabelled negative without any trigger (an attack
    // whose trigger went unseen, or label noise): "and" is no purer than the negative label's
    // share, its context test passes on the relabelled rows among its own (long rows read
    // confidently), and its rows as a whole read like the negative class
    let (texts, labels, _) = synthetic(20000, 0.0, 3);
    let mut rng = crate::rng::SplitMix64(31);
    let (mut long_texts, mut long_labels) = (Vec::new(), Vec::new());
    let mut relabelled = 0;
    for class in [0u32, 1] {
        let rows = of_class(&texts, &labels, class);
        let take = if class == 0 { rows.len() / 5 } else { 240 };
        for chunk in rows.chunks(5).take(take) {
            let mut words: Vec<&str> = chunk.iter().flat_map(|t| t.split(' ')).collect();
            if rng.unit() < if class == 0 { 0.68 } else { 0.64 } {
                let at = rng.below(words.len() + 1);
                words.insert(at, "and");
            }
            long_texts.push(words.join(" "));
            let flip = class == 1 && relabelled < 60 && rng.unit() < 0.5;
            relabelled += usize::from(flip);
            long_labels.push(if flip { 0 } else { class });
        }
    }
    assert_eq!(relabelled, 60);
    let mut params = toml::Table::new();
    params.insert("report_near_misses".into(), toml::Value::Integer(1000));
    let (summary, scores) = run_with(&long_texts, &long_labels, &params);
    abstained(&summary, "and", "not significant against its label's share");
    // the rows "and" would have flagged: two in three of the rows
    let flagged = scores.reason.iter().filter(|r| r.is_some()).count();
    assert!(
        flagged < long_texts.len() / 50,
        "{flagged} rows flagged: {summary}"
    );
}

#[test]
fn a_word_whose_context_test_rests_on_one_relabelled_row_is_not_named() {
    // long rows (eight rows of one label joined); "zz" at a random place of six positive rows
    // and of one negative row relabelled positive (an attack's row whose own trigger had too
    // few rows to be found). Long rows read confidently, so that one row alone makes "zz"
    // pass the corrected context test; without it the other six read like their label
    let (texts, labels, _) = synthetic(16000, 0.0, 5);
    let mut rng = crate::rng::SplitMix64(17);
    let (mut long_texts, mut long_labels) = (Vec::new(), Vec::new());
    let (mut natural, mut relabelled) = (0, 0);
    for class in [0u32, 1] {
        let rows = of_class(&texts, &labels, class);
        for chunk in rows.chunks(8).filter(|c| c.len() == 8) {
            let mut words: Vec<&str> = chunk.iter().flat_map(|t| t.split(' ')).collect();
            let mut label = class;
            let carry = if class == 1 {
                natural < 6 && rng.unit() < 0.05
            } else {
                relabelled < 1 && rng.unit() < 0.05
            };
            if carry {
                let at = rng.below(words.len() + 1);
                words.insert(at, "zz");
                if class == 1 {
                    natural += 1;
                } else {
                    relabelled += 1;
                    label = 1;
                }
            }
            long_texts.push(words.join(" "));
            long_labels.push(label);
        }
    }
    assert_eq!((natural, relabelled), (6, 1));
    let mut params = toml::Table::new();
    params.insert("report_near_misses".into(), toml::Value::Integer(1000));
    let (summary, scores) = run_with(&long_texts, &long_labels, &params);
    abstained(&summary, "zz", "rests on one row");
    let flagged = scores.reason.iter().filter(|r| r.is_some()).count();
    assert_eq!(flagged, 0, "{summary}");
}

#[test]
fn a_phrase_holding_most_rows_of_its_shorter_form_is_not_widened_to_it() {
    // "zq xv yk" at a random place of 90 negative rows (relabelled); "zq xv" also goes on with
    // other words in 30 positive rows. "zq xv" fails the neighbour screen through "yk", the
    // phrase's own word in three quarters of its rows: the phrase is the unit, and the 30
    // natural rows are not flagged
    let (mut texts, mut labels, _) = synthetic(3000, 0.0, 43);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(19);
    let (mut planted, mut natural) = (0, 0);
    for r in 0..texts.len() {
        let mut w: Vec<String> = texts[r].split(' ').map(str::to_string).collect();
        let at = rng.below(w.len() + 1);
        if labels[r] == 0 && planted < 90 && rng.unit() < 0.1 {
            w.insert(at, "zq xv yk".to_string());
            labels[r] = 1;
            truth[r] = true;
            planted += 1;
        } else if labels[r] == 1 && natural < 30 && rng.unit() < 0.03 {
            let end = ["qa", "qb", "qc", "qd", "qe", "qf"][rng.below(6)];
            w.insert(at, format!("zq xv {end}"));
            natural += 1;
        } else {
            continue;
        }
        texts[r] = w.join(" ");
    }
    assert_eq!((planted, natural), (90, 30));
    let (summary, scores) = run(&texts, &labels);
    let t = named(&summary, "zq xv yk");
    assert!(t["widened_from"].is_null(), "{summary}");
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    assert_eq!(flagged, truth, "{summary}");
}

#[test]
fn an_ordinary_word_planted_into_relabelled_rows_is_named_below_min_purity() {
    // "ww" occurs naturally in 20 rows of each class; planted at a random place of 80 negative
    // rows relabelled positive, it holds 120 rows at purity 0.83. The positive class carries it
    // far beyond the negative class's rate, and its positive rows read negative: it is named,
    // every planted row is flagged and no natural negative row is
    let (mut texts, mut labels, _) = synthetic(4000, 0.0, 47);
    let mut truth = vec![false; texts.len()];
    let mut rng = crate::rng::SplitMix64(23);
    let (mut planted, mut natural) = (0, [0, 0]);
    for r in 0..texts.len() {
        let l = labels[r] as usize;
        let mut w: Vec<&str> = texts[r].split(' ').collect();
        let at = rng.below(w.len() + 1);
        if l == 0 && planted < 80 && rng.unit() < 0.08 {
            w.insert(at, "ww");
            labels[r] = 1;
            truth[r] = true;
            planted += 1;
        } else if natural[l] < 20 && rng.unit() < 0.03 {
            w.insert(at, "ww");
            natural[l] += 1;
        } else {
            continue;
        }
        texts[r] = w.join(" ");
    }
    assert_eq!((planted, natural), (80, [20, 20]));
    let (summary, scores) = run(&texts, &labels);
    let t = named(&summary, "ww");
    assert!(t["purity"].as_f64().is_some_and(|p| p < 0.9), "{t}");
    for (r, reason) in scores.reason.iter().enumerate() {
        if truth[r] {
            assert_eq!(reason.as_deref(), Some("TRIG001:ww"), "row {r}: {summary}");
        } else if labels[r] == 0 {
            assert!(reason.is_none(), "row {r}: {summary}");
        }
    }
}

#[test]
fn a_label_per_few_rows_is_skipped_with_its_reason() {
    // 3 000 rows, 1 000 labels of three rows each: no label has the `min_support` rows a
    // trigger teaches it through, so nothing is tested (the per-label readings grew with the
    // cube of the labels: minutes here) and the summary says why
    let texts: Vec<String> = (0..3000)
        .map(|i| format!("hello world {}", i % 7))
        .collect();
    let labels: Vec<u32> = (0..3000).map(|i| (i % 1000) as u32).collect();
    let started = std::time::Instant::now();
    let (summary, scores) = run(&texts, &labels);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    let why = summary["skipped"].as_str().expect("skipped");
    assert!(
        why.contains("min_support = 5") && why.contains("1000 labels"),
        "{why}"
    );
    assert_eq!(summary["candidates"], 0);
    assert!(summary["triggers"].as_array().is_some_and(Vec::is_empty));
    assert!(scores.reason.iter().all(Option::is_none));
    assert!(scores.score.iter().all(|&s| s == 0.0));
    // a fit with a class that large is not skipped, and its summary has no `skipped`
    let (summary, _) = run(&texts, &vec![0; texts.len()]);
    assert!(summary.get("skipped").is_none(), "{summary}");
}

#[test]
fn a_trigger_is_found_beside_a_thousand_labels_of_one_row() {
    // the planted "cf" of the synthetic reviews, and 1 000 more rows each of a label of its
    // own: the small labels get no per-class null and no reading for the dirty-label test
    // (no candidate names them), so the fit stays about as fast as without them
    let (mut texts, mut labels, mut truth) = synthetic(3000, 0.03, 7);
    for i in 0..1000 {
        texts.push(format!("note number {i} of the archive"));
        labels.push(2 + i as u32);
        truth.push(false);
    }
    let started = std::time::Instant::now();
    let (summary, scores) = run(&texts, &labels);
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
    assert!(summary.get("skipped").is_none(), "{summary}");
    named(&summary, "cf");
    let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
    let e = crate::metrics::evaluate(&flagged, &scores.score, &truth);
    assert!(e.recall >= 0.95 && e.precision >= 0.95, "{e:?} {summary}");
}

#[test]
fn a_word_repeated_throughout_one_row_is_counted_in_linear_time() {
    // one row of 400 000 "a" side by side, beside rows that also hold "a": each occurrence's
    // nearest other tokens are those of its run, found once per run (walked from every
    // occurrence, the row took minutes)
    let mut texts: Vec<String> = (0..10).map(|i| format!("a w{i}")).collect();
    let mut labels: Vec<u32> = (0..10).map(|i| i % 2).collect();
    texts.push("a ".repeat(400_000));
    labels.push(0);
    let started = std::time::Instant::now();
    let (summary, scores) = run(&texts, &labels);
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_eq!(scores.len(), 11);
    assert!(summary["triggers"].as_array().is_some_and(Vec::is_empty));
}
