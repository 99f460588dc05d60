"""Gate a Parquet or JSONL dataset with its detectors' rounds run as Ray Data tasks.

``gate`` plans the scan where it is called: it reads the labels and hashes the file (round 0),
cuts the file into partitions of consecutive row groups from its footer, and runs each round
as a ``map_batches`` job over the partitions (tasks, not actor pools). Each task reads its
row groups and returns its partial state; the partials are merged where ``gate`` runs, and
round 4's tasks score their rows. The verdicts and outputs are those of a single-machine
scan, bit for bit, whatever the partitioning; the report records the engine (``ray``) and
the partition count::

    import ray
    import poisongate.ray

    ray.init()
    result = poisongate.ray.gate("s3-mirror/new.parquet", out="gated/", id_column="id",
                                 embedding_column="embedding", max_quarantine_fraction=0.01)
    if not result.passed:
        print(result.report["verdict"])
    result.clean.write_parquet("curated/")          # a ray.data.Dataset
    result.quarantined.write_parquet("held-back/")

The input is a Parquet file, a folder of Parquet files (Spark's, Ray's and pyarrow's
``part-*.parquet`` layout; files in the order of their paths, ``_`` and ``.`` names skipped), a
JSONL file or a folder of JSONL files (``.jsonl``, or ``.json`` as ``write_json`` writes them;
cut into byte ranges that start at a row's line, across the files: the planning side finds the
starts of up to 4096 equal blocks of rows in one more pass over the input) or
a ``ray.data.Dataset``, which is first written with ``write_parquet`` into ``staging`` (a
folder that does not exist yet) and gated as that folder. Every worker must read the input at
the same path; rows are numbered by their place in the input (row groups from the footers,
counted across the files), so the same rows get the same numbers on every machine. Embeddings come from a column of the
data (``embedding_column``) or from a ``.npy`` file beside it (``embeddings``, readable by every
worker at the same path: ``gate`` hashes it once, each task reads its partition's rows of it
and checks its size). The outputs are written where ``gate`` runs, as ``scan`` writes
them. DUP002's nearest-neighbour relation is refused, as ``scan --stream`` refuses it: set
``detectors={"DUP002": {"embedding_cosine": 0}}`` when the data has embeddings.
"""

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from . import _setting
from ._native import run_task as _run_task
from ._native import scan_partitioned as _scan_partitioned

__all__ = ["gate", "GateResult"]


@dataclass(frozen=True)
class GateResult:
    """What ``gate`` found: the report (report.json as a dict), the CLI's exit code (0 the
    gate passed, 1 it failed), the output folder and its clean and quarantined rows as Ray
    datasets."""

    report: Dict[str, Any]
    exit_code: int
    out: str
    clean: Any
    quarantined: Any

    @property
    def passed(self) -> bool:
        """Whether the gate passed (no more rows quarantined than allowed)."""
        return self.exit_code == 0


def _task(batch, data, settings, plan, rnd, earlier):
    import pyarrow as pa
    import ray

    if isinstance(earlier, ray.ObjectRef):
        earlier = ray.get(earlier)
    parts = [int(p) for p in batch["id"]]
    partials = [_run_task(data, settings, plan, rnd, p, earlier) for p in parts]
    return pa.table({"part": pa.array(parts, pa.int64()),
                     "partial": pa.array(partials, pa.large_binary())})


def _read_output(ray, out, name):
    """One output of the scan as a dataset: ``NAME.parquet``, or ``NAME.jsonl`` for JSONL
    input (an empty file is an empty dataset)."""
    parquet = os.path.join(out, f"{name}.parquet")
    if os.path.exists(parquet):
        return ray.data.read_parquet(parquet)
    path = os.path.join(out, f"{name}.jsonl")
    if os.path.getsize(path) == 0:
        return ray.data.from_items([])
    return ray.data.read_json(path)


def gate(data, out, *, partitions: Optional[int] = None, reproducible: bool = False,
         staging: Optional[str] = None, row_id: Optional[str] = None,
         **settings: Any) -> GateResult:
    """Scan ``data`` (a Parquet file or folder of Parquet files, a JSONL file or folder of
    JSONL files, or a
    ``ray.data.Dataset``) on the Ray cluster ``ray.init`` connected to, writing the outputs
    into ``out``. A dataset is
    written into the folder ``staging`` first (required then; it must not exist, and is left
    in place: the report's inputs name its files). ``row_id``: a column of the dataset whose
    values are unique; the dataset is sorted by it before it is written, so the rows get the
    same numbers, and the verdicts and outputs are the same bytes, however the dataset was
    partitioned or ordered (without it, rows are numbered in the order Ray writes them).
    ``partitions``: how many tasks each round
    runs (default: the cluster's CPUs; at most one per row group). The other keyword arguments
    are ``poisongate.scan``'s settings. Raises ``ValueError`` for an unknown setting or a
    dataset without ``staging``, and ``ScanError`` when the scan fails or cannot be
    partitioned (the message says why)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    if isinstance(data, ray.data.Dataset):
        if staging is None:
            raise ValueError("gate(dataset, ...) needs staging=: a folder every worker can "
                             "read, where the dataset is written as Parquet before the scan")
        staging = os.path.abspath(os.fspath(staging))
        if os.path.exists(staging):
            raise ValueError(f"staging folder {staging} exists; give a new path")
        if row_id is not None:
            if row_id not in data.schema().names:
                raise ValueError(f"row_id column {row_id!r} is not in the dataset; columns: "
                                 f"{data.schema().names}")
            rows = data.count()
            distinct = data.select_columns([row_id]).groupby(row_id).count().count()
            if distinct != rows:
                raise ValueError(f"row_id column {row_id!r} has {rows - distinct} repeated "
                                 f"values among {rows} rows; it must name each row once")
            data = data.sort(row_id)
        data.write_parquet(staging)
        data = staging
    elif row_id is not None:
        raise ValueError("row_id orders a ray.data.Dataset; a file or folder is read in the "
                         "order of its files and rows")
    if isinstance(settings.get("select"), str):
        settings["select"] = [s for s in settings["select"].split(",") if s]
    given = {k: _setting(v) for k, v in settings.items() if v is not None}
    settings_json = json.dumps(given)
    data = os.path.abspath(os.fspath(data))
    out = os.path.abspath(os.fspath(out))
    if partitions is None:
        partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run_round(plan: str, rnd: int, earlier):
        n = len(json.loads(plan)["partitions"])
        earlier_ref = ray.put(list(earlier))
        ds = ray.data.range(n, override_num_blocks=n)
        done = ds.map_batches(
            _task, batch_size=1, batch_format="pyarrow",
            fn_kwargs={"data": data, "settings": settings_json, "plan": plan, "rnd": rnd,
                       "earlier": earlier_ref})
        return [bytes(row["partial"]) for row in done.take_all()]

    code, report = _scan_partitioned(data, out, settings_json, bool(reproducible),
                                     int(partitions), "ray", run_round)
    report = json.loads(report)
    clean = _read_output(ray, out, "clean")
    quarantined = _read_output(ray, out, "quarantine")
    return GateResult(report=report, exit_code=code, out=out, clean=clean,
                      quarantined=quarantined)
