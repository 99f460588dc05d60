//! Seeded synthetic text corpus shared by the TRIG001 bench and the `trig_scale` example.

use poisongate_detectors::rng::splitmix as mix;

/// `n` synthetic rows of 8–30 words from a 5000-word vocabulary, written by a Markov chain so
/// that words have collocations as in real text (each word has 3 favourite successors, taken
/// 80 % of the time; otherwise a Zipf draw). The label is random; the first word's parity agrees
/// with it 80 % of the time, so content carries a natural label signal through the chain. The
/// trigger `cf` is inserted at a random position into 1 % of rows, whose label is set to 1.
pub fn text_corpus(n: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
    let mut state = seed;
    let vocab = 5000usize;
    let cum: Vec<f64> = (1..=vocab)
        .scan(0.0, |acc, r| {
            *acc += 1.0 / r as f64;
            Some(*acc)
        })
        .collect();
    let total = cum[vocab - 1];
    let succ: Vec<[usize; 3]> = (0..vocab)
        .map(|w| {
            let mut s = (w as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ seed;
            [0, 1, 2].map(|_| (mix(&mut s) % vocab as u64) as usize)
        })
        .collect();
    let mut texts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let zipf = |state: &mut u64| {
            let u = (mix(state) >> 11) as f64 / (1u64 << 53) as f64 * total;
            cum.partition_point(|c| *c < u).min(vocab - 1)
        };
        let label = (mix(&mut state) % 2) as u32;
        let len = 8 + (mix(&mut state) % 23) as usize;
        let mut w = zipf(&mut state);
        if (w % 2) as u32 != label && !mix(&mut state).is_multiple_of(5) {
            w ^= 1;
        }
        let mut words = Vec::with_capacity(len + 1);
        for _ in 0..len {
            words.push(format!("w{w}"));
            w = if !mix(&mut state).is_multiple_of(5) {
                succ[w][(mix(&mut state) % 3) as usize]
            } else {
                zipf(&mut state)
            };
        }
        let poisoned = mix(&mut state).is_multiple_of(100);
        if poisoned {
            let at = (mix(&mut state) % (words.len() as u64 + 1)) as usize;
            words.insert(at, "cf".to_string());
        }
        texts.push(words.join(" "));
        labels.push(if poisoned { 1 } else { label });
    }
    (texts, labels)
}
