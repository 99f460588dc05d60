#!/usr/bin/env python3
"""Do two builds of poisongate give the same results on every shipped benchmark set?

usage: compare_builds.py OLD_BINARY NEW_BINARY [--benchmarks DIR] [--select CODES]

For every DIR/*.jsonl with a representation beside it (`.mlp.npy`, `.minilm.npy`), runs
`scan --reproducible` with each binary (the default detectors, then SPEC001 and ACT001 alone)
and compares, per scan:
- the quarantine and clean outputs byte for byte (every row's verdict, score and reasons);
- each detector's flagged count and summary (report.json), value by value; a float that
  differs is reported with its relative difference.
Prints one line per scan and a last line with the number of scans whose outputs differ.
Exit code 1 when any output file differs.
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def scan(binary, data, emb, select, out):
    cmd = [binary, "scan", data, "--id-column", "id", "--embeddings", emb,
           "--out", out, "--reproducible"]
    if select:
        cmd += ["--select", select]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    digests = {}
    for name in ("clean.jsonl", "quarantine.jsonl"):
        with open(os.path.join(out, name), "rb") as f:
            digests[name] = hashlib.sha256(f.read()).hexdigest()
    return report, digests


def diff_values(a, b, path, out):
    """Appends (path, description) for every leaf where a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff_values(a.get(k), b.get(k), f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff_values(x, y, f"{path}[{i}]", out)
    elif isinstance(a, float) and isinstance(b, float):
        if a != b:
            rel = abs(a - b) / max(abs(a), abs(b), 1e-300)
            out.append((path, f"relative {rel:.1e}"))
    elif a != b:
        out.append((path, f"{str(a)[:60]!r} vs {str(b)[:60]!r}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--benchmarks", default=os.path.join(HERE, "..", "..", "shared", "benchmarks"))
    ap.add_argument("--select", default=",SPEC001,ACT001",
                    help="comma-separated scans to run; an empty entry is the default scan")
    args = ap.parse_args()
    selects = args.select.split(",")
    differing = 0
    total = 0
    for data in sorted(glob.glob(os.path.join(args.benchmarks, "*.jsonl"))):
        stem = data[: -len(".jsonl")]
        for rep in ("mlp", "minilm"):
            emb = f"{stem}.{rep}.npy"
            if not os.path.exists(emb):
                continue
            for select in selects:
                with tempfile.TemporaryDirectory() as tmp:
                    ra, da = scan(args.old, data, emb, select, os.path.join(tmp, "a"))
                    rb, db = scan(args.new, data, emb, select, os.path.join(tmp, "b"))
                total += 1
                same_files = da == db
                differing += not same_files
                notes = []
                for x, y in zip(ra["detectors"], rb["detectors"]):
                    diff_values(x["flagged"], y["flagged"], f"{x['code']}.flagged", notes)
                    diff_values(x["summary"], y["summary"], f"{x['code']}.summary", notes)
                name = f"{os.path.basename(stem)} {rep} {select or 'default'}"
                status = "same outputs" if same_files else "OUTPUTS DIFFER"
                print(f"{name}: {status}; {len(notes)} report values differ")
                for path, what in notes[:6]:
                    print(f"    {path}: {what}")
    print(f"{differing} of {total} scans have different outputs")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
