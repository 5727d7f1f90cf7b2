"""Compile the fused Triton kernels for an H100/H200 (sm_90) on any machine, no GPU needed, and report their resources.

Prints, per kernel and row size, the compile time and what ``cuobjdump -res-usage`` reads from the cubin: registers
per thread, stack (spilled registers live there), shared memory. It tells whether a change spills or compiles
slowly before any device time is spent; it measures no speed. Triton's bundled ptxas and cuobjdump are used, with a
fresh Triton cache (compile times on this machine's CPU, not the device's).

Usage::

    python benchmarks/fused_kernels_sm90.py                  # rows of 1024, 4096 and 8192 (the benchmark's sizes)
    python benchmarks/fused_kernels_sm90.py --rows 2048
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget

from tutorial_lib.engine import fused_kernels, fused_semi_hard

_CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
_DIRECT = {"d_ptr": "*fp32", "labels_ptr": "*i64", "order_ptr": "*i32", "first_ptr": "*i32", "size_ptr": "*i32",
           "out_ptr": "*fp32", "counted_ptr": "*i32", "hinge_ptr": "*fp32", "size": "i32", "margin": "fp32",
           "threshold": "fp32", "direct_max": "i32"}
_SORTED = {"d_ptr": "*fp32", "labels_ptr": "*i64", "size_ptr": "*i32", "scratch_ptr": "*fp32", "out_ptr": "*fp32",
           "counted_ptr": "*i32", "hinge_ptr": "*fp32", "size": "i32", "margin": "fp32", "threshold": "fp32",
           "direct_max": "i32"}


def _without(signature: dict, *names: str, **changes: str) -> dict:
    return {**{k: v for k, v in signature.items() if k not in names}, **changes}


def report(kernel, signature: dict, constants: dict, warps: int) -> str:
    start = time.perf_counter()
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constants)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    seconds = time.perf_counter() - start
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([_CUOBJDUMP, "-res-usage", cubin.name], capture_output=True, text=True).stdout
    resources = next((line.strip() for line in usage.splitlines() if "REG:" in line), "?")
    fields = dict(item.split(":", 1) for item in resources.split() if ":" in item)
    return (f"| {kernel.fn.__name__} | {constants} | {warps} | {seconds:.1f} | {fields.get('REG', '?')} | "
            f"{fields.get('STACK', '?')} | {fields.get('SHARED', '?')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1024, 4096, 8192], help="padded row sizes (powers of 2)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns unless told; the kernels have no a*b+c
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-sm90-")  # a fresh cache: real compile times
    print(f"Triton {triton.__version__}, target sm_90 (compiled here, nothing run)\n")
    print("| kernel | constants | warps | compile s | registers | stack bytes | shared bytes |")
    print("|---|---|---|---|---|---|---|")
    tiles = {"BLOCK": fused_kernels._BLOCK, "TILE": fused_kernels._TILE}
    print(report(fused_kernels._all_direct_kernel, _DIRECT, tiles, 4))
    print(report(fused_semi_hard._semi_direct_kernel, _without(_DIRECT, "counted_ptr", "threshold"), tiles, 4))
    for row in args.rows:
        warps = min(32, max(4, row // 256))  # as fused_kernels.sorted_launch
        constants = {"BLOCK_B": row, "CHUNK": min(fused_kernels._CHUNK, row), "STEPS": row.bit_length()}
        print(report(fused_kernels._all_sorted_kernel, _SORTED, constants, warps))
        semi = _without(_SORTED, "counted_ptr", "threshold", scratch_ptr="*i64")
        print(report(fused_semi_hard._semi_sorted_kernel, semi, constants, warps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
