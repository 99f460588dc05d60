//! Mergeable detector state: statistics that any partitioning of the rows, and any order of
//! merging the partitions, turn into the same bytes.
//!
//! A fit that runs on one machine, on a 2-core CI box or on a cluster must end in the same
//! state, or the same data gets different verdicts depending on where it was scanned.
//! Floating-point addition is not associative, so sums are not kept as floats:
//!
//! - [`FixedSums`]: each added value is rounded once, on its own, to a fixed-point grid of
//!   2^-[`FRACTION_BITS`] and added as an integer (`i128`). Integer addition is exact, so the
//!   total is the same whatever the grouping. The rounding of a value does not depend on
//!   what it is added to, which is what makes this exact where compensated float sums are not.
//! - [`Moments`]: row count, per-column sums and the upper triangle of the cross-product
//!   matrix of `f32` rows, each value rounded once to a grid of 2^-20 and every sum kept as
//!   an integer; batches go through a floating-point matrix product in chunks where every
//!   partial sum is an integer below 2^53, so it is exact too.
//! - [`header`]: the versioned header every serialised partial and state starts with
//!   (detector code, algorithm version, digest of the resolved parameters), so a state from
//!   another detector, another algorithm version or other parameters is refused, not merged.
//!
//! Nothing here is specific to one detector; the detectors' rounds are built from these
//! pieces. Written by hand because no maintained crate offers order-independent exact sums
//! of floats with a serialised form (accurate-summation crates round the final result, which
//! still depends on how partial results were grouped).

pub mod header;

pub use header::{Header, StateError};

/// `a` and `b`, each sorted by `less`, as one sorted list (elements of `a` first among equals):
/// how partials kept as sorted lists merge.
pub(crate) fn merge_sorted_by<T: Clone>(a: &[T], b: &[T], less: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if less(&b[j], &a[i]) {
            out.push(b[j].clone());
            j += 1;
        } else {
            out.push(a[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Bits after the binary point of the fixed-point grid: values are rounded to multiples of
/// 2^-48 (about 3.6e-15).
pub const FRACTION_BITS: u32 = 48;

/// The largest magnitude a single added value may have: 2^39. With values this large the
/// `i128` total still holds 2^40 of them (2^39 · 2^48 · 2^40 = 2^127).
pub const MAX_VALUE: f64 = (1u64 << 39) as f64;

/// Round one value to the grid. Rejects non-finite values and values beyond [`MAX_VALUE`].
fn quantise(v: f64) -> Result<i128, StateError> {
    if !v.is_finite() || v.abs() > MAX_VALUE {
        return Err(StateError::Value(v));
    }
    // exact: multiplying by a power of two only changes the exponent
    let scaled = v * (1u64 << FRACTION_BITS) as f64;
    Ok(scaled.round() as i128)
}

/// Back from the grid to `f64` (the one rounding a finalised statistic gets).
fn dequantise(q: i128) -> f64 {
    to_f64(q) / (1u64 << FRACTION_BITS) as f64
}

/// `q as f64`, the integer rounded to the nearest `f64`, in one instruction when `q` fits in
/// an `i64` (as sums of products of grid values mostly do): converting from `i128` is a call
/// of a software routine, and from `i64` the same correctly rounded value.
#[inline(always)]
fn to_f64(q: i128) -> f64 {
    match i64::try_from(q) {
        Ok(v) => v as f64,
        Err(_) => q as f64,
    }
}

/// A vector of exact sums on the fixed-point grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedSums {
    sums: Vec<i128>,
}

impl FixedSums {
    /// `len` sums, all zero.
    pub fn zeros(len: usize) -> Self {
        FixedSums { sums: vec![0; len] }
    }

    /// Number of sums.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// True when there are no sums.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Add `v` to sum `i`.
    pub fn add(&mut self, i: usize, v: f64) -> Result<(), StateError> {
        let q = quantise(v)?;
        let len = self.sums.len();
        let slot = self.sums.get_mut(i).ok_or(StateError::Shape {
            expected: len,
            got: i + 1,
        })?;
        *slot = slot.checked_add(q).ok_or(StateError::Overflow)?;
        Ok(())
    }

    /// Add another vector of sums of the same length. Exact, associative and commutative.
    pub fn merge(&mut self, other: &FixedSums) -> Result<(), StateError> {
        if other.sums.len() != self.sums.len() {
            return Err(StateError::Shape {
                expected: self.sums.len(),
                got: other.sums.len(),
            });
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a = a.checked_add(*b).ok_or(StateError::Overflow)?;
        }
        Ok(())
    }

    /// Sum `i` as `f64`.
    pub fn get(&self, i: usize) -> Option<f64> {
        self.sums.get(i).map(|&q| dequantise(q))
    }

    /// Little-endian bytes: the length (u64), then each sum (i128).
    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.sums.len() as u64).to_le_bytes());
        for s in &self.sums {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    /// Read what [`FixedSums::to_bytes`] wrote from the front of `bytes`; returns the rest.
    pub fn from_bytes(bytes: &[u8]) -> Result<(FixedSums, &[u8]), StateError> {
        let (len, rest) = header::take_u64(bytes)?;
        let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
        let need = len.checked_mul(16).ok_or(StateError::Truncated)?;
        if rest.len() < need {
            return Err(StateError::Truncated);
        }
        let sums = rest[..need]
            .chunks_exact(16)
            .map(|c| {
                let mut b = [0u8; 16];
                b.copy_from_slice(c);
                i128::from_le_bytes(b)
            })
            .collect();
        Ok((FixedSums { sums }, &rest[need..]))
    }
}

/// Fraction bits of the grid rows are rounded to before they enter [`Moments`]: 2^-20
/// (about 1e-6, below what an `f32` embedding component of magnitude 1 resolves anyway).
pub const INPUT_FRACTION_BITS: u32 = 20;

/// The largest magnitude of a value in a row given to [`Moments`]: 2^19.
pub const MAX_INPUT: f32 = 524_288.0;

/// The widest rows [`Moments`] are kept for by the detectors and the reference state: a state
/// holds d(d + 1)/2 cross products of 16 bytes (537 MB at 8 192 dimensions, per class), and its
/// covariance matrix takes as much again. Sentence-embedding models give 384 to 4 096.
pub const MAX_MOMENT_DIMS: usize = 8192;

/// Bytes of the cross products of a [`Moments`] of `d` columns (saturating).
pub fn moment_bytes(d: usize) -> usize {
    d.saturating_mul(d.saturating_add(1)) / 2 * std::mem::size_of::<i128>()
}

/// Row count, column sums and cross-product sums of `f32` rows of `d` columns: what a mean
/// and a covariance matrix are finalised from, mergeable exactly.
///
/// Each value is first rounded to the grid of 2^-[`INPUT_FRACTION_BITS`], so it is an integer
/// q (|q| ≤ 2^39) in grid units; the sums Σq and Σq_i·q_j are then kept as `i128` integers,
/// which any grouping adds to the same total. [`Moments::update_rows`] computes the cross
/// products of a batch with a floating-point matrix product, in chunks small enough that every
/// partial sum is an integer below 2^53 and therefore exact in `f64`: the same integers as
/// row-by-row accumulation, at the speed of a matrix product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moments {
    d: usize,
    n: u64,
    /// Σ q_i, in units of 2^-20.
    sum: Vec<i128>,
    /// Σ q_i·q_j over the upper triangle, row by row: (0,0), (0,1), …, (0,d−1), (1,1), …; in
    /// units of 2^-40.
    cross: Vec<i128>,
}

/// `x` rounded to the nearest integer, halves away from zero: `f64::round` for |x| < 2^51,
/// without the library call `round` is on x86-64 (whose baseline has no rounding
/// instruction) and without branches, so that a loop over a row compiles to vector
/// instructions. Adding and subtracting 1.5·2^52 rounds to the nearest integer with ties to
/// even (the sum's last bit is worth 1); a tie is then moved away from zero. Every step is
/// exact for |x| < 2^51; rows here hold |x| ≤ 2^39.
#[inline(always)]
fn round_half_away(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let h = x.abs();
    let r = (h + SHIFT) - SHIFT;
    // a tie went to the even neighbour below: it goes up, away from zero
    let r = if r - h == -0.5 { r + 1.0 } else { r };
    r.copysign(x)
}

dispatch! {
    /// `out` extended by the grid values (`round_half_away(v · scale)`) of `row`, and the
    /// largest of their magnitudes; compiled for the widest vector instructions the CPU has
    /// (`crate::simd`; each value is rounded on its own, so every version gives the same bits).
    fn quantise_row(row: &[f32], scale: f64, out: &mut Vec<f64>) -> f64 => quantise_row_portable
}

#[inline(always)]
fn quantise_row_portable(row: &[f32], scale: f64, out: &mut Vec<f64>) -> f64 {
    let at = out.len();
    out.extend(row.iter().map(|&v| round_half_away(v as f64 * scale)));
    out[at..].iter().fold(0f64, |m, &q| m.max(q.abs()))
}

/// Finite and at most [`MAX_INPUT`] in magnitude (false for NaN).
#[inline(always)]
fn in_range(v: f32) -> bool {
    v.abs().partial_cmp(&MAX_INPUT).is_some_and(|o| o.is_le())
}

fn quantise_input(row: &[f32], out: &mut Vec<i64>) -> Result<(), StateError> {
    out.clear();
    for &v in row {
        if !v.is_finite() || v.abs() > MAX_INPUT {
            return Err(StateError::Value(v as f64));
        }
        // exact: the scaling only changes the exponent, and the result is below 2^40
        out.push(round_half_away(v as f64 * (1u64 << INPUT_FRACTION_BITS) as f64) as i64);
    }
    Ok(())
}

/// The buffers of [`Moments::update_row_slices`]: a block of grid values and the block
/// products. Kept per thread between calls when small enough, because a scan calls it once per
/// class and part, and fresh buffers of this size cost more in page faults than their products.
struct Scratch {
    xf: Vec<f64>,
    g: faer::Mat<f64>,
}

/// The largest product matrix kept per thread between calls (d ≤ 1 024: 8 MiB).
const KEPT_PRODUCT_VALUES: usize = 1 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

impl Scratch {
    /// This thread's buffers for rows of `d` values (new ones when it has none of that size).
    /// The product matrix's contents are left as they were: every use starts by replacing.
    fn take(d: usize) -> Scratch {
        let kept = SCRATCH.with(|s| s.borrow_mut().take());
        match kept {
            Some(mut s) if s.g.nrows() == d => {
                s.xf.clear();
                s
            }
            _ => Scratch {
                xf: Vec::new(),
                g: faer::Mat::<f64>::zeros(d, d),
            },
        }
    }

    /// Keep the buffers for this thread's next call, if small enough.
    fn give_back(self) {
        if self.g.nrows() * self.g.ncols() <= KEPT_PRODUCT_VALUES {
            SCRATCH.with(|s| *s.borrow_mut() = Some(self));
        }
    }
}

impl Moments {
    /// Empty moments of rows with `d` columns.
    pub fn new(d: usize) -> Self {
        Moments {
            d,
            n: 0,
            sum: vec![0; d],
            cross: vec![0; d * (d + 1) / 2],
        }
    }

    /// Columns per row.
    pub fn dims(&self) -> usize {
        self.d
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.n
    }

    fn check_width(&self, got: usize) -> Result<(), StateError> {
        if got != self.d {
            return Err(StateError::Shape {
                expected: self.d,
                got,
            });
        }
        Ok(())
    }

    /// Add one row. Nothing is changed when the row is rejected (wrong length, a value not
    /// finite or beyond [`MAX_INPUT`]).
    pub fn update(&mut self, row: &[f32]) -> Result<(), StateError> {
        self.check_width(row.len())?;
        let mut q = Vec::with_capacity(self.d);
        quantise_input(row, &mut q)?;
        let mut k = 0;
        for i in 0..self.d {
            self.sum[i] += q[i] as i128;
            for &b in &q[i..] {
                self.cross[k] += q[i] as i128 * b as i128;
                k += 1;
            }
        }
        self.n += 1;
        Ok(())
    }

    /// Add `n` rows given row-major (`rows.len() == n · d`). Gives exactly the state that
    /// [`Moments::update`] row by row gives. Nothing is changed when any row is rejected.
    pub fn update_rows(&mut self, rows: &[f32]) -> Result<(), StateError> {
        if self.d == 0 {
            return Ok(());
        }
        let d = self.d;
        if !rows.len().is_multiple_of(d) {
            return Err(StateError::Shape {
                expected: d,
                got: rows.len() % d,
            });
        }
        let refs: Vec<&[f32]> = rows.chunks_exact(d).collect();
        self.update_row_slices(&refs)
    }

    /// Add the rows `rows`, each a slice of `d` values (rows of a larger matrix, taken where
    /// they lie rather than copied together). Gives exactly the state that
    /// [`Moments::update`] row by row gives. Nothing is changed when any row is rejected.
    pub fn update_row_slices(&mut self, rows: &[&[f32]]) -> Result<(), StateError> {
        if self.d == 0 {
            return Ok(());
        }
        let d = self.d;
        if let Some(r) = rows.iter().find(|r| r.len() != d) {
            return Err(StateError::Shape {
                expected: d,
                got: r.len(),
            });
        }
        // every value is checked first: from here nothing fails, so the sums are added to in
        // place and a rejected batch changes nothing (the check has no early exit, so it
        // vectorises; the offending value is looked for only when there is one)
        let bad = rows
            .iter()
            .fold(false, |bad, r| r.iter().fold(bad, |b, v| b | !in_range(*v)));
        if bad {
            if let Some(v) = rows.iter().flat_map(|r| r.iter()).find(|v| !in_range(**v)) {
                return Err(StateError::Value(*v as f64));
            }
        }
        let n = rows.len();
        // the grid value q of v, as an f64 (exact: |q| < 2^40), the same as `quantise_input`
        let scale = (1u64 << INPUT_FRACTION_BITS) as f64;
        // rows go through the matrix product in blocks of at most BLOCK_ROWS rows, and fewer
        // when the rows' largest |q|² times the block's length could reach 2^53 (then a partial
        // sum might not be an integer f64 holds exactly); buffers are reused across blocks
        const BLOCK_ROWS: usize = 128;
        let Scratch { mut xf, mut g } = Scratch::take(d);
        let mut col = vec![0f64; d];
        // g holds the products of the blocks since its last flush into `cross`; `pending`
        // bounds every partial sum in it (Σ rows · largest |q|²), so blocks are added into g
        // while it stays below 2^53 and every entry is still an exact integer
        let mut pending = 0u128;
        let mut start = 0;
        while start < n {
            xf.clear();
            let mut biggest = 0u128;
            let mut end = start;
            while end < n && end - start < BLOCK_ROWS {
                let r = rows[end];
                let at = xf.len();
                let m = quantise_row(r, scale, &mut xf) as u128;
                let b = biggest.max(m * m);
                if end > start && b * ((end - start + 1) as u128) >= 1u128 << 53 {
                    xf.truncate(at);
                    break;
                }
                biggest = b;
                end += 1;
            }
            let rows_in = end - start;
            if biggest * rows_in as u128 >= 1u128 << 53 {
                // one row whose products alone leave f64's exact range: integers
                let r: Vec<i128> = xf.iter().map(|&v| v as i128).collect();
                let mut k = 0;
                for i in 0..d {
                    for &b in &r[i..] {
                        self.cross[k] += r[i] * b;
                        k += 1;
                    }
                }
            } else {
                let bound = biggest * rows_in as u128;
                if pending > 0 && pending + bound >= 1u128 << 53 {
                    self.flush_lower(&g);
                    pending = 0;
                }
                let x = faer::MatRef::from_row_major_slice(&xf, rows_in, d);
                // the lower triangle only (half the products); (j, i) there is (i, j) here
                faer::linalg::matmul::triangular::matmul(
                    g.as_mut(),
                    faer::linalg::matmul::triangular::BlockStructure::TriangularLower,
                    if pending == 0 {
                        faer::Accum::Replace
                    } else {
                        faer::Accum::Add
                    },
                    x.transpose(),
                    faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                    x,
                    faer::linalg::matmul::triangular::BlockStructure::Rectangular,
                    1.0,
                    faer::Par::Seq,
                );
                crate::linalg::clear_upper_simd();
                pending += bound;
            }
            // column sums: at most 512 values below 2^40 each, exact in f64
            col.iter_mut().for_each(|c| *c = 0.0);
            for r in xf.chunks_exact(d) {
                for (c, &v) in col.iter_mut().zip(r) {
                    *c += v;
                }
            }
            for (s, &c) in self.sum.iter_mut().zip(&col) {
                *s += c as i64 as i128;
            }
            start = end;
        }
        if pending > 0 {
            self.flush_lower(&g);
        }
        Scratch { xf, g }.give_back();
        self.n += n as u64;
        Ok(())
    }

    /// Add the lower triangle of `g` (exact integers below 2^53) to the cross products.
    fn flush_lower(&mut self, g: &faer::Mat<f64>) {
        let mut k = 0;
        for i in 0..self.d {
            for j in i..self.d {
                // below 2^53, so through i64 (one instruction; f64 → i128 is a call)
                self.cross[k] += g[(j, i)] as i64 as i128;
                k += 1;
            }
        }
    }

    /// Merge the moments of other rows. Exact, associative and commutative.
    pub fn merge(&mut self, other: &Moments) -> Result<(), StateError> {
        self.check_width(other.d)?;
        let n = self.n.checked_add(other.n).ok_or(StateError::Overflow)?;
        // checked first, then added in place: a merge that would overflow changes nothing,
        // and no new buffers are taken (the cross products are d(d+1)/2 integers)
        let fits =
            |a: &[i128], b: &[i128]| a.iter().zip(b).all(|(x, y)| x.checked_add(*y).is_some());
        if !fits(&self.sum, &other.sum) || !fits(&self.cross, &other.cross) {
            return Err(StateError::Overflow);
        }
        let add = |a: &mut [i128], b: &[i128]| a.iter_mut().zip(b).for_each(|(x, y)| *x += *y);
        add(&mut self.sum, &other.sum);
        add(&mut self.cross, &other.cross);
        self.n = n;
        Ok(())
    }

    /// Column means (no rows give zeros).
    pub fn mean(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        let unit = (1u64 << INPUT_FRACTION_BITS) as f64;
        self.sum.iter().map(|&s| to_f64(s) / unit / n).collect()
    }

    /// Covariance matrix (divided by n), row-major d × d, finalised from the exact sums: the
    /// same for every partitioning.
    pub fn covariance(&self) -> Vec<f64> {
        let n = self.n.max(1) as f64;
        let unit2 = (1u64 << (2 * INPUT_FRACTION_BITS)) as f64;
        let mean = self.mean();
        let mut c = vec![0f64; self.d * self.d];
        let mut k = 0;
        for i in 0..self.d {
            for j in i..self.d {
                let v = to_f64(self.cross[k]) / unit2 / n - mean[i] * mean[j];
                c[i * self.d + j] = v;
                c[j * self.d + i] = v;
                k += 1;
            }
        }
        c
    }

    /// Serialise behind `header`: d (u64), n (u64), then the sums as [`FixedSums`] bytes.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.d as u64).to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        FixedSums {
            sums: self.sum.clone(),
        }
        .to_bytes(&mut out);
        FixedSums {
            sums: self.cross.clone(),
        }
        .to_bytes(&mut out);
        out
    }

    /// Read moments written by [`Moments::to_bytes`], refusing them unless their header is
    /// `expected` (same detector, algorithm version and parameters).
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<Moments, StateError> {
        let rest = expected.check(bytes)?;
        let (d, rest) = header::take_u64(rest)?;
        let (n, rest) = header::take_u64(rest)?;
        let (sum, rest) = FixedSums::from_bytes(rest)?;
        let (cross, rest) = FixedSums::from_bytes(rest)?;
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        // d is checked against sums that are there before it sizes anything
        let d = usize::try_from(d).map_err(|_| StateError::Truncated)?;
        if sum.len() != d || cross.len() != d * (d + 1) / 2 {
            return Err(StateError::Shape {
                expected: d,
                got: sum.len(),
            });
        }
        Ok(Moments {
            d,
            n,
            sum: sum.sums,
            cross: cross.sums,
        })
    }
}

#[cfg(test)]
mod tests;
