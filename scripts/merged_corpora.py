#!/usr/bin/env python3
"""Corpora the domain grid does not hold, made from the clean corpora of ../shared/benchmarks,
and the default scan's quarantined share on each, text only and with the MiniLM rows:

- two corpora merged into one, labels kept (sst2 + sms-spam: label 1 is a positive review or a
  spam message; tweeteval hate + irony);
- ag-news with its topics merged in two (world and sports, business and sci/tech) and
  tweeteval-emotion likewise (joy and optimism, anger and sadness), merged into one corpus;
- ag-news, tweeteval-emotion and tweeteval-hate merged into one corpus of ten string labels;
- relabellings of one corpus: ag-news in 2 and in 3 classes, emotion in 2, sms-spam with
  "ham"/"spam" labels.

Usage: python3 scripts/merged_corpora.py [--benchmarks ../shared/benchmarks]
           [--poisongate target/release/poisongate] [--out target/merged-corpora]

Pure Python: the .npy rows are concatenated by their headers (float32, C order)."""

import argparse
import ast
import json
import os
import shutil
import struct
import subprocess
import sys


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_npy(path):
    """(shape, dtype descr, raw bytes) of a C-order .npy file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = data[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", data[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", data[8:12])
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header["fortran_order"]:
        raise ValueError(f"{path}: Fortran order")
    return header["shape"], header["descr"], data[start + hlen:]


def write_npy(path, shape, descr, raw):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (descr, *shape)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(raw)


def rows_of(raw, shape, keep):
    """The raw bytes of rows `keep` of a (n, d) matrix."""
    width = len(raw) // shape[0]
    return b"".join(raw[i * width:(i + 1) * width] for i in keep)


def build(bench, out):
    def load(name):
        return read_jsonl(os.path.join(bench, f"{name}.jsonl")), \
            read_npy(os.path.join(bench, f"{name}.minilm.npy"))

    made = {}

    def save(name, rows, parts):
        shape = (sum(p[0][0] for p in parts), parts[0][0][1])
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        write_npy(os.path.join(out, f"{name}.npy"), shape, parts[0][1],
                  b"".join(p[2] for p in parts))
        made[name] = len(rows)

    sst2, sst2_e = load("sst2-clean")
    sms, sms_e = load("sms-spam-clean")
    hate, hate_e = load("tweeteval-hate-clean")
    irony, irony_e = load("tweeteval-irony-clean")
    ag, ag_e = load("ag-news-clean")
    emo, emo_e = load("tweeteval-emotion-clean")

    def tagged(rows, tag, label=lambda l: l):
        return [dict(r, id=f"{tag}{r['id']}", label=label(r["label"])) for r in rows]

    save("sst2+sms", tagged(sst2, "s") + tagged(sms, "m"), [sst2_e, sms_e])
    save("hate+irony", tagged(hate, "h") + tagged(irony, "i"), [hate_e, irony_e])
    ag2 = lambda l: int(l >= 2)          # world, sports | business, sci/tech
    emo2 = lambda l: int(l in (1, 2))    # anger, sadness | joy, optimism
    save("ag2+emotion2", tagged(ag, "a", ag2) + tagged(emo, "e", emo2), [ag_e, emo_e])
    ag_names = ["world", "sports", "business", "scitech"]
    emo_names = ["anger", "joy", "optimism", "sadness"]
    save("ag+emotion+hate",
         tagged(ag, "a", lambda l: ag_names[l]) + tagged(emo, "e", lambda l: emo_names[l])
         + tagged(hate, "h", lambda l: ["not-hate", "hate"][l]),
         [ag_e, emo_e, hate_e])
    save("ag-2-classes", tagged(ag, "", ag2), [ag_e])
    keep = [i for i, r in enumerate(ag) if r["label"] != 3]
    save("ag-3-classes", [tagged(ag, "")[i] for i in keep],
         [((len(keep), ag_e[0][1]), ag_e[1], rows_of(ag_e[2], ag_e[0], keep))])
    save("emotion-2-classes", tagged(emo, "", emo2), [emo_e])
    save("sms-string-labels", tagged(sms, "", lambda l: ["ham", "spam"][l]), [sms_e])
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--benchmarks", default="../shared/benchmarks")
    ap.add_argument("--poisongate", default="target/release/poisongate")
    ap.add_argument("--out", default="target/merged-corpora")
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    made = build(a.benchmarks, a.out)
    print("| corpus | rows | setting | quarantined | share | detectors that flagged |")
    print("| --- | ---: | --- | ---: | ---: | --- |")
    worst = 0.0
    for name, n in made.items():
        for setting in ("text", "minilm"):
            out = os.path.join(a.out, f"scan-{name}-{setting}")
            cmd = [a.poisongate, "scan", os.path.join(a.out, f"{name}.jsonl"),
                   "--id-column", "id", "--out", out, "--quiet"]
            if setting == "minilm":
                cmd += ["--embeddings", os.path.join(a.out, f"{name}.npy")]
            code = subprocess.run(cmd).returncode
            if code not in (0, 1):
                sys.exit(f"{' '.join(cmd)}: exit {code}")
            with open(os.path.join(out, "report.json")) as f:
                report = json.load(f)
            held = report["reconciliation"]["quarantined_rows"]
            who = ", ".join(f"{d['code']} {d['flagged']}" for d in report["detectors"]
                            if d["flagged"])
            worst = max(worst, held / n)
            print(f"| {name} | {n} | {setting} | {held} | {100 * held / n:.2f} % | {who} |")
    print(f"\nworst share: {100 * worst:.2f} %")


if __name__ == "__main__":
    main()
