"""The Python package against the CLI: same library, same outputs, same errors."""

import json
import os
import pathlib
import subprocess

import pytest

import poisongate

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "datasets" / "demo"
DATA = DEMO / "reviews.jsonl"
EMB = DEMO / "reviews.npy"


def cli_binary():
    path = os.environ.get("POISONGATE_BIN") or str(ROOT / "target" / "debug" / "poisongate")
    if not os.path.exists(path):
        pytest.skip(f"no poisongate binary at {path} (build it with cargo, or set POISONGATE_BIN)")
    return path


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(folder).iterdir())}


def test_scan_writes_what_the_cli_writes(tmp_path):
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    code = subprocess.run(
        [cli_binary(), "scan", str(DATA), "--embeddings", str(EMB), "--id-column", "id",
         "--out", str(cli_out), "--reproducible", "--quiet"],
        check=False,
    ).returncode
    result = poisongate.scan(DATA, out=py_out, embeddings=EMB, id_column="id", reproducible=True)
    assert result.exit_code == code
    assert result.out == str(py_out)
    cli_files, py_files = files(cli_out), files(py_out)
    assert sorted(cli_files) == sorted(py_files)
    for name, content in cli_files.items():
        assert py_files[name] == content, name
    assert result.report == json.loads(py_files["report.json"])


def test_the_gate_and_its_exit_code():
    strict = poisongate.scan(DATA, embeddings=EMB, id_column="id")
    assert not strict.passed and strict.exit_code == 1
    quarantined = strict.report["verdict"]["quarantined_fraction"]
    assert 0 < quarantined < 0.5
    lenient = poisongate.scan(DATA, embeddings=EMB, id_column="id",
                              max_quarantine_fraction=quarantined)
    assert lenient.passed and lenient.exit_code == 0


def test_settings_reach_the_detectors():
    result = poisongate.scan(DATA, select="TRIG001", detectors={"TRIG001": {"alpha": 0.01}},
                             reproducible=True)
    codes = [d["code"] for d in result.report["detectors"]]
    assert codes == ["TRIG001"]
    assert result.report["detectors"][0]["params"]["alpha"] == 0.01
    # the same scan twice gives the same report
    again = poisongate.scan(DATA, select=["TRIG001"], detectors={"TRIG001": {"alpha": 0.01}},
                            reproducible=True)
    assert again.report == result.report


def test_unknown_or_invalid_settings_are_value_errors():
    with pytest.raises(ValueError, match="no_such_setting"):
        poisongate.scan(DATA, no_such_setting=1)
    with pytest.raises(ValueError, match="dedup"):
        poisongate.scan(DATA, dedup="sometimes")


def test_a_malformed_row_names_file_and_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = DATA.read_text(encoding="utf-8").splitlines()
    lines[3] = '{"id": 3, "text": "unterminated'
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(poisongate.ScanError) as e:
        poisongate.scan(bad, out=out)
    assert "bad.jsonl" in str(e.value)
    assert "line 4" in str(e.value)
    assert not out.exists()


def test_verify_checks_a_folder_and_names_a_tampered_file(tmp_path):
    out = tmp_path / "out"
    poisongate.scan(DATA, out=out, embeddings=EMB, id_column="id")
    ok = poisongate.verify(out)
    assert ok.ok and ok.message.startswith("OK:")
    clean = out / "clean.jsonl"
    clean.write_bytes(clean.read_bytes().replace(b"a", b"b", 1))
    bad = poisongate.verify(out)
    assert not bad.ok and bad.exit_code == 1
    assert "clean.jsonl" in bad.message
    missing = poisongate.verify(tmp_path / "nowhere")
    assert missing.exit_code == 2


def test_fit_then_scan_against_the_trusted_state(tmp_path):
    state = tmp_path / "trusted.pgstate"
    fitted = poisongate.fit(DATA, state)
    assert fitted.rows == len(DATA.read_text(encoding="utf-8").splitlines())
    assert state.stat().st_size == fitted.bytes
    result = poisongate.scan(DATA, reference=state, reproducible=True)
    inputs = {i["role"]: i for i in result.report["inputs"]}
    assert inputs["reference"]["sha256"] == fitted.sha256
    with pytest.raises(poisongate.FitError):
        poisongate.fit(tmp_path / "missing.jsonl", tmp_path / "x.pgstate")
    assert issubclass(poisongate.FitError, poisongate.PoisongateError)
    assert issubclass(poisongate.ScanError, poisongate.PoisongateError)


def test_streaming_scan_writes_what_the_in_memory_scan_writes(tmp_path):
    settings = dict(embeddings=EMB, id_column="id", select="ACT001,SPEC001,DUP001,DUP003,TRIG001",
                    batch_rows=500, reproducible=True)
    mem = poisongate.scan(DATA, out=tmp_path / "mem", **settings)
    st = poisongate.scan(DATA, out=tmp_path / "stream", stream=True, **settings)
    assert st.report["settings"]["engine"] == "streaming"
    assert st.exit_code == mem.exit_code
    assert st.report["reconciliation"] == mem.report["reconciliation"]
    for name in ("clean.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "mem" / name).read_bytes() == (tmp_path / "stream" / name).read_bytes()
    # what cannot stream is refused, with the reason
    with pytest.raises(poisongate.ScanError, match="embedding relation"):
        poisongate.scan(DATA, embeddings=EMB, stream=True)
