#!/usr/bin/env bash
# Side-by-side speed of `poisongate embed` and the numpy reference (../shared/tools/minilm_numpy.py,
# numpy + OpenBLAS, the script that made the shipped .minilm.npy files) on one corpus, same
# machine, same run, same model and token budget (all-MiniLM-L6-v2, 128 tokens; each with its own
# default batch size: 256 padded tokens for poisongate, 4096 for the reference).
#
#   scripts/embed_speed.sh [CORPUS]      # default sst2-clean; needs pip numpy tokenizers safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-sst2-clean}
shared=../shared
data=$shared/benchmarks/$corpus.jsonl
model=$shared/models/all-MiniLM-L6-v2
python3 -c "import numpy, tokenizers, safetensors" 2>/dev/null || pip install -q numpy tokenizers safetensors
cargo build --release -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows=$(grep -c . "$data")
t0=$(date +%s.%N)
./target/release/poisongate embed "$data" --model "$model" --max-tokens 128 --out "$tmp/rust.npy" --quiet
t1=$(date +%s.%N)
python3 $shared/tools/minilm_numpy.py --model-dir "$model" "$data" "$tmp/ref.npy" 2>/dev/null
t2=$(date +%s.%N)
python3 - "$tmp/rust.npy" "$tmp/ref.npy" "$rows" "$t0" "$t1" "$t2" "$(nproc)" "$corpus" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
rows, t0, t1, t2, cores = int(sys.argv[3]), *map(float, sys.argv[4:7]), sys.argv[7]
corpus = sys.argv[8]
cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
rust, ref = t1 - t0, t2 - t1
print("| corpus | rows | cores | poisongate embed | numpy reference | ratio | lowest cosine |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
print(f"| {corpus} | {rows} | {cores} | {rows / rust:.0f} rows/s ({rust:.1f} s) | "
      f"{rows / ref:.0f} rows/s ({ref:.1f} s) | {ref / rust:.2f}x | {cos.min():.7f} |")
PY
