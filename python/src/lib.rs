//! The native half of the `poisongate` Python package (`poisongate._native`): the library's
//! scan, called in process. The Python half (`poisongate/__init__.py`) turns keyword arguments
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
    ScanError,
    PyException,
    "A scan failed: an input could not be read (the message names the file, row and column), a detector failed, or the outputs could not be written. Nothing was written."
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

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add("ScanError", m.py().get_type::<ScanError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
