#!/usr/bin/env bash
# One prepared run on a CUDA machine (device time is scarce: everything in one call, ~5 minutes):
#   1. the core-loss tests on the GPU (TEST_DEVICE=cuda), CUDA graphs and Triton included;
#   2. the loss benchmark (tutorial_lib.bench), then its small sizes again with CUDA graphs off (eager);
#   3. the gradient-caching benchmark with all-MiniLM-L6-v2 (a float16 copy travels in .devcarry/minilm16).
# Writes everything under $OUT (default ./gpu_out) and prints the tables last.
#
# The machine has no network: sentence-transformers 6.2 (pure Python) travels as a wheel in .whl/:
#   pip download --no-deps --only-binary=:all: -d .whl sentence-transformers==6.2.0
#   bash benchmarks/gpu_check.sh prepare   # (here) writes the float16 model copy to .devcarry/minilm16
set -uo pipefail
if [ "${1:-}" = "prepare" ]; then
    python - <<'PY'
from tutorial_lib.models import load_model
model = load_model(device="cpu", verbose=False).half()
model.save(".devcarry/minilm16")
PY
    exit 0
fi
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, sentence_transformers, triton; print('torch', torch.__version__, 'st', sentence_transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"

echo "== 1. tests on CUDA"
TEST_DEVICE=cuda TEST_EXAMPLES_SCALE=${TEST_EXAMPLES_SCALE:-0.5} timeout 150 python3 -m pytest -q -p no:cacheprovider \
    tests/test_losses_exact.py tests/test_mining_stats.py tests/test_batch_all_counting.py \
    tests/test_distances_masks.py tests/test_triton_kernels.py tests/test_cuda_only.py > "$OUT/tests_cuda.txt" 2>&1
echo "tests exit $?"; tail -4 "$OUT/tests_cuda.txt"

echo "== 2. loss benchmark"
timeout 150 python3 -m tutorial_lib.bench --device cuda --json "$OUT/bench_cuda.json" > "$OUT/bench_cuda.txt" 2>&1
echo "bench exit $?"
TRIPLET_CUDA_GRAPHS=0 timeout 50 python3 -m tutorial_lib.bench --device cuda --sizes 64 256 1024 --impls ours \
    --json "$OUT/bench_cuda_eager.json" > "$OUT/bench_cuda_eager.txt" 2>&1
echo "eager bench exit $?"

echo "== 3. gradient caching (all-MiniLM-L6-v2, 32 tokens, mini-batch 64)"
timeout 90 python3 benchmarks/gradcache_bench.py --device cuda --model .devcarry/minilm16 \
    --sizes 64 256 1024 4096 --mini-batch 64 --repeats 3 --json "$OUT/gradcache_cuda.json" > "$OUT/gradcache_cuda.txt" 2>&1
echo "gradcache exit $?"

echo "== tables"
sed -n '/^Device:/,$p' "$OUT/bench_cuda.txt"
sed -n '/^Device:/,$p' "$OUT/bench_cuda_eager.txt"
sed -n '/^|/,$p' "$OUT/gradcache_cuda.txt"
head -1 "$OUT/gradcache_cuda.txt"
