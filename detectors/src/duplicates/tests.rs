//! Tests of DUP001 / DUP002 / DUP003 as detectors: conflicts, contrast pairs, the embedding
//! relation, amplification, determinism.

use super::amplification::amplification;
use super::*;
use crate::Scores;

fn fit(code: &str, texts: &[&str], labels: &[u32], params: &str) -> (Scores, serde_json::Value) {
    let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: texts.len(),
        texts: Some(&texts),
        labels: Some(labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let det = crate::find(code).expect("registered");
    let table: toml::Table = params.parse().expect("toml");
    let f = det
        .configure(&table)
        .expect("configure")
        .fit(&view)
        .expect("fit");
    (f.score(&view.as_batch()).expect("score"), f.summary())
}

#[test]
fn exact_conflict_minority_and_tie() {
    let texts = [
        "Great film",
        "great  FILM",
        "great film",
        "bad film",
        "Bad film",
        "other",
        "x",
    ];
    let labels = [1, 1, 0, 0, 1, 0, 1];
    // the tie mechanics, with the natural-noise test off (two conflicts are within noise)
    let (s, summary) = fit("DUP001", &texts, &labels, "noise_share = 0");
    let flagged: Vec<usize> = (0..texts.len())
        .filter(|&i| s.reason[i].is_some())
        .collect();
    assert_eq!(flagged, vec![2, 3, 4]);
    let r2 = s.reason[2].as_deref().unwrap_or("");
    assert!(
        r2.starts_with("DUP001:dup_of=0 ") && r2.ends_with("minority"),
        "{r2}"
    );
    assert!(s.reason[3].as_deref().unwrap_or("").contains("tie"));
    assert_eq!(summary["conflicting_clusters"], 2);
    assert!(s.score[2] >= 1.0 && s.score[0] == 0.0);
}

#[test]
fn near_conflict_and_determinism() {
    let base = "the quick brown fox jumps over the lazy dog near the quiet river bank on a warm sunny afternoon in late summer";
    let near = base.replace("lazy", "sleepy");
    let texts = [
        base,
        near.as_str(),
        "something else entirely with many words in it ok",
    ];
    let labels = [0, 1, 0];
    let p = "shingle_words = 1\nthreshold = 0.7\nnoise_share = 0";
    let (s, _) = fit("DUP002", &texts, &labels, p);
    assert!(s.reason[0].as_deref().unwrap_or("").contains("tie"));
    assert!(s.reason[1]
        .as_deref()
        .unwrap_or("")
        .starts_with("DUP002:dup_of=0 similarity="));
    assert!(s.reason[2].is_none());
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let (s1, sum1) = one.install(|| fit("DUP002", &texts, &labels, p));
    let (s2, sum2) = fit("DUP002", &texts, &labels, p);
    assert_eq!(s1, s2);
    assert_eq!(sum1, sum2);
}

#[test]
fn short_one_word_flip_found_and_explained_contrast_kept() {
    // a flipped near copy of a 6-word text (5-gram Jaccard 0) is found by the word edit
    let mut texts: Vec<String> = vec![
        "the plot holds up quite well".into(),
        "the plot holds up rather well".into(),
    ];
    let mut labels = vec![1, 0];
    // a contrast pair whose edited words carry the labels in the rest of the data
    texts.push("the ending is truly wonderful .".into());
    texts.push("the ending is truly awful .".into());
    labels.extend([1, 0]);
    for i in 0..30 {
        texts.push(format!("wonderful acting in scene {i}"));
        labels.push(1);
        texts.push(format!("awful pacing in part {i}"));
        labels.push(0);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "noise_share = 0");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, vec![0, 1], "{summary}");
    assert!(s.reason[1]
        .as_deref()
        .unwrap_or("")
        .contains("measure=word_edit"));
    // with the contrast test off, the contrast pair is flagged too
    let (s, _) = fit(
        "DUP002",
        &refs,
        &labels,
        "contrast_odds = 1e300\nnoise_share = 0",
    );
    assert!(s.reason[2].is_some() && s.reason[3].is_some());
}

#[test]
fn a_one_word_change_of_a_long_text_is_not_explained_by_that_word() {
    // a long "spam" message whose copy swapped one spam word for a "ham" word and took the
    // ham label: the edit moves the word odds far, but the rest still reads as spam
    let mut texts: Vec<String> = vec![
        "win cash prize now claim your free prize call now to claim cash".into(),
        "win cash prize now claim your free home call now to claim cash".into(),
    ];
    let mut labels = vec![1, 0];
    for i in 0..30 {
        texts.push(format!("free prize cash claim win offer {i}"));
        labels.push(1);
        texts.push(format!("see you at home later tonight {i}"));
        labels.push(0);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "noise_share = 0");
    assert!(s.reason[0].is_some() && s.reason[1].is_some(), "{summary}");
    assert_eq!(
        summary["near"]["lsh"]["explained_contrast_pairs"], 0,
        "{summary}"
    );
}

#[test]
fn embedding_near_duplicates_and_the_share_guard() {
    // four unrelated texts; rows 0 and 1 have nearly the same embedding and other labels
    let texts = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"];
    let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    let labels = [0, 1, 0, 1];
    let names = vec!["0".to_string(), "1".to_string()];
    let x = ndarray::array![
        [1.0f32, 0.0, 0.0, 0.0],
        [0.99, 0.05, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0]
    ];
    let view = DatasetView {
        n_rows: 4,
        texts: Some(&texts),
        labels: Some(&labels),
        class_names: &names,
        embeddings: Some(x.view()),
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let run = |params: &str| {
        let table: toml::Table = params.parse().expect("toml");
        let f = crate::find("DUP002")
            .expect("registered")
            .configure(&table)
            .expect("configure")
            .fit(&view)
            .expect("fit");
        let s = f.score(&view.as_batch()).expect("score");
        (s.reason, f.summary())
    };
    // two of four rows linked: allowed with a share bound of 1
    let (r, _) = run("embedding_max_share = 1.0\nnoise_share = 0");
    assert!(r[0]
        .as_deref()
        .unwrap_or("")
        .contains("measure=embedding_cosine"));
    assert!(r[1].is_some() && r[2].is_none() && r[3].is_none());
    // at the default bound (10 %) half of the rows with such a neighbour is too many
    let (r, summary) = run("");
    assert!(r.iter().all(Option::is_none), "{summary}");
    assert!(summary["near"]["lsh"]["embedding_skipped"].is_string());
}

#[test]
fn amplification_relative_to_baseline() {
    // baseline of pairs: a 40-copy cluster is flagged, pairs are not
    let mut texts: Vec<String> = (0..200)
        .map(|i| format!("row number {i} says hello"))
        .collect();
    for i in 0..20 {
        texts.push(format!("row number {i} says hello"));
    }
    for _ in 0..40 {
        texts.push("buy cheap pills now".to_string());
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let labels = vec![0; refs.len()];
    let (s, summary) = fit("DUP003", &refs, &labels, "");
    let flagged = s.reason.iter().filter(|r| r.is_some()).count();
    assert_eq!(flagged, 40, "{summary}");
    // natural heavy tail (sizes 2, 3, 4, 10): nothing flagged
    let sizes: Vec<usize> = std::iter::repeat_n(2, 200)
        .chain(std::iter::repeat_n(3, 60))
        .chain([4, 4, 4, 4, 10, 12, 30])
        .collect();
    assert_eq!(amplification(&sizes, 0.01, 5), None);
    let mut with = sizes.clone();
    with.push(500);
    assert_eq!(amplification(&with, 0.01, 5), Some(500));
}

/// Two classes of `rows_per_class` rows each (interleaved): row i of class c is nine words,
/// each `word(c, draw)` of a deterministic draw from `seed`, then its tag (`row{i}`, or
/// `row{i}c{c}` when `tag_by_class`).
fn two_classes(
    rows_per_class: usize,
    seed: u64,
    tag_by_class: bool,
    word: impl Fn(u32, u64) -> String,
) -> (Vec<String>, Vec<u32>) {
    let mut state = seed;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..rows_per_class {
        for c in 0..2u32 {
            let words: Vec<String> = (0..9)
                .map(|_| word(c, crate::rng::splitmix(&mut state)))
                .collect();
            let tag = if tag_by_class {
                format!("row{i}c{c}")
            } else {
                format!("row{i}")
            };
            texts.push(format!("{} {tag}", words.join(" ")));
            labels.push(c);
        }
    }
    (texts, labels)
}

/// The class's own word `{dull|bright}{w}`.
fn own_word(c: u32, w: u64) -> String {
    if c == 0 {
        format!("dull{w}")
    } else {
        format!("bright{w}")
    }
}

/// A corpus whose two classes use their own vocabulary: each word is drawn from the class's
/// 40 words.
fn two_vocabularies(rows_per_class: usize) -> (Vec<String>, Vec<u32>) {
    two_classes(rows_per_class, 7, false, |c, r| own_word(c, r % 40))
}

/// Append verbatim copies of the first `k` class-0 rows of an interleaved two-class corpus,
/// labelled 1: every tie is a 0 original and a 1 copy.
fn copy_class_0_as_1(texts: &mut Vec<String>, labels: &mut Vec<u32>, k: usize) {
    for i in 0..k {
        texts.push(texts[2 * i].clone());
        labels.push(1);
    }
}

#[test]
fn flip_direction_resolves_ties_against_the_target_label() {
    let (mut texts, mut labels) = two_vocabularies(200);
    // 30 exact copies of class-0 rows relabelled 1: every tie is a 0 original and a 1 copy
    let n = texts.len();
    copy_class_0_as_1(&mut texts, &mut labels, 30);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 30).collect::<Vec<_>>(), "{summary}");
    let r = s.reason[n].as_deref().unwrap_or("");
    assert!(r.contains("tie resolved by the flips' direction"), "{r}");
    assert_eq!(
        summary["flip_direction"]["targets"],
        serde_json::json!(["1"])
    );
    // the same copies with their word order kept but two words replaced: DUP002 finds them
    // by the substitution relation and resolves them the same way
    let (mut texts, mut labels) = two_vocabularies(200);
    for k in 0..30 {
        let mut w: Vec<String> = texts[2 * k].split(' ').map(str::to_string).collect();
        w[1] = "zz1".into();
        w[4] = "zz2".into();
        texts.push(w.join(" "));
        labels.push(1);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 30).collect::<Vec<_>>(), "{summary}");
    assert!(s.reason[n]
        .as_deref()
        .unwrap_or("")
        .contains("measure=word_substitution"));
    // with the test off, every tie is flagged whole
    let (s, _) = fit("DUP002", &refs, &labels, "direction_alpha = 0");
    assert_eq!(
        (0..refs.len()).filter(|&i| s.reason[i].is_some()).count(),
        60
    );
}

/// Append a copy of rows 2k + k % 2 (k < `k`) of an interleaved two-class corpus under the other
/// label: half the copies flipped each way.
fn copy_both_ways(texts: &mut Vec<String>, labels: &mut Vec<u32>, k: usize) {
    for i in 0..k {
        let src = 2 * i + i % 2;
        texts.push(texts[src].clone());
        labels.push(1 - labels[src]);
    }
}

#[test]
fn ties_without_a_common_direction_are_read_one_by_one_where_the_words_tell() {
    // 15 copies flipped each way: no label is out of place more often than chance, but over
    // two vocabularies each tie's text says which label it was written for
    let (mut texts, mut labels) = two_vocabularies(200);
    let n = texts.len();
    copy_both_ways(&mut texts, &mut labels, 30);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    let dir = &summary["flip_direction"];
    assert_eq!(dir["targets"], serde_json::json!([]), "{dir}");
    // the copied texts read unlike both labels: the population reader names neither
    assert!(dir["population_abstained"].is_string(), "{dir}");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 30).collect::<Vec<_>>(), "{summary}");
    let r = s.reason[n].as_deref().unwrap_or("");
    assert!(r.contains("tie resolved by its own reading"), "{r}");
    assert_eq!(dir["own_reading"]["resolved"], 30, "{dir}");
    // the cut rests on the corpus's own rows: none of them read wrong at that strength
    assert_eq!(dir["own_reading"]["wrong_at_or_above_cut"], 0, "{dir}");
}

#[test]
fn a_tie_of_the_other_direction_keeps_the_target_s_resolution() {
    // 30 class-0 rows copied under label 1 make 1 the flips' target; 6 class-1 rows copied under
    // label 0 are copies of the other direction: the target resolves their ties against their
    // originals, whatever each tie reads (overruling it cost more targeted copies than it
    // found, see DUP001)
    let (mut texts, mut labels) = two_vocabularies(200);
    let n = texts.len();
    copy_class_0_as_1(&mut texts, &mut labels, 30);
    for k in 0..6 {
        texts.push(texts[2 * (100 + k) + 1].clone());
        labels.push(0);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    let dir = &summary["flip_direction"];
    assert_eq!(dir["targets"], serde_json::json!(["1"]), "{dir}");
    assert!(dir["own_reading"].is_null(), "{dir}");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    let mut want: Vec<usize> = (n..n + 30).collect();
    want.extend((0..6).map(|k| 2 * (100 + k) + 1));
    want.sort_unstable();
    assert_eq!(flagged, want, "{summary}");
}

#[test]
fn ties_without_a_common_direction_stay_flagged_whole_where_the_words_do_not_tell() {
    // both classes draw every word from one pool: no reading is trusted, every tie is flagged
    // whole
    let (mut texts, mut labels) = two_classes(200, 5, true, |_, r| format!("common{}", r % 60));
    copy_both_ways(&mut texts, &mut labels, 30);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    assert_eq!(
        (0..refs.len()).filter(|&i| s.reason[i].is_some()).count(),
        60,
        "{summary}"
    );
    let own = &summary["flip_direction"]["own_reading"];
    assert_eq!(own["resolved"], 0, "{own}");
    assert!(own["note"].is_string(), "{own}");
    // with the test off, nothing is read
    let (s, _) = fit("DUP001", &refs, &labels, "direction_alpha = 0");
    assert_eq!(
        (0..refs.len()).filter(|&i| s.reason[i].is_some()).count(),
        60
    );
}

/// A corpus whose classes share most of their words: each word comes from a common pool of
/// 60 words, and with probability 1/20 from its class's own 20 words instead, so that one text
/// says little about its class and many texts say much.
fn faint_vocabularies(rows_per_class: usize) -> (Vec<String>, Vec<u32>) {
    two_classes(rows_per_class, 11, true, |c, r| match r % 20 {
        0 => own_word(c, (r >> 8) % 20),
        _ => format!("common{}", (r >> 8) % 60),
    })
}

#[test]
fn the_population_of_ties_gives_the_direction_one_tie_cannot() {
    // 40 class-0 rows copied under label 1: each tie's text barely leans to 0, too little for
    // the tie-by-tie readers; together the copied texts read unlike class 1's own rows
    let (mut texts, mut labels) = faint_vocabularies(400);
    let n = texts.len();
    copy_class_0_as_1(&mut texts, &mut labels, 40);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    let dir = &summary["flip_direction"];
    let p = |label: usize, reader: &str| {
        dir["labels"][label]["p_value"][reader]
            .as_f64()
            .unwrap_or(1.0)
    };
    // the level each reader must reach: alpha over four readers and two labels
    let cut = 0.01 / 8.0;
    for reader in ["multinomial", "bernoulli", "rarity"] {
        assert!(p(1, reader) > cut, "{reader}: {dir}");
    }
    assert!(p(1, "population") <= cut, "{dir}");
    assert!(p(0, "population") > 0.05, "{dir}");
    assert_eq!(dir["targets"], serde_json::json!(["1"]), "{dir}");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 40).collect::<Vec<_>>(), "{summary}");
    let r = s.reason[n].as_deref().unwrap_or("");
    assert!(r.contains("read less like 1 than 1's own rows"), "{r}");
    // the same ties among 200 more duplicated texts of one label each: 40 conflicts of 240
    // duplicated texts are within natural label noise, where the reader names nothing
    for k in 0..200 {
        texts.push(texts[100 + k].clone());
        labels.push(labels[100 + k]);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    assert_eq!(summary["natural_noise"]["beyond_noise"], false, "{summary}");
    let dir = &summary["flip_direction"];
    assert_eq!(dir["targets"], serde_json::json!([]), "{dir}");
    assert!(
        dir["population_abstained"]
            .as_str()
            .unwrap_or("")
            .contains("within natural label noise"),
        "{dir}"
    );
    assert!(s.reason.iter().all(Option::is_none), "{summary}");
}

/// 600 short rows of two alternating classes: `text(class, row, common, d)` makes each row's
/// text from four common words (of 40, drawn from `seed`) and one more draw d below 10.
fn two_class_rows(seed: u64, text: impl Fn(u32, usize, &str, u64) -> String) -> Vec<(String, u32)> {
    let mut state = seed;
    let mut draw = |m: u64| crate::rng::splitmix(&mut state) % m;
    (0..600)
        .map(|i| {
            let c = (i % 2) as u32;
            let common: Vec<String> = (0..4).map(|_| format!("common{}", draw(40))).collect();
            let d = draw(10);
            (text(c, i, &common.join(" "), d), c)
        })
        .collect()
}

/// The rows of [`explained_contrasts_are_read_again_in_the_flips_direction`]: four common
/// words and one word of the class.
fn contrast_rows() -> Vec<(String, u32)> {
    two_class_rows(5, |c, _, common, d| {
        let own = if c == 0 { "dull" } else { "bright" };
        format!("{common} {own}{d}")
    })
}

#[test]
fn explained_contrasts_are_read_again_in_the_flips_direction() {
    let (mut texts, mut labels): (Vec<String>, Vec<u32>) = contrast_rows().into_iter().unzip();
    let n = texts.len();
    let edit = |text: &str, first: &str| -> String {
        let w: Vec<&str> = text.split(' ').collect();
        format!("{first} {}", w[1..].join(" "))
    };
    // 40 class-0 rows copied under label 1 with their first word replaced by a rare word: the
    // flips' direction (target 1)
    for k in 0..40 {
        texts.push(edit(&texts[2 * k], &format!("rare{k}")));
        labels.push(1);
    }
    // 30 class-0 rows copied under label 1 with their first (common) word replaced by a word
    // of class 1: each edit explains the new label, as a natural contrast would
    for k in 40..70 {
        texts.push(edit(&texts[2 * k], &format!("bright{}", k % 10)));
        labels.push(1);
    }
    // a natural contrast: a word of class 0 swapped for one of class 1
    texts.push("common1 common2 common3 common4 dull3".to_string());
    labels.push(0);
    texts.push("common1 common2 common3 common4 bright3".to_string());
    labels.push(1);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "");
    let dir = &summary["flip_direction"];
    assert_eq!(dir["targets"], serde_json::json!(["1"]), "{dir}");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 70).collect::<Vec<_>>(), "{summary}");
    assert_eq!(summary["contrasts_in_flip_direction"], 30, "{summary}");
    let r = s.reason[n + 40].as_deref().unwrap_or("");
    assert!(
        r.contains("explained contrast read in the flips' direction"),
        "{r}"
    );
}

#[test]
fn explained_contrasts_are_read_alike_whichever_text_comes_first() {
    // the copies of the test above, each placed before the row it was made from: an edit is
    // judged the same whichever of its two texts the data holds first
    let originals = contrast_rows();
    let edit = |text: &str, first: &str| -> String {
        let w: Vec<&str> = text.split(' ').collect();
        format!("{first} {}", w[1..].join(" "))
    };
    let mut texts: Vec<String> = Vec::new();
    let mut labels = Vec::new();
    for k in 0..40 {
        texts.push(edit(&originals[2 * k].0, &format!("rare{k}")));
        labels.push(1);
    }
    for k in 40..70 {
        texts.push(edit(&originals[2 * k].0, &format!("bright{}", k % 10)));
        labels.push(1);
    }
    for (t, c) in originals {
        texts.push(t);
        labels.push(c);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (0..70).collect::<Vec<_>>(), "{summary}");
    assert_eq!(summary["contrasts_in_flip_direction"], 30, "{summary}");
}

#[test]
fn a_replaced_word_the_copy_still_holds_is_not_taken_out_of_it() {
    // class-0 rows say "dull" twice; copies under label 1 have one "dull" replaced by "sharp",
    // a word of class 1, and still read as class 0 through the other "dull" and their
    // "gloomy": flips, not contrasts (read as a set of words, the edit took nothing out of the
    // copy; read as if "dull" were gone, each copy read as class 1 and was explained)
    let rows = two_class_rows(9, |c, i, common, d| {
        if c == 0 {
            format!("dull {common} dull gloomy{d}")
        } else if i % 20 == 1 {
            format!("bright {common} sharp")
        } else {
            format!("bright {common} bright{d}")
        }
    });
    let (mut texts, mut labels): (Vec<String>, Vec<u32>) = rows.into_iter().unzip();
    let n = texts.len();
    for k in 0..30 {
        let w: Vec<&str> = texts[2 * k].split(' ').collect();
        texts.push(format!("sharp {}", w[1..].join(" ")));
        labels.push(1);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "");
    // a few copies whose common words happen to lean to class 1 are still explained (and then
    // read again in the flips' direction); most are conflicts
    let conflicts = summary["conflicting_clusters"].as_u64().unwrap_or(0);
    assert!(conflicts >= 20, "{summary}");
    let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (n..n + 30).collect::<Vec<_>>(), "{summary}");
}

#[test]
fn a_template_filled_two_ways_is_a_contrast_not_a_flip() {
    // one sentence template whose subject slot is filled from a shared list and whose adjective
    // slot from each class's own: texts of the two labels two words apart ("the cast is at
    // times dull ..." / "the plot is at times luminous ...") are consistent examples, as the
    // one-word pairs are ("the cast is at times dull ..." / "the cast is at times luminous
    // ..."); read as flips they were conflicts beyond natural noise, and every row was flagged
    const NOUNS: [&str; 8] = [
        "film", "cast", "plot", "script", "ending", "score", "story", "pace",
    ];
    const BAD: [&str; 8] = [
        "dull", "bland", "muddled", "boring", "stale", "lifeless", "tedious", "clumsy",
    ];
    const GOOD: [&str; 8] = [
        "luminous", "moving", "sharp", "charming", "stunning", "tender", "witty", "vivid",
    ];
    let rows = two_class_rows(13, |c, i, _, d| {
        let adj = if c == 0 { BAD } else { GOOD }[(i / 2) % 8];
        let noun = NOUNS[(d as usize + i / 16) % 8];
        format!("the {noun} is at times {adj} from start to finish .")
    });
    let (texts, labels): (Vec<String>, Vec<u32>) = rows.into_iter().unzip();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP002", &refs, &labels, "");
    assert!(s.reason.iter().all(Option::is_none), "{summary}");
    assert_eq!(summary["conflicting_clusters"], 0, "{summary}");
}

#[test]
fn ties_within_natural_label_noise_are_listed_not_flagged() {
    // twelve duplicated texts, one of them under two labels: within natural annotation noise
    let mut texts: Vec<String> = Vec::new();
    let mut labels = Vec::new();
    for i in 0..12 {
        for _ in 0..2 {
            texts.push(format!("tweet number {i} about the weather today"));
            labels.push(i % 2);
        }
    }
    labels[1] = 1;
    for i in 0..40 {
        texts.push(format!("unique row {i}"));
        labels.push(i % 2);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    assert!(s.reason.iter().all(Option::is_none), "{summary}");
    let noise = &summary["natural_noise"];
    assert_eq!(noise["duplicated_clusters"], 12, "{summary}");
    assert_eq!(noise["conflicting_clusters"], 1);
    assert_eq!(noise["unflagged_ties"], 1);
    assert_eq!(noise["beyond_noise"], false);
    assert_eq!(summary["conflicts"][0]["flagged"], false);
    // eight of the twelve conflicting: beyond noise, the unresolved ties are flagged whole
    for i in 1..8 {
        labels[2 * i + 1] = 1 - labels[2 * i];
    }
    let (s, summary) = fit("DUP001", &refs, &labels, "");
    assert_eq!(summary["natural_noise"]["beyond_noise"], true, "{summary}");
    assert_eq!(
        s.reason.iter().filter(|r| r.is_some()).count(),
        16,
        "{summary}"
    );
}
