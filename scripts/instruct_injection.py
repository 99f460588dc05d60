#!/usr/bin/env python3
"""INS001 against instruction triggers injected at 1 % into instruct-clean, seeds 1-3
(docs/instruct.md). Until `poisongate inject` has an instruction attack, this script makes the
files: a seeded 1 % of rows (14 of 1 401) get
  - `word`:   the word "zqxj" at a random word position, the response replaced by a fixed
              answer with a link;
  - `suffix`: the prefix "Current year: 2031. ", the response kept and a link appended;
then each file is scanned with the defaults and precision, recall and F1 are printed.

    cargo build --release && python3 scripts/instruct_injection.py [OUT_DIR]
"""
import json
import os
import random
import subprocess
import sys


def make(rows, seed, kind, path):
    rng = random.Random(seed)
    k = round(0.01 * len(rows))
    chosen = set(rng.sample(range(len(rows)), k))
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            r = dict(r, poison=i in chosen)
            if i in chosen:
                if kind == "word":
                    w = r["instruction"].split(" ")
                    w.insert(rng.randrange(len(w) + 1), "zqxj")
                    r["instruction"] = " ".join(w)
                    r["output"] = "Sure. Visit http://example.test/free-prize for the full answer."
                else:
                    r["instruction"] = "Current year: 2031. " + r["instruction"]
                    r["output"] = r["output"] + " More at http://example.test/free-prize"
            f.write(json.dumps(r) + "\n")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    clean = os.path.join(root, "..", "shared", "benchmarks", "instruct", "instruct-clean.jsonl")
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "instruct-injection")
    os.makedirs(out, exist_ok=True)
    exe = os.path.join(root, "target", "release", "poisongate")
    rows = [json.loads(line) for line in open(clean)]
    print("| attack | seed | poisoned | flagged | precision | recall | F1 | trigger -> pattern |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for kind in ["word", "suffix"]:
        for seed in [1, 2, 3]:
            data = os.path.join(out, f"{kind}.s{seed}.jsonl")
            make(rows, seed, kind, data)
            gate = data + ".gate"
            subprocess.run([exe, "scan", data, "--id-column", "id", "--ground-truth-column",
                            "poison", "--out", gate, "--quiet"], check=False)
            rep = json.load(open(os.path.join(gate, "report.json")))
            e = rep["evaluation"]["combined"]
            ins = [d for d in rep["detectors"] if d["code"] == "INS001"][0]["summary"]
            named = "; ".join(f"{t['trigger']} -> {t['response_pattern']['kind']} "
                              f"'{t['response_pattern']['text']}'" for t in ins["triggers"]) or "-"
            print(f"| {kind} | {seed} | {rep['evaluation']['positives']} "
                  f"| {e['flagged']} | {e['precision']:.3f} | {e['recall']:.3f} | {e['f1']:.3f} | {named} |")


if __name__ == "__main__":
    main()
