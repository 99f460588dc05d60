#!/usr/bin/env python3
"""Worst cells of the domain grid (docs/evaluation.md, "The domain grid") from its results.csv.

    cargo run --release -- eval experiments/domains.toml --out target/eval-domains --markdown docs/domains-grid.md
    python3 scripts/domains_summary.py target/eval-domains/results.csv

or of its insertion cells with TRIG001 alone (experiments/domains-trig.toml):

    cargo run --release -- eval experiments/domains-trig.toml --out target/eval-domains-trig
    python3 scripts/domains_summary.py target/eval-domains-trig/results.csv

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


def rows_per_trigger(attack, poisoned):
    """Rows carrying each trigger word: a row holds `xK` of the attack's words (one phrase for
    addsent)."""
    if not attack.startswith("badnets"):
        return poisoned
    inside = attack[attack.index("[") + 1:attack.index("]")].split(",")
    per_row = next((int(w[1:]) for w in inside if w.startswith("x") and w[1:].isdigit()), 1)
    words = [w for w in inside if w not in ("start", "end", "anywhere") and not (w.startswith("x") and w[1:].isdigit())]
    return poisoned * per_row / max(1, len(words))


alone = sorted({k[:3] for k in cells if k[1].startswith(("badnets", "addsent")) and k[3] == "TRIG001"})
if alone:
    key = lambda k: k + ("TRIG001", "TRIG001")
    p_ok = sum(worst(key(k), prec) >= 0.95 for k in alone)
    supported = [k for k in alone if rows_per_trigger(k[1], int(cells[key(k)][0]["poisoned"])) >= 20]
    r_ok = sum(worst(key(k), lambda r: float(r["recall"])) >= 0.95 for k in supported)
    print(f"TRIG001 alone: precision >= 0.95 in {p_ok} of {len(alone)} cells; recall >= 0.95 in {r_ok} of the "
          f"{len(supported)} cells where each trigger is carried by at least 20 rows.\n")
    print("| corpus | attack | rate | rows per trigger | P min | R min | clean rows flagged max |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for k in alone:
        t = key(k)
        print(f"| {k[0]} | {k[1]} | {100 * float(k[2]):g} % | {rows_per_trigger(k[1], int(cells[t][0]['poisoned'])):.0f} | "
              f"{worst(t, prec):.3f} | {worst(t, lambda r: float(r['recall'])):.3f} | "
              f"{100 * worst(t, lambda r: float(r['clean_flagged_fraction']), max):.2f} % |")
    clean = sorted(k for k in cells if k[1] == "none" and k[3] == "TRIG001")
    print("\nclean corpora as they are: " + ", ".join(f"{k[0]} {cells[k][0]['flagged']} rows" for k in clean))
    sys.exit(0)

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
print("\nduplicate-flip, the detector whose relation finds the copies (DUP001 for verbatim copies, DUP002")
print("for edited ones); other rows = rows that are not added copies:\n")
print("| corpus | attack | rate | copies | detector | recall min | precision min | other rows flagged max |")
print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |")
for k in dup:
    det = "DUP001" if k[1].endswith("e0]") else "DUP002"
    d = k + ("default-text", det)
    print(f"| {k[0]} | {k[1]} | {100 * float(k[2]):g} % | {cells[d][0]['poisoned']} | {det} | "
          f"{worst(d, lambda r: float(r['recall'])):.3f} | {worst(d, prec):.3f} | "
          f"{100 * worst(d, lambda r: float(r['clean_flagged_fraction']), max):.2f} % |")

clean = sorted({k for k in cells if k[1] == "none" and k[4] == "combined"})
print("\nclean corpora as they are (combined verdict):\n")
print("| corpus | setting | quarantined | share |")
print("| --- | --- | ---: | ---: |")
for k in clean:
    r = cells[k][0]
    print(f"| {k[0]} | {k[3]} | {r['flagged']} | {100 * float(r['flagged_fraction']):.2f} % |")

other = sorted({k for k in cells if k[1] in ("clean-label", "label-flip") and
                ((k[1] == "clean-label" and k[4] == "combined") or (k[1] == "label-flip" and k[4] == "LBL001"))})
print("\nclean-label (combined verdict, text detectors) and label-flip (opt-in LBL001 with minilm):\n")
print("| corpus | attack | rate | detector | precision min | recall min | other rows flagged max |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
for k in other:
    print(f"| {k[0]} | {k[1]} | {100 * float(k[2]):g} % | {k[4]} | {worst(k, prec):.3f} | "
          f"{worst(k, lambda r: float(r['recall'])):.3f} | {100 * worst(k, lambda r: float(r['clean_flagged_fraction']), max):.2f} % |")
