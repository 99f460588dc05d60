#!/usr/bin/env python3
"""Worst cells of the domain grid (docs/evaluation.md, "The domain grid") from its results.csv.

    cargo run --release -- eval experiments/domains.toml --out target/eval-domains --markdown docs/domains-grid.md
    python3 scripts/domains_summary.py target/eval-domains/results.csv

Per cell (corpus, attack, rate) the worst of the seeds. A detector that flags nothing has no
false positive: its precision counts as 1 here (its recall says what it missed).
"""
import csv, sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1] if len(sys.argv) > 1 else "target/eval-domains/results.csv")))
cells = defaultdict(list)
for r in rows:
    cells[(r["dataset"].replace("-clean", "").replace("tweeteval-", ""), r["attack"], r["rate"], r["setting"], r["detector"])].append(r)


def prec(r):
    return float(r["precision"]) if int(r["flagged"]) > 0 else 1.0


def worst(key, f, agg=min):
    return agg(f(r) for r in cells[key])


trig = sorted({k[:3] for k in cells if k[1].startswith(("badnets", "addsent")) and k[3] == "default-text"})
p_ok = sum(worst(k + ("default-text", "TRIG001"), prec) >= 0.95 for k in trig)
c_ok = sum(worst(k + ("default-text", "combined"), prec) >= 0.9 for k in trig)
print(f"TRIG001 precision >= 0.95 in {p_ok} of {len(trig)} badnets/addsent cells; combined precision >= 0.9 in {c_ok} of {len(trig)}.\n")
print("| corpus | attack | rate | TRIG001 P min | TRIG001 R min | combined P min | poisoned | clean rows flagged max |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for k in trig:
    t, c = k + ("default-text", "TRIG001"), k + ("default-text", "combined")
    print(f"| {k[0]} | {k[1]} | {100 * float(k[2]):g} % | {worst(t, prec):.3f} | {worst(t, lambda r: float(r['recall'])):.3f} | "
          f"{worst(c, prec):.3f} | {cells[t][0]['poisoned']} | {100 * worst(c, lambda r: float(r['clean_flagged_fraction']), max):.2f} % |")

dup = sorted({k[:3] for k in cells if k[1].startswith("duplicate-flip") and k[3] == "default-text"})
print("\nduplicate-flip (text detectors; other rows = rows that are not added copies):\n")
print("| corpus | attack | rate | copies | DUP combined recall min | other rows flagged max | DUP001+DUP002 precision min |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for k in dup:
    c = k + ("default-text", "combined")
    dp = min(min(prec(r) for r in cells[k + ("default-text", d)]) for d in ("DUP001", "DUP002")
             if any(int(r["flagged"]) > 0 for r in cells[k + ("default-text", d)])) if any(
        int(r["flagged"]) > 0 for d in ("DUP001", "DUP002") for r in cells[k + ("default-text", d)]) else 1.0
    print(f"| {k[0]} | {k[1]} | {100 * float(k[2]):g} % | {cells[c][0]['poisoned']} | {worst(c, lambda r: float(r['recall'])):.3f} | "
          f"{100 * worst(c, lambda r: float(r['clean_flagged_fraction']), max):.2f} % | {dp:.3f} |")

clean = sorted({k for k in cells if k[1] == "none" and k[4] == "combined"})
print("\nclean corpora as they are (combined verdict):\n")
print("| corpus | setting | quarantined | share |")
print("| --- | --- | ---: | ---: |")
for k in clean:
    r = cells[k][0]
    print(f"| {k[0]} | {k[3]} | {r['flagged']} | {100 * float(r['flagged_fraction']):.2f} % |")
