"""poisongate: gate a dataset before it enters a training corpus.

``scan`` reads a Parquet or JSONL dataset, runs the poisoning detectors and, given ``out``,
writes the clean and quarantined rows with the report and provenance, exactly as
``poisongate scan`` does (same library, in process)::

    import poisongate

    result = poisongate.scan("data.parquet", out="gated/", id_column="id",
                             embeddings="data.npy", max_quarantine_fraction=0.01)
    if not result.passed:
        print(result.report["verdict"])

Keyword arguments are the settings of a scan config file (``poisongate scan --config``):
``text_column``, ``label_column``, ``id_column``, ``embeddings``, ``select`` (a list or a
comma-separated string), ``seed``, ``threads``, ``max_quarantine_fraction``, ``dedup``,
``invalid_rows``, ``reference``, ``detectors`` (a dict of per-detector parameter tables,
``{"TRIG001": {"alpha": 0.01}}``) and the rest; an unknown name is a ``ValueError``.
"""

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ._native import ScanError, __version__
from ._native import scan as _scan

__all__ = ["scan", "ScanResult", "ScanError", "__version__"]


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
