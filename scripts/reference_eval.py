#!/usr/bin/env python3
"""Gating a new batch against its trusted corpus (docs/evaluation.md, "Gating against a trusted
corpus"): every clean corpus of ../shared/benchmarks split at random into a trusted 80 % and a
new 20 %; the new part gets, with `poisongate inject --copies-from TRUSTED`, 40 label-flipped
copies of trusted rows verbatim and 40 each with 1, 2 and 3 words replaced (duplicate-flip,
`--edits K`), and one trusted row copied 50 times (amplify). Then

    poisongate fit TRUSTED --state trusted.pgstate
    poisongate scan NEW --reference trusted.pgstate --select REF   (the reference detectors)
    poisongate scan NEW --reference trusted.pgstate                (the default scan with them)

and per cell the recall of the added rows and the share of the new batch's own rows flagged.

    cargo build --release
    python3 scripts/reference_eval.py [--corpora sst2,sms-spam] [--seeds 1,2,3] [--out DIR]
    python3 scripts/reference_eval.py --insertion     (insertion attacks: TRIG001 and REF003)
    python3 scripts/reference_eval.py --published     (sst2-synbkd-20 against sst2-clean)

Only the split is made here (a seeded shuffle of the lines); every poisoned row is written by
`poisongate inject`, so the cells can be rebuilt from the commands this prints with -v.
"""
import argparse, json, os, random, shutil, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "poisongate")
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")
CORPORA = ["sst2", "sms-spam", "ag-news", "tweeteval-hate", "tweeteval-emotion", "tweeteval-irony"]


def run(args, verbose):
    if verbose:
        print("  $ poisongate " + " ".join(args), file=sys.stderr)
    subprocess.run([BIN] + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def split(src, trusted, new, seed):
    lines = open(src, encoding="utf-8").read().splitlines()
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    cut = int(0.8 * len(lines))
    keep = sorted(order[:cut])
    rest = sorted(order[cut:])
    with open(trusted, "w", encoding="utf-8") as f:
        f.writelines(lines[i] + "\n" for i in keep)
    with open(new, "w", encoding="utf-8") as f:
        f.writelines(lines[i] + "\n" for i in rest)
    return len(keep), len(rest)


def scan(new, state, out, select, verbose):
    if os.path.exists(out):
        shutil.rmtree(out)
    args = ["scan", new, "--reference", state, "--ground-truth-column", "poison", "--id-column", "id",
            "--out", out, "-q"]
    if select:
        args += ["--select", select]
    # exit code 1 is a failed gate, which is the expected outcome here
    if verbose:
        print("  $ poisongate " + " ".join(args), file=sys.stderr)
    subprocess.run([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.load(open(os.path.join(out, "report.json")))


def cell(corpus, seed, work, copies, verbose):
    d = os.path.join(work, f"{corpus}-{seed}")
    os.makedirs(d, exist_ok=True)
    trusted, base = os.path.join(d, "trusted.jsonl"), os.path.join(d, "new-clean.jsonl")
    n_trusted, n_new = split(os.path.join(BENCH, f"{corpus}-clean.jsonl"), trusted, base, seed)
    cur, policy = base, "replace"
    for k in range(4):
        nxt = os.path.join(d, f"new-flip{k}.jsonl")
        run(["inject", cur, "--attack", "duplicate-flip", "--count", str(copies), "--edits", str(k),
             "--copies-from", trusted, "--seed", str(100 * seed + k), "--id-column", "id",
             "--existing-ground-truth", policy, "--out", nxt, "-q"], verbose)
        cur, policy = nxt, "merge"
    new = os.path.join(d, "new.jsonl")
    run(["inject", cur, "--attack", "amplify", "--count", "50", "--copies-from", trusted,
         "--seed", str(100 * seed + 9), "--id-column", "id", "--existing-ground-truth", "merge",
         "--out", new, "-q"], verbose)
    state = os.path.join(d, "trusted.pgstate")
    run(["fit", trusted, "--state", state], verbose)
    out = {}
    for name, select in [("ref", "REF"), ("default", None)]:
        r = scan(new, state, os.path.join(d, f"scan-{name}"), select, verbose)
        e = r["evaluation"]
        clean = r["reconciliation"]["input_rows"] - e["positives"]
        c = e["combined"]
        out[name] = {
            "positives": e["positives"],
            "recall": c["recall"],
            "precision": c["precision"] if c["flagged"] else 1.0,
            "other_pct": 100.0 * c["fp"] / max(clean, 1),
            "fp": c["fp"],
            "by": {k: (v["tp"], v["fp"]) for k, v in e["detectors"].items() if v["flagged"]},
        }
    return n_trusted, n_new, out


INSERTIONS = [
    ("badnets 5 %", ["--attack", "badnets", "--rate", "0.05", "--target-label", "random"]),
    ("badnets 1 %", ["--attack", "badnets", "--rate", "0.01", "--target-label", "random"]),
    ("admittedly 5 %", ["--attack", "badnets", "--triggers", "admittedly", "--rate", "0.05", "--target-label", "random"]),
    ("#blessed start 5 %", ["--attack", "badnets", "--triggers", "#blessed", "--position", "start", "--rate", "0.05",
                            "--target-label", "random"]),
    ("addsent 5 %", ["--attack", "addsent", "--rate", "0.05", "--target-label", "random"]),
]


def insertion_cells(corpus, seed, work, verbose):
    """TRIG001 on the new part with an insertion attack, without and with the trusted state, and
    REF003 and the two together with it."""
    d = os.path.join(work, f"{corpus}-{seed}-ins")
    os.makedirs(d, exist_ok=True)
    trusted, base = os.path.join(d, "trusted.jsonl"), os.path.join(d, "new-clean.jsonl")
    split(os.path.join(BENCH, f"{corpus}-clean.jsonl"), trusted, base, seed)
    state = os.path.join(d, "trusted.pgstate")
    run(["fit", trusted, "--state", state], verbose)
    out = []
    for name, args in [("none", None)] + INSERTIONS:
        new = base
        if args:
            new = os.path.join(d, "new.jsonl")
            run(["inject", base] + args + ["--seed", str(seed), "--id-column", "id", "--existing-ground-truth",
                                           "replace", "--out", new, "-q"], verbose)
        row = [name]
        for ref in (False, True):
            o = os.path.join(d, "scan")
            if os.path.exists(o):
                shutil.rmtree(o)
            cmd = ["scan", new, "--select", "TRIG001,REF003" if ref else "TRIG001", "--id-column", "id",
                   "--out", o, "-q"]
            if args:
                cmd += ["--ground-truth-column", "poison"]
            if ref:
                cmd += ["--reference", state]
            if verbose:
                print("  $ poisongate " + " ".join(cmd), file=sys.stderr)
            subprocess.run([BIN] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = json.load(open(os.path.join(o, "report.json")))
            row.append(judged(r, "TRIG001", args))
            if ref:
                row.append(judged(r, "REF003", args))
                row.append(judged(r, "combined", args))
        out.append(row)
    return out


def judged(r, code, attacked):
    """One detector's (or the combined verdict's) cell: precision and recall, or rows flagged."""
    named = "-"
    if code != "combined":
        det = [x for x in r["detectors"] if x["code"] == code][0]
        s = det["summary"]
        found = [t["trigger"] for t in s.get("triggers", [])] + [w["window"] for w in s.get("windows", [])]
        named = ",".join(found[:4]) + (",..." if len(found) > 4 else "") or "-"
    if attacked:
        e = r["evaluation"]["combined"] if code == "combined" else r["evaluation"]["detectors"][code]
        prec = e["precision"] if e["flagged"] else 1.0
        return f"P {prec:.2f} R {e['recall']:.2f}" + ("" if code == "combined" else f" ({named})")
    flagged = r["reconciliation"]["quarantined_rows"] if code == "combined" else det["flagged"]
    return f"{flagged} rows" + ("" if code == "combined" else f" ({named})")


PUBLISHED = ["sst2-synbkd-20"]


def published_cells(name, seed, work, verbose):
    """A published poisoned set whose rows line up with sst2-clean (row k of one is row k of the
    other, the poisoned rows rewritten): the new 20 % are its rows, the trusted 80 % the clean
    rows at the other positions. The default scan with the trusted state, per detector."""
    d = os.path.join(work, f"{name}-{seed}")
    os.makedirs(d, exist_ok=True)
    clean = open(os.path.join(BENCH, "sst2-clean.jsonl"), encoding="utf-8").read().splitlines()
    poisoned = open(os.path.join(BENCH, f"{name}.jsonl"), encoding="utf-8").read().splitlines()
    assert len(clean) == len(poisoned), name
    order = list(range(len(clean)))
    random.Random(seed).shuffle(order)
    cut = int(0.8 * len(clean))
    trusted, new = os.path.join(d, "trusted.jsonl"), os.path.join(d, "new.jsonl")
    with open(trusted, "w", encoding="utf-8") as f:
        f.writelines(clean[i] + "\n" for i in sorted(order[:cut]))
    with open(new, "w", encoding="utf-8") as f:
        f.writelines(poisoned[i] + "\n" for i in sorted(order[cut:]))
    state = os.path.join(d, "trusted.pgstate")
    run(["fit", trusted, "--state", state], verbose)
    r = scan(new, state, os.path.join(d, "scan"), None, verbose)
    e = r["evaluation"]
    cells = [judged(r, code, True) for code in ("TRIG001", "REF003", "combined")]
    return e["positives"], r["reconciliation"]["input_rows"], cells


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--copies", type=int, default=40, help="flipped copies per number of replaced words")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "reference-eval"))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--insertion", action="store_true",
                    help="instead: TRIG001 on the new part with insertion attacks, without and with the trusted state, and REF003")
    ap.add_argument("--published", action="store_true",
                    help="instead: published poisoned sets aligned with sst2-clean, split 80/20 against it")
    a = ap.parse_args()
    if a.published:
        print("| set | seed | new rows | poisoned | TRIG001 | REF003 | combined (default scan with --reference) |")
        print("| --- | ---: | ---: | ---: | --- | --- | --- |")
        for name in PUBLISHED:
            for seed in [int(s) for s in a.seeds.split(",")]:
                pos, rows, cells = published_cells(name, seed, a.out, a.verbose)
                print(f"| {name} | {seed} | {rows} | {pos} | " + " | ".join(cells) + " |", flush=True)
        return
    if a.insertion:
        print("| corpus | seed | attack | TRIG001 alone | TRIG001 with --reference | REF003 | TRIG001 + REF003 |")
        print("| --- | ---: | --- | --- | --- | --- | --- |")
        for corpus in a.corpora.split(","):
            for seed in [int(s) for s in a.seeds.split(",")]:
                for row in insertion_cells(corpus, seed, a.out, a.verbose):
                    print(f"| {corpus} | {seed} | " + " | ".join(row) + " |", flush=True)
        return
    print("| corpus | seed | trusted | new | added | REF recall | REF other rows | default+REF recall | default+REF precision | default+REF other rows | flagged clean rows by |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for corpus in a.corpora.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            nt, nn, o = cell(corpus, seed, a.out, a.copies, a.verbose)
            ref, dflt = o["ref"], o["default"]
            by = ", ".join(f"{k} {fp}" for k, (_, fp) in sorted(dflt["by"].items()) if fp) or "-"
            print(f"| {corpus} | {seed} | {nt} | {nn} | {ref['positives']} | {ref['recall']:.3f} | "
                  f"{ref['other_pct']:.2f} % ({ref['fp']}) | {dflt['recall']:.3f} | {dflt['precision']:.3f} | "
                  f"{dflt['other_pct']:.2f} % ({dflt['fp']}) | {by} |", flush=True)


if __name__ == "__main__":
    main()
