"""poisongate.ray.gate in Ray's local mode against the single-machine streaming scan: the same
outputs byte for byte and the same report, for 1, 2, 7 and 16 partitions on the demo, with its
embeddings in a column and in a .npy file beside the data, and with 2 partitions on every
shipped benchmark (../shared/benchmarks, as Parquet with its MiniLM embeddings in a
column)."""

import json
import pathlib

import pytest

ray = pytest.importorskip("ray")
np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import poisongate  # noqa: E402
import poisongate.ray  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "datasets" / "demo"
SETTINGS = dict(id_column="id", embedding_column="embedding", ground_truth_column="poison",
                detectors={"DUP002": {"embedding_cosine": 0}}, reproducible=True)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
SETS = sorted(p for p in BENCHMARKS.glob("*.jsonl") if p.with_suffix(".minilm.npy").exists())


def as_parquet(jsonl, npy, path, groups):
    """A JSONL set with its embeddings in a column (none when `npy` is None), in `groups` row
    groups."""
    rows = [json.loads(line) for line in open(jsonl) if line.strip()]
    columns = {
        "id": [str(r["id"]) for r in rows],
        "text": [r["text"] for r in rows],
        "label": [r["label"] for r in rows],
        "poison": [bool(r["poison"]) for r in rows],
    }
    if npy is not None:
        emb = np.load(npy).astype(np.float32)
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)),
                                                                 emb.shape[1])
    table = pa.table(columns)
    pq.write_table(table, path, row_group_size=-(-len(rows) // groups))
    assert pq.ParquetFile(path).num_row_groups == groups
    return path


@pytest.fixture(scope="module")
def demo_parquet(tmp_path_factory):
    """The demo reviews with their embeddings in a column, in 16 row groups."""
    path = tmp_path_factory.mktemp("data") / "reviews.parquet"
    return as_parquet(DEMO / "reviews.jsonl", DEMO / "reviews.npy", path, 16)


def agreed(report):
    return {k: report[k] for k in ("detectors", "verdict", "evaluation", "reconciliation",
                                   "quarantined_rows")}


def without_times(report):
    for d in report["detectors"]:
        d.pop("seconds", None)
    return report


def assert_same(got, one, got_dir, one_dir, ext="parquet"):
    """The gate's result against the single-machine scan's: exit code, outputs (``ext``: their
    format's extension) byte for byte, the report's detector entries, verdict, evaluation and
    reconciliation."""
    assert got.exit_code == one.exit_code
    for f in (f"clean.{ext}", f"quarantine.{ext}"):
        assert (got_dir / f).read_bytes() == (one_dir / f).read_bytes(), f
    assert agreed(without_times(got.report)) == agreed(without_times(one.report))


@pytest.mark.parametrize("partitions", [1, 2, 7, 16])
def test_gate_equals_the_single_machine_scan(cluster, demo_parquet, tmp_path, partitions):
    one = poisongate.scan(demo_parquet, out=tmp_path / "one", stream=True, **SETTINGS)
    got = poisongate.ray.gate(demo_parquet, tmp_path / "ray", partitions=partitions, **SETTINGS)
    assert_same(got, one, tmp_path / "ray", tmp_path / "one")
    assert got.report["settings"]["engine"] == "ray"
    assert got.report["settings"]["partitions"] == partitions
    assert got.report["reconciliation"]["quarantined_rows"] > 0
    assert got.clean.count() + got.quarantined.count() == 3000
    assert poisongate.verify(tmp_path / "ray").ok


@pytest.mark.skipif(not SETS, reason="../shared/benchmarks is not beside the checkout")
def test_gate_equals_the_single_machine_scan_on_every_benchmark(cluster, tmp_path):
    assert len(SETS) >= 12
    for jsonl in SETS:
        name = jsonl.stem
        data = as_parquet(jsonl, jsonl.with_suffix(".minilm.npy"), tmp_path / f"{name}.parquet", 8)
        one = poisongate.scan(data, out=tmp_path / f"{name}-one", stream=True, **SETTINGS)
        got = poisongate.ray.gate(data, tmp_path / f"{name}-ray", partitions=2, **SETTINGS)
        assert got.exit_code == one.exit_code, name
        for f in ("clean.parquet", "quarantine.parquet"):
            ray_bytes = (tmp_path / f"{name}-ray" / f).read_bytes()
            assert ray_bytes == (tmp_path / f"{name}-one" / f).read_bytes(), (name, f)
        assert agreed(without_times(got.report)) == agreed(without_times(one.report)), name


@pytest.mark.parametrize("partitions", [2, 7])
def test_gate_reads_embeddings_from_a_npy_file(cluster, tmp_path, partitions):
    """The demo's embeddings in reviews.npy beside the Parquet rows: each task reads its
    partition's rows of the file; the single-machine streaming scan's outputs and report."""
    data = as_parquet(DEMO / "reviews.jsonl", None, tmp_path / "reviews.parquet", 16)
    settings = dict(SETTINGS, embedding_column=None, embeddings=str(DEMO / "reviews.npy"))
    one = poisongate.scan(data, out=tmp_path / "one", stream=True, **settings)
    got = poisongate.ray.gate(data, tmp_path / "ray", partitions=partitions, **settings)
    assert_same(got, one, tmp_path / "ray", tmp_path / "one")
    assert got.report["inputs"] == one.report["inputs"]
    assert any(i["role"] == "embeddings" for i in got.report["inputs"])
    assert got.report["reconciliation"]["quarantined_rows"] > 0
    assert poisongate.verify(tmp_path / "ray").ok


def test_gate_refuses_what_it_cannot_split(cluster, tmp_path):
    emb = tmp_path / "embeddings.json"
    emb.write_text("[]")
    with pytest.raises(poisongate.ScanError, match="npy"):
        poisongate.ray.gate(DEMO / "reviews.jsonl", tmp_path / "out", id_column="id",
                            embeddings=str(emb))


@pytest.mark.parametrize("partitions", [2, 7])
def test_gate_reads_jsonl_by_byte_ranges(cluster, tmp_path, partitions):
    """The demo's JSONL rows with reviews.npy: each task reads its lines from a byte where a
    block of rows starts; the single-machine streaming scan's JSONL outputs and report."""
    data = DEMO / "reviews.jsonl"
    settings = dict(SETTINGS, embedding_column=None, embeddings=str(DEMO / "reviews.npy"))
    one = poisongate.scan(data, out=tmp_path / "one", stream=True, **settings)
    got = poisongate.ray.gate(data, tmp_path / "ray", partitions=partitions, **settings)
    assert_same(got, one, tmp_path / "ray", tmp_path / "one", ext="jsonl")
    assert got.report["settings"]["partitions"] == partitions
    assert got.report["reconciliation"]["quarantined_rows"] > 0
    assert got.clean.count() + got.quarantined.count() == 3000
    assert poisongate.verify(tmp_path / "ray").ok


@pytest.mark.parametrize("partitions", [2, 7])
def test_gate_reads_a_folder_of_jsonl_files(cluster, tmp_path, partitions):
    """The demo's JSONL lines in three files of a folder (Spark's and Ray's `part-*.json`
    names), with reviews.npy: the outputs of the same lines in one file, byte for byte, and the
    single-machine scan's report; each file listed with its digest."""
    lines = (DEMO / "reviews.jsonl").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, (a, b) in enumerate([(0, 700), (700, 2100), (2100, len(lines))]):
        (folder / f"part-{k}.json").write_bytes(b"".join(lines[a:b]))
    (folder / "_SUCCESS").write_bytes(b"")
    settings = dict(SETTINGS, embedding_column=None, embeddings=str(DEMO / "reviews.npy"))
    one = poisongate.scan(DEMO / "reviews.jsonl", out=tmp_path / "one", stream=True, **settings)
    local = poisongate.scan(folder, out=tmp_path / "local", stream=True, **settings)
    got = poisongate.ray.gate(folder, tmp_path / "ray", partitions=partitions, **settings)
    assert_same(got, one, tmp_path / "ray", tmp_path / "one", ext="jsonl")
    assert got.report["inputs"] == local.report["inputs"]
    files = got.report["inputs"][0]["files"]
    assert [f["name"] for f in files] == ["part-0.json", "part-1.json", "part-2.json"]
    assert got.clean.count() + got.quarantined.count() == 3000
    assert poisongate.verify(tmp_path / "ray").ok


def as_folder(table, folder, cuts, groups):
    """`table` written as Parquet files `part-k.parquet` of the rows between `cuts`, each in
    row groups of `groups` rows, with a `_SUCCESS` marker beside them."""
    folder.mkdir()
    bounds = [0, *cuts, table.num_rows]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        pq.write_table(table.slice(a, b - a), folder / f"part-{k}.parquet", row_group_size=groups)
    (folder / "_SUCCESS").write_bytes(b"")
    return folder


@pytest.mark.parametrize("partitions", [2, 7])
def test_gate_reads_a_folder_of_parquet_files(cluster, demo_parquet, tmp_path, partitions):
    """The demo's rows in three files of a folder: the outputs of the same rows in one file,
    byte for byte, and the single-machine scan's report; each file listed with its digest."""
    folder = as_folder(pq.read_table(demo_parquet), tmp_path / "parts", [700, 2100], 250)
    one = poisongate.scan(demo_parquet, out=tmp_path / "one", stream=True, **SETTINGS)
    local = poisongate.scan(folder, out=tmp_path / "local", stream=True, **SETTINGS)
    got = poisongate.ray.gate(folder, tmp_path / "ray", partitions=partitions, **SETTINGS)
    assert_same(got, one, tmp_path / "ray", tmp_path / "one")
    assert got.report["inputs"] == local.report["inputs"]
    files = got.report["inputs"][0]["files"]
    assert [f["name"] for f in files] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert got.report["reconciliation"]["quarantined_rows"] > 0
    assert poisongate.verify(tmp_path / "ray").ok


def test_gate_reads_a_ray_dataset(cluster, demo_parquet, tmp_path):
    """A ray.data.Dataset is written into `staging` and gated as that folder: the scan of the
    staged folder on one machine, every row accounted for."""
    ds = ray.data.read_parquet(str(demo_parquet))
    with pytest.raises(ValueError, match="staging"):
        poisongate.ray.gate(ds, tmp_path / "nostaging", **SETTINGS)
    staged = tmp_path / "staged"
    got = poisongate.ray.gate(ds, tmp_path / "ray", partitions=2, staging=staged, **SETTINGS)
    local = poisongate.scan(staged, out=tmp_path / "local", stream=True, **SETTINGS)
    assert_same(got, local, tmp_path / "ray", tmp_path / "local")
    assert got.report["inputs"][0]["path"] == str(staged)
    assert got.clean.count() + got.quarantined.count() == 3000
    # the same rows as the demo's own scan quarantines, whatever order Ray wrote them in
    one = poisongate.scan(demo_parquet, out=tmp_path / "one", stream=True, **SETTINGS)
    held = sorted(pq.read_table(tmp_path / "ray" / "quarantine.parquet")["id"].to_pylist())
    assert held == sorted(pq.read_table(tmp_path / "one" / "quarantine.parquet")["id"].to_pylist())


def test_gate_orders_a_dataset_by_its_row_id(cluster, demo_parquet, tmp_path):
    """With row_id, two datasets holding the same rows in other orders and blocks give the same
    verdicts and the same output bytes; a column with repeated values is refused."""
    base = ray.data.read_parquet(str(demo_parquet))
    shuffled = base.random_shuffle(seed=7).repartition(5)
    blocks = base.repartition(3)
    a = poisongate.ray.gate(shuffled, tmp_path / "a", partitions=2, staging=tmp_path / "sa",
                            row_id="id", **SETTINGS)
    b = poisongate.ray.gate(blocks, tmp_path / "b", partitions=7, staging=tmp_path / "sb",
                            row_id="id", **SETTINGS)
    assert_same(a, b, tmp_path / "a", tmp_path / "b")
    assert a.report["reconciliation"]["quarantined_rows"] > 0
    with pytest.raises(ValueError, match="repeated"):
        poisongate.ray.gate(base, tmp_path / "c", staging=tmp_path / "sc", row_id="label",
                            **SETTINGS)
    with pytest.raises(ValueError, match="row_id"):
        poisongate.ray.gate(demo_parquet, tmp_path / "d", row_id="id", **SETTINGS)
