"""Notebook 05 (BatchSemiHard): the self-checks of its exercises.

    check_semi_hard_negative(fn)  fn(dist_row: (B,) tensor, labels: (B,) tensor, anchor: int, positive: int) -> int
    check_fallback_rate(fn)       fn(dist: (B, B) tensor, labels: (B,) tensor) -> float in [0, 1]
    check_semi_hard_loss(fn)      fn(dist: (B, B) tensor, labels: (B,) tensor, margin: float) -> 0-dim tensor

Oracles: :func:`tutorial_lib.reference.semi_hard_negative` (the pick, and whether it fell back) and
:func:`tutorial_lib.reference.batch_semi_hard_from_distances` (value and gradient).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..reference import batch_semi_hard_from_distances, semi_hard_negative
from .runner import (
    Miss,
    anchor_rows,
    as_number,
    either,
    gradient_miss,
    line_distances,
    matching_slips,
    run_checks,
    show,
)

__all__ = ["check_fallback_rate", "check_semi_hard_loss", "check_semi_hard_negative"]


def _pairs(labels: list[int]) -> list[tuple[int, int]]:
    """Every anchor-positive pair (a, p) of the batch: a != p, same label; anchors in order."""
    return [(a, p) for a in range(len(labels)) for p in range(len(labels)) if p != a and labels[p] == labels[a]]


def _non_strict_slip(dist: Tensor, labels: list[int], a: int, p: int) -> tuple[int, bool]:
    """The usual slip of the semi-hard pick, a negative at exactly d(a, p) taken as farther: (negative, fell back)."""
    negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
    beyond = [n for n in negatives if dist[a, n] >= dist[a, p]]
    if beyond:
        return min(beyond, key=lambda n: float(dist[a, n])), False
    return max(negatives, key=lambda n: float(dist[a, n])), True


def check_semi_hard_negative(fn: Callable[[Tensor, Tensor, int, int], int]) -> bool:
    """``fn(dist_row, labels, anchor, positive)`` returns the index of BatchSemiHard's negative for the pair (a, p).

    ``dist_row`` (B,) holds the anchor's distances to every example (0 at the anchor itself). The rule: the nearest
    negative strictly farther than the positive; if there is none, the farthest negative. Where several negatives
    are equally far, any of them is accepted.
    """
    hints = {
        "beyond": "the semi-hard negative is farther from the anchor than the positive; among those, take the "
                  "nearest one.",
        "nearest": "of the negatives farther than the positive, take the *nearest* (the hardest that is not hard).",
        "tie": "'farther' is strict: a negative at exactly the positive's distance is hard, not semi-hard.",
        "fallback": "when no negative is farther than the positive, the rule falls back to the *farthest* negative.",
        "negatives": "candidates are the negatives only: examples with another label than the anchor.",
        "random": "compare distances to the anchor (the row), and labels with the anchor's label.",
    }

    def case(dist_row: Tensor, labels: Tensor, anchor: int, positive: int, what: str, hint_key: str) -> tuple:
        def run(f):
            got = f(dist_row.clone(), labels.clone(), anchor, positive)
            if isinstance(got, float) or (isinstance(got, Tensor) and got.is_floating_point()):
                return Miss(f"for {what} it returned {show(got)}, a float.",
                            "return the index (an integer position in the batch) of the negative, not its distance.")
            try:
                n = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {got!r}.", "return one index: the position of the negative.")
            if not 0 <= n < len(labels):
                return Miss(f"for {what} it returned {n}, which is not a position in the batch.", hints[hint_key])
            if bool(labels[n] == labels[anchor]):
                return Miss(f"for {what} it returned {n}, which has the anchor's label.", hints["negatives"])
            want, _ = semi_hard_negative(anchor_rows(dist_row), labels.tolist(), anchor, positive)
            if float(dist_row[n]) != float(dist_row[want]):  # compared by distance: any of tied negatives is right
                return Miss(f"for {what} it picked negative {n} (at distance {float(dist_row[n]):.4g}; the "
                            f"positive is at {float(dist_row[positive]):.4g}).", hints[hint_key])
            return None

        return what, run, hints[hint_key]

    g = torch.Generator().manual_seed(7)
    cases = [
        case(torch.tensor([0.0, 0.5, 0.25, 0.75, 1.0]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "a batch with negatives on both sides of the positive", "beyond"),
        case(torch.tensor([0.0, 0.5, 1.5, 0.25, 0.75]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "two negatives beyond the positive", "nearest"),
        case(torch.tensor([0.0, 0.5, 0.5, 0.625, 1.0]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "a negative at exactly the positive's distance", "tie"),
        case(torch.tensor([0.0, 1.5, 0.25, 1.0, 0.5]), torch.tensor([0, 0, 1, 1, 2]), 0, 1,
             "a positive farther than every negative", "fallback"),
        case(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]), torch.tensor([0, 0, 0, 1, 1]), 0, 1,
             "another positive just beyond the positive", "negatives"),
    ]
    for size, n_labels, anchor, positive in [(12, 3, 1, 4), (20, 4, 6, 10), (30, 5, 3, 13)]:
        row = pairwise_distances(torch.randn(size, 6, generator=g))[anchor]
        cases.append(case(row, torch.arange(size) % n_labels, anchor, positive,
                          f"a random batch of {size} with {n_labels} labels (anchor {anchor}, positive {positive})",
                          "random"))
    return run_checks("check_semi_hard_negative", fn, cases,
                      "That is FaceNet's rule, and TensorFlow's and sentence-transformers': one negative per pair.")


def check_fallback_rate(fn: Callable[[Tensor, Tensor], float]) -> bool:
    """``fn(dist, labels)`` returns the share of anchor-positive pairs for which BatchSemiHard falls back: no negative
    is strictly farther from the anchor than the positive. ``dist`` (B, B), ``labels`` (B,) with at least two labels;
    the answer is a number in [0, 1] (a 0-dim tensor is fine)."""
    hints = {
        "plain": "for each anchor-positive pair, ask: is any negative strictly farther from the anchor than the "
                 "positive? The rate is the share of pairs where none is.",
        "tie": "'farther' is strict: a negative at exactly the positive's distance does not prevent the fallback.",
        "anchor": "count anchor-positive pairs, not anchors: an anchor with three positives contributes three pairs.",
        "count": "return a share (between 0 and 1): divide by the number of anchor-positive pairs.",
        "singleton": "an anchor whose label appears once has no positive, hence no pair: it counts neither way.",
        "random": "one yes/no per anchor-positive pair, then the mean over pairs.",
    }

    def case(dist: Tensor, labels: Tensor, what: str, hint_key: str) -> tuple:
        lab = labels.tolist()
        pairs = _pairs(lab)
        fell = [semi_hard_negative(dist, lab, a, p)[1] for a, p in pairs]
        want = sum(fell) / len(pairs)
        anchors = sorted({a for a, _ in pairs})
        slips = {
            "count": float(sum(fell)),
            "tie": sum(_non_strict_slip(dist, lab, a, p)[1] for a, p in pairs) / len(pairs),
            "anchor": sum(any(f for (a, _), f in zip(pairs, fell) if a == anchor) for anchor in anchors) / len(anchors),
        }

        def run(f):
            value, miss = as_number(f(dist.clone(), labels.clone()), what)
            if miss:
                return miss
            if math.isclose(float(value), want, rel_tol=1e-6, abs_tol=1e-9):
                return None
            keys = matching_slips(float(value), want, slips) or [hint_key]
            return Miss(f"for {what} it returned {float(value):.4g}.", either([hints[key] for key in keys]))

        return what, run, hints[hint_key]

    g = torch.Generator().manual_seed(13)
    return run_checks("check_fallback_rate", fn, [
        case(line_distances([0.0, 3.0, 1.0, 1.5]), torch.tensor([0, 0, 1, 1]), "four points on a line", "plain"),
        case(line_distances([0.0, 1.0, 2.0, -1.0, 1.5]), torch.tensor([0, 0, 0, 1, 1]),
             "an anchor with two positives", "anchor"),
        case(line_distances([0.0, 1.0, -1.0, 0.25]), torch.tensor([0, 0, 1, 1]),
             "a negative at exactly the positive's distance", "tie"),
        case(line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]),
             "a batch with a label that appears once", "singleton"),
        case(pairwise_distances(torch.randn(24, 3, generator=g)), torch.arange(24) % 4,
             "a random batch of 24 with 4 labels", "random"),
    ], "That is the semi_hard_fallback_rate that tutorial_lib logs at every training step.")


def _semi_hard_slips(dist: Tensor, labels: Tensor, margin: float) -> dict[str, float]:
    """BatchSemiHard's value under each usual slip, to name the learner's (never the right loss): a non-strict
    "farther" (``"tie"``), pairs without a farther negative skipped (``"fallback"``), the mean over anchors
    (``"singleton"``) or over active pairs only (``"easy"``). The batch has at least two labels."""
    lab = labels.tolist()
    pairs = _pairs(lab)

    def hinge(a: int, p: int, n: int) -> float:
        return max(0.0, float(dist[a, p] - dist[a, n]) + margin)

    picks = [semi_hard_negative(dist, lab, a, p) for a, p in pairs]
    terms = [hinge(a, p, n) for (a, p), (n, _) in zip(pairs, picks)]
    kept = [t for t, (_, fell) in zip(terms, picks) if not fell]
    loose = [hinge(a, p, _non_strict_slip(dist, lab, a, p)[0]) for a, p in pairs]
    return {"tie": sum(loose) / len(loose), "fallback": sum(kept) / max(len(kept), 1),
            "singleton": sum(terms) / len(lab), "easy": sum(terms) / max(sum(t > 0 for t in terms), 1)}


def check_semi_hard_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """``fn(dist, labels, margin)`` returns BatchSemiHard's loss from a (B, B) distance matrix and (B,) labels.

    Mean over every anchor-positive pair (a, p) of ``max(0, d(a,p) - d(a,n*) + margin)``, n* the pair's semi-hard
    negative (with the fallback). The batches have at least two labels.
    """
    hints = {
        "plain": "for every anchor-positive pair: its semi-hard negative, the hinge with the margin, then the mean.",
        "fallback": "a pair whose positive is farther than every negative still counts: it uses the farthest "
                    "negative (the fallback), and its loss is at least the margin.",
        "singleton": "average over anchor-positive pairs, not over anchors: an anchor whose label appears once has "
                     "no pair and adds nothing, neither to the sum nor to the count.",
        "easy": "divide by the number of *all* anchor-positive pairs, including those whose loss is 0 (BatchAll "
                "divides by the active ones; this loss does not).",
        "tie": "a negative at exactly the positive's distance is not 'farther': it cannot be the semi-hard negative.",
        "random": "check each step on a small batch by hand: pairs, their negative, the hinge, the mean.",
    }

    def case(dist: Tensor, labels: Tensor, margin: float, what: str, hint_key: str) -> tuple:
        def run(f):
            value, miss = as_number(f(dist.clone(), labels.clone(), margin), what)
            if miss:
                return miss
            want = float(batch_semi_hard_from_distances(dist, labels, margin))
            if math.isclose(float(value), want, rel_tol=1e-5, abs_tol=1e-6):
                return None
            keys = matching_slips(float(value), want, _semi_hard_slips(dist, labels, margin)) or [hint_key]
            return Miss(f"for {what} (margin {margin}) it returned {float(value):.4f}.",
                        either([hints[key] for key in keys]))

        return what, run, hints[hint_key]

    def gradient(f):
        points = torch.randn(10, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        return gradient_miss(
            f, batch_semi_hard_from_distances, pairwise_distances(points), torch.arange(10) % 3, 0.5,
            no_gradient="stay with torch operations on dist (no float() or .item() on the way) so training can "
                        "backpropagate through the loss.",
            wrong_gradient="each active pair should pass +1/(number of pairs) to d(a, p) and the opposite to "
                           "d(a, n*); nothing else should depend on dist.")

    random_points = torch.randn(16, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    return run_checks("check_semi_hard_loss", fn, [
        case(line_distances([0.0, 0.25, 1.0, 1.5, 0.625, 2.25]), torch.tensor([0, 0, 1, 1, 2, 2]), 0.5,
             "six points on a line", "plain"),
        case(line_distances([0.0, 3.0, 1.0, 1.5]), torch.tensor([0, 0, 1, 1]), 0.25,
             "a pair whose positive is farther than every negative", "fallback"),
        case(line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]), 0.75,
             "a batch with a label that appears once", "singleton"),
        case(line_distances([0.0, 0.25, 4.0, 4.5, 0.625]), torch.tensor([0, 0, 1, 1, 2]), 0.5,
             "a batch where some pairs are already easy", "easy"),
        case(line_distances([0.0, 1.0, -1.0, 2.0]), torch.tensor([0, 0, 1, 1]), 0.5,
             "a negative at exactly the positive's distance", "tie"),
        case(pairwise_distances(random_points), torch.arange(16) % 4, 0.3, "a random batch of 16 with 4 labels",
             "random"),
        ("the gradient", gradient),
    ], "That is the loss sentence-transformers' BatchSemiHardTripletLoss computes from its distance matrix.")
