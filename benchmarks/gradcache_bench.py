"""Gradient caching: peak memory and time per training step against the uncached loss, as the mining batch grows.

One step = forward + backward of the loss through the encoder (what the trainer does before the optimizer; the
monitoring statistics are off for both, so only the encoder and the loss itself are measured). The
mini-batch of the cached loss stays fixed; the uncached loss embeds the whole mining batch with gradients.

    python benchmarks/gradcache_bench.py --model tiny --sizes 64 256 1024 4096
    python benchmarks/gradcache_bench.py --model default --sizes 64 256 1024 --repeats 1
    python benchmarks/gradcache_bench.py --device cuda --model PATH --sizes 64 256 1024 4096 --json out.json

Prints a markdown table naming the device and versions; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tutorial_lib import st_losses  # noqa: E402
from tutorial_lib.bench import _cpu_peak, _reset_cpu_peak, free_bytes  # noqa: E402
from tutorial_lib.scaling import CachedBatchTripletLoss  # noqa: E402

WORDS = ("river mountain bread violin planet lawyer tennis engine garden market winter doctor museum coffee "
         "library volcano recipe airport theorem harbour vaccine orchestra glacier election").split()


def batch(size: int, seq_len: int):
    """``size`` distinct synthetic sentences of about ``seq_len`` words, labels in groups of 4 (P x K)."""
    sentences = [" ".join(WORDS[(i * 7 + j * 3 + (i // 5)) % len(WORDS)] for j in range(seq_len)) + f" {i}"
                 for i in range(size)]
    return sentences, torch.arange(size) // 4


def load(name: str, device: str):
    if name == "tiny":
        from tutorial_lib.models import tiny_model

        return tiny_model(seed=0, device=device)
    from tutorial_lib.models import load_model

    model = load_model(None if name == "default" else name, device=device, verbose=False)
    return model.float()


def step_time_and_peak(loss, model, features, labels, device, repeats: int):
    times = []
    peak = 0.0
    for i in range(repeats + 1):  # the first run warms up (and is the one whose memory is measured on CPU)
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _reset_cpu_peak()
            if base is None:  # VmHWM comes from Linux's /proc
                raise SystemExit("measuring CPU peak memory needs Linux (/proc/self/status); run it there or on CUDA")
        start = time.perf_counter()
        loss([features], labels).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
            used = torch.cuda.max_memory_allocated() - base
        else:
            used = _cpu_peak() - base
        elapsed = time.perf_counter() - start
        peak = max(peak, used / 2**20)
        if i > 0 or repeats == 0:
            times.append(elapsed)
    return statistics.median(times), peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="tiny", help="'tiny', 'default' (all-MiniLM-L6-v2) or a model folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--mini-batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=32, help="words per sentence (and max_seq_length)")
    parser.add_argument("--strategy", default="batch_hard", choices=list(st_losses.LOSSES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-uncached-gb", type=float, default=None,
                        help="skip the uncached loss when its activations would exceed this (default: 80%% of free)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model = load(args.model, args.device)
    model.train()
    model.max_seq_length = args.seq_len
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    import sentence_transformers

    print(f"{name} · torch {torch.__version__} · sentence-transformers {sentence_transformers.__version__} · "
          f"{datetime.date.today()} · model {args.model} · {args.strategy} · mini-batch {args.mini_batch} · "
          f"{args.seq_len} tokens", flush=True)
    rows = []
    per_sentence = None
    for size in args.sizes:
        sentences, labels = batch(size, args.seq_len)
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                    for k, v in model.preprocess(sentences).items()}
        labels = labels.to(device)
        row = {"batch": size}
        cached = CachedBatchTripletLoss(model, args.strategy, mini_batch_size=args.mini_batch, track_stats=False)
        row["cached_s"], row["cached_mib"] = step_time_and_peak(cached, model, features, labels, device, args.repeats)
        budget = (args.max_uncached_gb * 1e9 if args.max_uncached_gb else 0.8 * free_bytes(device))
        predicted = None if per_sentence is None else per_sentence * size
        if predicted is not None and predicted > budget:
            row["uncached"] = f"skipped: needs ~{predicted / 1e9:.0f} GB"
        else:
            uncached = st_losses.make_loss(args.strategy, model, track_stats=False)
            try:
                row["uncached_s"], row["uncached_mib"] = step_time_and_peak(
                    uncached, model, features, labels, device, args.repeats)
                per_sentence = row["uncached_mib"] * 2**20 / size
            except torch.OutOfMemoryError:
                row["uncached"] = "out of memory"
                torch.cuda.empty_cache()
        rows.append(row)
        print(row, flush=True)
    print()
    print("| mining batch | cached: s / step | cached: peak MiB | uncached: s / step | uncached: peak MiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        unc = (f"{r['uncached_s']:.3f} | {r['uncached_mib']:.0f}" if "uncached_s" in r
               else f"{r.get('uncached')} | —")
        print(f"| {r['batch']} | {r['cached_s']:.3f} | {r['cached_mib']:.0f} | {unc} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
