"""Notebook 03 (BatchAll): the self-checks of its exercises.

    check_batch_all_loss(fn)   fn(dist: (B, B) tensor, labels: (B,) tensor, margin: float) -> 0-dim tensor
    check_active_fraction(fn)  fn(dist: (B, B) tensor, labels: (B,) tensor, margin: float) -> float in [0, 1]

Oracles: :func:`tutorial_lib.reference.batch_all_from_distances` (value and gradient) and the share of active
triplets among :func:`tutorial_lib.masks.triplet_mask` (waiting for a home in :mod:`tutorial_lib.reference`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..masks import anchor_negative_mask, same_label, triplet_mask
from ..reference import COUNT_THRESHOLD, active_fraction_from_distances, batch_all_from_distances
from .runner import clustered_distances, gradient_miss, line_distances, number_case, run_checks

__all__ = ["check_active_fraction", "check_batch_all_loss"]


def _margins(dist: Tensor, margin: float) -> Tensor:
    """(B, B, B): ``(d(a, p) - d(a, n)) + margin`` for every index triple [a, p, n], valid or not."""
    return (dist[:, :, None] - dist[:, None, :]) + margin


def _self_positive_slip(labels: Tensor) -> Tensor:
    """(B, B, B) bool: the triplet mask of the usual slip that lets an example be its own positive (p == a)."""
    return same_label(labels)[:, :, None] & anchor_negative_mask(labels)[:, None, :]


def _active_share(dist: Tensor, valid: Tensor, margin: float, denominator: int) -> float:
    """Triplets of the (B, B, B) mask ``valid`` whose loss is above 0, divided by ``denominator`` (0.0 if it is 0)."""
    active = int(((_margins(dist, margin) > 0) & valid).sum())
    return active / denominator if denominator else 0.0


def _batch_all_slip(dist: Tensor, labels: Tensor, margin: float, slip: str) -> float:
    """BatchAll's value with one usual mistake, to name the learner's (never the right loss).

    ``"valid"``: divides by every valid triplet; ``"self"``: lets p == a; ``"epsilon"``: divides by
    ``active + 1e-16`` (sentence-transformers' rule, wrong when nothing is active).
    """
    valid = _self_positive_slip(labels) if slip == "self" else triplet_mask(labels)
    losses = torch.relu(_margins(dist, margin)) * valid
    total, active = float(losses.sum()), int((losses > COUNT_THRESHOLD).sum())
    if slip == "valid":
        return total / max(int(valid.sum()), 1)
    if slip == "epsilon":
        return total / (active + 1e-16)
    return total / active if active else 0.0


def _active_fraction_slip(dist: Tensor, labels: Tensor, margin: float, slip: str) -> float:
    """The active fraction with one usual mistake, to name the learner's (never the right share).

    ``"cube"``: divides by all B^3 index triples; ``"self"``: lets p == a.
    """
    if slip == "cube":
        return _active_share(dist, triplet_mask(labels), margin, len(labels) ** 3)
    valid = _self_positive_slip(labels)
    return _active_share(dist, valid, margin, int(valid.sum()))


def check_batch_all_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """``fn(dist, labels, margin)`` returns BatchAll's loss from a (B, B) distance matrix and (B,) labels.

    The sum of ``max(0, d(a,p) - d(a,n) + margin)`` over every valid triplet, divided by the number of triplets whose
    loss is above 1e-16; 0 when there is none. The result must carry a gradient back to ``dist``.
    """
    slips = {
        "valid": ("it divides by every valid triplet.", "divide by the number of *active* triplets (loss above "
                  "1e-16), not by all valid ones: easy triplets add 0 to the sum and must not count either."),
        "self": ("it lets an example be its own positive.", "a positive is *another* example with the anchor's "
                 "label: exclude p == a (the diagonal)."),
        "epsilon": ("it divides by (count + 1e-16) when nothing is active.", "that is sentence-transformers' "
                    "rule, and it turns a rounding-level loss into a large one: with no active triplet return 0."),
    }

    case = partial(number_case, oracle=batch_all_from_distances, slip_value=_batch_all_slip, slips=slips,
                   nan_hint="0 / 0 is NaN: when no triplet is active, return 0.")

    def gradient(f):
        dist, labels = clustered_distances(8, 2, seed=11)
        return gradient_miss(
            f, batch_all_from_distances, dist, labels, 0.5,
            no_gradient="stay with torch operations (no float(), .item() or Python loops that build numbers), so "
                        "training can backpropagate through the loss.",
            wrong_gradient="count the active triplets without a gradient (a count is a plain number), and let the "
                           "gradient flow only through the summed losses.")

    general = "sum max(0, d(a,p) - d(a,n) + margin) over valid triplets: p != a with a's label, n with another label."
    tight = pairwise_distances(torch.randn(6, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
                               * 0.05)
    return run_checks("check_batch_all_loss", fn, [
        case(*clustered_distances(6, 2, seed=1), 0.5, "a batch of 6 with 2 labels", general),
        case(*clustered_distances(12, 3, seed=2, spread=2.0), 0.3, "a batch of 12 where many triplets are easy",
             slips["valid"][1]),
        case(clustered_distances(5, 3, seed=3)[0], torch.tensor([0, 1, 0, 0, 2]), 0.5,
             "labels 0, 1, 0, 0, 2 (two labels with a single example)",
             "a label with one example has no positive: it is never an anchor, but it is a negative for others."),
        case(line_distances([0.0, 0.125, 10.0, 10.125]), torch.tensor([0, 0, 1, 1]), 0.5,
             "two clusters far apart (every triplet easy)", "with no active triplet the loss is 0, not NaN."),
        case(line_distances([0.0, 0.1, -0.3]), torch.tensor([0, 0, 1]), 0.2,
             "a triplet whose loss is 2.8e-17, a rounding error", slips["epsilon"][1]),
        case(tight, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5, "points packed closely together", general),
        case(*clustered_distances(24, 4, seed=4), 0.5, "a batch of 24 with 4 labels", general),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchAllTripletLoss, minus its 1e-16 division.")


def check_active_fraction(fn: Callable[[Tensor, Tensor, float], float]) -> bool:
    """``fn(dist, labels, margin)`` returns the share of valid triplets whose loss is above 0, from a (B, B) distance
    matrix and (B,) labels (0.0 if there is no valid triplet)."""
    slips = {"cube": ("the share of all B^3 index triples.",
                      "divide by the number of *valid* triplets (the masked ones), not by B^3."),
             "self": ("it lets an example be its own positive.",
                      "a positive is *another* example with the anchor's label: exclude p == a.")}

    case = partial(number_case, oracle=active_fraction_from_distances, slip_value=_active_fraction_slip, slips=slips,
                   nan_hint="a batch without valid triplets has nothing active: return 0.0 instead of dividing 0 by 0.",
                   rel_tol=1e-9, abs_tol=1e-12)

    return run_checks("check_active_fraction", fn, [
        case(*clustered_distances(9, 3, seed=5), 0.5, "a batch of 9 with 3 labels",
             "count triplets with d(a,p) - d(a,n) + margin > 0 among the valid ones, then divide."),
        case(*clustered_distances(12, 3, seed=6, spread=2.0), 0.2, "a batch where many triplets are easy",
             "easy triplets (loss exactly 0) are valid but not active."),
        case(line_distances([0.0, 0.5, 0.75, 0.25]), torch.tensor([0, 0, 1, 1]), 0.25,
             "a negative exactly at d(a,p) + margin",
             "active means loss > 0: a negative exactly a margin beyond the positive gives loss 0 (easy)."),
        case(*clustered_distances(6, 2, seed=7), 0.0, "margin 0",
             "with margin 0 only the triplets whose negative is strictly nearer than the positive are active."),
        case(clustered_distances(5, 5, seed=8)[0], torch.arange(5), 0.5, "all labels different (no positive)",
             "no valid triplet at all: return 0.0."),
        case(clustered_distances(5, 1, seed=9)[0], torch.zeros(5, dtype=torch.long), 0.5,
             "a single label (no negative)", "no valid triplet at all: return 0.0."),
    ], "That is the active_fraction column of every training history in this series.")
