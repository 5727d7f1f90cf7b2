"""Where the time goes: the top CUDA kernels of one forward + backward of each loss (torch.profiler)."""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from tutorial_lib import bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--layout", default="few")
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    device = torch.device(args.device)
    e = torch.randn(args.batch_size, args.dim, device=device)
    y = bench.make_labels(args.layout, args.batch_size, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for strategy in bench.STRATEGIES:
        step = bench.make_step("ours", strategy)
        x = e.clone().requires_grad_(True)
        for _ in range(2):
            step(x, y)
            x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            step(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
        key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(f"### {strategy} (B={args.batch_size}, {args.layout})")
        print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=60))


if __name__ == "__main__":
    main()
