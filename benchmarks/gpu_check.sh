#!/usr/bin/env bash
# One prepared run on a CUDA machine: the core-loss tests on the GPU, then the benchmark, then a short profile.
# Writes everything under $OUT (default ./gpu_out) and prints the benchmark table last.
#
# The machine has no network: sentence-transformers 6.2 (pure Python) travels as a wheel in .whl/ (see
# benchmarks/RESULTS.md for the command that downloads it). Usage on the machine:
#   bash benchmarks/gpu_check.sh [quick]
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, sentence_transformers, triton; print('torch', torch.__version__, 'st', sentence_transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"

scale=${TEST_EXAMPLES_SCALE:-0.5}
echo "== tests on CUDA (examples scale $scale)"
TEST_DEVICE=cuda TEST_EXAMPLES_SCALE=$scale timeout 240 python3 -m pytest -q -p no:cacheprovider -x \
    tests/test_losses_exact.py tests/test_mining_stats.py tests/test_batch_all_counting.py \
    tests/test_distances_masks.py tests/test_triton_kernels.py tests/test_cuda_only.py 2>&1 | tee "$OUT/tests_cuda.txt" | tail -15

echo "== benchmark"
timeout 300 python3 -m tutorial_lib.bench --device cuda --json "$OUT/bench_cuda.json" > "$OUT/bench_cuda.txt" 2>&1
echo "bench exit $?"

echo "== profile (B = 8192, few labels)"
timeout 120 python3 benchmarks/profile_losses.py --device cuda --batch-size 8192 --layout few > "$OUT/profile.txt" 2>&1
tail -60 "$OUT/profile.txt"

echo "== table"
sed -n '/^Device:/,$p' "$OUT/bench_cuda.txt"
