#!/usr/bin/env python3
"""The embedding cells of the domain grid as one Markdown table (docs/embedding.md).

    python3 scripts/embed_grid_summary.py target/eval-domains-embed/results.csv

Per (attack, corpus): for each detector setting of experiments/domains-embed.toml, precision,
recall and the share of clean rows flagged; for the corpus as it is (`none`), the clean rows
flagged and their share.
"""
import csv
import sys

COLS = ["default", "ACT001", "SPEC001", "SPEC002", "LBL001"]


def short(name):
    return name.replace("-clean", "").replace("tweeteval-", "")


def main():
    table = {}
    for r in csv.DictReader(open(sys.argv[1])):
        if r["setting"] == "default":
            if r["detector"] != "combined":
                continue
        elif r["detector"] != r["setting"]:
            continue
        share = float(r["clean_flagged_fraction"]) * 100
        if r["attack"] == "none":
            cell = f"{int(r['fp'])} ({share:.2f} %)"
        else:
            cell = f"P {float(r['precision']):.2f} R {float(r['recall']):.2f} / {share:.2f} %"
        table.setdefault((r["attack"], short(r["dataset"])), {})[r["setting"]] = cell
    print("| attack | corpus | " + " | ".join(COLS) + " |")
    print("| --- | --- |" + " --- |" * len(COLS))
    for (attack, corpus), cells in sorted(table.items(), key=lambda x: (x[0][0] != "none", x[0])):
        print(f"| {attack} | {corpus} | " + " | ".join(cells.get(c, "") for c in COLS) + " |")


if __name__ == "__main__":
    main()
