#!/usr/bin/env python3
"""LBL001 (label-consistency) side by side with cleanlab on the same label-flipped inputs.

For every clean corpus and seed, `poisongate inject --attack label-flip --rate 0.05` writes a
poisoned copy (text untouched, so the corpus's `.minilm.npy` stays row-aligned; checked, and
re-aligned by id if the order ever changed). On that copy:
- LBL001: `poisongate scan --select LBL001 --ground-truth-column poison`, read from report.json;
- cleanlab: out-of-fold predicted probabilities of a scikit-learn LogisticRegression (5 stratified
  folds, random_state 0, default C) on the same embeddings, then
  `cleanlab.filter.find_label_issues(labels, pred_probs)` with its defaults.
Both are also run on the clean corpus as it is (flagged fraction = false-positive rate there), and
on the shipped sst2-labelflip-5 set.

Usage (from the repository root, after `cargo build --release`):
    python3 scripts/lbl001_vs_cleanlab.py [--benchmarks ../shared/benchmarks]
        [--bin target/release/poisongate] [--doc docs/lbl001-vs-cleanlab.md]
        [--csv target/lbl001-vs-cleanlab.csv] [--work target/lbl001-vs-cleanlab]
Needs numpy, scikit-learn and cleanlab (`pip install cleanlab scikit-learn numpy`).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import sklearn
    import cleanlab
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
except ImportError as e:  # pragma: no cover
    sys.exit(f"missing Python package ({e.name}): pip install cleanlab scikit-learn numpy")

CORPORA = [
    "sst2-clean",
    "sms-spam-clean",
    "ag-news-clean",
    "tweeteval-hate-clean",
    "tweeteval-emotion-clean",
    "tweeteval-irony-clean",
]
SEEDS = [1, 2, 3]
RATE = 0.05
SHIPPED = "sst2-labelflip-5"
FOLDS = 5
CV_SEED = 0
MAX_ITER = 5000


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(cmd, ok=(0,)):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in ok:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


def prf(flag, truth):
    tp = int(np.sum(flag & truth))
    fp = int(np.sum(flag & ~truth))
    fn = int(np.sum(~flag & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def aligned_embeddings(emb, src_rows, rows):
    """Embeddings in the row order of `rows`; identity when inject kept the order."""
    src_ids = [r["id"] for r in src_rows]
    ids = [r["id"] for r in rows]
    if src_ids == ids:
        return emb, False
    pos = {i: k for k, i in enumerate(src_ids)}
    return emb[[pos[i] for i in ids]], True


def check_label_flip(src_rows, rows):
    """Label-flip must keep ids and text; the poisoned rows are exactly the changed labels."""
    by_id = {r["id"]: r for r in src_rows}
    if len(by_id) != len(src_rows) or len(rows) != len(src_rows):
        sys.exit("inject changed the row count or the ids are not unique")
    for r in rows:
        s = by_id[r["id"]]
        if s["text"] != r["text"]:
            sys.exit(f"inject changed the text of {r['id']}")
        if bool(r["poison"]) != (s["label"] != r["label"]):
            sys.exit(f"ground truth of {r['id']} does not match its label change")


def cleanlab_flags(emb, labels):
    classes, y = np.unique(labels, return_inverse=True)
    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=CV_SEED)
    clf = LogisticRegression(max_iter=MAX_ITER)
    probs = cross_val_predict(clf, emb, y, cv=cv, method="predict_proba")
    issues = find_label_issues(y, probs)
    score = 1.0 - probs[np.arange(len(y)), y]  # self-confidence, for AUROC only
    return np.asarray(issues, dtype=bool), score


def lbl001(bin_path, data, emb_path, out, truth_column):
    if os.path.exists(out):
        shutil.rmtree(out)
    cmd = [bin_path, "scan", data, "--id-column", "id", "--embeddings", emb_path,
           "--select", "LBL001", "--out", out, "--quiet"]
    if truth_column:
        cmd += ["--ground-truth-column", truth_column]
    run(cmd, ok=(0, 1))
    rep = json.load(open(os.path.join(out, "report.json")))
    det = next(d for d in rep["detectors"] if d["code"] == "LBL001")
    qpath = os.path.join(out, "quarantine.jsonl")
    qids = {r["id"] for r in read_jsonl(qpath)} if os.path.exists(qpath) else set()
    if len(qids) != det["flagged"]:
        sys.exit(f"{out}: quarantine holds {len(qids)} rows, LBL001 flagged {det['flagged']}")
    ev = rep.get("evaluation", {}).get("detectors", {}).get("LBL001") if truth_column else None
    return qids, det, ev


def evaluate(args, name, data, src_rows, emb, emb_path, seed, clean_fp):
    rows = read_jsonl(data)
    if src_rows is not None:
        check_label_flip(src_rows, rows)
    emb_rows, realigned = aligned_embeddings(emb, src_rows if src_rows is not None else rows, rows)
    if realigned:
        emb_path = data + ".minilm.npy"
        np.save(emb_path, emb_rows.astype(np.float32))
    truth = np.array([bool(r["poison"]) for r in rows])
    labels = np.array([r["label"] for r in rows])
    ids = [r["id"] for r in rows]

    out = os.path.join(args.work, f"{name}-s{seed}.scan")
    qids, det, ev = lbl001(args.bin, data, emb_path, out, "poison")
    lflag = np.array([i in qids for i in ids])
    lp, lr, lf = prf(lflag, truth)
    # the report's own evaluation must agree with the count from quarantine.jsonl
    assert ev["tp"] == int(np.sum(lflag & truth)) and ev["flagged"] == int(lflag.sum()), out

    cflag, cscore = cleanlab_flags(emb_rows, labels)
    cp, cr, cf = prf(cflag, truth)
    # cleanlab's ranking cut at LBL001's budget: separates ranking quality from the operating point
    k = int(lflag.sum())
    top = np.argsort(-cscore, kind="stable")[:k]
    c_at_k = float(truth[top].mean()) if k else 0.0
    n = len(rows)
    return {
        "corpus": name, "seed": seed, "rows": n, "poisoned": int(truth.sum()),
        "lbl001_precision": lp, "lbl001_recall": lr, "lbl001_f1": lf,
        "lbl001_flagged": int(lflag.sum()), "lbl001_auroc": ev["auroc"],
        "cleanlab_precision": cp, "cleanlab_recall": cr, "cleanlab_f1": cf,
        "cleanlab_flagged": int(cflag.sum()), "cleanlab_auroc": float(roc_auc_score(truth, cscore)),
        "cleanlab_precision_at_lbl001_flagged": c_at_k,
        "f1_gap": lf - cf,
        "clean_lbl001_flagged_frac": clean_fp[0] if clean_fp else None,
        "clean_cleanlab_flagged_frac": clean_fp[1] if clean_fp else None,
        "embeddings_realigned": realigned,
    }


def clean_flagged(args, name, rows, emb, emb_path):
    out = os.path.join(args.work, f"{name}.clean.scan")
    qids, det, _ = lbl001(args.bin, os.path.join(args.benchmarks, f"{name}.jsonl"), emb_path, out, None)
    cflag, _ = cleanlab_flags(emb, np.array([r["label"] for r in rows]))
    n = len(rows)
    return len(qids) / n, float(cflag.sum()) / n


def fmt_pct(x):
    return "–" if x is None else f"{100 * x:.1f} %"


def table_row(r):
    return (f"| {r['corpus']} | {r['seed']} | {r['poisoned']} / {r['rows']} "
            f"| {r['lbl001_precision']:.2f} | {r['lbl001_recall']:.2f} | {r['lbl001_f1']:.2f} | {r['lbl001_flagged']} "
            f"| {r['cleanlab_precision']:.2f} | {r['cleanlab_recall']:.2f} | {r['cleanlab_f1']:.2f} | {r['cleanlab_flagged']} "
            f"| {r['cleanlab_precision_at_lbl001_flagged']:.2f} | {r['f1_gap']:+.2f} "
            f"| {fmt_pct(r['clean_lbl001_flagged_frac'])} | {fmt_pct(r['clean_cleanlab_flagged_frac'])} |")


HEAD = ("| corpus | seed | poisoned / rows | LBL001 P | LBL001 R | LBL001 F1 | LBL001 flagged "
        "| cleanlab P | cleanlab R | cleanlab F1 | cleanlab flagged | cleanlab P at LBL001's count | F1 gap (LBL001 − cleanlab) "
        "| clean corpus flagged, LBL001 | clean corpus flagged, cleanlab |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def write_doc(args, results, lbl_params, head_commit):
    worst = min(results, key=lambda r: r["f1_gap"])
    lines = [
        "# LBL001 next to cleanlab on label flips",
        "",
        "LBL001 (label-consistency, opt-in) and the reference implementation of confident learning,",
        "cleanlab, judge the same inputs: each clean corpus of `../shared/benchmarks` with 5 % of its",
        f"labels flipped by `poisongate inject --attack label-flip --rate {RATE}` (seeds "
        f"{', '.join(map(str, SEEDS))}), the shipped `{SHIPPED}` set as it is, and each clean corpus",
        "without injection (its flagged fraction is the false-positive rate on real, naturally noisy labels).",
        "Both read the same frozen MiniLM embeddings (`<corpus>.minilm.npy`; label-flip keeps text and row",
        "order, which the script checks).",
        "",
        "- **LBL001**: `poisongate scan X.jsonl --id-column id --embeddings EMB.npy --select LBL001",
        "  --ground-truth-column poison`, at its defaults "
        f"({', '.join(f'`{k}` {v}' for k, v in lbl_params.items())}); flagged = rows in `quarantine.jsonl`.",
        "- **cleanlab**: out-of-fold probabilities of scikit-learn `LogisticRegression` (default C = 1,",
        f"  `max_iter` {MAX_ITER}) over {FOLDS} stratified folds (`random_state` {CV_SEED}), then",
        "  `cleanlab.filter.find_label_issues(labels, pred_probs)` with its defaults.",
        "",
        "How LBL001 cuts (`poisongate explain LBL001`): the probe's and the neighbours' evidence",
        "against the given label is a likelihood ratio; the prior share of wrong labels of each class",
        "is estimated from the data (the off-diagonal share of the probe's confident joint, the",
        "counting step of confident learning); a row is flagged when the posterior that its label is",
        "wrong reaches ½, the Bayes decision. No number in it was tuned on these cells. The rule itself",
        "was chosen among five (a fixed posterior cut with and without the class-prior correction, a",
        "cut at cleanlab's estimated issue count, one global noise prior, per-class noise priors)",
        "after trying them on these six corpora, so sets other than these are the test of it.",
        "Version 1 (a fixed posterior of 0.98 without a noise prior, `noise_prior = 0.5`,",
        "`min_wrong_posterior = 0.98`) flagged 0.1-1.1 % of the clean corpora at F1 0.01-0.70.",
        "",
        "LBL001 stays opt-in: on naturally ambiguous corpora it flags 2.5-14 % of clean rows, fewer",
        "than cleanlab but far above what a default gate may flag; those rows are the corpora's own",
        "hard or mislabelled rows, which a label-noise cleaner wants and a poisoning gate does not.",
        "",
        "Precision, recall and F1 are against the `poison` column. Produced with poisongate at "
        f"`{head_commit}`, cleanlab {cleanlab.__version__}, scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}. Regenerate (after `cargo build --release`):",
        "",
        "```sh",
        "python3 scripts/lbl001_vs_cleanlab.py",
        "```",
        "",
        "It also writes the per-cell numbers, with AUROC of both scores, to `target/lbl001-vs-cleanlab.csv`.",
        "",
        "## Worst cell",
        "",
        f"**{worst['corpus']}, seed {worst['seed']}**: LBL001 F1 {worst['lbl001_f1']:.2f} "
        f"(P {worst['lbl001_precision']:.2f}, R {worst['lbl001_recall']:.2f}, {worst['lbl001_flagged']} flagged) "
        f"against cleanlab F1 {worst['cleanlab_f1']:.2f} (P {worst['cleanlab_precision']:.2f}, "
        f"R {worst['cleanlab_recall']:.2f}, {worst['cleanlab_flagged']} flagged), a gap of {worst['f1_gap']:+.2f}.",
        "",
        "## Per cell",
        "",
        HEAD,
    ]
    lines += [table_row(r) for r in results]
    lines += ["", "## Mean over seeds", "",
              "| corpus | LBL001 F1 | cleanlab F1 | F1 gap | LBL001 AUROC | cleanlab AUROC "
              "| clean corpus flagged, LBL001 | clean corpus flagged, cleanlab |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in CORPORA + [SHIPPED]:
        rs = [r for r in results if r["corpus"] == name]
        m = lambda k: float(np.mean([r[k] for r in rs]))
        lines.append(f"| {name} | {m('lbl001_f1'):.2f} | {m('cleanlab_f1'):.2f} | {m('f1_gap'):+.2f} "
                     f"| {m('lbl001_auroc'):.2f} | {m('cleanlab_auroc'):.2f} "
                     f"| {fmt_pct(rs[0]['clean_lbl001_flagged_frac'])} | {fmt_pct(rs[0]['clean_cleanlab_flagged_frac'])} |")
    lines += ["", f"`{SHIPPED}` is made from sst2-clean, so its clean-corpus columns are sst2-clean's.",
              "AUROC ranks rows by LBL001's score and by cleanlab's self-confidence (1 − p of the given label).",
              "\"cleanlab P at LBL001's count\" is the precision of the rows with the lowest cleanlab",
              "self-confidence, as many as LBL001 flagged: compared with LBL001 P it separates how well each",
              "ranks the rows from where each one cuts.", ""]
    with open(args.doc, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmarks", default="../shared/benchmarks")
    ap.add_argument("--bin", default="target/release/poisongate")
    ap.add_argument("--doc", default="docs/lbl001-vs-cleanlab.md")
    ap.add_argument("--csv", default="target/lbl001-vs-cleanlab.csv")
    ap.add_argument("--work", default="target/lbl001-vs-cleanlab")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: cargo build --release")
    os.makedirs(args.work, exist_ok=True)
    head = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()

    results, clean_fp, lbl_params = [], {}, None
    for name in CORPORA:
        src = os.path.join(args.benchmarks, f"{name}.jsonl")
        emb_path = os.path.join(args.benchmarks, f"{name}.minilm.npy")
        src_rows = read_jsonl(src)
        emb = np.load(emb_path).astype(np.float64)
        if emb.shape[0] != len(src_rows):
            sys.exit(f"{emb_path}: {emb.shape[0]} rows, {src} has {len(src_rows)}")
        clean_fp[name] = clean_flagged(args, name, src_rows, emb, emb_path)
        print(f"{name}: clean flagged LBL001 {clean_fp[name][0]:.4f}, cleanlab {clean_fp[name][1]:.4f}",
              file=sys.stderr)
        for seed in SEEDS:
            data = os.path.join(args.work, f"{name}-s{seed}.jsonl")
            run([args.bin, "inject", src, "--attack", "label-flip", "--rate", str(RATE), "--seed", str(seed),
                 "--id-column", "id", "--existing-ground-truth", "replace", "--out", data, "--quiet"])
            r = evaluate(args, name, data, src_rows, emb, emb_path, seed, clean_fp[name])
            results.append(r)
            print(f"  seed {seed}: LBL001 F1 {r['lbl001_f1']:.3f}, cleanlab F1 {r['cleanlab_f1']:.3f}", file=sys.stderr)

    data = os.path.join(args.benchmarks, f"{SHIPPED}.jsonl")
    emb_path = os.path.join(args.benchmarks, f"{SHIPPED}.minilm.npy")
    emb = np.load(emb_path).astype(np.float64)
    r = evaluate(args, SHIPPED, data, None, emb, emb_path, "shipped", clean_fp.get("sst2-clean"))
    results.append(r)
    print(f"{SHIPPED}: LBL001 F1 {r['lbl001_f1']:.3f}, cleanlab F1 {r['cleanlab_f1']:.3f}", file=sys.stderr)

    rep = json.load(open(os.path.join(args.work, f"{SHIPPED}-sshipped.scan", "report.json")))
    lbl_params = next(d for d in rep["detectors"] if d["code"] == "LBL001")["params"]

    os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0].keys()))
        w.writeheader()
        w.writerows(results)
    write_doc(args, results, lbl_params, head)
    print(f"wrote {args.doc} and {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
