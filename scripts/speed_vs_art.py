#!/usr/bin/env python3
"""Side-by-side speed of poisongate and IBM ART's poisoning defences on one benchmark set.

usage: speed_vs_art.py [--poisongate BIN] [--benchmarks DIR] [--set NAME] [--runs N]

Times, median of N runs each (default 5), on DIR/NAME.jsonl with DIR/NAME.mlp.npy:
- whole process: `poisongate scan --select SPEC001|ACT001` against ../shared/tools/art_one.py
  spectral|activation (Python start-up and imports included, as a pipeline step pays them),
  one run of each in turn;
- in process: the detector's own `seconds` in report.json against ART's detect_poison() timed
  inside one Python process after one warm-up call;
- the default scan (no --select) with DIR/NAME.minilm.npy, whole process.
ART must be importable by this interpreter:
  pip install 'adversarial-robustness-toolbox==1.20.*' scikit-learn packaging numpy
Prints a Markdown table. Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def scan_once(binary, data, emb, select):
    """One scan: its wall time and, with `select`, the detector's own seconds."""
    out = tempfile.mkdtemp(prefix="pg-speed-")
    shutil.rmtree(out)
    cmd = [binary, "scan", data, "--id-column", "id", "--embeddings", emb, "--out", out]
    if select:
        cmd += ["--select", select]
    wall = timed(cmd)
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    inproc = None
    if select:
        inproc = next(d["seconds"] for d in report["detectors"] if d["code"] == select)
    shutil.rmtree(out)
    return wall, inproc


def scan(binary, data, emb, select, runs):
    walls = [scan_once(binary, data, emb, select)[0] for _ in range(runs)]
    return statistics.median(walls)


def art_inprocess(tools, data, emb, which, runs):
    sys.path.insert(0, tools)
    import numpy as np
    import warnings

    warnings.filterwarnings("ignore")
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art_baseline import Precomputed

    labels = np.array([json.loads(l)["label"] for l in open(data, encoding="utf-8")])
    reps = np.load(emb).astype(np.float32)
    k = int(labels.max()) + 1
    y = np.eye(k)[labels]
    x = np.arange(len(labels)).reshape(-1, 1).astype(np.float32)
    clf = Precomputed(reps, k)
    make = SpectralSignatureDefense if which == "spectral" else ActivationDefence
    make(clf, x, y).detect_poison()  # warm-up: imports, BLAS start-up
    times = []
    for _ in range(runs):
        d = make(clf, x, y)
        t0 = time.perf_counter()
        d.detect_poison()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--poisongate", default=os.path.join(HERE, "..", "target", "release", "poisongate"))
    ap.add_argument("--benchmarks", default=os.path.join(HERE, "..", "..", "shared", "benchmarks"))
    ap.add_argument("--tools", default=os.path.join(HERE, "..", "..", "shared", "tools"))
    ap.add_argument("--set", default="sst2-badnets-10")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    data = os.path.join(a.benchmarks, a.set + ".jsonl")
    mlp = os.path.join(a.benchmarks, a.set + ".mlp.npy")
    minilm = os.path.join(a.benchmarks, a.set + ".minilm.npy")
    art_one = os.path.join(a.tools, "art_one.py")
    rows = []
    for code, which in [("SPEC001", "spectral"), ("ACT001", "activation")]:
        # the two whole-process runs alternate, so that a change in the machine's speed
        # during the measurement weighs on both sides alike
        pg_walls, pg_ins, art_walls = [], [], []
        for _ in range(a.runs):
            wall, inproc = scan_once(a.poisongate, data, mlp, code)
            pg_walls.append(wall)
            pg_ins.append(inproc)
            art_walls.append(timed([sys.executable, art_one, which, data, mlp]))
        pg_wall, pg_in = statistics.median(pg_walls), statistics.median(pg_ins)
        art_wall = statistics.median(art_walls)
        art_in = art_inprocess(a.tools, data, mlp, which, a.runs)
        rows.append((f"{code} vs ART {which}, whole process", pg_wall, art_wall))
        rows.append((f"{code} vs ART {which}, in process", pg_in, art_in))
    wall = scan(a.poisongate, data, minilm, None, a.runs)
    print(f"{a.set}, median of {a.runs} runs, {os.cpu_count()} cores\n")
    print("| measurement | poisongate s | ART s | ART / poisongate |")
    print("| --- | ---: | ---: | ---: |")
    for name, pg, art in rows:
        print(f"| {name} | {pg:.3f} | {art:.3f} | {art / pg:.1f}× |")
    print(f"| default scan with .minilm.npy, whole process | {wall:.3f} | | |")


if __name__ == "__main__":
    main()
