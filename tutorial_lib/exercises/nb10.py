"""Notebook 10 (unseen labels and label noise): the self-check of its exercise.

    check_recall_within(fn)  fn(embeddings: (N, D) array, labels: (N,) ints) -> float in [0, 1]
    check_flip_labels(fn)    fn(labels: list of N ints, fraction: float, seed: int) -> list of N ints

Oracles: :func:`tutorial_lib.reference.recall_at_1_from_distances` on
:func:`tutorial_lib.distances.cosine_distances` for Recall@1 inside a set (what
``tutorial_lib.evaluation.recall_at_1_within`` computes); for label noise no value-by-value oracle (a learner's
random draws differ from any reference's): the check tests the properties that define it, the ones
:func:`tutorial_lib.experiments.flip_labels` has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..distances import cosine_distances
from ..reference import recall_at_1_from_distances
from .runner import Miss, run_checks

__all__ = ["check_flip_labels", "check_recall_within"]


def check_recall_within(fn: Callable[[np.ndarray, Sequence[int]], Any]) -> bool:
    """``fn(embeddings, labels)`` returns the share of items whose nearest *other* item (cosine) has their label."""

    def case(n: int, dim: int, n_labels: int, seed: int, scale: float, what: str, hint: str,
             lengths: tuple[float, float] = (0.5, 3.0)) -> tuple:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, n_labels, n)
        centres = rng.normal(size=(n_labels, dim))
        embeddings = centres[labels] + scale * rng.normal(size=(n, dim))
        embeddings *= rng.uniform(*lengths, (n, 1)) / np.linalg.norm(embeddings, axis=1, keepdims=True)

        def run(f):
            got = f(embeddings.copy(), labels.copy())
            values = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=float).ravel()
            if values.size != 1:
                return Miss(f"for {what} it returned {values.size} numbers.",
                            "return one number: the mean over the items of 'nearest other item has my label'.")
            value = float(values[0])
            share = recall_at_1_from_distances(cosine_distances(torch.as_tensor(embeddings)), torch.as_tensor(labels))
            return None if abs(value - share) < 1e-9 else Miss(
                f"for {what} it returned {value:.4f}.", hint)

        return what, run

    return run_checks("check_recall_within", fn, [
        case(30, 8, 3, 0, 0.8, "30 unit-length points in 3 noisy groups",
             "an item's nearest neighbour must be another item: exclude the item itself (its distance to itself is 0).",
             lengths=(1.0, 1.0)),
        case(40, 5, 4, 1, 1.5, "40 points of very different lengths",
             "cosine compares directions: normalise every row to length 1 (or use cosine distances) before the "
             "nearest-neighbour search."),
        case(25, 6, 5, 2, 2.0, "25 points in 5 groups, heavily mixed",
             "return the share of items (a number between 0 and 1) whose nearest other item has their label."),
    ], "That is tutorial_lib.evaluation.recall_at_1_within (its mean).")


def check_flip_labels(fn: Callable[[Sequence[int], float, int], Any]) -> bool:
    """``fn(labels, fraction, seed)`` returns a copy of ``labels`` in which ``round(fraction * N)`` positions, chosen
    at random, hold another label of the list; the same seed gives the same result, another seed another."""

    def read(f, labels: list[int], fraction: float, seed: int) -> tuple[np.ndarray | None, Miss | None]:
        got = f(list(labels), fraction, seed)
        try:
            values = np.asarray(list(got))
        except TypeError:
            return None, Miss(f"it returned {type(got).__name__}, not a list of labels.", "return a list of ints.")
        if values.shape != (len(labels),):
            return None, Miss(f"for {len(labels)} labels it returned {values.shape[0] if values.ndim else 0} values.",
                              "return one label per input label, in the same order.")
        return values, None

    def case(labels: list[int], fraction: float, seed: int, what: str) -> tuple:
        def run(f):
            values, miss = read(f, labels, fraction, seed)
            if miss:
                return miss
            original = np.asarray(labels)
            changed = values != original
            wanted = round(fraction * len(labels))
            if changed.sum() != wanted:
                return Miss(f"for {what} it changed {int(changed.sum())} labels.",
                            f"change exactly round(fraction * N) of them ({fraction} of {len(labels)}); each changed "
                            "position must get a label different from its own.")
            if not set(values.tolist()) <= set(original.tolist()):
                return Miss(f"for {what} it returned labels that are not in the list: "
                            f"{sorted(set(values.tolist()) - set(original.tolist()))}.",
                            "draw the new label among the labels that occur in the list.")
            if labels != list(original):
                return Miss(f"for {what} it changed the list it was given.", "work on a copy.")
            return None

        return what, run

    def repeatable(f):
        labels = [i % 5 for i in range(100)]
        first, miss = read(f, labels, 0.3, 4)
        if miss:
            return miss
        again, _ = read(f, labels, 0.3, 4)
        other, _ = read(f, labels, 0.3, 5)
        if not np.array_equal(first, again):
            return Miss("two calls with the same seed gave different labels.",
                        "make one NumPy generator from the seed and draw every random choice from it.")
        if np.array_equal(first, other):
            return Miss("seeds 4 and 5 gave the same labels.", "the positions and new labels must depend on the seed.")
        return None

    def spread(f):
        """Over many seeds, every position gets flipped sometimes and every other label is chosen sometimes."""
        labels = [0, 1, 2, 3] * 5
        flips = np.zeros(len(labels))
        targets = set()
        for seed in range(60):
            values, miss = read(f, labels, 0.25, seed)
            if miss:
                return miss
            flips += values != np.asarray(labels)
            targets |= {(a, b) for a, b in zip(labels, values.tolist()) if a != b}
        if (flips == 0).any():
            return Miss("over 60 seeds some positions were never flipped.",
                        "choose the positions at random among all N, each at most once.")
        if len(targets) < 12:  # 4 labels x 3 other labels each
            return Miss("over 60 seeds some labels were never flipped to some other label.",
                        "choose each new label at random among the labels different from the original one.")
        return None

    return run_checks("check_flip_labels", fn, [
        case([0, 1, 2, 3, 4] * 20, 0.1, 0, "100 labels and 10%"),
        case([0, 1] * 10, 0.2, 1, "two labels (a flipped label has only one choice)"),
        case([3, 3, 7, 7, 9, 9, 9], 0.3, 2, "labels that are not 0..K-1"),
        case([0, 1, 2] * 4, 0.0, 3, "no noise"),
        ("the seed", repeatable),
        ("60 seeds", spread),
    ], "That is tutorial_lib.experiments.flip_labels, on a list instead of a Dataset.")
