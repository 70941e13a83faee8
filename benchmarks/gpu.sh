#!/usr/bin/env bash
# The prepared GPU check of pdefm: one call on a GPU machine, under 6 minutes on an H100.
#
#   OUT=/path/to/results bash benchmarks/gpu.sh     # from anywhere; results land in $OUT
#   SMOKE=1 OUT=/tmp/gpu-smoke bash benchmarks/gpu.sh   # toy sizes, runs on a CPU too
#
# It needs a python with torch (CUDA build) and pdefm's dependencies (numpy, h5py,
# safetensors, tqdm, pyyaml); nothing is downloaded. pdefm itself is used from this checkout
# (PYTHONPATH=src) when it is not installed. Then benchmarks/gpu_bench.py measures training
# throughput and peak memory per preset at 128x128 (fp32, tf32, bf16, reference layer), runs
# a short real pre-training (fno-1m on a Poisson set generated on the spot) and probes
# torch.compile. Results: $OUT/gpu_bench.json, $OUT/gpu_bench.md (the BENCHMARKS.md section)
# and $OUT/gpu_bench.log. Extra arguments go to gpu_bench.py (e.g. --budget-s 200).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "gpu.sh: '$PY' cannot import torch; run this where python has torch (or set PYTHON=)" >&2
    exit 1
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('numpy', 'h5py', 'safetensors', 'tqdm', 'yaml') if not u.find_spec(m)))
")
if [ -n "$missing" ]; then
    echo "gpu.sh: missing Python packages: $missing; install them (pip install pyyaml for yaml)" >&2
    exit 1
fi
if ! "$PY" -c "import pdefm.train.loop" >/dev/null 2>&1; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu.sh: pdefm is not installed; using this checkout (PYTHONPATH=$PWD/src)"
fi

args=(--out "$OUT")
if [ "${SMOKE:-0}" = 1 ]; then
    args+=(--smoke)
else
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
        echo "gpu.sh: torch sees no CUDA GPU here (SMOKE=1 runs the toy version on a CPU)" >&2
        exit 1
    }
fi
# gpu_bench.py keeps its own budget (--budget-s, 330 s); the timeout is the backstop. Partial
# results are already in $OUT/gpu_bench.json when it strikes.
timeout --signal=INT --kill-after=10 360 "$PY" benchmarks/gpu_bench.py "${args[@]}" "$@" 2>&1 |
    tee "$OUT/gpu_bench.log"
echo "gpu.sh: done; results in $OUT (gpu_bench.json, gpu_bench.md, gpu_bench.log)"
