"""poisongate: gate a dataset before it enters a training corpus.

``scan`` reads a Parquet or JSONL dataset, runs the poisoning detectors and, given ``out``,
writes the clean and quarantined rows with the report and provenance, exactly as
``poisongate scan`` does (same library, in process)::

    import poisongate

    result = poisongate.scan("data.parquet", out="gated/", id_column="id",
                             embeddings="data.npy", max_quarantine_fraction=0.01)
    if not result.passed:
        print(result.report["verdict"])

``fit`` writes a trusted corpus's state for ``scan(..., reference=STATE)``, and ``verify``
re-checks an output folder, as ``poisongate fit`` and ``poisongate verify`` do.

Keyword arguments are the settings of a scan config file (``poisongate scan --config``):
``text_column``, ``label_column``, ``id_column``, ``embeddings``, ``select`` (a list or a
comma-separated string), ``seed``, ``threads``, ``max_quarantine_fraction``, ``dedup``,
``invalid_rows``, ``reference``, ``detectors`` (a dict of per-detector parameter tables,
``{"TRIG001": {"alpha": 0.01}}``) and the rest; an unknown name is a ``ValueError``.
"""

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ._native import FitError, PoisongateError, ScanError, __version__
from ._native import fit as _fit
from ._native import scan as _scan
from ._native import verify as _verify

__all__ = [
    "scan", "ScanResult", "fit", "FitResult", "verify", "VerifyResult",
    "PoisongateError", "ScanError", "FitError", "__version__",
]


@dataclass(frozen=True)
class ScanResult:
    """What a scan found.

    ``report`` is report.json as a dict; ``exit_code`` is the CLI's (0 the gate passed, 1 it
    failed); ``out`` is the output folder, when one was written.
    """

    report: Dict[str, Any]
    exit_code: int
    out: Optional[str]

    @property
    def passed(self) -> bool:
        """Whether the gate passed (no more rows quarantined than allowed)."""
        return self.exit_code == 0


def _setting(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def scan(data, out=None, *, reproducible: bool = False, **settings: Any) -> ScanResult:
    """Scan ``data`` (a .jsonl or .parquet path); write the outputs into ``out`` when given.

    Raises ``ValueError`` for a setting that is unknown or out of range, and ``ScanError``
    when the scan fails (an unreadable input, whose message names the file, row and column;
    an output folder that cannot be written); nothing is written then.
    """
    if isinstance(settings.get("select"), str):
        settings["select"] = [s for s in settings["select"].split(",") if s]
    given = {k: _setting(v) for k, v in settings.items() if v is not None}
    out_path = None if out is None else os.fspath(out)
    code, report = _scan(os.fspath(data), out_path, json.dumps(given), bool(reproducible))
    return ScanResult(report=json.loads(report), exit_code=code, out=out_path)


@dataclass(frozen=True)
class FitResult:
    """A trusted corpus's state as written: rows read, distinct texts, label names, the state
    file's size and SHA-256 (what a scan against it records)."""

    state: str
    rows: int
    texts: int
    labels: List[str]
    bytes: int
    sha256: str


def fit(data, state, *, text_column: str = "text", label_column: str = "label",
        embeddings=None, params: Optional[Dict[str, Any]] = None) -> FitResult:
    """Fit the state of the trusted corpus ``data`` (a path, or a list of paths) into ``state``.

    ``embeddings``: row-aligned embeddings of each data file, in the same order (the state then
    keeps per-label moments for the drift test); ``params``: REF001's parameter table. Raises
    ``FitError`` when an input cannot be read or the state cannot be written.
    """
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    embs = [] if embeddings is None else (
        [embeddings] if isinstance(embeddings, (str, os.PathLike)) else list(embeddings))
    rows, texts, labels, size, sha256 = _fit(
        [os.fspath(p) for p in paths], os.fspath(state), text_column, label_column,
        [os.fspath(e) for e in embs], json.dumps(params or {}))
    return FitResult(state=os.fspath(state), rows=rows, texts=texts, labels=list(labels),
                     bytes=size, sha256=sha256)


@dataclass(frozen=True)
class VerifyResult:
    """``ok`` when every digest, row count and the reconciliation check; ``exit_code`` is the
    CLI's (0 ok, 1 a mismatch, 2 a file missing or unreadable); ``message`` says what."""

    exit_code: int
    message: str

    @property
    def ok(self) -> bool:
        """Whether the folder verified."""
        return self.exit_code == 0


def verify(out) -> VerifyResult:
    """Re-check a scan's output folder: every digest the provenance statement and the report
    name, the rows of each output, the reconciliation and the bill of materials."""
    code, message = _verify(os.fspath(out))
    return VerifyResult(exit_code=code, message=message)
