"""Is a difference real? Paired bootstrap intervals over test questions and seeds (notebooks 07 and 10).

Two models answer the same test questions. Their accuracies differ by some amount; how much of that would survive
another draw of test questions, or another training seed? The paired bootstrap answers by resampling: draw the
test questions with replacement (the *same* draw for both models: that is the pairing, which cancels the questions
both find easy or hard), draw each model's seeds with replacement, and recompute the difference of the mean
accuracies; repeated ``n_boot`` times, the middle 95% of those differences is the interval. A difference whose
interval excludes 0 is called real; one whose interval contains 0 is not distinguishable from noise with this many
questions and seeds (it may still be real).

Why not the spread over seeds alone: with 210 test questions one question is 0.0048 of accuracy, and the binomial
standard error of an accuracy of 0.95 is about 0.015, larger than the seed-to-seed spread of a short fine-tuning.

Public API::

    paired_bootstrap(correct_a, correct_b, n_boot=2000, seed=0, level=0.95) -> Interval(diff, low, high)
    Interval.excludes_zero                                               -> bool

Imports numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

N_BOOT = 2000
"""Bootstrap draws: enough for the 2.5% and 97.5% percentiles to be stable to about 0.002 here."""


class Interval(NamedTuple):
    """A difference of mean accuracies (a - b) and its bootstrap interval."""

    diff: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0: the difference is beyond noise."""
        return self.low > 0 or self.high < 0


def _as_runs(correct) -> np.ndarray:
    array = np.asarray(correct, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"expected (questions,) or (runs, questions) 0/1 values; got shape {array.shape}")
    return array


def paired_bootstrap(correct_a, correct_b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Interval:
    """The difference of mean accuracies of a and b, with a paired bootstrap interval.

    Args:
        correct_a: (Q,) or (runs_a, Q) array, 1 where a run of model a answered test question q correctly.
        correct_b: (Q,) or (runs_b, Q), the same Q questions in the same order.
        n_boot: bootstrap draws.
        seed: seed of ``numpy.random.default_rng``.
        level: the interval's coverage (0.95: the 2.5% and 97.5% percentiles).

    Returns:
        ``Interval(diff, low, high)``: ``diff`` is mean accuracy of a minus that of b (over all runs and
        questions); ``low``/``high`` the percentile interval. Questions are resampled jointly for a and b; runs
        (seeds) independently for each model, and jointly when both have the same number of runs (seed i of a
        and seed i of b saw the same batches).
    """
    a, b = _as_runs(correct_a), _as_runs(correct_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must answer the same questions; got {a.shape[1]} and {b.shape[1]}")
    rng = np.random.default_rng(seed)
    questions = a.shape[1]
    paired_runs = a.shape[0] == b.shape[0]
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        q = rng.integers(0, questions, questions)  # the same questions for both models: the pairing
        runs_a = rng.integers(0, a.shape[0], a.shape[0])
        runs_b = runs_a if paired_runs else rng.integers(0, b.shape[0], b.shape[0])
        diffs[i] = a[np.ix_(runs_a, q)].mean() - b[np.ix_(runs_b, q)].mean()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(float(a.mean() - b.mean()), float(low), float(high))
