//! TRIG001 in rounds whose partial results merge exactly, so that any partitioning of the rows
//! and any merge order give the same state bytes and the same verdicts as one pass.
//!
//! 1. **Sample** ([`SamplePartial`]): the rows the fit reads, each with its row number, label
//!    and text, sorted by row number. With n rows (known before this round: the file footers,
//!    or a counting pass) and m = `max_fit_rows`, that is every row when n ≤ m (or m = 0), else
//!    rows ⌊k·n/m⌋ for k < m, as the one-pass fit picks them. Merging is a merge of lists
//!    sorted by row number, so the merged sample is the same whatever the split.
//! 2. **Fit** ([`Rounds::finish`]): the one-pass fit on the merged sample.
//! 3. **Scores**: each row on its own ([`crate::Fitted::score`]), in any batch.
//!
//! The fit's own passes (the vocabulary, the window counts that the vocabulary numbers, the
//! neighbour samples of the windows those counts keep, the phrase extensions, the context
//! model and its temperature) each read every sampled row with what the previous pass found,
//! so they run where the sample is merged; the state is the sample itself, bounded by
//! `max_fit_rows` texts.

use super::{decide::fit, TriggerParams, CODE, META};
use crate::state::{header, Header, StateError};
use crate::{ClassIndex, Configured, DetectError, Fitted};

/// The rounds of TRIG001 for `n_rows` rows of `n_classes` classes.
#[derive(Debug, Clone)]
pub struct Rounds {
    params: TriggerParams,
    n_classes: usize,
    n_rows: u64,
    header: Header,
}

/// Round 1's partial state: the sampled rows of a batch, (row number, label, text), sorted by
/// row number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SamplePartial {
    rows: Vec<(u64, ClassIndex, String)>,
}

fn data_error(problem: String) -> DetectError {
    DetectError::Data {
        code: CODE,
        problem,
    }
}

impl Rounds {
    /// Rounds with the resolved `params`, for a dataset of `n_rows` rows whose labels are
    /// `0..n_classes`.
    pub fn new(params: &TriggerParams, n_classes: usize, n_rows: u64) -> Self {
        Rounds {
            header: Header::new(CODE, META.version, &params.params()),
            params: params.clone(),
            n_classes,
            n_rows,
        }
    }

    /// The header every partial of these rounds is serialised behind.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Rows the fit reads: all of them, or `max_fit_rows`.
    fn sample_size(&self) -> u64 {
        let m = self.params.max_fit_rows as u64;
        if m == 0 || self.n_rows <= m {
            self.n_rows
        } else {
            m
        }
    }

    /// The k-th row the fit reads.
    fn sampled(&self, k: u64) -> u64 {
        let m = self.sample_size();
        (u128::from(k) * u128::from(self.n_rows) / u128::from(m.max(1))) as u64
    }

    /// Whether the fit reads row `id`: the smallest k with ⌊k·n/m⌋ ≥ id is ⌈id·m/n⌉.
    fn reads(&self, id: u64) -> bool {
        let (m, n) = (self.sample_size(), self.n_rows);
        if id >= n {
            return false;
        }
        let k = (u128::from(id) * u128::from(m)).div_ceil(u128::from(n)) as u64;
        k < m && self.sampled(k) == id
    }

    /// Round 1 over a batch: `texts`, `labels` and row numbers `ids`, one per row.
    pub fn sample(
        &self,
        texts: &[String],
        labels: &[ClassIndex],
        ids: &[u64],
    ) -> Result<SamplePartial, DetectError> {
        if texts.len() != labels.len() || texts.len() != ids.len() {
            return Err(data_error(format!(
                "{} texts, {} labels and {} row numbers",
                texts.len(),
                labels.len(),
                ids.len()
            )));
        }
        let mut rows = Vec::new();
        for ((t, &l), &id) in texts.iter().zip(labels).zip(ids) {
            if id >= self.n_rows {
                return Err(data_error(format!(
                    "row number {id} outside the {} rows",
                    self.n_rows
                )));
            }
            if l as usize >= self.n_classes {
                return Err(data_error(format!(
                    "row {id} has label {l}, but there are {} classes",
                    self.n_classes
                )));
            }
            if self.reads(id) {
                rows.push((id, l, t.clone()));
            }
        }
        rows.sort_unstable_by_key(|r| r.0);
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(data_error(format!("row {} is in the batch twice", w[0].0)));
        }
        Ok(SamplePartial { rows })
    }

    /// The fitted detector (class `names`, in class order) from the merged sample, which must
    /// hold exactly the rows the fit reads.
    pub fn finish(
        &self,
        names: &[String],
        sample: SamplePartial,
    ) -> Result<Box<dyn Fitted>, DetectError> {
        let m = self.sample_size();
        if let Some(k) = (0..m).find(|&k| {
            sample
                .rows
                .get(k as usize)
                .is_none_or(|r| r.0 != self.sampled(k))
        }) {
            return Err(data_error(format!(
                "the merged sample lacks row {} (a partition was not merged)",
                self.sampled(k)
            )));
        }
        if sample.rows.len() as u64 != m {
            return Err(data_error(format!(
                "the merged sample holds {} rows, the fit reads {m}",
                sample.rows.len()
            )));
        }
        let mut ids = Vec::with_capacity(sample.rows.len());
        let mut labels = Vec::with_capacity(sample.rows.len());
        let mut texts = Vec::with_capacity(sample.rows.len());
        for (id, l, t) in sample.rows {
            ids.push(id as usize);
            labels.push(l);
            texts.push(t);
        }
        let n_classes = self.n_classes.max(names.len());
        if m == self.n_rows {
            fit(&self.params, &texts, &labels, n_classes, names, None)
        } else {
            let n = usize::try_from(self.n_rows).map_err(|e| data_error(e.to_string()))?;
            fit(
                &self.params,
                &texts,
                &labels,
                n_classes,
                names,
                Some((&ids, n)),
            )
        }
    }
}

impl SamplePartial {
    /// Add another partial's rows (a merge of lists sorted by row number). A row in both is
    /// refused.
    pub fn merge(&mut self, other: &SamplePartial) -> Result<(), StateError> {
        let rows = crate::state::merge_sorted_by(&self.rows, &other.rows, |x, y| x.0 < y.0);
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(StateError::DuplicateRow(w[0].0));
        }
        self.rows = rows;
        Ok(())
    }

    /// Serialised behind `header`: the row count, then per row its number, label and text
    /// length (u64 each, little-endian) and the text's UTF-8 bytes, by row number.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.rows.len() as u64).to_le_bytes());
        for (id, l, t) in &self.rows {
            for v in [*id, u64::from(*l), t.len() as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(t.as_bytes());
        }
        out
    }

    /// Read a partial written by [`SamplePartial::to_bytes`] behind `expected`; rows out of
    /// order, a label past u32 and text that is not UTF-8 are refused.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<SamplePartial, StateError> {
        let rest = expected.check(bytes)?;
        let (n, mut rest) = header::take_u64(rest)?;
        let mut rows: Vec<(u64, ClassIndex, String)> = Vec::new();
        for _ in 0..n {
            let (id, r) = header::take_u64(rest)?;
            let (l, r) = header::take_u64(r)?;
            let (len, r) = header::take_u64(r)?;
            let l = ClassIndex::try_from(l).map_err(|_| StateError::Truncated)?;
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if r.len() < len {
                return Err(StateError::Truncated);
            }
            let (text, r) = r.split_at(len);
            let text = String::from_utf8(text.to_vec()).map_err(|_| StateError::Truncated)?;
            rest = r;
            if rows.last().is_some_and(|last| last.0 >= id) {
                return Err(StateError::Unsorted);
            }
            rows.push((id, l, text));
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(SamplePartial { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::synthetic;
    use super::super::{read_params, TriggerTokens};
    use super::*;
    use crate::testutil::{assert_same_scores, partition, sha, take_texts};
    use crate::{DatasetView, Detector};

    fn check(max_fit_rows: i64) {
        let (texts, labels, _) = synthetic(3000, 0.03, 7);
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &names,
            embeddings: None,
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let mut table = toml::Table::new();
        table.insert("max_fit_rows".into(), toml::Value::Integer(max_fit_rows));
        let whole = TriggerTokens.configure(&table).unwrap().fit(&view).unwrap();
        let all = view.as_batch();
        let whole_scores = whole.score(&all).unwrap();
        let summary = whole.summary();
        assert_eq!(summary["triggers"][0]["trigger"], "cf", "{summary}");
        let r = Rounds::new(&read_params(&table).unwrap(), 2, texts.len() as u64);
        let mut seen = None;
        for (k, seed) in [(1usize, 1u64), (2, 2), (7, 3), (16, 4), (16, 5)] {
            let mut merged = SamplePartial::default();
            for part in partition(texts.len(), k, seed) {
                let (t, l, ids) = take_texts(&texts, &labels, &part);
                let b = r.sample(&t, &l, &ids).unwrap().to_bytes(r.header());
                merged
                    .merge(&SamplePartial::from_bytes(&b, r.header()).unwrap())
                    .unwrap();
            }
            let digest = sha(&merged.to_bytes(r.header()));
            match &seen {
                None => seen = Some(digest),
                Some(d) => assert_eq!(d, &digest, "{k} partitions"),
            }
            let fitted = r.finish(&names, merged).unwrap();
            let scores = fitted.score(&all).unwrap();
            assert_same_scores(&scores, &whole_scores, &format!("{k} partitions"));
            assert_eq!(fitted.summary(), summary, "{k} partitions");
        }
    }

    #[test]
    fn any_partitioning_and_merge_order_give_the_one_pass_fit() {
        check(0);
        // the fit reads 1 000 evenly spaced rows of 3 000
        check(1000);
        check(1777);
    }

    #[test]
    fn overlapping_missing_damaged_or_foreign_partials_are_refused() {
        let (texts, labels, _) = synthetic(500, 0.03, 7);
        let names = vec!["0".to_string(), "1".to_string()];
        let p = read_params(&toml::Table::new()).unwrap();
        let r = Rounds::new(&p, 2, texts.len() as u64);
        let ids: Vec<u64> = (0..texts.len() as u64).collect();
        let all = r.sample(&texts, &labels, &ids).unwrap();
        let mut twice = all.clone();
        assert!(twice.merge(&all).is_err());
        let short = r.sample(&texts[1..], &labels[1..], &ids[1..]).unwrap();
        assert!(r.finish(&names, short).is_err());
        let b = all.to_bytes(r.header());
        for cut in [0, 10, b.len() / 2, b.len() - 1] {
            assert!(SamplePartial::from_bytes(&b[..cut], r.header()).is_err());
        }
        let mut other = toml::Table::new();
        other.insert("alpha".into(), toml::Value::Float(0.01));
        let r2 = Rounds::new(&read_params(&other).unwrap(), 2, texts.len() as u64);
        assert!(SamplePartial::from_bytes(&b, r2.header()).is_err());
        // a row past the dataset, or a label past the classes
        assert!(r.sample(&texts[..1], &labels[..1], &[500]).is_err());
        assert!(r.sample(&texts[..1], &[2], &[0]).is_err());
    }
}
