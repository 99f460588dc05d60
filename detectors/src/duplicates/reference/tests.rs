//! The reference state (exact merges, bytes, untrusted input) and REF001 / REF002 on small data.

use super::*;
use crate::rng::SplitMix64;
use crate::{DatasetView, Scores};
use std::sync::Arc;

fn words(rng: &mut SplitMix64, n: usize) -> String {
    let vocab = [
        "the", "film", "plot", "is", "good", "bad", "a", "long", "quiet", "story", "of", "rain",
        "city", "night", "light", "we", "saw", "it", "twice", "slow",
    ];
    (0..n)
        .map(|_| vocab[rng.below(vocab.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn corpus(seed: u64, n: usize) -> (Vec<String>, Vec<u32>, Vec<String>) {
    let mut rng = SplitMix64(seed);
    let mut texts: Vec<String> = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        // some exact repeats (with either label), most distinct
        if i > 10 && rng.below(5) == 0 {
            let j = rng.below(i);
            texts.push(texts[j].clone());
        } else {
            let len = 3 + rng.below(12);
            texts.push(words(&mut rng, len));
        }
        labels.push(rng.below(3) as u32);
    }
    let names = vec!["neg".to_string(), "neu".to_string(), "pos".to_string()];
    (texts, labels, names)
}

fn norm() -> crate::duplicates::Normalization {
    crate::duplicates::Normalization::default()
}

#[test]
fn any_partitioning_and_merge_order_gives_the_same_bytes() {
    let (texts, labels, names) = corpus(3, 3000);
    let whole = ReferenceState::from_rows(&texts, &labels, &names, 0, norm()).expect("state");
    let want = whole.to_bytes();
    assert_eq!(whole.rows(), 3000);
    for parts in [1usize, 2, 7, 16] {
        for order_seed in 0..3u64 {
            // cut points drawn at random, partials merged in a shuffled order
            let mut rng = SplitMix64(100 * parts as u64 + order_seed);
            let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(texts.len())).collect();
            cuts.push(0);
            cuts.push(texts.len());
            cuts.sort_unstable();
            let mut partials: Vec<ReferenceState> = cuts
                .windows(2)
                .map(|w| {
                    // each partial sees only the label names its rows use
                    let used: Vec<String> = {
                        let mut u: Vec<String> = labels[w[0]..w[1]]
                            .iter()
                            .map(|&l| names[l as usize].clone())
                            .collect();
                        u.sort();
                        u.dedup();
                        u
                    };
                    let idx: Vec<u32> = labels[w[0]..w[1]]
                        .iter()
                        .map(|&l| {
                            used.iter()
                                .position(|n| *n == names[l as usize])
                                .expect("used") as u32
                        })
                        .collect();
                    ReferenceState::from_rows(&texts[w[0]..w[1]], &idx, &used, w[0] as u64, norm())
                        .expect("partial")
                })
                .collect();
            for i in (1..partials.len()).rev() {
                let j = rng.below(i + 1);
                partials.swap(i, j);
            }
            let merged = partials
                .into_iter()
                .try_fold(ReferenceState::empty(norm()), |a, b| a.merge(b))
                .expect("merge");
            assert_eq!(merged.to_bytes(), want, "{parts} parts, order {order_seed}");
        }
    }
}

#[test]
fn bytes_round_trip_and_damaged_bytes_are_refused() {
    let (texts, labels, names) = corpus(5, 400);
    let s = ReferenceState::from_rows(&texts, &labels, &names, 0, norm()).expect("state");
    let bytes = s.to_bytes();
    assert_eq!(ReferenceState::from_bytes(&bytes, norm()).expect("read"), s);
    // every truncation is an error, never a panic
    for cut in 0..bytes.len() {
        assert!(
            ReferenceState::from_bytes(&bytes[..cut], norm()).is_err(),
            "cut {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(ReferenceState::from_bytes(&longer, norm()).is_err());
    // any single flipped byte past the header is caught (hash, order, counts or lengths)
    let body = state_header(&norm()).to_bytes().len();
    for at in (body..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x55;
        if let Ok(read) = ReferenceState::from_bytes(&bad, norm()) {
            // a flipped first-row number is still a valid state, of other rows
            assert_ne!(read, s, "byte {at} flipped and nothing changed");
        }
    }
    // another normalisation is another state
    let other = crate::duplicates::Normalization {
        case_fold: false,
        ..norm()
    };
    assert!(ReferenceState::from_bytes(&bytes, other).is_err());
}

fn judge(
    code: &'static str,
    trusted: &[(&str, u32)],
    new: &[(&str, u32)],
) -> (Scores, serde_json::Value) {
    let names = vec!["0".to_string(), "1".to_string()];
    let tt: Vec<String> = trusted.iter().map(|t| t.0.to_string()).collect();
    let tl: Vec<u32> = trusted.iter().map(|t| t.1).collect();
    let state = ReferenceState::from_rows(&tt, &tl, &names, 0, norm()).expect("state");
    let det = reference_configure(code, &toml::Table::new(), Some(Arc::new(state))).expect("cfg");
    let texts: Vec<String> = new.iter().map(|t| t.0.to_string()).collect();
    let labels: Vec<u32> = new.iter().map(|t| t.1).collect();
    let view = crate::testutil::text_view(&texts, &labels, &names);
    crate::testutil::fit_and_score(&det, view)
}

#[test]
fn flipped_copies_of_trusted_rows_are_flagged_and_agreeing_ones_are_not() {
    let trusted = [
        ("the plot is slow and the rain never stops in this city", 0),
        ("a quiet story of light and night that we saw twice", 1),
        ("good film", 1),
        ("it is bad", 0),
    ];
    let new = [
        // exact copy, flipped
        ("The plot is slow and the rain never stops in this city", 1),
        // exact copy, same label
        ("a quiet story of light and night that we saw twice", 1),
        // one word replaced, flipped
        ("a quiet story of light and rain that we saw twice", 0),
        // short text, one word changed: too short to be a near copy
        ("good plot", 0),
        // unrelated
        ("nothing like anything in the corpus at all here", 0),
    ];
    let (s, summary) = judge("REF001", &trusted, &new);
    let flagged: Vec<usize> = (0..new.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, vec![0, 2], "{:?}", s.reason);
    assert!(s.reason[0]
        .as_deref()
        .is_some_and(|r| r.contains("measure=exact") && r.contains("trusted_row=0")));
    assert!(s.reason[2]
        .as_deref()
        .is_some_and(|r| r.contains("trusted_row=1")));
    assert_eq!(summary["exact_conflicts"], 1);
    assert_eq!(
        summary["label_drift"]["labels"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(summary["near_conflicts"], 1);
}

#[test]
fn copies_beyond_the_trusted_baseline_are_amplified() {
    let mut rng = SplitMix64(9);
    let mut trusted: Vec<(String, u32)> = (0..2000).map(|_| (words(&mut rng, 12), 0)).collect();
    // a natural duplicate: 40 trusted rows, 10 new ones (the share of the new batch)
    for _ in 0..40 {
        trusted.push(("see you at the station at noon".to_string(), 1));
    }
    let mut new: Vec<(String, u32)> = (0..500).map(|_| (words(&mut rng, 12), 0)).collect();
    for _ in 0..10 {
        new.push(("see you at the station at noon".to_string(), 1));
    }
    // one trusted row copied 20 times
    let copied = trusted[7].0.clone();
    for _ in 0..20 {
        new.push((copied.clone(), 0));
    }
    let t: Vec<(&str, u32)> = trusted.iter().map(|(s, l)| (s.as_str(), *l)).collect();
    let n: Vec<(&str, u32)> = new.iter().map(|(s, l)| (s.as_str(), *l)).collect();
    let (s, summary) = judge("REF002", &t, &n);
    let flagged: Vec<usize> = (0..n.len()).filter(|&i| s.reason[i].is_some()).collect();
    assert_eq!(flagged, (510..530).collect::<Vec<_>>(), "{summary}");
    assert!(s.score[505] < 1.0);
    assert_eq!(summary["amplified_clusters"], 1);
}

#[test]
fn without_a_state_the_reference_detectors_say_what_they_need() {
    let det = reference_configure("REF001", &toml::Table::new(), None).expect("cfg");
    let texts = vec!["a b c".to_string()];
    let names = vec!["0".to_string()];
    let view = DatasetView {
        n_rows: 1,
        texts: Some(&texts),
        labels: Some(&[0]),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let err = det.fit(&view).err().expect("an error").to_string();
    assert!(err.contains("--reference"), "{err}");
}

/// `n` rows of `d` Gaussian coordinates (Box–Muller from SplitMix64), each shifted by `shift`.
fn gaussian_rows(rng: &mut SplitMix64, n: usize, d: usize, shift: f32) -> Vec<f32> {
    (0..n * d)
        .map(|_| {
            let u1 = (rng.below(1 << 30) as f64 + 0.5) / (1u64 << 30) as f64;
            let u2 = rng.below(1 << 30) as f64 / (1u64 << 30) as f64;
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 + shift
        })
        .collect()
}

#[test]
fn embedding_moments_merge_exactly_and_class_drift_is_reported() {
    let (texts, labels, names) = corpus(13, 1200);
    let d = 8;
    let mut rng = SplitMix64(4);
    let x = gaussian_rows(&mut rng, texts.len(), d, 0.0);
    let mut whole = ReferenceState::from_rows(&texts, &labels, &names, 0, norm()).expect("state");
    whole
        .add_embeddings(&x, d, &labels, &names)
        .expect("moments");
    // in three parts, merged in another order: the same bytes
    let cut = [0, 500, 900, 1200];
    let mut parts: Vec<ReferenceState> = cut
        .windows(2)
        .map(|w| {
            let mut s = ReferenceState::from_rows(
                &texts[w[0]..w[1]],
                &labels[w[0]..w[1]],
                &names,
                w[0] as u64,
                norm(),
            )
            .expect("part");
            s.add_embeddings(&x[w[0] * d..w[1] * d], d, &labels[w[0]..w[1]], &names)
                .expect("moments");
            s
        })
        .collect();
    parts.reverse();
    let merged = parts
        .into_iter()
        .try_fold(ReferenceState::empty(norm()), |a, b| a.merge(b))
        .expect("merge");
    let bytes = whole.to_bytes();
    assert_eq!(merged.to_bytes(), bytes);
    assert_eq!(
        ReferenceState::from_bytes(&bytes, norm()).expect("read"),
        whole
    );
    // a batch from the same distribution does not drift; one with a shifted class does
    let state = Arc::new(whole);
    let det =
        reference_configure("REF001", &toml::Table::new(), Some(Arc::clone(&state))).expect("cfg");
    let (nt, nl, _) = corpus(17, 600);
    for (shift, drifted) in [(0.0f32, false), (0.5, true)] {
        let mut y = gaussian_rows(&mut rng, nt.len(), d, 0.0);
        for (r, &l) in nl.iter().enumerate() {
            if l == 2 {
                y[r * d..(r + 1) * d].iter_mut().for_each(|v| *v += shift);
            }
        }
        let emb = ndarray::ArrayView2::from_shape((nt.len(), d), &y).expect("shape");
        let view = DatasetView {
            n_rows: nt.len(),
            texts: Some(&nt),
            labels: Some(&nl),
            class_names: &names,
            embeddings: Some(emb),
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let summary = det.fit(&view).expect("fit").summary();
        let drift = &summary["embedding_drift"];
        assert_eq!(
            drift["classes"].as_array().map(Vec::len),
            Some(3),
            "{drift}"
        );
        let listed = drift["drifted"].as_array().expect("list");
        assert_eq!(!listed.is_empty(), drifted, "shift {shift}: {drift}");
        if drifted {
            assert_eq!(listed, &vec![serde_json::json!("pos")]);
        }
    }
}
