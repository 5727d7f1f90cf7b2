"""Time and memory of the four losses against sentence-transformers' (a maintainer tool, not installed).

Usage (from the repository root)::

    python -m tools.bench                      # CPU: B in 64, 256, 1024, 2048
    python -m tools.bench --device cuda --json benchmarks/results/losses_cuda.json

What is measured and how: :mod:`tutorial_lib.bench` (notebook 08 calls the same functions).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import torch

from tutorial_lib import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes (default: CPU 64 256 1024 2048; "
                        "CUDA 64 256 1024 4096 8192)")
    parser.add_argument("--layouts", nargs="+", default=["pk", "few"], choices=["pk", "few"])
    parser.add_argument("--strategies", nargs="+", default=list(bench.STRATEGIES), choices=list(bench.STRATEGIES))
    parser.add_argument("--impls", nargs="+", default=["ours", "st", "floor"], choices=["ours", "st", "floor"])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--from-json", default=None, help="print the table of a saved run instead of measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        print(bench.format_table([bench.Result(**r) for r in saved["results"]], saved["environment"]))
        return 0
    if args.repeats < 20:
        parser.error("--repeats must be at least 20 (the median of fewer runs is too noisy to report)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = args.sizes or (bench.CUDA_SIZES if device.type == "cuda" else bench.CPU_SIZES)
    env = bench.environment(device)
    print(f"Benchmarking on {env['device']} (torch {env['torch']}, sentence-transformers "
          f"{env['sentence_transformers']}), D = {args.dim}, margin {bench.MARGIN}, median of {args.repeats}", flush=True)
    results = bench.run(device, sizes, args.layouts, args.strategies, args.dim, args.warmup, args.repeats, args.impls,
                  log=lambda line: print(line, flush=True))
    print()
    print(bench.format_table(results, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "dim": args.dim, "margin": bench.MARGIN, "repeats": args.repeats,
                       "results": [asdict(r) for r in results]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
