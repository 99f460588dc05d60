//! Seeded injection of duplicate poison into a benchmark set (shared by the duplicates
//! integration test and the `dup_eval` example).

use std::io::BufRead;

/// A loaded set: texts, labels, and whether each row was injected.
pub struct Set {
    /// Text per row.
    pub texts: Vec<String>,
    /// Label per row.
    pub labels: Vec<u32>,
    /// Ground truth per row (benchmark `poison` or injected).
    pub truth: Vec<bool>,
    /// Rows whose copy was injected (they may be flagged with their copies).
    pub original: Vec<bool>,
}

/// Read a benchmark JSONL file.
pub fn load(path: &std::path::Path) -> Result<Set, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let mut s = Set {
        texts: Vec::new(),
        labels: Vec::new(),
        truth: Vec::new(),
        original: Vec::new(),
    };
    for line in std::io::BufReader::new(file).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        s.texts
            .push(v["text"].as_str().unwrap_or_default().to_string());
        s.labels.push(v["label"].as_u64().unwrap_or(0) as u32);
        s.truth.push(v["poison"].as_bool().unwrap_or(false));
        s.original.push(false);
    }
    Ok(s)
}

use poisongate_detectors::rng::SplitMix64 as Rng;

/// Append `n_exact` exact copies and `n_near` one-word-changed copies of distinct random rows
/// with flipped labels, and `n_amp` copies of one more row (label kept), then shuffle with the
/// seed. Returns the new set and, per row, whether it was injected.
pub fn inject(base: &Set, n_exact: usize, n_near: usize, n_amp: usize, seed: u64) -> Set {
    let mut rng = Rng(seed);
    let n = base.texts.len();
    let mut used = std::collections::BTreeSet::new();
    let mut pick = |rng: &mut Rng| loop {
        let r = rng.below(n);
        if used.insert(r) {
            return r;
        }
    };
    let mut extra: Vec<(String, u32)> = Vec::new();
    for _ in 0..n_exact {
        let r = pick(&mut rng);
        extra.push((base.texts[r].clone(), 1 - base.labels[r].min(1)));
    }
    for _ in 0..n_near {
        let r = pick(&mut rng);
        let mut words: Vec<String> = base.texts[r].split(' ').map(str::to_string).collect();
        // replace one alphabetic word by a word of another random row
        let alpha: Vec<usize> = (0..words.len())
            .filter(|&i| words[i].chars().any(char::is_alphabetic))
            .collect();
        let pos = if alpha.is_empty() {
            0
        } else {
            alpha[rng.below(alpha.len())]
        };
        let replacement = loop {
            let other: Vec<&str> = base.texts[rng.below(n)]
                .split(' ')
                .filter(|w| w.chars().all(char::is_alphabetic) && w.len() > 2)
                .collect();
            if !other.is_empty() {
                let w = other[rng.below(other.len())].to_string();
                if w.to_lowercase() != words[pos].to_lowercase() {
                    break w;
                }
            }
        };
        words[pos] = replacement;
        extra.push((words.join(" "), 1 - base.labels[r].min(1)));
    }
    let r = pick(&mut rng);
    let used = used;
    for _ in 0..n_amp {
        extra.push((base.texts[r].clone(), base.labels[r]));
    }
    let mut rows: Vec<(String, u32, bool, bool)> = base
        .texts
        .iter()
        .zip(&base.labels)
        .enumerate()
        .map(|(i, (t, &l))| (t.clone(), l, false, used.contains(&i)))
        .chain(extra.into_iter().map(|(t, l)| (t, l, true, false)))
        .collect();
    for i in (1..rows.len()).rev() {
        let j = rng.below(i + 1);
        rows.swap(i, j);
    }
    Set {
        texts: rows.iter().map(|r| r.0.clone()).collect(),
        labels: rows.iter().map(|r| r.1).collect(),
        truth: rows.iter().map(|r| r.2).collect(),
        original: rows.iter().map(|r| r.3).collect(),
    }
}
