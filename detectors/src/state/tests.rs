use super::*;
use crate::testutil::Rng;

fn rows(seed: u64, n: usize, d: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            (0..d)
                // a few large and many small values, where float sums depend on the order
                .map(|k| (rng.gauss() * if (i + k) % 7 == 0 { 1e3 } else { 1e-3 }) as f32)
                .collect()
        })
        .collect()
}

fn header() -> Header {
    Header::new("TEST001", 1, &serde_json::json!({"k": 10}))
}

/// Split `rows` into random contiguous or scattered parts, fit each, merge in a random order.
fn partitioned(rows: &[Vec<f32>], d: usize, seed: u64) -> Moments {
    let mut rng = Rng(seed);
    let parts = 1 + (rng.next_u64() % 9) as usize;
    let mut partials: Vec<Moments> = (0..parts).map(|_| Moments::new(d)).collect();
    for r in rows {
        let p = (rng.next_u64() % parts as u64) as usize;
        partials[p].update(r).unwrap();
    }
    // merge random pairs until one is left: a random tree, not a left fold
    while partials.len() > 1 {
        let i = (rng.next_u64() % partials.len() as u64) as usize;
        let a = partials.swap_remove(i);
        let j = (rng.next_u64() % partials.len() as u64) as usize;
        partials[j].merge(&a).unwrap();
    }
    partials.pop().unwrap()
}

#[test]
fn any_partitioning_and_merge_order_gives_the_same_bytes() {
    let (n, d) = (600, 6);
    let data = rows(3, n, d);
    let mut one = Moments::new(d);
    for r in &data {
        one.update(r).unwrap();
    }
    let bytes = one.to_bytes(&header());
    for seed in 0..20 {
        let m = partitioned(&data, d, seed);
        assert_eq!(m.to_bytes(&header()), bytes, "partitioning seed {seed}");
    }
    // the reversed row order too
    let mut rev = Moments::new(d);
    for r in data.iter().rev() {
        rev.update(r).unwrap();
    }
    assert_eq!(rev.to_bytes(&header()), bytes);
}

#[test]
fn float_sums_depend_on_the_order_and_exact_sums_do_not() {
    let values = [1e8, 1e-8, -1e8, 3.5e-9, 2e7, -2e7];
    let float_fwd: f64 = values.iter().sum();
    let float_rev: f64 = values.iter().rev().sum();
    assert_ne!(float_fwd, float_rev, "the example must show the problem");
    let exact = |order: &[usize]| {
        let mut s = FixedSums::zeros(1);
        for &i in order {
            s.add(0, values[i]).unwrap();
        }
        s.get(0).unwrap()
    };
    let fwd = exact(&[0, 1, 2, 3, 4, 5]);
    assert_eq!(fwd, exact(&[5, 4, 3, 2, 1, 0]));
    assert_eq!(fwd, exact(&[2, 4, 0, 5, 1, 3]));
    assert!((fwd - 1.35e-8).abs() < 1e-13, "{fwd}");
}

#[test]
fn mean_and_covariance_match_a_two_pass_computation() {
    let (n, d) = (400, 5);
    let data = rows(9, n, d);
    let mut m = Moments::new(d);
    for r in &data {
        m.update(r).unwrap();
    }
    let mean: Vec<f64> = (0..d)
        .map(|k| data.iter().map(|r| r[k] as f64).sum::<f64>() / n as f64)
        .collect();
    for (a, b) in m.mean().iter().zip(&mean) {
        // the grid is 2^-20: each value moves by at most 2^-21
        assert!((a - b).abs() < 1e-6, "{a} {b}");
    }
    let cov = m.covariance();
    for i in 0..d {
        for j in 0..d {
            let c = data
                .iter()
                .map(|r| (r[i] as f64 - mean[i]) * (r[j] as f64 - mean[j]))
                .sum::<f64>()
                / n as f64;
            let got = cov[i * d + j];
            // each value moves by at most 2^-21 on the grid, so a product moves by at most
            // 2^-21 (|x_i| + |x_j|), and the mean's term by as much again
            let big = |k: usize| data.iter().map(|r| (r[k] as f64).abs()).fold(0.0, f64::max);
            let bound = 2.0 * (big(i) + big(j)) / (1u64 << 21) as f64 + 1e-9;
            assert!(
                (got - c).abs() <= bound,
                "{i},{j}: {got} {c} (bound {bound})"
            );
        }
    }
}

#[test]
fn bytes_round_trip_and_foreign_states_are_refused() {
    let d = 3;
    let mut m = Moments::new(d);
    for r in rows(1, 50, d) {
        m.update(&r).unwrap();
    }
    let h = header();
    let bytes = m.to_bytes(&h);
    assert_eq!(Moments::from_bytes(&bytes, &h).unwrap(), m);

    for (other, field) in [
        (("TEST001", 1, 11), "parameters digest"),
        (("TEST001", 2, 10), "algorithm version"),
        (("TEST002", 1, 10), "detector"),
    ] {
        let (code, version, k) = other;
        let expected = Header::new(code, version, &serde_json::json!({ "k": k }));
        match Moments::from_bytes(&bytes, &expected) {
            Err(StateError::Mismatch { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }

    assert_eq!(
        Moments::from_bytes(b"not a state", &h),
        Err(StateError::NotAState)
    );
    for cut in [10, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(
            Moments::from_bytes(&bytes[..cut], &h),
            Err(StateError::Truncated)
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Moments::from_bytes(&long, &h), Err(StateError::Trailing(1)));
}

#[test]
fn a_rejected_row_leaves_the_state_unchanged() {
    let mut m = Moments::new(3);
    m.update(&[1.0, 2.0, 3.0]).unwrap();
    let before = m.clone();
    assert!(m.update(&[1.0, f32::NAN, 0.0]).is_err());
    assert!(m.update(&[1.0, 1e6, 0.0]).is_err());
    assert!(m.update(&[1.0, 2.0]).is_err());
    assert_eq!(m, before);
    let mut other = Moments::new(4);
    other.update(&[0.0; 4]).unwrap();
    assert!(m.merge(&other).is_err());
    assert_eq!(m, before);
}

#[test]
fn batches_give_exactly_the_row_by_row_state() {
    // unit-scale rows (chunks of thousands through the matrix product), and rows with values
    // near the limit (a product beyond 2^53: integers, one row at a time)
    for (n, d, scale) in [(9000usize, 7usize, 1.0f64), (40, 3, 4e5), (300, 4, 60.0)] {
        let mut rng = Rng(n as u64);
        let flat: Vec<f32> = (0..n * d)
            .map(|_| ((rng.unit() * 2.0 - 1.0) * scale) as f32)
            .collect();
        let mut by_row = Moments::new(d);
        for r in flat.chunks_exact(d) {
            by_row.update(r).unwrap();
        }
        let mut batched = Moments::new(d);
        // uneven batches
        let cut = (n / 3) * d;
        batched.update_rows(&flat[..cut]).unwrap();
        batched.update_rows(&flat[cut..]).unwrap();
        assert_eq!(batched, by_row, "n {n}, d {d}, scale {scale}");
    }
    let mut m = Moments::new(2);
    let before = m.clone();
    assert!(m.update_rows(&[1.0, 2.0, f32::INFINITY, 0.0]).is_err());
    assert!(m.update_rows(&[1.0, 2.0, 3.0]).is_err());
    assert_eq!(m, before);
}

#[test]
fn rounding_without_the_library_call_equals_f64_round() {
    let mut rng = crate::rng::SplitMix64(3);
    let mut values = vec![
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        0.49999999999999994,
        -0.0,
        0.0,
    ];
    values.extend([(1u64 << 40) as f64 + 0.5, -((1u64 << 50) as f64) - 0.5]);
    for _ in 0..100_000 {
        let scale = [1.0, 1e3, 1e6, (1u64 << 40) as f64][rng.below(4)];
        values.push((rng.unit() - 0.5) * scale);
        // a half exactly
        values.push(rng.below(1 << 20) as f64 + 0.5);
    }
    for v in values {
        assert_eq!(super::round_half_away(v), v.round(), "{v}");
    }
}

#[test]
fn the_short_conversion_rounds_as_the_long_one() {
    // i64's edges, values beyond f64's exact integers (rounded, ties to even) and i128's range
    let mut qs: Vec<i128> = vec![0, 1, -1, i64::MAX as i128, i64::MIN as i128];
    qs.extend([
        i64::MAX as i128 + 1,
        i64::MIN as i128 - 1,
        i128::MAX,
        i128::MIN,
    ]);
    for k in 52..64 {
        for d in [-3i128, -1, 0, 1, 2, 3] {
            qs.push((1i128 << k) + d);
            qs.push(-(1i128 << k) + d);
        }
    }
    let mut state = 7u64;
    for _ in 0..10_000 {
        let hi = crate::rng::splitmix(&mut state) as i128;
        let lo = crate::rng::splitmix(&mut state) as i128;
        qs.push((hi << 64) ^ lo);
        qs.push(hi);
    }
    for q in qs {
        assert_eq!(to_f64(q).to_bits(), (q as f64).to_bits(), "{q}");
    }
}
