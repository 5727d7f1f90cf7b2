"""Notebook 00 (start here): the self-check of the warm-up exercise.

    check_euclidean_distance(fn)    fn(u: (D,) tensor, v: (D,) tensor) -> 0-dim tensor, the euclidean distance

Oracle: :func:`tutorial_lib.reference.distance_between`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..reference import distance_between
from .runner import Miss, as_float64, run_checks, show

__all__ = ["check_euclidean_distance"]


def check_euclidean_distance(fn: Callable[[Tensor, Tensor], Any]) -> bool:
    """Warm-up: ``fn(u, v)`` returns the euclidean distance between two (D,) vectors, as one number."""

    def case(u: Tensor, v: Tensor, what: str, hint: str) -> tuple:
        def run(f):
            got = as_float64(f(u.clone(), v.clone()))
            if got.numel() != 1:
                return Miss(f"for {what} it returned {got.numel()} numbers.", "a distance is one number.")
            want = float(distance_between(u.double(), v.double()))
            if not math.isclose(got.item(), want, rel_tol=1e-4, abs_tol=1e-6):
                return Miss(f"for {what} it returned {show(got)}.", hint)
            return None

        return what, run

    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(384, generator=g), torch.randn(384, generator=g)
    return run_checks("check_euclidean_distance", fn, [
        case(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]), "u = (0, 0), v = (3, 4)",
             "square the differences, add them up, take the square root (Pythagoras)."),
        case(u, v, "two random 384-dimensional vectors", "use every coordinate, not only the first two."),
        case(u, u.clone(), "a vector and itself", "a point is at distance 0 from itself."),
    ], "This is the d(a, p) and d(a, n) of every triplet.")
