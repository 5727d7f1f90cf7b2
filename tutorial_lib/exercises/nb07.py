"""Notebook 07 (comparing the strategies): the self-checks of its exercises.

    check_bootstrap_interval(fn)  fn(correct_a: (Q,) 0/1 array, correct_b: (Q,) 0/1 array, n_boot: int, seed: int)
                                  -> (low, high), the 95% paired bootstrap interval of mean(a) - mean(b)
    check_offline_triplets(fn)    fn(labels: list of N ints, seed: int) -> (T, 3) indices (anchor, positive, negative)

Oracles: :func:`tutorial_lib.bootstrap.paired_bootstrap`. A learner's random draws differ from the oracle's, so the
interval is judged by its properties (identical models give (0, 0); the interval holds the observed difference,
excludes 0 for a clearly better model and includes it for a 2-question difference) and by endpoints within
:data:`TOLERANCE` of the oracle's. The offline triplets are judged by their properties only (any seeded draw is right).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..bootstrap import N_BOOT, paired_bootstrap
from .runner import Miss, as_float64, run_checks

__all__ = ["TOLERANCE", "check_bootstrap_interval", "check_offline_triplets"]

TOLERANCE = 0.02
"""How far a learner's endpoints may be from the oracle's. Another stream of 2000 draws moves an endpoint of the
hidden cases by at most 0.0074 (measured over 300 streams): a right answer passes whatever its draws."""

_PAIRING = ("resample the *same* question indices for both models in each round: the pairing is what cancels the "
            "questions both models find easy (or hard).")


def _answers(questions: int, right_a: int, right_b: int, shared: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) int64 0/1 answers of two models: ``right_a`` and ``right_b`` correct, ``shared`` of them the same
    questions (``shared <= min(right_a, right_b)``), in a shuffled order."""
    order = np.random.default_rng(seed).permutation(questions)
    a, b = np.zeros(questions, dtype=np.int64), np.zeros(questions, dtype=np.int64)
    a[order[:right_a]] = 1
    b[order[:shared]] = 1
    b[order[right_a:right_a + right_b - shared]] = 1
    return a, b


def _endpoints(got: Any, what: str) -> tuple[tuple[float, float] | None, Miss | None]:
    """The learner's interval as two finite floats ``(low, high)``, or why it is not one."""
    try:
        values = as_float64(got).flatten().tolist()
    except (TypeError, ValueError, RuntimeError):
        return None, Miss(f"for {what} it returned {got!r}.", "return two numbers: (low, high).")
    if len(values) != 2:
        return None, Miss(f"for {what} it returned {len(values)} number{'' if len(values) == 1 else 's'}.",
                          "return the two endpoints of the interval, (low, high), and nothing else.")
    low, high = values
    if not (np.isfinite(low) and np.isfinite(high)):
        return None, Miss(f"for {what} it returned ({low}, {high}).", "every resampled difference is a difference "
                          "of two means of 0/1 values: check for an empty selection or a division by 0.")
    if low > high:
        return None, Miss(f"for {what} it returned ({low:.4f}, {high:.4f}), the larger endpoint first.",
                          "return (low, high): the 2.5th percentile first.")
    return (low, high), None


def check_bootstrap_interval(fn: Callable[[np.ndarray, np.ndarray, int, int], Any]) -> bool:
    """``fn(correct_a, correct_b, n_boot, seed)`` returns ``(low, high)``, the 95% paired bootstrap interval of the
    difference of accuracies ``mean(correct_a) - mean(correct_b)`` of two models on the same Q test questions.

    ``correct_a``, ``correct_b``: (Q,) int 0/1 arrays, question q in position q of both. Each of ``n_boot`` rounds
    draws Q question indices with replacement (the same indices for both models) and records the difference of the
    two means; the interval is the 2.5th and 97.5th percentiles of those differences.
    """

    def case(a: np.ndarray, b: np.ndarray, seed: int, what: str, claim: str, hint: str) -> tuple:
        def run(f):
            ends, miss = _endpoints(f(a.copy(), b.copy(), N_BOOT, seed), what)
            if miss:
                return miss
            low, high = ends
            shown = f"({low:.4f}, {high:.4f})"
            if claim == "zero":  # identical answers: every resampled difference is exactly 0
                if abs(low) <= 1e-12 and abs(high) <= 1e-12:
                    return None
                return Miss(f"for {what} it returned {shown}.", _PAIRING if high > low else hint)
            want = paired_bootstrap(a, b, N_BOOT, seed)
            holds = low <= want.diff <= high
            claim_ok = {"contains": holds, "excludes": low > 0 or high < 0, "includes": low <= 0 <= high}[claim]
            if claim_ok and abs(low - want.low) <= TOLERANCE and abs(high - want.high) <= TOLERANCE:
                return None
            width, want_width = high - low, want.high - want.low
            if (not holds and low <= -want.diff <= high
                    and abs(low + want.high) <= TOLERANCE and abs(high + want.low) <= TOLERANCE):
                return Miss(f"for {what} it returned {shown}, the interval of the opposite difference.",
                            "the difference is mean(correct_a) - mean(correct_b), a minus b.")
            if width > 1.5 * want_width + TOLERANCE:
                return Miss(f"for {what} it returned {shown}, much wider than a paired interval.", _PAIRING)
            if not holds:
                return Miss(f"for {what} it returned {shown}, which does not hold the observed difference.",
                            "np.percentile takes percents (2.5 and 97.5); np.quantile takes fractions.")
            if width < 0.75 * want_width:
                return Miss(f"for {what} it returned {shown}, narrower than a 95% interval.",
                            "cut 2.5% of the resampled differences off each end: the 2.5th and 97.5th percentiles.")
            if not claim_ok:
                return Miss(f"for {what} it returned {shown}, which {'excludes' if claim == 'includes' else 'includes'}"
                            " 0.", hint)
            return Miss(f"for {what} it returned {shown}: an endpoint is more than {TOLERANCE} away from a paired "
                        "bootstrap's.", hint)

        return what, run, hint

    def seeded(f):
        # Few draws on many questions: endpoints that rarely sit on the same value twice, unless the draws repeat.
        a, b = _answers(2000, 1000, 1000, 500, seed=6)
        first, *again = (as_float64(f(a.copy(), b.copy(), 50, 3)) for _ in range(3))
        if not all(torch.equal(first, other) for other in again):
            return Miss("calls with the same seed gave different intervals.", "create one random generator "
                        "from the seed (numpy.random.default_rng) and make every draw from it.")
        return None

    general = ("each round: draw Q question indices with replacement, take both models' answers at those indices, "
               "record mean(a) - mean(b); then the 2.5th and 97.5th percentiles of the recorded differences.")
    return run_checks("check_bootstrap_interval", fn, [
        case(*_answers(300, 183, 177, 174, seed=0), 0, "two models that agree on all but 12 of 300 questions",
             "contains", _PAIRING),
        case(*_answers(210, 189, 189, 189, seed=1), 1, "two models with identical answers", "zero",
             "with identical answers every resampled difference is 0, so is the interval."),
        case(*_answers(400, 388, 320, 312, seed=2), 2, "a clearly better model (0.97 against 0.80 on 400 questions)",
             "excludes", general),
        case(*_answers(210, 190, 188, 188, seed=3), 3, "two models that differ on 2 of 210 questions", "includes",
             general),
        case(*_answers(210, 193, 181, 178, seed=4), 4, "two ordinary models on 210 questions", "contains", general),
        case(*_answers(150, 105, 120, 90, seed=5), 5, "a model worse than the other", "contains", general),
        ("the seed", seeded),
    ], "Call a difference real when this interval excludes 0, and say 'not distinguishable from noise' otherwise.")


def check_offline_triplets(fn: Callable[[Sequence[int], int], Any]) -> bool:
    """``fn(labels, seed)`` draws fixed random triplets for N labels: (T, 3) rows ``(anchor, positive, negative)``.

    One row per example that can be an anchor (its label has another example, and another label exists), each such
    example exactly once as the anchor; the positive shares its label (and is another example), the negative has
    another label; the same seed gives the same rows, other seeds give other rows.
    """

    def rows_of(f, labels: list[int], seed: int) -> tuple[np.ndarray | None, Miss | None]:
        got = f(list(labels), seed)
        try:
            rows = np.asarray(got.detach().cpu() if isinstance(got, Tensor) else got)
        except (TypeError, ValueError):
            return None, Miss(f"it returned {type(got).__name__}, not rows of indices.",
                              "return a (T, 3) array (or list of lists) of integer indices.")
        if rows.size == 0:  # no triplet at all: an empty list is as good as a (0, 3) array
            rows = rows.reshape(0, 3).astype(np.int64)
        if rows.ndim != 2 or rows.shape[1] != 3:
            return None, Miss(f"it returned shape {rows.shape}.", "one row per triplet, three columns: "
                              "anchor, positive, negative (shape (T, 3)).")
        if not np.issubdtype(rows.dtype, np.integer):
            return None, Miss(f"it returned values of dtype {rows.dtype}.", "return indices (integers), not texts "
                              "or distances.")
        return rows, None

    def valid(labels: list[int], what: str) -> tuple:
        def run(f):
            rows, miss = rows_of(f, labels, 0)
            if miss:
                return miss
            lab = np.asarray(labels)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(lab)):
                return Miss(f"for {what} some indices are out of range.", "indices go from 0 to len(labels) - 1.")
            counts = {label: int((lab == label).sum()) for label in set(labels)}
            eligible = sorted(i for i, label in enumerate(labels) if counts[label] >= 2 and len(counts) >= 2)
            a, p, n = rows.T
            if sorted(a.tolist()) != eligible:
                return Miss(f"for {what} it returned {len(rows)} rows whose anchors are not each usable example "
                            "exactly once.", "one triplet per anchor: every example whose label has at least one "
                            "other example (and when another label exists) is an anchor once.")
            if (p == a).any():
                return Miss(f"for {what} an anchor is its own positive.", "the positive is *another* example with "
                            "the anchor's label.")
            if (lab[p] != lab[a]).any():
                return Miss(f"for {what} a positive has another label than its anchor.",
                            "draw the positive among the other examples of the anchor's label.")
            if (lab[n] == lab[a]).any():
                return Miss(f"for {what} a negative has the anchor's label.",
                            "draw the negative among the examples of the other labels.")
            return None

        return what, run

    def seeded(f):
        labels = [i % 4 for i in range(40)]
        first, miss = rows_of(f, labels, 7)
        if miss:
            return miss
        again, _ = rows_of(f, labels, 7)
        other, _ = rows_of(f, labels, 8)
        if again is None or not np.array_equal(first, again):
            return Miss("two calls with the same seed gave different rows.", "create one random generator "
                        "from the seed (numpy.random.default_rng) and make every draw from it.")
        if other is not None and np.array_equal(first, other):
            return Miss("seeds 7 and 8 gave the same rows.", "the positives and negatives should be random draws "
                        "that depend on the seed, not a fixed choice such as the first candidate.")
        return None

    return run_checks("check_offline_triplets", fn, [
        valid([0, 0, 1, 1], "two labels with two examples each"),
        valid([2, 0, 1, 0, 2, 1, 0, 2], "three labels in mixed order"),
        valid([0, 0, 0, 1], "a label with a single example (it cannot be an anchor, only a negative)"),
        valid([5, 5, 5], "a single label (no negative exists)"),
        ("the seed", seeded),
    ], "These rows are fixed before training: as the model improves, most of them turn easy and stop teaching.")
