#!/usr/bin/env python3
"""Compare two `poisongate eval` results.csv files cell by cell.

Usage: grid_diff.py BEFORE.csv AFTER.csv [--detector TRIG001] [--any-setting]

Rows are matched on (dataset, attack, rate, seed, representation, setting, detector), the
setting left out with --any-setting (a one-detector grid against the full one); a row
is better when its F1 rose or, at equal F1, fewer clean rows were flagged, worse in the
opposite case. Prints every changed row and the counts.
"""
import csv
import sys


def load(path, detector, any_setting):
    out = {}
    for r in csv.DictReader(open(path)):
        if detector and r["detector"] != detector:
            continue
        setting = "" if any_setting else r["setting"]
        key = (r["dataset"], r["attack"], r["rate"], r["seed"], r["representation"],
               setting, r["detector"])
        out[key] = r
    return out


def num(x):
    try:
        return float(x)
    except ValueError:
        return 0.0


def main():
    args = sys.argv[1:]
    detector = None
    if "--detector" in args:
        i = args.index("--detector")
        detector = args[i + 1]
        del args[i:i + 2]
    any_setting = "--any-setting" in args
    args = [a for a in args if a != "--any-setting"]
    before, after = (load(p, detector, any_setting) for p in args[:2])
    better = worse = 0
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        fa, fb = num(a["f1"]), num(b["f1"])
        pa, pb = num(a["fp"]), num(b["fp"])
        if (fa, pa) == (fb, pb):
            continue
        verdict = "better" if (fb > fa or (fb == fa and pb < pa)) else "worse"
        better += verdict == "better"
        worse += verdict == "worse"
        print(f"{verdict:6} {key[0]:24} {key[1]:32} {key[2]:5} s{key[3]} {key[6]:8} "
              f"tp {a['tp']}->{b['tp']} fp {a['fp']}->{b['fp']} f1 {fa:.3f}->{fb:.3f}")
    print(f"{better} better, {worse} worse, {len(set(before) & set(after))} compared")


if __name__ == "__main__":
    main()
