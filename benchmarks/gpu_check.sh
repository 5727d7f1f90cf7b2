#!/usr/bin/env bash
# One prepared run on a CUDA machine (an H100 or H200 of the device tool), everything in one call; the steps' time
# limits add up to 525 s (with the setup, under the device tool's 600 s limit for one command):
#   0. prerequisites: one line "gpu_check: MISSING: ..." and exit 2 if one is missing (GPU, torch with CUDA,
#      Triton, the carried sentence-transformers 6.3.0 wheel and the versions it requires);
#   1. the CUDA test suite (TEST_DEVICE=cuda) against sentence-transformers 6.3.0, fused Triton kernels included;
#   2. the loss benchmark, layouts pk and few, B = 64 ... 8192, ours / sentence-transformers / Gram floor;
#   3. the same at B = 4096 and 8192 with the fused kernels off (TRIPLET_FUSED=0): the sort-based path, same card;
#   4. torch.compile(mode="reduce-overhead") beside the engine's CUDA graphs and eager, B = 1024 and 8192.
# Each step has its own time limit; everything lands under $OUT (default ./gpu_out): full logs, JSON, summary.txt;
# the short tables are printed last.
#
# Prepare here, once (network; both folders are git-ignored and travel through the device tool's `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl sentence-transformers==6.3.0                 # 0.8 MB, pure Python
#   bash benchmarks/gpu_check.sh prepare   # only for benchmarks/gradcache_bench.py by hand: .devcarry/minilm16
# The device image has transformers 5.17.0, huggingface-hub 1.33.0 and tokenizers 0.23.2, inside the ranges
# sentence-transformers 6.3.0 requires (transformers >=5.0.0,<6; huggingface-hub >=1.3.0,<3; tokenizers >=0.19):
# only its wheel travels; step 0 checks every requirement against what is installed there.
#
# Run it with the device tool: command `bash benchmarks/gpu_check.sh`, carry [".whl"], timeout_s 600.
set -uo pipefail
if [ "${1:-}" = "prepare" ]; then
    python - <<'PY'
from tutorial_lib.models import load_model
model = load_model(device="cpu", verbose=False).half()
model.save(".devcarry/minilm16")
PY
    exit 0
fi
START=$SECONDS
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
fail() { echo "gpu_check: MISSING: $*" | tee -a "$OUT/summary.txt"; exit 2; }

echo "== 0. prerequisites"
command -v nvidia-smi > /dev/null || fail "nvidia-smi: no NVIDIA GPU on this machine"
ls .whl/sentence_transformers-6.3.0-*.whl > /dev/null 2>&1 \
    || fail ".whl/sentence_transformers-6.3.0-py3-none-any.whl (carry .whl; download command in this script's header)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.txt" 2>&1 || fail "pip could not install the carried wheels (see pip.txt)"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 - <<'PY' 2>&1 | tee "$OUT/device.txt"
import sys
from importlib.metadata import requires, version

try:
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    import triton
    import sentence_transformers
    from packaging.requirements import Requirement
    if sentence_transformers.__version__ != "6.3.0":
        raise RuntimeError(f"sentence-transformers {sentence_transformers.__version__} imports, not the carried 6.3.0")
    for line in requires("sentence-transformers"):
        need = Requirement(line)
        if need.marker is None and not need.specifier.contains(version(need.name), prereleases=True):
            raise RuntimeError(f"{need.name} {version(need.name)} does not satisfy sentence-transformers 6.3.0's {need}")
    import tutorial_lib.engine.fused_kernels  # noqa: F401 -- the fused kernels import (Triton present)
except Exception as exc:  # one line, then stop: no step can give meaningful numbers without these
    print(f"gpu_check: MISSING: {exc}")
    sys.exit(2)
print(torch.cuda.get_device_name(), "· torch", torch.__version__, "· triton", triton.__version__,
      "· sentence-transformers", sentence_transformers.__version__, "· transformers", version("transformers"))
PY
[ "${PIPESTATUS[0]}" = 0 ] || { cat "$OUT/device.txt" >> "$OUT/summary.txt"; exit 2; }
nvidia-smi -L >> "$OUT/device.txt"

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt, note the exit status
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local status=$?
    echo "$name: exit $status after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

echo "== 1. tests on CUDA"
step tests_cuda 170 env TEST_DEVICE=cuda TRIPLET_FUSED=1 TEST_EXAMPLES_SCALE="${TEST_EXAMPLES_SCALE:-0.5}" \
    python3 -m pytest -q \
    -p no:cacheprovider tests/test_losses_exact.py tests/test_mining_stats.py tests/test_batch_all_counting.py \
    tests/test_distances_masks.py tests/test_triton_kernels.py tests/test_cuda_only.py
tail -3 "$OUT/tests_cuda.txt"

echo "== 2. loss benchmark (fused kernels on: TRIPLET_FUSED=1)"
step bench_cuda 210 env TRIPLET_FUSED=1 python3 -m tools.bench --device cuda --json "$OUT/bench_cuda.json"

echo "== 3. the sort-based path at large B (the default today), same card"
step bench_cuda_sorted 45 env TRIPLET_FUSED=0 python3 -m tools.bench --device cuda --sizes 4096 8192 \
    --impls ours --strategies batch_all batch_semi_hard --json "$OUT/bench_cuda_sorted.json"

echo "== 4. torch.compile(mode=\"reduce-overhead\") vs the engine's CUDA graphs vs eager"
step compile_vs_graphs 100 python3 benchmarks/compile_vs_graphs.py --device cuda --sizes 1024 8192 \
    --json "$OUT/compile_vs_graphs.json"

echo "== tables"
sed -n '/^Device:/,$p' "$OUT/bench_cuda.txt"
sed -n '/^Device:/,$p' "$OUT/bench_cuda_sorted.txt"
sed -n '/^Device:/,$p' "$OUT/compile_vs_graphs.txt"
cat "$OUT/summary.txt"
echo "total $((SECONDS - START)) s"
