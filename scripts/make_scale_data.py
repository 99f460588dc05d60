#!/usr/bin/env python3
"""Synthetic data for scale runs of `poisongate scan` (no poison, random labels).

Writes DIR/big.jsonl: N rows {"id", "text", "label"}, text 8-30 words drawn from a Zipf-like
distribution over a 30 000-word vocabulary (seed 5), and, with --dims D, DIR/big.npy: N x D
float32 embeddings around N/500 random centres plus unit noise (numpy, seed 3).

    python3 scripts/make_scale_data.py /tmp/big 1000000 --dims 384
    poisongate scan /tmp/big/big.jsonl --embeddings /tmp/big/big.npy --id-column id --out /tmp/big/out
"""
import argparse
import itertools
import json
import os
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("rows", type=int)
    ap.add_argument("--dims", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rnd = random.Random(5)
    vocab = [f"w{i}" for i in range(30000)]
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    with open(os.path.join(a.dir, "big.jsonl"), "w") as f:
        for i in range(a.rows):
            words = rnd.choices(vocab, cum_weights=cum, k=rnd.randint(8, 30))
            f.write(json.dumps({"id": f"r{i}", "text": " ".join(words), "label": rnd.randint(0, 1)}) + "\n")
    if a.dims:
        import numpy as np

        rng = np.random.default_rng(3)
        centres = rng.standard_normal((max(a.rows // 500, 1), a.dims)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), a.rows)]
        x += rng.standard_normal((a.rows, a.dims), dtype=np.float32)
        np.save(os.path.join(a.dir, "big.npy"), x)


if __name__ == "__main__":
    main()
