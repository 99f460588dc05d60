#!/usr/bin/env python3
"""How the population reader of the flips' direction (DUP001 version 6) reads the ties.

Usage: flip_population.py --benchmarks DIR [--poisongate BIN] [--seeds 1,2,3] [--out DIR]

For each clean corpus of DIR, verbatim duplicate-flip copies at 2 % are injected with
`poisongate inject` (target label drawn per seed). Every 1:1 tie's text is read as the label it
carries (multinomial naive Bayes, add-one smoothing, that label against the mean of the other
classes, trained on the rows outside every tie) and ranked against the same reading of every
other row of that class (each without itself): one-sided Mann-Whitney, normal approximation.
Printed per corpus and seed: the p value of each label, per text and per word, and the target.
The target should be the one label with a small p; the script is how the per-word reading was
chosen (on every corpus but tweeteval-irony, which was left out and is reported).

It reads all rows of a class as the reference and splits words on whitespace after NFKC and
lower-casing; DUP001 itself uses a sample of 4 096 texts per class, its own word hashes and
length strata, so its p values differ a little from these.
"""
import argparse
import collections
import json
import math
import os
import subprocess
import tempfile
import unicodedata

CORPORA = ["sst2", "sms-spam", "ag-news", "tweeteval-hate", "tweeteval-emotion", "tweeteval-irony"]


def words(text):
    return unicodedata.normalize("NFKC", text).lower().split()


def normal_upper(z):
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_less(xs, ys):
    """P that xs are not lower than ys, one-sided (normal approximation, continuity)."""
    ys = sorted(ys)
    import bisect
    u = 0.0
    for x in xs:
        lo = bisect.bisect_left(ys, x)
        hi = bisect.bisect_right(ys, x)
        u += (len(ys) - hi) + 0.5 * (hi - lo)
    n1, n2 = len(xs), len(ys)
    mean = n1 * n2 / 2.0
    sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    return normal_upper((u - mean - 0.5) / sd)


def read(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    labels = [str(r["label"]) for r in rows]
    texts = [" ".join(words(r["text"])) for r in rows]
    groups = collections.defaultdict(list)
    for i, t in enumerate(texts):
        groups[t].append(i)
    ties = []
    for t, g in groups.items():
        counts = collections.Counter(labels[i] for i in g).most_common()
        if len(counts) >= 2 and counts[0][1] == counts[1][1] and (len(counts) == 2 or counts[2][1] < counts[1][1]):
            ties.append((t, g, {counts[0][0], counts[1][0]}))
    in_tie = {i for _, g, _ in ties for i in g}
    classes = sorted(set(labels))
    tf = {c: collections.Counter() for c in classes}
    for i, t in enumerate(texts):
        if i not in in_tie:
            tf[labels[i]].update(t.split())
    vocab = len(set(w for c in classes for w in tf[c]))
    tokens = {c: sum(tf[c].values()) for c in classes}

    def reading(ws, label, own_label=None, per_word=False):
        own = collections.Counter(ws) if own_label is not None else collections.Counter()
        ll = {}
        for c in classes:
            mine = own if c == own_label else collections.Counter()
            z = math.log(tokens[c] - sum(mine.values()) + vocab)
            ll[c] = sum(math.log(tf[c][w] - mine[w] + 1) - z for w in ws)
        rest = [ll[c] for c in classes if c != label]
        m = max(rest)
        value = ll[label] - (m + math.log(sum(math.exp(x - m) for x in rest) / len(rest)))
        return value / max(1, len(ws)) if per_word else value

    out = {}
    for label in classes:
        tied = [t.split() for t, _, tops in ties if label in tops]
        if not tied:
            continue
        ref = [texts[i].split() for i in range(len(rows)) if i not in in_tie and labels[i] == label]
        out[label] = [
            mann_whitney_less([reading(w, label, None, pw) for w in tied],
                              [reading(w, label, label, pw) for w in ref])
            for pw in (False, True)
        ]
    return len(ties), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmarks", required=True)
    ap.add_argument("--poisongate", default="target/release/poisongate")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default=None, help="folder for the injected files (default: a temporary one)")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp()
    os.makedirs(out, exist_ok=True)
    print("corpus | seed | target | ties | label: p per text / p per word")
    for corpus in CORPORA:
        for seed in a.seeds.split(","):
            dst = os.path.join(out, f"{corpus}-dupflip-s{seed}.jsonl")
            subprocess.run([a.poisongate, "inject", os.path.join(a.benchmarks, f"{corpus}-clean.jsonl"),
                            "--attack", "duplicate-flip", "--rate", "0.02", "--seed", seed,
                            "--target-label", "random", "--id-column", "id",
                            "--existing-ground-truth", "replace", "--out", dst, "-q"], check=True)
            target = json.load(open(dst + ".inject.json"))["target_label"]
            n, ps = read(dst)
            cells = "; ".join(f"{l}: {p[0]:.1e} / {p[1]:.1e}" for l, p in ps.items())
            print(f"{corpus} | {seed} | {target} | {n} | {cells}")


if __name__ == "__main__":
    main()
