//! poisongate (placeholder while the app is built)

pub mod emit;
pub mod ingest;
