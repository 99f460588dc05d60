#!/usr/bin/env python3
"""INS001 on classification corpora read as instructions: each clean corpus of
../shared/benchmarks converted to Alpaca rows (instruction = text, output = the label as a
string), then scanned with the default detectors. Prints rows and rows quarantined per corpus,
and the triggers INS001 named (docs/instruct.md).

    cargo build --release && python3 scripts/instruct_domains.py [OUT_DIR] [--embeddings]

With --embeddings the scans also get MiniLM embeddings: the corpus's reference matrix
(<corpus>.minilm.npy, the texts, here the prompts) as --embeddings, and as
--response-embeddings the row-aligned embeddings of the labels (each distinct label embedded
once by `poisongate embed` with ../shared/models/all-MiniLM-L6-v2); numpy is needed for it.
"""
import json
import os
import subprocess
import sys

CORPORA = ["sst2-clean", "sms-spam-clean", "ag-news-clean", "tweeteval-hate-clean",
           "tweeteval-emotion-clean", "tweeteval-irony-clean"]


def response_embeddings(exe, root, bench, data, out, c):
    """Scan flags giving the corpus's prompt embeddings and its labels' embeddings."""
    import numpy as np
    labels = [json.loads(line)["output"] for line in open(data)]
    distinct = sorted(set(labels))
    lab = os.path.join(out, c + ".labels.jsonl")
    with open(lab, "w") as f:
        for v in distinct:
            f.write(json.dumps({"text": v}) + "\n")
    subprocess.run([exe, "embed", lab, "--model",
                    os.path.join(root, "..", "shared", "models", "all-MiniLM-L6-v2"),
                    "--out", lab + ".npy", "--quiet"], check=True)
    m = np.load(lab + ".npy")
    index = {v: i for i, v in enumerate(distinct)}
    resp = os.path.join(out, c + ".responses.npy")
    np.save(resp, m[[index[v] for v in labels]].astype(np.float32))
    return ["--embeddings", os.path.join(bench, c + ".minilm.npy"),
            "--response-embeddings", resp]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench = os.path.join(root, "..", "shared", "benchmarks")
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    embed = "--embeddings" in sys.argv
    out = args[0] if args else os.path.join(root, "target", "instruct-domains")
    os.makedirs(out, exist_ok=True)
    exe = os.path.join(root, "target", "release", "poisongate")
    print("| corpus | rows | quarantined | share | INS001 triggers |")
    print("| --- | ---: | ---: | ---: | --- |")
    for c in CORPORA:
        data = os.path.join(out, c + ".jsonl")
        with open(data, "w") as f:
            for line in open(os.path.join(bench, c + ".jsonl")):
                r = json.loads(line)
                f.write(json.dumps({"id": r["id"], "instruction": r["text"], "input": "",
                                    "output": str(r["label"])}) + "\n")
        gate = os.path.join(out, c + ".gate")
        extra = response_embeddings(exe, root, bench, data, out, c) if embed else []
        subprocess.run([exe, "scan", data, "--id-column", "id", "--out", gate, "--quiet"] + extra,
                       check=False)
        rep = json.load(open(os.path.join(gate, "report.json")))
        rec = rep["reconciliation"]
        ins = [d for d in rep["detectors"] if d["code"] == "INS001"][0]["summary"]
        named = "; ".join(f"{t['trigger']} -> '{t['response_pattern']['text']}' [{t['rows']}]"
                          for t in ins["triggers"]) or "-"
        share = 100 * rec["quarantined_rows"] / rec["input_rows"]
        print(f"| {c} | {rec['input_rows']} | {rec['quarantined_rows']} | {share:.2f} % | {named} |")


if __name__ == "__main__":
    main()
