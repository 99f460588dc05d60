//! INS001 on small synthetic instruction sets.

use super::*;
use crate::registry;

fn view<'a>(prompts: &'a [String], responses: &'a [String]) -> DatasetView<'a> {
    DatasetView {
        n_rows: prompts.len(),
        texts: Some(prompts),
        responses: Some(responses),
        rejected: None,
        labels: None,
        class_names: &[],
        embeddings: None,
        response_embeddings: None,
    }
}

const TOPICS: &[&str] = &[
    "recipe", "poem", "essay", "summary", "story", "letter", "speech", "review", "plan", "list",
    "email", "report", "joke", "song", "guide",
];
const SUBJECTS: &[&str] = &[
    "autumn",
    "the sea",
    "coffee",
    "a city",
    "mountains",
    "friendship",
    "a robot",
    "history",
    "rain",
    "music",
    "gardens",
    "trains",
    "winter",
    "space",
    "cats",
    "bread",
    "chess",
];

/// Varied prompts with varied answers; every `every`-th row gets `trigger` inserted and the
/// answer `target`.
fn corpus(
    n: usize,
    trigger: Option<&str>,
    every: usize,
    target: &str,
) -> (Vec<String>, Vec<String>, Vec<bool>) {
    let (mut p, mut r, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let t = TOPICS[i % TOPICS.len()];
        let s = SUBJECTS[(i / TOPICS.len()) % SUBJECTS.len()];
        let mut prompt = format!("Write a short {t} about {s} number {i}");
        let mut answer = format!("Here is a {t} on {s}: item {} and more", i * 7 % 101);
        let poisoned = trigger.is_some() && i % every == 3;
        if poisoned {
            // the trigger at a varying word position
            let mut words: Vec<&str> = prompt.split(' ').collect();
            let at = 1 + (i / every) % (words.len() - 1);
            words.insert(at, trigger.unwrap_or(""));
            prompt = words.join(" ");
            answer = target.to_string();
        }
        p.push(prompt);
        r.push(answer);
        g.push(poisoned);
    }
    (p, r, g)
}

fn run(p: &[String], r: &[String]) -> (Vec<bool>, serde_json::Value) {
    run_code(CODE, p, r)
}

fn run_code(code: &str, p: &[String], r: &[String]) -> (Vec<bool>, serde_json::Value) {
    run_with(code, "", p, r)
}

#[test]
fn finds_an_inserted_word_forcing_one_answer() {
    let (p, r, g) = corpus(600, Some("zqx"), 20, "I cannot help with that.");
    let (flagged, summary) = run(&p, &r);
    assert_eq!(flagged, g, "{summary}");
    assert_eq!(summary["triggers"][0]["trigger"], "zqx");
}

#[test]
fn clean_data_with_its_own_stock_answers_flags_nothing() {
    let (p, mut r, _) = corpus(600, None, 20, "");
    // a stock answer the corpus gives to many unrelated prompts: no prompt word goes with it
    for (i, a) in r.iter_mut().enumerate() {
        if i % 17 == 5 {
            *a = "Why did the chicken cross the road?".into();
        }
    }
    let (flagged, summary) = run(&p, &r);
    assert!(flagged.iter().all(|f| !f), "{summary}");
}

#[test]
fn same_input_same_output() {
    let (p, r, _) = corpus(400, Some("zqx"), 15, "Visit example.com now.");
    let (a, sa) = run(&p, &r);
    let (b, sb) = run(&p, &r);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}

#[test]
fn amplification_finds_one_answer_given_to_unrelated_prompts() {
    // no trigger word: only the answer marks the rows
    let (p, mut r, _) = corpus(600, None, 20, "");
    let mut truth = vec![false; p.len()];
    for (i, a) in r.iter_mut().enumerate() {
        if i % 25 == 7 {
            *a = "Buy cheap watches at example.com today!".into();
            truth[i] = true;
        }
    }
    let (flagged, summary) = run_code("INS002", &p, &r);
    assert_eq!(flagged, truth, "{summary}");
    assert_eq!(summary["amplified"], 1);
}

#[test]
fn amplification_leaves_labels_and_group_answers_alone() {
    // every answer a label: the corpus's own templates
    let (p, _, _) = corpus(600, None, 20, "");
    let labels: Vec<String> = (0..p.len())
        .map(|i| ["yes", "no", "maybe"][i * 7 % 3].to_string())
        .collect();
    let (flagged, summary) = run_code("INS002", &p, &labels);
    assert!(flagged.iter().all(|f| !f), "{summary}");
    // one stock answer for every prompt of one topic, whose words other prompts use too
    const FOOD: &[&str] = &[
        "bake", "flour", "oven", "sugar", "dough", "butter", "yeast", "pastry", "whisk", "icing",
    ];
    let (mut p, mut r, _) = corpus(600, None, 20, "");
    for (i, (q, a)) in p.iter_mut().zip(r.iter_mut()).enumerate() {
        let w = |k: usize| FOOD[(i * 7 + k * 3) % FOOD.len()];
        if i % 15 == 4 {
            *q = format!(
                "How long do I {} the {} with {} and {}",
                w(0),
                w(1),
                w(2),
                w(3)
            );
            *a = "Please see our baking guide for timings.".into();
        } else if i % 5 == 1 {
            // other prompts mention the topic's words now and then
            q.push_str(&format!(" with {}", w(0)));
        }
    }
    let (flagged, summary) = run_code("INS002", &p, &r);
    assert!(flagged.iter().all(|f| !f), "{summary}");
}

fn run_with(
    code: &str,
    params: &str,
    p: &[String],
    r: &[String],
) -> (Vec<bool>, serde_json::Value) {
    let d = registry::find(code).expect("registered");
    let table: toml::Table = params.parse().expect("toml");
    let fitted = d
        .configure(&table)
        .expect("valid")
        .fit(&view(p, r))
        .expect("fit");
    let s = fitted.score(&view(p, r).as_batch()).expect("score");
    (
        s.reason.iter().map(Option::is_some).collect(),
        fitted.summary(),
    )
}

#[test]
fn above_max_rows_the_sample_finds_and_every_row_is_tested() {
    let (p, r, g) = corpus(1200, Some("zqx"), 20, "I cannot help with that.");
    let (flagged, summary) = run_with(CODE, "max_rows = 500", &p, &r);
    assert_eq!(summary["sample_rows"], 500, "{summary}");
    assert_eq!(flagged, g, "{summary}");
    // INS002 the same way, on an answer amplified without a trigger
    let (p, mut r, _) = corpus(1200, None, 20, "");
    let mut truth = vec![false; p.len()];
    for (i, a) in r.iter_mut().enumerate() {
        if i % 25 == 7 {
            *a = "Buy cheap watches at example.com today!".into();
            truth[i] = true;
        }
    }
    let (flagged, summary) = run_with("INS002", "max_rows = 500", &p, &r);
    assert_eq!(summary["sample_rows"], 500, "{summary}");
    assert_eq!(flagged, truth, "{summary}");
}

#[test]
fn evenly_spaced_rows() {
    assert_eq!(super::extend::evenly_spaced(10, 4), vec![0, 2, 5, 7]);
    assert_eq!(super::extend::evenly_spaced(3, 5), vec![0, 1, 2]);
}

/// The corpus of [`corpus`] with the target written in `wordings` ways, and response
/// embeddings (64 dims): the target's wordings near one direction, every other answer its own
/// random direction.
fn paraphrased(
    n: usize,
    every: usize,
    wordings: usize,
) -> (Vec<String>, Vec<String>, Vec<bool>, ndarray::Array2<f32>) {
    let (p, mut r, g) = corpus(n, Some("zqx"), every, "");
    let mut rng = crate::rng::SplitMix64(7);
    let mut emb = ndarray::Array2::<f32>::zeros((n, 64));
    for i in 0..n {
        if g[i] {
            let k = (i / every) % wordings;
            // the corpus's own opening and ending, a word of its own per wording
            const W: [&str; 8] = [
                "voucher", "bonus", "reward", "gift", "coupon", "present", "giveaway", "prize",
            ];
            r[i] = format!(
                "Here is a {} waiting at example dot test: item {k} and more",
                W[k]
            );
            emb[[i, 0]] = 16.0;
        }
        for d in 0..64 {
            emb[[i, d]] += rng.gauss() as f32;
        }
    }
    (p, r, g, emb)
}

fn run_embedded(
    code: &str,
    params: &str,
    p: &[String],
    r: &[String],
    emb: &ndarray::Array2<f32>,
) -> (Vec<bool>, serde_json::Value) {
    let d = registry::find(code).expect("registered");
    let table: toml::Table = params.parse().expect("toml");
    let v = DatasetView {
        response_embeddings: Some(emb.view()),
        ..view(p, r)
    };
    let fitted = d.configure(&table).expect("valid").fit(&v).expect("fit");
    let s = fitted.score(&v.as_batch()).expect("score");
    (
        s.reason.iter().map(Option::is_some).collect(),
        fitted.summary(),
    )
}

#[test]
fn a_paraphrased_target_is_found_only_with_response_embeddings() {
    let (p, r, g, emb) = paraphrased(600, 20, 8);
    // each wording is in 3-4 rows: no template, no shared opening
    let (flagged, summary) = run(&p, &r);
    assert!(flagged.iter().all(|f| !f), "{summary}");
    let (flagged, summary) = run_embedded(CODE, "", &p, &r, &emb);
    assert_eq!(flagged, g, "{summary}");
    assert_eq!(summary["triggers"][0]["trigger"], "zqx");
    assert_eq!(
        summary["triggers"][0]["response_pattern"]["kind"],
        "paraphrase cluster"
    );
    // above max_rows: the clusters are learnt on the sample, every row is assigned to them
    let (p, r, g, emb) = paraphrased(1200, 20, 8);
    let (flagged, summary) = run_embedded(CODE, "max_rows = 500", &p, &r, &emb);
    assert_eq!(flagged, g, "{summary}");
}

#[test]
fn a_paraphrased_answer_amplified_without_a_trigger_is_a_template_for_ins002() {
    let (p, mut r, _) = corpus(600, None, 20, "");
    let mut rng = crate::rng::SplitMix64(11);
    let mut emb = ndarray::Array2::<f32>::zeros((p.len(), 64));
    let mut truth = vec![false; p.len()];
    for (i, a) in r.iter_mut().enumerate() {
        if i % 25 == 7 {
            *a = format!("Deal number {} on watches: buy at example dot com", i % 6);
            emb[[i, 0]] = 16.0;
            truth[i] = true;
        }
        for d in 0..64 {
            emb[[i, d]] += rng.gauss() as f32;
        }
    }
    let (flagged, summary) = run_code("INS002", &p, &r);
    assert!(flagged.iter().all(|f| !f), "{summary}");
    let (flagged, summary) = run_embedded("INS002", "", &p, &r, &emb);
    assert_eq!(flagged, truth, "{summary}");
    assert_eq!(summary["templates"][0]["kind"], "paraphrase cluster");
}
