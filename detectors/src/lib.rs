//! # poisongate-detectors
//!
//! Pure computation for poisongate: detectors of poisoned training rows that see in-memory
//! columns (text, labels) and `f32` matrices (embeddings or activations), never files.
//!
//! Every detector follows the same life cycle, split so that the expensive statistics can be
//! computed once and the per-row work can run on any thread in any order:
//!
//! 1. [`Detector::configure`] validates raw parameters (a TOML table) into a checked
//!    [`Configured`] detector;
//! 2. [`Configured::fit`] sees the whole dataset once and builds statistics that merge (sums,
//!    covariance sums, count tables), returning a [`Fitted`] model;
//! 3. [`Fitted::score`] is pure and scores one [`Batch`] of rows.
//!
//! Scores are normalised so that **1.0 is the detector's own threshold**: a row is flagged by a
//! detector exactly when its score is at least 1.0. That makes scores comparable across classes
//! and detectors, which the combined verdict and the evaluation (AUROC) rely on.
//!
//! [`REGISTRY`] lists every detector explicitly; codes such as `SPEC001` are stable forever.

#![warn(missing_docs)]

#[macro_use]
mod simd;

pub mod activation;
pub mod class_pca;
pub mod data;
pub mod density;
pub mod duplicates;
pub mod error;
pub mod instruct;
pub mod knn;
mod lanczos;
pub use knn::KnnOptions;
pub mod label;
mod linalg;
pub use linalg::clear_upper_simd;
pub mod metrics;
mod mixture;
mod params;
pub mod registry;
pub mod rng;
pub mod spectral;
pub mod spectre;
pub mod state;
#[cfg(test)]
mod testutil;
pub mod trigger;

pub use data::{Batch, ClassIndex, DatasetView, Needs};
pub use error::{DetectError, ParamError};
pub use registry::{find, select, REGISTRY};

/// Static description of a detector, printed by `poisongate list` and `poisongate explain`.
#[derive(Debug)]
pub struct Meta {
    /// Stable code, e.g. `SPEC001`. Never reused, never renamed.
    pub code: &'static str,
    /// Short kebab-case name, e.g. `spectral-signature`.
    pub name: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Long documentation under fixed headings (what it detects, method, parameters,
    /// known false positives, references), in Markdown.
    pub docs: &'static str,
    /// Version of the algorithm; bumped whenever results for the same input may change.
    pub version: u16,
}

/// A detector as listed in the registry: metadata plus parameter validation.
pub trait Detector: Send + Sync {
    /// Static metadata.
    fn meta(&self) -> &'static Meta;
    /// Validate raw parameters (unknown keys are an error) into a configured detector.
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError>;
}

/// A detector with checked parameters, ready to fit.
pub trait Configured: Send + Sync {
    /// Which columns this detector reads; the app projects only these.
    fn needs(&self) -> Needs;
    /// Fully resolved parameters (defaults filled in), echoed into the report.
    fn params(&self) -> serde_json::Value;
    /// One pass over the dataset: compute the statistics the scores need.
    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError>;
}

/// A fitted detector: scores batches of rows.
pub trait Fitted: Send + Sync {
    /// Score the rows of one batch. Pure: any thread, any order, same answer.
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError>;
    /// What the fit found (per-class statistics, thresholds, named triggers ...), for the
    /// report. Deterministic for the same input and parameters.
    fn summary(&self) -> serde_json::Value;
}

/// Per-row output of [`Fitted::score`] for one batch, aligned with the batch's rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// Suspicion score per row, normalised so that 1.0 is the threshold (higher is more
    /// suspicious). Rows the detector cannot judge (e.g. a class too small to fit) get 0.0.
    pub score: Vec<f64>,
    /// Human-readable reason per row when flagged (e.g. `SPEC001:class=1`), else `None`.
    /// A row is flagged exactly when its reason is `Some`.
    pub reason: Vec<Option<String>>,
}

impl Scores {
    /// Empty scores with room for `n` rows.
    pub fn with_capacity(n: usize) -> Self {
        Scores {
            score: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
        }
    }

    /// Number of rows scored.
    pub fn len(&self) -> usize {
        self.score.len()
    }

    /// True when no row was scored.
    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    /// Append the rows of `other` after these rows.
    pub fn extend(&mut self, other: Scores) {
        self.score.extend(other.score);
        self.reason.extend(other.reason);
    }
}
