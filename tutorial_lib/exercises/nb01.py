"""Notebook 01 (the triplet loss): the self-checks of its three exercises.

    check_triplet_loss(fn)      fn(d_ap: tensor, d_an: tensor, margin: float) -> tensor of d_ap's shape
    check_triplet_category(fn)  fn(d_ap: float, d_an: float, margin: float) -> "easy" | "semi-hard" | "hard"
    check_hardest_pair(fn)      fn(dist_row: (B,) tensor, labels: (B,) tensor, anchor: int) -> (positive, negative)

Oracles: the hinge below (waiting for a home in :mod:`tutorial_lib.reference`), :func:`tutorial_lib.reference.
triplet_category`, :func:`tutorial_lib.reference.hardest_positive` and :func:`~tutorial_lib.reference.
hardest_negative`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..reference import CATEGORIES, hardest_negative, hardest_positive, triplet_category, triplet_loss
from .runner import Miss, anchor_rows, as_float64, run_checks, show

__all__ = ["check_hardest_pair", "check_triplet_category", "check_triplet_loss"]


def check_triplet_loss(fn: Callable[[Tensor, Tensor, float], Any]) -> bool:
    """``fn(d_ap, d_an, margin)`` returns ``max(0, d_ap - d_an + margin)`` elementwise, as a tensor of d_ap's shape
    that gradients flow through."""

    def case(d_ap, d_an, margin: float, what: str, hint: str) -> tuple:
        d_ap, d_an = torch.as_tensor(d_ap, dtype=torch.float64), torch.as_tensor(d_an, dtype=torch.float64)

        def run(f):
            got = as_float64(f(d_ap.clone(), d_an.clone(), margin))
            want = triplet_loss(d_ap, d_an, margin)
            if got.shape != want.shape:
                return Miss(f"for {what} it returned shape {tuple(got.shape)}.",
                            "compute one loss per triplet: same shape as d_ap; no sum or mean here.")
            if not torch.allclose(got, want, atol=1e-6):
                shown = f" (d_ap = {show(d_ap)}, d_an = {show(d_an)}, margin = {margin})" if d_ap.numel() == 1 else ""
                return Miss(f"for {what}{shown} it returned {show(got)}.", hint)
            return None

        return what, run, hint

    def gradient(f):
        d_ap = torch.tensor([0.9, 0.2], dtype=torch.float64, requires_grad=True)  # one active, one easy triplet
        d_an = torch.tensor([0.5, 0.9], dtype=torch.float64, requires_grad=True)
        out = f(d_ap, d_an, 0.3)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient (it is not a tensor computed from d_ap and d_an).",
                        "stay with torch operations (no float(), .item() or Python max) so training can "
                        "backpropagate through the loss.")
        out.sum().backward()
        want = torch.autograd.grad(triplet_loss(d_ap, d_an, 0.3).sum(), d_ap)[0]
        if d_ap.grad is None or not torch.allclose(d_ap.grad, want):
            return Miss(f"its gradient with respect to d_ap is {show(d_ap.grad)} for one hard and one easy triplet.",
                        "an easy triplet should pass no gradient at all; an active one a slope of +1 to d_ap.")
        return None

    g = torch.Generator().manual_seed(1)
    many_ap, many_an = torch.rand(64, generator=g) * 2, torch.rand(64, generator=g) * 2
    return run_checks("check_triplet_loss", fn, [
        case(0.8, 0.5, 0.2, "a hard triplet",
             "the loss grows when the positive is far (large d_ap) and the negative is near (small d_an)."),
        case(0.5, 0.6, 0.3, "a semi-hard triplet",
             "the negative is farther than the positive, but by less than the margin: the loss is still positive."),
        case(0.2, 1.0, 0.3, "an easy triplet",
             "once the negative is farther than the positive by at least the margin, the loss is exactly 0, "
             "never negative: clip at zero."),
        case(0.7, 0.7, 0.0, "a tie with margin 0", "with d_ap == d_an and no margin there is nothing to correct."),
        case(many_ap, many_an, 0.25, "64 random triplets at once",
             "it works on single numbers but not elementwise on tensors: use torch operations that act on every "
             "element (Python's max() compares whole objects)."),
        ("the gradient", gradient),
    ], "That hinge is the building block of all four batch losses.")


def check_triplet_category(fn: Callable[[float, float, float], str]) -> bool:
    """``fn(d_ap, d_an, margin)`` names the triplet's category: ``"easy"``, ``"semi-hard"`` or ``"hard"``.

    Spellings like ``"semi_hard"`` or ``"Semi hard"`` are accepted. Ties: ``d_an == d_ap`` is hard (this series'
    convention); ``d_an == d_ap + margin`` is easy (its loss is exactly 0).
    """
    hints = {
        "hard": "hard means the negative is no farther than the positive: d_an <= d_ap (a tie counts as hard).",
        "semi-hard": "semi-hard means farther than the positive, but inside the margin: d_ap < d_an < d_ap + margin.",
        "easy": "easy means the loss is already 0: d_an >= d_ap + margin.",
    }

    def case(d_ap: float, d_an: float, margin: float, what: str) -> tuple:
        def run(f):
            got = f(d_ap, d_an, margin)
            name = str(got).strip().lower().replace("_", "-").replace(" ", "-")
            name = "semi-hard" if name == "semihard" else name
            if name not in CATEGORIES:
                return Miss(f"for {what} it returned {got!r}.", "return one of 'easy', 'semi-hard', 'hard'.")
            want = triplet_category(d_ap, d_an, margin)
            if name != want:
                return Miss(f"for {what} (d_ap = {d_ap}, d_an = {d_an}, margin = {margin}) it returned {got!r}.",
                            hints[want])
            return None

        return what, run

    # Exactly representable numbers, so that the boundary cases are exact in floating point.
    return run_checks("check_triplet_category", fn, [
        case(0.75, 0.5, 0.25, "a negative nearer than the positive"),
        case(0.5, 0.625, 0.25, "a negative just beyond the positive"),
        case(0.25, 1.0, 0.25, "a far negative"),
        case(0.5, 0.5, 0.25, "a tie, d_an == d_ap"),
        case(0.5, 0.75, 0.25, "a negative exactly at d_ap + margin"),
        case(0.5, 0.625, 0.0, "margin 0 and a farther negative"),
        case(1.5, 1.75, 0.5, "a semi-hard triplet at a larger scale"),
    ], "Every mining strategy is a rule about which of these categories to use.")


def check_hardest_pair(fn: Callable[[Tensor, Tensor, int], tuple[int, int]]) -> bool:
    """``fn(dist_row, labels, anchor)`` returns BatchHard's ``(positive, negative)`` indices for one anchor.

    ``dist_row`` (B,) holds the anchor's distances to every example (0 at the anchor itself), ``labels`` (B,). Where
    two candidates are equally far, either index is accepted.
    """

    def case(dist_row: Tensor, labels: Tensor, anchor: int, what: str) -> tuple:
        def run(f):
            got = f(dist_row.clone(), labels.clone(), anchor)
            try:
                p, n = (int(v) for v in got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {got!r}.", "return two indices: (positive, negative).")
            same = labels == labels[anchor]
            if p == anchor:
                return Miss(f"for {what} it picked the anchor itself as its positive.",
                            "a positive is another example with the same label.")
            if not (0 <= p < len(labels)) or not bool(same[p]):
                return Miss(f"for {what} it picked {p} as the positive, which does not share the anchor's label.",
                            "positives share the anchor's label (and are not the anchor).")
            if not (0 <= n < len(labels)) or bool(same[n]):
                return Miss(f"for {what} it picked {n} as the negative, which has the anchor's label.",
                            "negatives are the examples with another label.")
            dist, lab = anchor_rows(dist_row), labels.tolist()
            if dist_row[p] < dist_row[hardest_positive(dist, lab, anchor)]:
                return Miss(f"for {what} it picked positive {p}, but a farther positive exists.",
                            "BatchHard takes the hardest positive: the *farthest* one.")
            if dist_row[n] > dist_row[hardest_negative(dist, lab, anchor)]:
                return Miss(f"for {what} it picked negative {n}, but a nearer negative exists.",
                            "BatchHard takes the hardest negative: the *nearest* one.")
            return None

        return what, run

    g = torch.Generator().manual_seed(2)
    cases = []
    for k, (size, n_labels) in enumerate([(6, 2), (12, 3), (30, 5), (9, 4)]):
        labels = torch.arange(size) % n_labels
        anchor = k % size
        row = pairwise_distances(torch.randn(size, 4, generator=g))[anchor]
        cases.append(case(row, labels, anchor, f"a batch of {size} with {n_labels} labels (anchor {anchor})"))
    return run_checks("check_hardest_pair", fn, cases,
                      "That is exactly the pair BatchHard (and its soft-margin version) uses for each anchor.")
