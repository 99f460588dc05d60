//! # poisongate
//!
//! Gate a dataset before it enters a curated training corpus: read Parquet or JSONL (and
//! embeddings), run poisoning detectors from [`poisongate_detectors`], combine their evidence
//! into a per-row verdict, write the input back out split into clean and quarantined rows, and
//! write a provenance report (`report.json`) that names the exact input bytes (SHA-256), the
//! settings, every detector's findings, and a reconciliation proving no row was lost.
//!
//! The binary (`poisongate scan|verify|bom|list|explain`) is a thin layer over
//! [`pipeline::scan`], [`verify::verify`] and [`bom::from_dir`]. Beside the report, a scan writes
//! `report.html` ([`html`]), a CycloneDX 1.6 bill of materials `bom.cdx.json` ([`bom`]) and an
//! in-toto attestation `provenance.intoto.json` ([`provenance`]). For research, [`inject`] writes
//! reproducibly poisoned copies of a dataset with exact ground truth and [`eval`] runs grids of
//! scans over them.

#![warn(missing_docs)]

pub mod benchmark;
pub mod bom;
pub mod config;
pub mod embed;
pub mod emit;
pub mod escape;
pub mod eval;
pub mod fit;
pub mod html;
pub mod ingest;
pub mod inject;
pub mod pipeline;
pub mod provenance;
pub mod report;
pub mod verify;

pub use poisongate_detectors as detectors;
