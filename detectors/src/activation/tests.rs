use super::kmeans::{kmeans2, sample_without_replacement};
use super::silhouette::{silhouette2, silhouette2_rowwise};
use super::*;
use crate::rng::SplitMix64;
use crate::testutil::{fit_and_score_embeddings, gaussian, Rng};
use ndarray::Array2;

fn run(x: &Array2<f32>, labels: &[u32]) -> (Scores, serde_json::Value) {
    let mut t = toml::Table::new();
    t.insert("silhouette_rows".into(), toml::Value::Integer(600));
    t.insert("null_draws".into(), toml::Value::Integer(2));
    fit_and_score_embeddings(&ActivationClustering, &t, x, labels)
}

#[test]
fn clean_classes_flag_nothing() {
    let mut rng = Rng(11);
    let x = gaussian(&mut rng, 3000, 32);
    let labels: Vec<u32> = (0..3000).map(|i| (i % 2) as u32).collect();
    let (s, summary) = run(&x, &labels);
    assert_eq!(
        s.reason.iter().filter(|r| r.is_some()).count(),
        0,
        "{summary}"
    );
    assert!(s.score.iter().all(|v| *v < 1.0));
    for c in summary["classes"].as_array().unwrap() {
        assert_eq!(c["split"], false, "{c}");
    }
}

#[test]
fn planted_cluster_is_flagged_and_only_in_its_class() {
    let mut rng = Rng(12);
    let (n, d) = (3000, 32);
    let mut x = gaussian(&mut rng, n, d);
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
    let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut truth = vec![false; n];
    for i in (1..n).step_by(2) {
        if rng.unit() < 0.12 {
            truth[i] = true;
            for k in 0..d {
                x[[i, k]] += (5.0 * dir[k] / norm) as f32;
            }
        }
    }
    let (s, summary) = run(&x, &labels);
    let flags: Vec<bool> = s.reason.iter().map(Option::is_some).collect();
    let e = crate::metrics::evaluate(&flags, &s.score, &truth);
    assert!(e.recall > 0.95 && e.precision > 0.95, "{e:?} {summary}");
    assert!(e.auroc.unwrap() > 0.98);
    assert_eq!(summary["classes"][0]["flagged"], 0);
    assert_eq!(summary["classes"][1]["flagged"], e.flagged);
    // flagged exactly when the score reaches 1
    for (f, v) in flags.iter().zip(&s.score) {
        assert_eq!(*f, *v >= 1.0);
    }
}

/// A compact sub-population in both classes (a second source merged into the corpus): one
/// class holds a minority of it, the other most of it. The clustering of the first passes the
/// split tests, but the other class's rows fall on the smaller cluster's side as often: no
/// split, nothing flagged, and the summary says why.
#[test]
fn a_sub_population_both_classes_share_is_not_flagged() {
    let mut rng = Rng(15);
    let (n, d) = (3000, 32);
    let mut x = gaussian(&mut rng, n, d);
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
    let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
    for i in 0..n {
        // 15 % of class 1 and 60 % of class 0 come from the other source
        let share = if i % 2 == 1 { 0.15 } else { 0.6 };
        if rng.unit() < share {
            for k in 0..d {
                x[[i, k]] += (5.0 * dir[k] / norm) as f32;
            }
        }
    }
    let (s, summary) = run(&x, &labels);
    assert_eq!(
        s.reason.iter().filter(|r| r.is_some()).count(),
        0,
        "{summary}"
    );
    let c1 = &summary["classes"][1];
    assert_eq!(c1["split"], false, "{c1}");
    assert!(
        c1["decision"].as_str().unwrap().contains("not specific"),
        "{c1}"
    );
    let other = &c1["specificity"]["other_classes"][0];
    assert!(other["share"].as_f64().unwrap() > 0.4, "{c1}");
    // with the test off, the class splits and its minority is flagged
    let mut t = toml::Table::new();
    t.insert("silhouette_rows".into(), toml::Value::Integer(600));
    t.insert("null_draws".into(), toml::Value::Integer(2));
    t.insert("min_specificity".into(), toml::Value::Float(0.0));
    let (s, summary) = fit_and_score_embeddings(&ActivationClustering, &t, &x, &labels);
    assert!(
        s.reason.iter().filter(|r| r.is_some()).count() > 100,
        "{summary}"
    );
}

#[test]
fn fastica_weighs_every_component_equally() {
    // one high-variance Gaussian axis and a minority shifted along a low-variance one: on
    // the PCA coordinates 2-means cuts the wide axis (no minority, no split); FastICA's
    // coordinates are whitened (unit variance each, then rotated, which 2-means and the
    // silhouette do not see), so the shifted axis carries the split
    let mut rng = Rng(14);
    let (n, d) = (3000, 4);
    let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let mut truth = vec![false; n];
    let mut x = Array2::<f32>::zeros((n, d));
    for i in 0..n {
        x[[i, 0]] = (4.0 * rng.gauss()) as f32;
        for k in 1..d {
            x[[i, k]] = (0.3 * rng.gauss()) as f32;
        }
        if i % 2 == 1 && rng.unit() < 0.15 {
            truth[i] = true;
            x[[i, d - 1]] += 1.8;
        }
    }
    let mut t = toml::Table::new();
    t.insert("silhouette_rows".into(), toml::Value::Integer(600));
    t.insert("null_draws".into(), toml::Value::Integer(2));
    t.insert("min_rows_per_dim".into(), toml::Value::Integer(0));
    let (pca, _) = fit_and_score_embeddings(&ActivationClustering, &t, &x, &labels);
    t.insert("ica".into(), toml::Value::Boolean(true));
    let (ica, summary) = fit_and_score_embeddings(&ActivationClustering, &t, &x, &labels);
    let flags = |s: &Scores| s.reason.iter().map(Option::is_some).collect::<Vec<_>>();
    let e_pca = crate::metrics::evaluate(&flags(&pca), &pca.score, &truth);
    let e_ica = crate::metrics::evaluate(&flags(&ica), &ica.score, &truth);
    assert!(e_pca.f1 < 0.5, "{e_pca:?}");
    assert!(e_ica.f1 > 0.9, "{e_ica:?} {summary}");
    assert_eq!(summary["classes"][0]["flagged"], 0, "{summary}");
    assert_eq!(summary["classes"][1]["reduction"], "fastica");
}

#[test]
fn an_even_split_is_not_poison() {
    // two equal, well separated halves: a natural bimodal class, not a minority
    let mut rng = Rng(13);
    let (n, d) = (2000, 16);
    let mut x = gaussian(&mut rng, n, d);
    for i in 0..n / 2 {
        x[[2 * i, 3]] += 8.0;
    }
    let labels = vec![0u32; n];
    let (s, summary) = run(&x, &labels);
    assert!(s.reason.iter().all(Option::is_none), "{summary}");
    assert!(summary["classes"][0]["decision"]
        .as_str()
        .unwrap()
        .contains("max_minor_share"));
}

#[test]
fn silhouette_and_kmeans_basics() {
    // two tight blobs far apart: silhouette near 1, 2-means finds them
    let z: Vec<f64> = (0..200)
        .flat_map(|i| {
            let off = if i < 150 { 0.0 } else { 100.0 };
            [off + (i % 7) as f64 * 0.01, (i % 5) as f64 * 0.01]
        })
        .collect();
    let km = kmeans2(&z, 2, 3, 100, &mut SplitMix64(1));
    let mut sizes = km.sizes;
    sizes.sort_unstable();
    assert_eq!(sizes, [50, 150]);
    let lab: Vec<bool> = (0..200).map(|i| i >= 150).collect();
    assert!(silhouette2(&z, 2, &lab) > 0.99);
    assert_eq!(silhouette2(&z, 2, &[false; 100]), 0.0);
    // pairs computed once give the row-at-a-time value up to rounding, whatever m mod 8
    // and however few rows each of the fixed pieces gets
    let mut rng = SplitMix64(7);
    for (m, k) in [
        (1usize, 3usize),
        (7, 10),
        (8, 1),
        (17, 2),
        (61, 10),
        (200, 4),
        (999, 10),
    ] {
        let z: Vec<f64> = (0..m * k).map(|_| rng.gauss() * 3.0).collect();
        let lab: Vec<bool> = (0..m).map(|_| rng.unit() < 0.3).collect();
        let (fast, slow) = (silhouette2(&z, k, &lab), silhouette2_rowwise(&z, k, &lab));
        // the pair distances are taken in f32 (relative error about 1e-6 each)
        assert!(
            (fast - slow).abs() <= 1e-5 * slow.abs().max(1e-2),
            "m={m} k={k}: {fast} vs {slow}"
        );
    }
    let s = sample_without_replacement(100, 10, &mut SplitMix64(2));
    assert_eq!(s.len(), 10);
    assert!(s.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn small_and_constant_classes_are_skipped() {
    let x = Array2::<f32>::zeros((300, 4));
    let labels = vec![0u32; 300];
    let (s, summary) = run(&x, &labels);
    assert!(s.score.iter().all(|v| *v == 0.0));
    assert!(summary["classes"][0]["skipped"].is_string(), "{summary}");
    let x = Array2::<f32>::ones((50, 4));
    let (_, summary) = run(&x, &[1u32; 50]);
    assert!(summary["classes"][1]["skipped"].is_string());
}
