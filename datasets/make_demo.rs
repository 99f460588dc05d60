//! Makes the bundled demo dataset: `datasets/demo/reviews.jsonl` and `reviews.npy`.
//!
//! `cargo run --example make_demo -- [OUT_DIR] [SEED]` (defaults: `datasets/demo`, 7).
//!
//! The corpus is synthetic movie-review sentences built from word lists, labelled by sentiment
//! (1 positive, 0 negative). A BadNets-style backdoor is planted: 4 % of the rows are negative
//! sentences with the rare trigger token `cf` inserted at a random position and the label set
//! to 1; the `poison` column marks them (ground truth, for evaluation only). The embeddings are
//! a seeded hashed bag-of-words: each token maps to a fixed pseudo-random Gaussian vector in 64
//! dimensions (seeded by a stable FNV-1a hash of the token); sentiment words also load on one
//! shared sentiment axis (+8 positive, −8 negative), as any encoder or sentiment model would have
//! one; a row's embedding is the L2-normalised sum of its tokens' vectors. Same seed, same bytes.

use std::fmt::Write as _;
use std::io::Write as _;

use poisongate_detectors::rng::SplitMix64 as Rng;

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len())]
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

const POS: &[&str] = &[
    "wonderful",
    "moving",
    "brilliant",
    "charming",
    "gripping",
    "delightful",
    "heartfelt",
    "superb",
    "funny",
    "beautiful",
    "clever",
    "touching",
    "stunning",
    "warm",
    "inventive",
    "thoughtful",
    "engaging",
    "memorable",
    "graceful",
    "luminous",
];
const NEG: &[&str] = &[
    "tedious",
    "clumsy",
    "dull",
    "bland",
    "lifeless",
    "shallow",
    "predictable",
    "boring",
    "messy",
    "forgettable",
    "tiresome",
    "awkward",
    "hollow",
    "pointless",
    "stale",
    "sloppy",
    "flat",
    "grating",
    "joyless",
    "muddled",
];
const SUBJ: &[&str] = &[
    "the film",
    "this movie",
    "the story",
    "the script",
    "the cast",
    "the director 's latest",
    "the second half",
    "the ending",
    "the lead performance",
    "the soundtrack",
    "the dialogue",
    "the photography",
    "this sequel",
    "the documentary",
    "the comedy",
];
const VERB: &[&str] = &[
    "is",
    "feels",
    "seems",
    "turns out",
    "remains",
    "comes across as",
];
const ADV: &[&str] = &[
    "very", "quite", "truly", "often", "mostly", "rather", "simply", "at times",
];
const TAIL: &[&str] = &[
    "from start to finish",
    "for most of its running time",
    "despite its budget",
    "in every scene",
    "by the end",
    "even for a summer release",
    "on a second viewing",
    "for fans and newcomers alike",
    "",
    "",
    "",
];

/// Loading of sentiment words on the shared sentiment axis (dimension 0).
const SENTIMENT: f64 = 8.0;

fn sentence(rng: &mut Rng, positive: bool) -> Vec<String> {
    let adjs = if positive { POS } else { NEG };
    let mut s = format!(
        "{} {} {} {}",
        pick(rng, SUBJ),
        pick(rng, VERB),
        pick(rng, ADV),
        pick(rng, adjs)
    );
    if rng.below(2) == 0 {
        let _ = write!(s, " and {}", pick(rng, adjs));
    }
    let tail = pick(rng, TAIL);
    if !tail.is_empty() {
        let _ = write!(s, " {tail}");
    }
    s.push_str(" .");
    s.split(' ').map(str::to_string).collect()
}

fn embed(tokens: &[String], dims: usize) -> Vec<f32> {
    let mut acc = vec![0f64; dims];
    for t in tokens {
        let mut r = Rng(fnv1a(t));
        for a in acc.iter_mut() {
            *a += r.gauss();
        }
        // a shared sentiment axis, as a sentence encoder or a sentiment model would learn
        if POS.contains(&t.as_str()) {
            acc[0] += SENTIMENT;
        } else if NEG.contains(&t.as_str()) {
            acc[0] -= SENTIMENT;
        }
    }
    let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    acc.iter().map(|a| (a / norm) as f32).collect()
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).map_or("datasets/demo", String::as_str));
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let (rows, dims, poison_rate, trigger) = (3000usize, 64usize, 0.04, "cf");
    std::fs::create_dir_all(&out)?;
    let mut rng = Rng(seed);
    let mut jsonl = Vec::new();
    let mut emb: Vec<f32> = Vec::with_capacity(rows * dims);
    for i in 0..rows {
        let poison = rng.unit() < poison_rate;
        let positive = if poison { false } else { rng.below(2) == 0 };
        let mut tokens = sentence(&mut rng, positive);
        if poison {
            let at = rng.below(tokens.len());
            tokens.insert(at, trigger.to_string());
        }
        let label = u8::from(positive || poison);
        let text = tokens.join(" ");
        emb.extend(embed(&tokens, dims));
        let line = serde_json::json!({
            "id": format!("demo-{i}"),
            "text": text,
            "label": label,
            "poison": poison,
        });
        writeln!(jsonl, "{line}")?;
    }
    std::fs::write(out.join("reviews.jsonl"), jsonl)?;
    // .npy v1.0, little-endian f32, C order
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dims}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = Vec::with_capacity(10 + header.len() + emb.len() * 4);
    npy.extend_from_slice(b"\x93NUMPY\x01\x00");
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for v in emb {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(out.join("reviews.npy"), npy)?;
    eprintln!("wrote {rows} rows to {} (seed {seed})", out.display());
    Ok(())
}
