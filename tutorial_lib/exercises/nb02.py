"""Notebook 02 (batches, distances, masks): the self-checks of its exercises.

    check_pairwise_distances(fn)    fn(embeddings: (B, D) tensor) -> (B, B) euclidean distances, safe to backpropagate
    check_positive_mask(fn)         fn(labels: (B,) tensor) -> (B, B) bool, same label and a != p
    check_negative_mask(fn)         fn(labels: (B,) tensor) -> (B, B) bool, another label
    check_triplet_mask(fn)          fn(labels: (B,) tensor) -> (B, B, B) bool, valid triplets (a, p, n)
    check_count_valid_triplets(fn)  fn(labels: (B,) tensor) -> int, the number of valid triplets

Oracles: :func:`tutorial_lib.distances.pairwise_distances` and the masks of :mod:`tutorial_lib.masks`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..masks import anchor_negative_mask, anchor_positive_mask, triplet_mask
from .runner import Miss, as_mask, as_whole_number, run_checks

__all__ = [
    "check_count_valid_triplets",
    "check_negative_mask",
    "check_pairwise_distances",
    "check_positive_mask",
    "check_triplet_mask",
]


def check_pairwise_distances(fn: Callable[[Tensor], Tensor]) -> bool:
    """``fn(embeddings)`` returns the (B, B) euclidean distances of (B, D) embeddings: right values, no NaN for
    near-duplicate points, and a finite gradient (also on the diagonal, where the distance is 0)."""

    def values(embeddings: Tensor, what: str, hint: str, atol: float = 1e-4) -> tuple:
        def run(f):
            got = f(embeddings.clone())
            if not isinstance(got, Tensor):
                return Miss(f"for {what} it returned a {type(got).__name__}.", "return a torch tensor.")
            b = embeddings.shape[0]
            if tuple(got.shape) != (b, b):
                return Miss(f"for {what} ({b} embeddings) it returned shape {tuple(got.shape)}.",
                            "one distance per pair of rows: shape (B, B).")
            if torch.isnan(got).any():
                return Miss(f"for {what} some distances are NaN.", hint)
            want = pairwise_distances(embeddings.double())
            if not torch.allclose(got.double(), want, atol=atol, rtol=1e-4):
                return Miss(f"for {what} some distances are off (largest error "
                            f"{(got.double() - want).abs().max().item():.3g}).", hint)
            return None

        return what, run, hint

    def gradient(f):
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
        d = f(x)
        if not d.requires_grad:
            return Miss("its result carries no gradient.", "build it from torch operations on the embeddings.")
        d.sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            return Miss("the values are right, but the gradient contains NaN or inf.",
                        "the derivative of sqrt at 0 is infinite, and every diagonal entry is 0: see the "
                        "section on the second numerical trap.")
        return None

    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=g) + 20  # far from the origin: large norms, tiny differences
    near_duplicates = torch.cat([base, base + 1e-3 * torch.randn(6, 8, generator=g)])  # the Gram trick rounds < 0
    return run_checks("check_pairwise_distances", fn, [
        values(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]), "three 2-D points",
               "||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, then a square root."),
        values(torch.randn(16, 32, generator=g), "16 random 32-dimensional embeddings",
               "check the broadcasting: row norms as a column plus row norms as a row."),
        values(near_duplicates, "a batch where every point has a near-duplicate",
               "rounding can make a squared distance slightly negative, and sqrt of a negative number is NaN: "
               "clamp at 0 first.", atol=5e-2),
        ("the gradient", gradient),
    ], "Every loss of the series starts from this matrix.")


def _check_mask(name: str, fn: Callable, oracle: Callable[[Tensor], Tensor], hints: dict[str, str],
                success: str) -> bool:
    """The mask checks share their hidden labels; ``hints`` has one entry per kind of batch."""

    def case(labels: Tensor, what: str, hint_key: str) -> tuple:
        def run(f):
            want = oracle(labels)
            got, miss = as_mask(f(labels.clone()), tuple(want.shape), what)
            if miss:
                return miss
            if not torch.equal(got, want):
                wrong = torch.nonzero(got != want)[0].tolist()
                index = ", ".join(str(i) for i in wrong)
                return Miss(f"for labels {labels.tolist()} your mask[{index}] is {bool(got[tuple(wrong)])}.",
                            hints[hint_key])
            return None

        return what, run

    g = torch.Generator().manual_seed(5)
    return run_checks(name, fn, [
        case(torch.tensor([0, 0, 1]), "three examples, two labels", "small"),
        case(torch.tensor([2, 1, 2, 0, 1, 2]), "six examples in mixed order", "order"),
        case(torch.tensor([0, 1, 2, 3]), "all labels different", "singletons"),
        case(torch.tensor([1, 1, 1, 1]), "a single label", "one_label"),
        case(torch.randint(0, 4, (17,), generator=g), "17 random labels", "order"),
    ], success)


def check_positive_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """``fn(labels)`` returns the (B, B) bool mask of anchor-positive pairs: same label, a != p."""
    hints = {
        "small": "mask[a, p] is True when a and p share a label and are different examples; "
                 "an example is never its own positive.",
        "order": "compare labels, not positions: examples of one label need not be next to each other.",
        "singletons": "an example whose label nobody else has has no positive at all.",
        "one_label": "with one label every pair of *different* examples is a positive pair.",
    }
    return _check_mask("check_positive_mask", fn, anchor_positive_mask, hints,
                       "This is the mask BatchAll and BatchHard use to find positives.")


def check_negative_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """``fn(labels)`` returns the (B, B) bool mask of anchor-negative pairs: different labels."""
    hints = {
        "small": "mask[a, n] is True exactly when the labels of a and n differ.",
        "order": "compare labels, not positions: examples of one label need not be next to each other.",
        "singletons": "with all labels different, every pair of different examples is a negative pair.",
        "one_label": "with a single label there is no negative anywhere.",
    }
    return _check_mask("check_negative_mask", fn, anchor_negative_mask, hints,
                       "No need to exclude the diagonal: an example always shares its own label.")


def check_triplet_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """``fn(labels)`` returns the (B, B, B) bool mask of valid triplets (a, p, n)."""
    hints = {
        "small": "mask[a, p, n] needs three things: a != p, labels[a] == labels[p], labels[n] != labels[a].",
        "order": "combine a (B, B, 1) positive mask with a (B, 1, B) negative mask by broadcasting.",
        "singletons": "with all labels different no anchor has a positive: no valid triplet.",
        "one_label": "with a single label there is no negative: no valid triplet.",
    }
    return _check_mask("check_triplet_mask", fn, triplet_mask, hints,
                       "Beware its size: B^3 booleans, 1 GB at B = 1024.")


def check_count_valid_triplets(fn: Callable[[Tensor], int]) -> bool:
    """``fn(labels)`` returns the number of valid triplets of a (B,) batch (an int, or a 0-dim tensor)."""
    hint = ("for a label with n_c examples: n_c choices of anchor, n_c - 1 of positive, and B - n_c of negative; "
            "add this up over the labels.")

    def case(labels: Tensor, what: str) -> tuple:
        def run(f):
            value, miss = as_whole_number(f(labels.clone()), what, hint)
            if miss:
                return miss
            if value != int(triplet_mask(labels).sum()):
                return Miss(f"for labels {labels.tolist()} it returned {value}.", hint)
            return None

        return what, run

    g = torch.Generator().manual_seed(6)
    return run_checks("check_count_valid_triplets", fn, [
        case(torch.tensor([0, 0, 1, 1]), "two labels with two examples each"),
        case(torch.tensor([0, 0, 0, 1]), "an unbalanced batch"),
        case(torch.tensor([0, 1, 2, 3]), "all labels different"),
        case(torch.tensor([5, 5, 5]), "a single label"),
        case(torch.randint(0, 6, (40,), generator=g), "40 random labels"),
    ], "BatchAll averages over (the active part of) exactly these triplets.")
