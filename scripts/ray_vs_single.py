#!/usr/bin/env python3
"""The same scan on one process and through Ray Data (local mode), side by side.

    python3 scripts/make_scale_data.py /tmp/pq 1000000 --dims 128 --parquet
    python3 scripts/ray_vs_single.py /tmp/pq/big.parquet --partitions 2 --cpus 2

Runs ``poisongate.scan(..., stream=True)`` and ``poisongate.ray.gate(..., partitions=P)`` on
a fresh ``ray.init(num_cpus=C)``, both with the default detectors (DUP002's embedding relation
off, as streaming scans run it) and the embeddings from the file's ``embedding`` column; prints
each wall time, their ratio, and whether the clean and quarantine outputs are byte-identical.
Needs the ``poisongate`` package and ``ray[data]``.
"""
import argparse
import os
import tempfile
import time

import ray

import poisongate
import poisongate.ray


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args()
    kw = dict(id_column="id", embedding_column="embedding", reproducible=True,
              detectors={"DUP002": {"embedding_cosine": 0}})
    with tempfile.TemporaryDirectory() as tmp:
        one, clustered = os.path.join(tmp, "one"), os.path.join(tmp, "ray")
        t = time.perf_counter()
        single = poisongate.scan(a.data, out=one, stream=True, **kw)
        t_one = time.perf_counter() - t
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
        t = time.perf_counter()
        gated = poisongate.ray.gate(a.data, clustered, partitions=a.partitions, **kw)
        t_ray = time.perf_counter() - t
        same = all(
            open(os.path.join(one, f), "rb").read() == open(os.path.join(clustered, f), "rb").read()
            for f in ("clean.parquet", "quarantine.parquet"))
        print(f"single process: {t_one:.1f} s, exit {single.exit_code}")
        print(f"ray, {gated.report['settings']['partitions']} partitions on {a.cpus} CPUs: "
              f"{t_ray:.1f} s, exit {gated.exit_code}")
        print(f"ratio: {t_ray / t_one:.2f}; outputs identical: {same}")


if __name__ == "__main__":
    main()
