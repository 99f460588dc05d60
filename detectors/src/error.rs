//! Typed errors of the detectors crate.

use thiserror::Error;

/// A parameter table failed validation.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ParamError {
    /// A key the detector does not know.
    #[error("{code}: unknown parameter `{key}` (known: {known})")]
    Unknown {
        /// Detector code.
        code: &'static str,
        /// Offending key.
        key: String,
        /// Comma-separated known keys.
        known: String,
    },
    /// A value of the wrong type or outside its range.
    #[error("{code}: parameter `{key}` {problem}")]
    Invalid {
        /// Detector code.
        code: &'static str,
        /// Offending key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// A detector could not run on the data it was given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DetectError {
    /// A column the detector needs was not provided.
    #[error("{code} needs {what}, which this scan does not provide")]
    Missing {
        /// Detector code.
        code: &'static str,
        /// What is missing (e.g. "embeddings").
        what: &'static str,
    },
    /// The data has a shape the detector cannot use.
    #[error("{code}: {problem}")]
    Data {
        /// Detector code.
        code: &'static str,
        /// Description.
        problem: String,
    },
    /// A numeric routine failed (e.g. an eigen decomposition did not converge).
    #[error("{code}: numerical failure: {problem}")]
    Numeric {
        /// Detector code.
        code: &'static str,
        /// Description.
        problem: String,
    },
}
