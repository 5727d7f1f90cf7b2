"""torch.compile(mode="reduce-overhead") beside the engine's hand-made CUDA graphs and plain eager launches.

For each loss (the public ``tutorial_lib.losses`` function) and batch size (P x K layout, 4 per label, D = 768,
margin 0.5), the forward + backward of the loss alone, three ways:

* ``eager``: ``TRIPLET_CUDA_GRAPHS=0``, every kernel launched from Python;
* ``graphs``: the engine's own CUDA graphs (:mod:`tutorial_lib.engine.cuda_graphs`); above its ``MAX_BATCH``
  (1024) the engine does not capture, so this variant raises ``MAX_BATCH`` for the measurement;
* ``compiled``: ``torch.compile(loss, mode="reduce-overhead")`` with the engine's graphs *off*: where Dynamo breaks
  the graph at the autograd Function, the Function runs eagerly, and with the engine's graphs on it would replay its
  own graphs and this variant would time those. The graphs compiled and the graph breaks (with their reasons) are
  read from Dynamo's counters; the engine's graph cache is checked to stay empty; the loss and gradient are checked
  against eager.

Compile time is reported apart from the steady state: ``first_s`` is the wall time of the first call (for
``compiled``: tracing and compiling; for ``graphs``: capture), ``warm_s`` that of the next warm-up calls
(reduce-overhead records its CUDA graphs there), ``ms`` the median of ``--repeats`` further calls (CUDA events).
Each configuration is written to the JSON file as soon as it is measured, so a timeout keeps what was done.

Usage::

    python benchmarks/compile_vs_graphs.py --device cuda --sizes 1024 8192 --json out.json
    python benchmarks/compile_vs_graphs.py --device cpu --sizes 64 --repeats 3    # dry run (no graphs on a CPU)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import traceback

import torch

from tutorial_lib import bench, losses
from tutorial_lib.engine import cuda_graphs

VARIANTS = ("eager", "graphs", "compiled")


@contextlib.contextmanager
def variant_settings(variant: str, batch_size: int):
    """The engine's switches for one variant, restored afterwards (cached graphs dropped: each holds memory)."""
    saved_env, saved_max = os.environ.get("TRIPLET_CUDA_GRAPHS"), cuda_graphs.MAX_BATCH
    os.environ["TRIPLET_CUDA_GRAPHS"] = "1" if variant == "graphs" else "0"
    if variant == "graphs":
        cuda_graphs.MAX_BATCH = max(saved_max, batch_size)
    try:
        yield
    finally:
        cuda_graphs.MAX_BATCH = saved_max
        if saved_env is None:
            os.environ.pop("TRIPLET_CUDA_GRAPHS", None)
        else:
            os.environ["TRIPLET_CUDA_GRAPHS"] = saved_env
        cuda_graphs.clear()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def value_and_grad(fn, e, y):
    x = e.detach().clone().requires_grad_(True)
    value = fn(x, y, bench.MARGIN)
    value.backward()
    return value.detach().clone(), x.grad.detach().clone()


def measure(strategy: str, variant: str, e, y, args) -> dict:
    device = e.device
    record = {"strategy": strategy, "batch_size": e.shape[0], "variant": variant}
    if variant == "graphs" and device.type != "cuda":
        return {**record, "skipped": "CUDA graphs need a CUDA device"}
    loss = losses.loss_function(strategy)
    with variant_settings("eager", e.shape[0]):
        reference = value_and_grad(loss, e, y)  # also compiles the Triton kernels: not part of any variant's time
    with variant_settings(variant, e.shape[0]):
        fn = loss
        if variant == "compiled":
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            fn = torch.compile(loss, mode="reduce-overhead", dynamic=False)

        def step(x, labels):
            fn(x, labels, bench.MARGIN).backward()

        x = e.detach().clone().requires_grad_(True)
        synchronize(device)
        start = time.perf_counter()
        step(x, y)
        synchronize(device)
        record["first_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.warmup):
            x.grad = None
            step(x, y)
        synchronize(device)
        record["warm_s"] = time.perf_counter() - start
        value, grad = value_and_grad(fn, e, y)
        record["matches_eager"] = bool(torch.allclose(value, reference[0], rtol=1e-5, atol=1e-6)
                                       and torch.allclose(grad, reference[1], rtol=1e-4, atol=1e-6))
        record["ms"], record["peak_mib"] = bench.measure(step, e, y, device, warmup=1, repeats=args.repeats)
        record["engine_graphs_cached"] = len(cuda_graphs._cache)
        if variant == "compiled":
            counters = torch._dynamo.utils.counters
            record["graphs_compiled"] = int(counters["stats"].get("unique_graphs", 0))
            record["graph_breaks"] = int(sum(counters["graph_break"].values()))
            record["break_reasons"] = [reason[:300] for reason in counters["graph_break"]][:5]
            torch._dynamo.reset()
    return record


def format_table(records: list[dict], env: dict) -> str:
    lines = [f"Device: {env['device']} · torch {env['torch']} · {env['date']} · forward + backward, median ms "
             f"(first call s)", "", "| loss | B | eager | engine graphs | reduce-overhead | graph breaks | "
             "compiled = eager |", "|---|---|---|---|---|---|---|"]
    by_key = {(r["strategy"], r["batch_size"], r["variant"]): r for r in records}

    def cell(r):
        if r is None:
            return "—"
        if "ms" not in r:
            return r.get("skipped") or ("error: " + r.get("error", "?").splitlines()[-1][:60])
        return f"{r['ms']:.2f} ({r['first_s']:.1f} s)"

    for strategy, batch_size in dict.fromkeys((r["strategy"], r["batch_size"]) for r in records):
        compiled = by_key.get((strategy, batch_size, "compiled")) or {}
        lines.append(f"| {losses.TITLES[strategy]} | {batch_size} | " + " | ".join(
            cell(by_key.get((strategy, batch_size, v))) for v in VARIANTS)
            + f" | {compiled.get('graph_breaks', '—')} | {compiled.get('matches_eager', '—')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--strategies", nargs="+", default=list(losses.STRATEGIES), choices=list(losses.STRATEGIES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--layout", default="pk", choices=["pk", "few"])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default=None, help="write the records here (after each configuration)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    env = bench.environment(device)
    print(f"compile vs graphs on {env['device']} (torch {env['torch']}), layout {args.layout}, D = {args.dim}",
          flush=True)
    records: list[dict] = []
    for batch_size in args.sizes:
        e = torch.randn(batch_size, args.dim, generator=torch.Generator().manual_seed(batch_size)).to(device)
        y = bench.make_labels(args.layout, batch_size, device)
        for strategy in args.strategies:
            for variant in args.variants:
                try:
                    record = measure(strategy, variant, e, y, args)
                except Exception:  # noqa: BLE001 -- one failing variant must not lose the others' numbers
                    record = {"strategy": strategy, "batch_size": batch_size, "variant": variant,
                              "error": traceback.format_exc()[-2000:]}
                    torch._dynamo.reset()
                records.append(record)
                print(json.dumps(record), flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump({"environment": env, "layout": args.layout, "dim": args.dim, "records": records},
                                  f, indent=1)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print()
    print(format_table(records, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
