//! poisongate's one integration-test binary: the CLI end to end, round trips, determinism,
//! malformed inputs, the evaluation on ../shared/benchmarks and the domain grid over its clean
//! corpora.

mod benchmarks;
mod bom;
mod cli;
mod common;
mod crash_safety;
mod dedup;
mod domains;
mod embed;
mod escaping;
mod hostile;
mod inject;
mod inject_instruct;
mod instruct;
mod instruct_embed;
mod invalid_rows;
mod partitioned;
mod provenance;
mod reference;
mod rounds;
mod schema;
mod stream;
