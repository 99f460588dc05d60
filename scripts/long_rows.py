#!/usr/bin/env python3
"""Long rows: the trigger grid on corpora of long texts, which ../shared/benchmarks does not hold.

Each clean corpus is rewritten with several rows of one label joined into one row (sst2: 8
sentences, ag-news: 4 stories, sms-spam: 6 messages, the tweet corpora: 5 tweets; a fixed
shuffle, seed 7), so a row holds 70 to 160 words, as reviews and articles do. The insertion
attacks of experiments/domains-trig.toml (badnets with four rare words, two ordinary words,
a closing hashtag, three words a row; addsent at the start and anywhere) are then run at 1 % and
5 %, seeds 1 and 2, with TRIG001 alone, and every (cell, seed) below precision or recall 0.95
is listed, worst precision first.

Usage: python3 scripts/long_rows.py [--benchmarks ../shared/benchmarks]
           [--poisongate target/release/poisongate] [--out target/long-rows]

The grid's raw numbers are in OUT/grid/results.csv; `scripts/grid_diff.py` compares two runs."""

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys

CORPORA = [
    ("sst2-clean", 8),
    ("ag-news-clean", 4),
    ("tweeteval-emotion-clean", 5),
    ("tweeteval-hate-clean", 5),
    ("sms-spam-clean", 6),
    ("tweeteval-irony-clean", 5),
]


def join_rows(src, dst, k):
    with open(src) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rng = random.Random(7)
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    out = []
    for label, members in sorted(by_label.items(), key=lambda x: str(x[0])):
        rng.shuffle(members)
        for i in range(0, len(members) - k + 1, k):
            text = " ".join(r["text"] for r in members[i : i + k])
            out.append({"id": f"{label}-{i}", "text": text, "label": label})
    rng.shuffle(out)
    with open(dst, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    return len(out)


def grid_config(here, benchmarks_dir, files):
    """The trigger grid's attacks, at 1 % and 5 %, seeds 1 and 2, over the long corpora."""
    with open(os.path.join(here, "..", "experiments", "domains-trig.toml")) as f:
        text = f.read()
    attacks = text[text.index("# badnets: one rare word") :]
    attacks = attacks.replace("rates = [0.005, 0.01, 0.05]", "rates = [0.01, 0.05]")
    names = re.search(r'attacks = (\[.*\])', text).group(1)
    out = "seeds = [1, 2]\nscan_seed = 0\nkeep_data = false\n\n"
    for path in files:
        out += (
            f'[[dataset]]\npath = "{os.path.abspath(path)}"\nid_column = "id"\n'
            f"as_is = false\nattacks = {names}\n\n"
        )
    return out + attacks


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmarks", default=os.path.join(here, "..", "..", "shared", "benchmarks"))
    ap.add_argument("--poisongate", default=os.path.join(here, "..", "target", "release", "poisongate"))
    ap.add_argument("--out", default=os.path.join(here, "..", "target", "long-rows"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    files = []
    for name, k in CORPORA:
        dst = os.path.join(args.out, f"{name}-long.jsonl")
        n = join_rows(os.path.join(args.benchmarks, f"{name}.jsonl"), dst, k)
        print(f"{name}: {n} rows of {k} joined", file=sys.stderr)
        files.append(dst)
    config = os.path.join(args.out, "long.toml")
    with open(config, "w") as f:
        f.write(grid_config(here, args.benchmarks, files))
    grid = os.path.join(args.out, "grid")
    if os.path.exists(grid):
        subprocess.run(["rm", "-rf", grid], check=True)
    subprocess.run(
        [args.poisongate, "eval", config, "--out", grid],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(grid, "results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["detector"] == "TRIG001"]
    print("| corpus | attack | rate | seed | poisoned | flagged | clean rows flagged | precision | recall |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    bad = []
    for r in rows:
        precision = float(r["precision"]) if r["flagged"] != "0" else 1.0
        recall = float(r["recall"]) if r["poisoned"] != "0" else 1.0
        if r["attack"] == "none" and r["flagged"] != "0" or precision < 0.95 or recall < 0.95:
            bad.append((precision, recall, r))
    bad.sort(key=lambda x: (x[0], x[1]))
    for precision, recall, r in bad:
        print(
            f"| {r['dataset']} | {r['attack']} | {r['rate']} | {r['seed']} | {r['poisoned']} "
            f"| {r['flagged']} | {r['fp']} | {precision:.3f} | {recall:.3f} |"
        )
    clean = sum(int(r["fp"]) for r in rows)
    print(f"\n{len(bad)} of {len(rows)} (cell, seed) rows below 0.95; clean rows flagged in all: {clean}")


if __name__ == "__main__":
    main()
