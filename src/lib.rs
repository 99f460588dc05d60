//! # poisongate
//!
//! Gate a dataset before it enters a curated training corpus: read Parquet or JSONL (and
//! embeddings), run poisoning detectors from [`poisongate_detectors`], combine their evidence
//! into a per-row verdict, write the input back out split into clean and quarantined rows, and
//! write a provenance report (`report.json`) that names the exact input bytes (SHA-256), the
//! settings, every detector's findings, and a reconciliation proving no row was lost.
//!
//! The binary (`poisongate scan|list|explain`) is a thin layer over [`pipeline::scan`].

#![warn(missing_docs)]

pub mod benchmark;
pub mod emit;
pub mod ingest;
pub mod pipeline;
pub mod report;

pub use poisongate_detectors as detectors;
