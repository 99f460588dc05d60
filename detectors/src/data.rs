//! The in-memory views detectors read.

use crate::DetectError;
use ndarray::{s, ArrayView2};

/// Which columns a detector reads. The app loads only what some selected detector needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Raw text of each row.
    pub text: bool,
    /// Class label of each row.
    pub labels: bool,
    /// One embedding / activation vector per row.
    pub embeddings: bool,
    /// The response of each row of instruction, chat or preference data (the text is then
    /// the prompt).
    pub responses: bool,
}

impl Needs {
    /// Union of two needs.
    pub fn union(self, other: Needs) -> Needs {
        Needs {
            text: self.text || other.text,
            labels: self.labels || other.labels,
            embeddings: self.embeddings || other.embeddings,
            responses: self.responses || other.responses,
        }
    }
}

/// Class index of a row: labels are mapped to `0..n_classes` in the app, in sorted order of
/// their original values, whose names are kept in [`DatasetView::class_names`].
pub type ClassIndex = u32;

/// A read-only view of a dataset (or of a batch of its rows). Columns a scan did not load are
/// `None`; all present columns have exactly `n_rows` entries.
#[derive(Debug, Clone, Copy)]
pub struct DatasetView<'a> {
    /// Number of rows.
    pub n_rows: usize,
    /// Text per row (the prompt, for instruction, chat and preference data).
    pub texts: Option<&'a [String]>,
    /// Response per row, for instruction, chat and preference data.
    pub responses: Option<&'a [String]>,
    /// Rejected answer per row, for preference rows (the response is the chosen one).
    pub rejected: Option<&'a [String]>,
    /// Class index per row.
    pub labels: Option<&'a [ClassIndex]>,
    /// Original label value per class index (the same for every batch of a dataset).
    pub class_names: &'a [String],
    /// Embedding matrix, `n_rows × d` (of the prompts, for instruction, chat and preference
    /// data).
    pub embeddings: Option<ArrayView2<'a, f32>>,
    /// Embeddings of the responses, `n_rows × d`, for instruction, chat and preference data
    /// (the chosen answer of a preference row).
    pub response_embeddings: Option<ArrayView2<'a, f32>>,
}

impl<'a> DatasetView<'a> {
    /// Rows `start..end` of this view, as a [`Batch`]. Panics if the range is out of bounds
    /// (callers derive ranges from `n_rows`).
    pub fn batch(&self, start: usize, end: usize) -> Batch<'a> {
        assert!(
            start <= end && end <= self.n_rows,
            "batch range out of bounds"
        );
        Batch {
            start,
            rows: DatasetView {
                n_rows: end - start,
                texts: self.texts.map(|t| &t[start..end]),
                responses: self.responses.map(|t| &t[start..end]),
                rejected: self.rejected.map(|t| &t[start..end]),
                labels: self.labels.map(|l| &l[start..end]),
                class_names: self.class_names,
                embeddings: self.embeddings.map(|e| e.slice_move(s![start..end, ..])),
                response_embeddings: self
                    .response_embeddings
                    .map(|e| e.slice_move(s![start..end, ..])),
            },
        }
    }

    /// The whole view as one batch starting at row 0.
    pub fn as_batch(&self) -> Batch<'a> {
        self.batch(0, self.n_rows)
    }

    /// The embedding matrix, or the error that detector `code` needs it.
    pub fn require_embeddings(
        &self,
        code: &'static str,
    ) -> Result<ArrayView2<'a, f32>, DetectError> {
        self.embeddings.ok_or(DetectError::Missing {
            code,
            what: "embeddings",
        })
    }

    /// The class index per row, or the error that detector `code` needs labels.
    pub fn require_labels(&self, code: &'static str) -> Result<&'a [ClassIndex], DetectError> {
        self.labels.ok_or(DetectError::Missing {
            code,
            what: "labels",
        })
    }

    /// The text per row, or the error that detector `code` needs text.
    pub fn require_texts(&self, code: &'static str) -> Result<&'a [String], DetectError> {
        self.texts
            .ok_or(DetectError::Missing { code, what: "text" })
    }

    /// The response per row, or the error that detector `code` needs responses.
    pub fn require_responses(&self, code: &'static str) -> Result<&'a [String], DetectError> {
        self.responses.ok_or(DetectError::Missing {
            code,
            what: "responses (instruction, chat or preference data)",
        })
    }

    /// Number of classes (length of `class_names`).
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// A contiguous run of rows of a dataset: `rows` holds rows `start..start + rows.n_rows`.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Index of the batch's first row in the whole dataset.
    pub start: usize,
    /// The batch's rows.
    pub rows: DatasetView<'a>,
}
