//! The native half of the `poisongate` Python package (`poisongate._native`): the library's
//! scan, fit and verify, called in process, and the planning side and tasks of a scan whose
//! rounds run over partitions (`poisongate/ray.py`). The Python half (`poisongate/__init__.py`) turns keyword arguments
//! into the settings a scan config file holds and the report into a dict.
//!
//! Bindings are written with pyo3 and built with maturin (`python/pyproject.toml`); this crate
//! is a workspace member, built but not tested by `cargo test --workspace` (an extension module
//! links against the interpreter that loads it), and tested by `python/tests` with pytest.

use poisongate::config::ConfigFile;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
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
    let (mut o, threads) = options(data, settings)?;
    o.out = out;
    o.reproducible = reproducible;
    let pool = pool(threads)?;
    let outcome = py.allow_threads(|| pool.install(|| poisongate::pipeline::scan(&o)));
    verdict(&o, outcome)
}

/// A scan's exit code and report.json's text, or its error as a `ScanError`.
fn verdict(
    o: &poisongate::pipeline::ScanOptions,
    outcome: Result<poisongate::pipeline::ScanOutcome, poisongate::pipeline::ScanError>,
) -> PyResult<(i32, String)> {
    let outcome = outcome.map_err(|e| {
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

/// Settings JSON to scan options for `data` (the page and line limits applied).
fn options(data: PathBuf, settings: &str) -> PyResult<(poisongate::pipeline::ScanOptions, usize)> {
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
    o.progress = false;
    Ok((o, threads))
}

/// The worker threads of one call (0: one per core).
fn pool(threads: usize) -> PyResult<rayon::ThreadPool> {
    // as the command line allows (ten thousand threads took over a minute on ten rows)
    const MAX_THREADS: usize = 1024;
    if threads > MAX_THREADS {
        return Err(PyValueError::new_err(format!(
            "threads={threads}: at most {MAX_THREADS} worker threads (0: one per core)"
        )));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScanError::new_err(format!("cannot start worker threads: {e}")))
}

/// A [`Runner`](poisongate::pipeline::Runner) that hands each round to a Python callable:
/// `run_round(plan_json, round, earlier) -> list[bytes]` (the partitions' task results).
struct PyRunner {
    partitions: usize,
    engine: String,
    run_round: PyObject,
}

impl poisongate::pipeline::Runner for PyRunner {
    fn partitions(&self) -> usize {
        self.partitions
    }

    fn engine(&self) -> String {
        self.engine.clone()
    }

    fn run(
        &mut self,
        plan: &poisongate::pipeline::Plan,
        round: usize,
        earlier: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, poisongate::pipeline::ScanError> {
        let failed = |what: String| {
            poisongate::pipeline::ScanError::Config(format!("round {round}'s tasks failed: {what}"))
        };
        let plan = serde_json::to_string(plan).map_err(|e| failed(e.to_string()))?;
        Python::with_gil(|py| {
            let earlier: Vec<Bound<'_, PyBytes>> =
                earlier.iter().map(|b| PyBytes::new(py, b)).collect();
            let out = self
                .run_round
                .call1(py, (plan, round, earlier))
                .map_err(|e| failed(e.to_string()))?;
            out.extract::<Vec<Vec<u8>>>(py)
                .map_err(|e| failed(e.to_string()))
        })
    }
}

/// Scan `data` with its rounds run over `partitions` partitions by `run_round` (see
/// [`PyRunner`]), recording `engine` in the report; otherwise as [`scan`].
#[pyfunction]
#[pyo3(signature = (data, out, settings, reproducible, partitions, engine, run_round))]
#[allow(clippy::too_many_arguments)]
fn scan_partitioned(
    py: Python<'_>,
    data: PathBuf,
    out: Option<PathBuf>,
    settings: &str,
    reproducible: bool,
    partitions: usize,
    engine: String,
    run_round: PyObject,
) -> PyResult<(i32, String)> {
    let (mut o, threads) = options(data, settings)?;
    o.out = out;
    o.reproducible = reproducible;
    let pool = pool(threads)?;
    let mut runner = PyRunner {
        partitions: partitions.max(1),
        engine,
        run_round,
    };
    let outcome = py
        .allow_threads(|| pool.install(|| poisongate::pipeline::scan_partitioned(&o, &mut runner)));
    verdict(&o, outcome)
}

/// The engines of this process's tasks (see `TaskCache`): a process that runs several
/// partitions of a scan finalises its earlier rounds once.
static TASKS: std::sync::Mutex<Option<poisongate::pipeline::TaskCache>> =
    std::sync::Mutex::new(None);

/// One task of a partitioned scan: round `round` over partition `part` of `plan` (JSON), with
/// the same settings as the planning scan and the merged partials of the earlier rounds.
/// Returns the partition's partial (round 4: its scores).
#[pyfunction]
#[pyo3(signature = (data, settings, plan, round, part, earlier))]
fn run_task<'py>(
    py: Python<'py>,
    data: PathBuf,
    settings: &str,
    plan: &str,
    round: usize,
    part: usize,
    earlier: Vec<Vec<u8>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (o, threads) = options(data, settings)?;
    let plan: poisongate::pipeline::Plan = serde_json::from_str(plan)
        .map_err(|e| PyValueError::new_err(format!("invalid plan: {e}")))?;
    let pool = pool(threads)?;
    let out = py
        .allow_threads(|| {
            let mut cache = TASKS.lock().unwrap_or_else(|p| p.into_inner());
            let cache = cache.get_or_insert_with(Default::default);
            pool.install(|| {
                poisongate::pipeline::run_task(&o, &plan, (round, part), &earlier, cache)
            })
        })
        .map_err(|e| {
            ScanError::new_err(format!(
                "partition {part} of {}, round {round}, failed: {}",
                o.data.display(),
                error_line(&e)
            ))
        })?;
    Ok(PyBytes::new(py, &out))
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(scan_partitioned, m)?)?;
    m.add_function(wrap_pyfunction!(run_task, m)?)?;
    m.add("PoisongateError", m.py().get_type::<PoisongateError>())?;
    m.add("ScanError", m.py().get_type::<ScanError>())?;
    m.add("FitError", m.py().get_type::<FitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
