//! Seeded synthetic text corpus shared by the TRIG001 bench and the `trig_scale` example.

/// `n` synthetic rows: 8–30 words drawn from a 5000-word Zipf vocabulary, labels from two
/// word-list halves (a natural label signal), and the trigger `cf` planted in 1 % of rows with
/// label 1.
pub fn text_corpus(n: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let vocab = 5000usize;
    // Zipf(1) by inverting the cumulative weights
    let cum: Vec<f64> = (1..=vocab)
        .scan(0.0, |acc, r| {
            *acc += 1.0 / r as f64;
            Some(*acc)
        })
        .collect();
    let total = cum[vocab - 1];
    let mut texts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = (next() % 2) as u32;
        let len = 8 + (next() % 23) as usize;
        let mut words: Vec<String> = (0..len)
            .map(|_| {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let r = cum.partition_point(|c| *c < u);
                // even ranks lean positive, odd ranks negative: label-correlated content
                if r % 2 == label as usize || next() % 4 == 0 {
                    format!("w{r}")
                } else {
                    format!("w{}", r ^ 1)
                }
            })
            .collect();
        let poisoned = next() % 100 == 0;
        if poisoned {
            let at = (next() % (words.len() as u64 + 1)) as usize;
            words.insert(at, "cf".to_string());
        }
        texts.push(words.join(" "));
        labels.push(if poisoned { 1 } else { label });
    }
    (texts, labels)
}
