//! The native half of the `poisongate` Python package (`poisongate._native`): the library's
//! scan, fit and verify, called in process. The Python half (`poisongate/__init__.py`) turns keyword arguments
//! into the settings a scan config file holds and the report into a dict.
//!
//! Bindings are written with pyo3 and built with maturin (`python/pyproject.toml`); this crate
//! is a workspace member, built but not tested by `cargo test --workspace` (an extension module
//! links against the interpreter that loads it), and tested by `python/tests` with pytest.

use poisongate::config::ConfigFile;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;

create_exception!(
    poisongate,
    PoisongateError,
    PyException,
    "Base class of poisongate's errors."
);
create_exception!(
    poisongate,
    ScanError,
    PoisongateError,
    "A scan failed: an input could not be read (the message names the file, row and column), a detector failed, or the outputs could not be written. Nothing was written."
);
create_exception!(
    poisongate,
    FitError,
    PoisongateError,
    "Fitting a trusted corpus's state failed: an input could not be read or the state could not be written. Nothing was written."
);

/// The error and its causes on one line, each cause once (as the CLI prints them).
fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Scan `data` with `settings` (JSON: the keys of a scan config file), writing the outputs
/// into `out` when given. Returns the exit code of the verdict (0 passed, 1 gate failed) and
/// report.json's text.
#[pyfunction]
#[pyo3(signature = (data, out, settings, reproducible))]
fn scan(
    py: Python<'_>,
    data: PathBuf,
    out: Option<PathBuf>,
    settings: &str,
    reproducible: bool,
) -> PyResult<(i32, String)> {
    let cfg: ConfigFile = serde_json::from_str(settings)
        .map_err(|e| PyValueError::new_err(format!("invalid setting: {e}")))?;
    if let Some(limit) = cfg.max_line_bytes {
        poisongate::ingest::set_max_line_bytes(limit);
    }
    if let Some(limit) = cfg.max_page_bytes {
        poisongate::ingest::set_max_page_bytes(limit);
    }
    let threads = cfg.threads.unwrap_or(0);
    let mut o = cfg
        .scan_options(data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    o.out = out;
    o.reproducible = reproducible;
    o.progress = false;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScanError::new_err(format!("cannot start worker threads: {e}")))?;
    let outcome = py
        .allow_threads(|| pool.install(|| poisongate::pipeline::scan(&o)))
        .map_err(|e| {
            ScanError::new_err(format!(
                "scan of {} failed: {}",
                o.data.display(),
                error_line(&e)
            ))
        })?;
    let report = serde_json::to_string(&outcome.report)
        .map_err(|e| ScanError::new_err(format!("report: {e}")))?;
    Ok((outcome.exit_code(), report))
}

/// Fit a trusted corpus's state from `data` (one or more files) and write it to `state`.
/// Returns (rows, distinct texts, label names, state bytes, state SHA-256).
#[pyfunction]
#[pyo3(signature = (data, state, text_column, label_column, embeddings, params))]
fn fit(
    py: Python<'_>,
    data: Vec<PathBuf>,
    state: PathBuf,
    text_column: String,
    label_column: String,
    embeddings: Vec<PathBuf>,
    params: &str,
) -> PyResult<(u64, usize, Vec<String>, usize, String)> {
    let params: toml::Table = serde_json::from_str(params)
        .map_err(|e| PyValueError::new_err(format!("invalid REF001 parameters: {e}")))?;
    let opts = poisongate::fit::FitOptions {
        data,
        text_column,
        label_column,
        params,
        state,
        embeddings,
        batch_rows: poisongate::fit::FIT_BATCH_ROWS,
    };
    let done = py
        .allow_threads(|| poisongate::fit::fit(&opts))
        .map_err(|e| FitError::new_err(error_line(&e)))?;
    Ok((done.rows, done.texts, done.labels, done.bytes, done.sha256))
}

/// Verify a scan's output folder. Returns (exit code, message): 0 and the summary line when
/// everything checks, 1 and the first mismatch, 2 when a file is missing or unreadable.
#[pyfunction]
fn verify(py: Python<'_>, dir: PathBuf) -> (i32, String) {
    match py.allow_threads(|| poisongate::verify::verify(&dir)) {
        Ok(summary) => (0, summary.to_string()),
        Err(e) => (
            e.exit_code(),
            format!("{}: {}", dir.display(), error_line(&e)),
        ),
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add("PoisongateError", m.py().get_type::<PoisongateError>())?;
    m.add("ScanError", m.py().get_type::<ScanError>())?;
    m.add("FitError", m.py().get_type::<FitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
