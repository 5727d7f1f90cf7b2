"""Notebook 04 (BatchHard): the self-checks of its exercises.

    check_batch_hard_loss(fn)       fn(dist: (B, B) tensor, labels: (B,) tensor, margin: float) -> 0-dim tensor
    check_first_collapsed_step(fn)  fn(history: DataFrame with step and mean_distance, ratio: float) -> int | None

Oracles: :func:`tutorial_lib.reference.batch_hard_from_distances`; for the collapse,
:func:`tutorial_lib.monitor.first_collapsed_step` (the collapse detector's rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..masks import anchor_negative_mask, anchor_positive_mask
from ..monitor import first_collapsed_step
from ..reference import batch_hard_from_distances
from .runner import Miss, clustered_distances, number_case, run_checks

__all__ = ["check_batch_hard_loss", "check_first_collapsed_step"]


def _batch_hard_slip(dist: Tensor, labels: Tensor, margin: float, slip: str) -> float:
    """BatchHard's value with one usual mistake, to name the learner's (never the right loss).

    ``"nearest_positive"``, ``"farthest_negative"``, ``"diagonal"`` (the anchor's own 0 taken as its nearest
    negative), ``"skip_no_positive"`` (anchors without a positive dropped from the mean).
    """
    pos, neg = anchor_positive_mask(labels), anchor_negative_mask(labels)
    if not neg.any():
        return 0.0
    has_pos = pos.any(dim=1)
    if slip == "nearest_positive":
        d_ap = torch.where(has_pos, dist.masked_fill(~pos, math.inf).min(dim=1).values, torch.zeros(len(labels)))
    else:
        d_ap = (dist * pos).max(dim=1).values
    if slip == "farthest_negative":
        d_an = dist.masked_fill(~neg, -math.inf).max(dim=1).values
    elif slip == "diagonal":
        d_an = dist.masked_fill(~(neg | torch.eye(len(labels), dtype=torch.bool)), math.inf).min(dim=1).values
    else:
        d_an = dist.masked_fill(~neg, math.inf).min(dim=1).values
    per_anchor = torch.relu((d_ap - d_an) + margin)
    if slip == "skip_no_positive":
        return float(per_anchor[has_pos].mean()) if has_pos.any() else 0.0
    return float(per_anchor.mean())


def check_batch_hard_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """``fn(dist, labels, margin)`` returns BatchHard's loss from a (B, B) distance matrix and (B,) labels.

    The mean over all B anchors of ``max(0, farthest-positive distance - nearest-negative distance + margin)``. An
    anchor without a positive uses 0 as its farthest-positive distance and stays in the mean (sentence-transformers'
    convention); a batch with a single label (no negative anywhere) returns 0. The result must carry a gradient.
    """
    slips = {
        "nearest_positive": "the hardest positive is the *farthest* one (largest d(a, p)).",
        "farthest_negative": "the hardest negative is the *nearest* one (smallest d(a, n)).",
        "diagonal": "the anchor itself (distance 0) is not a negative: mask it out before taking the minimum.",
        "skip_no_positive": "an anchor without a positive stays in the mean, with 0 as its positive distance "
                            "(sentence-transformers' convention): divide by B.",
    }

    case = partial(number_case, oracle=batch_hard_from_distances, slip_value=_batch_hard_slip, slips=slips)

    def gradient(f):
        dist, labels = clustered_distances(8, 2, seed=12)
        d = dist.clone().requires_grad_(True)
        out = f(d, labels.clone(), 0.5)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient back to dist.",
                        "stay with torch operations (no float(), .item() or Python max), so training can "
                        "backpropagate through the loss.")
        out.sum().backward()
        # Counted, not compared with the oracle's: at a tie, amax may share the gradient where the loops pick one.
        if d.grad is None or int((d.grad != 0).sum()) > 2 * len(labels):
            return Miss("its gradient reaches more than two distances per anchor.",
                        "BatchHard uses one positive and one negative per anchor: only those two distances of "
                        "each row should receive a gradient.")
        return None

    general = "per anchor: farthest positive, nearest negative, then max(0, d_ap - d_an + margin); mean over anchors."
    tight = pairwise_distances(torch.randn(6, 8, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
                               * 0.05)
    return run_checks("check_batch_hard_loss", fn, [
        case(*clustered_distances(6, 2, seed=21), 0.5, "a batch of 6 with 2 labels", general),
        case(*clustered_distances(12, 3, seed=22, spread=2.0), 0.3, "a batch of 12 with 3 labels", general),
        case(clustered_distances(5, 3, seed=23)[0], torch.tensor([0, 1, 0, 0, 2]), 0.5,
             "labels 0, 1, 0, 0, 2 (two anchors without a positive)", slips["skip_no_positive"]),
        case(tight, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5, "points packed closely together", slips["diagonal"]),
        case(clustered_distances(5, 1, seed=24)[0], torch.zeros(5, dtype=torch.long), 0.5,
             "a single label (no negative anywhere)",
             "with no negative in the batch there is nothing to push away: return 0 (this series' convention)."),
        case(*clustered_distances(24, 4, seed=25), 0.5, "a batch of 24 with 4 labels", general),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchHardTripletLoss (apart from single-label batches).")


def check_first_collapsed_step(fn: Callable[[Any, float], Any]) -> bool:
    """``fn(history, ratio)`` returns the ``step`` of the first row of a training history whose ``mean_distance`` is
    below ``ratio`` times the first row's ``mean_distance``, or None if there is none.

    ``history`` is a ``pandas.DataFrame`` like ``TrainResult.history`` (columns ``step``, ``loss``,
    ``mean_distance``, ...), one row per step. "Below" is strict.
    """
    import pandas as pd  # only when the check runs: importing the exercises stays light

    def history(distances: Sequence[float], first_step: int = 1) -> pd.DataFrame:
        steps = list(range(first_step, first_step + len(distances)))
        return pd.DataFrame({"step": steps, "loss": [0.5] * len(distances), "mean_distance": list(distances)})

    def case(frame: pd.DataFrame, ratio: float, what: str, hint: str) -> tuple:
        want = first_collapsed_step(frame["step"], frame["mean_distance"], ratio)

        def run(f):
            got = f(frame.copy(), ratio)
            if want is None:
                return None if got is None else Miss(f"for {what} it returned {got!r}.", hint)
            try:
                step = int(got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {got!r}.", hint)
            return None if step == want else Miss(f"for {what} it returned {step}.", hint)

        return what, run, hint

    collapsing = [1.375, 1.375, 1.25, 0.625, 0.125, 0.125, 0.125, 0.125]
    return run_checks("check_first_collapsed_step", fn, [
        case(history(collapsing), 0.2, "a run that collapses",
             "find the rows whose mean_distance is below ratio times the *first* row's, and return the step of the "
             "first of them."),
        case(history([1.375, 1.25, 1.375, 1.25, 1.375]), 0.2, "a healthy run",
             "when no row is below the threshold, return None."),
        case(history(collapsing, first_step=101), 0.2, "a history whose steps start at 101",
             "return the value of the step column, not the row's position."),
        case(history([1.0, 0.75, 0.125, 0.75, 0.125]), 0.2, "a run that dips, recovers and dips again",
             "the *first* row below the threshold counts."),
        case(history([1.0, 0.75, 0.5, 0.25, 0.125]), 0.25, "a row exactly at the threshold",
             "'below' is strict: a row at exactly ratio times the first distance is not collapsed."),
        case(history(collapsing), 0.5, "ratio 0.5", "use the ratio argument, not a fixed number."),
    ], "That is tutorial_lib.monitor.first_collapsed_step; train() applies it at ratio 0.3 (monitor.COLLAPSE_RATIO) "
       "and warns with a CollapseWarning.")
