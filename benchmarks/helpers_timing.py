"""Time the helpers against the budgets of issue 5, on whatever machine runs it (offline).

1. ``import sentence_transformers`` (reported separately: it is not part of any budget);
2. ``tutorial_lib.models.load_model()``: the bundled all-MiniLM-L6-v2, checksum included (budget 3 s);
3. ``tutorial_lib.evaluation.evaluate`` on the bundled data: encode train + test and compute the four metrics
   (budget 30 s);
4. one epoch of ``tutorial_lib.training.train`` on the bundled training split at batch size 32, for each loss,
   each from a freshly loaded model (budget 3 min each).

Usage::

    python benchmarks/helpers_timing.py                      # everything
    python benchmarks/helpers_timing.py --losses batch_hard  # one loss
    python benchmarks/helpers_timing.py --threads 1 --json timings.json

Timings are wall-clock seconds; on a shared machine they vary with the load (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

BUDGETS = {"load_model": 3.0, "evaluate": 30.0, "epoch": 180.0}
LOSSES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the timings to this file")
    args = parser.parse_args()

    timings: dict[str, float] = {}
    start = time.perf_counter()
    import sentence_transformers  # noqa: F401

    timings["import_sentence_transformers"] = time.perf_counter() - start
    import torch

    from tutorial_lib import data, evaluation, models, st_losses, training

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    ds = data.load_bundled()

    start = time.perf_counter()
    model = models.load_model(device="cpu", verbose=False)
    timings["load_model"] = time.perf_counter() - start

    start = time.perf_counter()
    metrics = evaluation.evaluate(model, ds["train"], ds["test"])
    timings["evaluate"] = time.perf_counter() - start
    print(f"metrics before training: {metrics}")

    for strategy in args.losses:
        model = models.load_model(device="cpu", verbose=False)
        loss = st_losses.make_loss(strategy, model, margin=0.5)
        result = training.train(model, ds["train"], loss, epochs=1, batch_size=args.batch_size, progress=False)
        timings[f"epoch_{strategy}"] = result.train_seconds
        print(f"{strategy}: {result.steps} steps, final loss {result.history['loss'].iloc[-1]:.4f}")

    print(f"\n{'measure':<36}{'seconds':>10}{'budget':>10}")
    for name, seconds in timings.items():
        budget = BUDGETS.get("epoch" if name.startswith("epoch_") else name)
        print(f"{name:<36}{seconds:>10.2f}{'' if budget is None else f'{budget:>10.0f}'}")
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timings": timings, "threads": torch.get_num_threads(), "loadavg": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
