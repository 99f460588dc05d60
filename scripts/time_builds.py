#!/usr/bin/env python3
"""Whole-process times of several poisongate builds, interleaved run by run, so that a change
in the machine's speed weighs on every build alike.

usage: time_builds.py BIN [BIN ...] [--benchmarks DIR] [--set NAME] [--representation mlp]
                      [--select SPEC001] [--runs 60]

Each run is `BIN scan DIR/NAME.jsonl --id-column id --embeddings DIR/NAME.REPR.npy --out TMP
--select CODES -q` (no --select with `--select ''`). Prints, per build, the median and first
quartile of the wall time, the median CPU time (user + system, from wait4) and the median
count of minor page faults.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins", nargs="+")
    ap.add_argument("--benchmarks", default=os.path.join(HERE, "..", "..", "shared", "benchmarks"))
    ap.add_argument("--set", default="sst2-badnets-10")
    ap.add_argument("--representation", default="mlp")
    ap.add_argument("--select", default="SPEC001")
    ap.add_argument("--runs", type=int, default=60)
    a = ap.parse_args()
    data = os.path.join(a.benchmarks, a.set + ".jsonl")
    emb = os.path.join(a.benchmarks, f"{a.set}.{a.representation}.npy")
    out = os.path.join(tempfile.mkdtemp(prefix="pg-time-"), "out")
    wall = {b: [] for b in a.bins}
    cpu = {b: [] for b in a.bins}
    faults = {b: [] for b in a.bins}
    for _ in range(a.runs):
        for b in a.bins:
            shutil.rmtree(out, ignore_errors=True)
            cmd = [b, "scan", data, "--id-column", "id", "--embeddings", emb, "--out", out, "-q"]
            if a.select:
                cmd += ["--select", a.select]
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            wall[b].append(time.perf_counter() - t0)
            if status != 0 and os.waitstatus_to_exitcode(status) not in (0, 1):
                raise SystemExit(f"{b} failed: {' '.join(cmd)}")
            cpu[b].append(usage.ru_utime + usage.ru_stime)
            faults[b].append(usage.ru_minflt)
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    print(f"{a.set} with .{a.representation}.npy, --select {a.select or '(default)'}, "
          f"{a.runs} runs each, interleaved\n")
    print("| build | wall median ms | wall p25 ms | CPU median ms | page faults |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for b in a.bins:
        p25 = statistics.quantiles(wall[b], n=4)[0]
        print(f"| {b} | {statistics.median(wall[b]) * 1e3:.1f} | {p25 * 1e3:.1f} | "
              f"{statistics.median(cpu[b]) * 1e3:.1f} | {statistics.median(faults[b]):.0f} |")


if __name__ == "__main__":
    main()
