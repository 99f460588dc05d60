#!/usr/bin/env python3
"""Synthetic data for scale runs of `poisongate scan` (no poison, random labels).

Writes DIR/big.jsonl: N rows {"id", "text", "label"}, text 8-30 words drawn from a Zipf-like
distribution over a 30 000-word vocabulary (seed 5), and, with --dims D, DIR/big.npy: N x D
float32 embeddings around N/500 random centres plus unit noise (numpy, seed 3).

With --parquet it writes DIR/big.parquet instead: the same rows, with the embeddings (--dims D)
in a column `embedding` (fixed-size lists of float32), in row groups of 65 536 rows, written a
row group at a time so that memory stays small whatever N (numpy and pyarrow needed). With
--files K as well, the same rows go into a folder DIR/parts of K files part-00000.parquet, ...,
consecutive runs of row groups (group g into file g·K / groups), which `scan DIR/parts` reads
as one table.

    python3 scripts/make_scale_data.py /tmp/big 1000000 --dims 384
    poisongate scan /tmp/big/big.jsonl --embeddings /tmp/big/big.npy --id-column id --out /tmp/big/out
    python3 scripts/make_scale_data.py /tmp/bigpq 1000000 --dims 384 --parquet
    poisongate scan /tmp/bigpq/big.parquet --embedding-column embedding --id-column id --stream --out /tmp/bigpq/out
    python3 scripts/make_scale_data.py /tmp/bigdir 1000000 --dims 384 --parquet --files 8
    poisongate scan /tmp/bigdir/parts --embedding-column embedding --id-column id --stream --out /tmp/bigdir/out
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
    ap.add_argument("--parquet", action="store_true")
    ap.add_argument("--files", type=int, default=0,
                    help="with --parquet: a folder DIR/parts of this many files instead")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rnd = random.Random(5)
    vocab = [f"w{i}" for i in range(30000)]
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    if a.parquet:
        write_parquet(a, rnd, vocab, cum)
        return
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


def write_parquet(a, rnd, vocab, cum, group=65536):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    centres = None
    if a.dims:
        centres = rng.standard_normal((max(a.rows // 500, 1), a.dims)).astype(np.float32)
        which = rng.integers(0, len(centres), a.rows)
    groups = -(-a.rows // group)
    writer, file_of_writer = None, None
    if a.files:
        os.makedirs(os.path.join(a.dir, "parts"), exist_ok=True)
    for start in range(0, a.rows, group):
        n = min(group, a.rows - start)
        ids, texts, labels = [], [], []
        for i in range(start, start + n):
            words = rnd.choices(vocab, cum_weights=cum, k=rnd.randint(8, 30))
            ids.append(f"r{i}")
            texts.append(" ".join(words))
            labels.append(rnd.randint(0, 1))
        cols = {"id": pa.array(ids), "text": pa.array(texts), "label": pa.array(labels, pa.int64())}
        if a.dims:
            x = centres[which[start:start + n]]
            x += rng.standard_normal((n, a.dims), dtype=np.float32)
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), a.dims)
        batch = pa.table(cols)
        k = (start // group) * a.files // groups if a.files else None
        if writer is None or k != file_of_writer:
            if writer is not None:
                writer.close()
            path = (os.path.join(a.dir, "parts", f"part-{k:05d}.parquet") if a.files
                    else os.path.join(a.dir, "big.parquet"))
            writer, file_of_writer = pq.ParquetWriter(path, batch.schema), k
        writer.write_table(batch, row_group_size=group)
    if writer is not None:
        writer.close()


if __name__ == "__main__":
    main()
