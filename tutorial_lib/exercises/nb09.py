"""Notebook 09 (your own data): the self-checks of its exercises.

    check_group_by_label_usage(fn)  fn(counts: list of ints, one per label, batch_size: int) -> int, examples used
    check_semantic_search(fn)       fn(queries: (Q, D) array, corpus: (N, D) array, k: int) -> (Q, k) int indices

Oracles: :func:`tutorial_lib.reference.group_by_label_epoch` (the arithmetic of sentence-transformers'
``GROUP_BY_LABEL`` sampler, ``drop_last=False``) and :func:`tutorial_lib.distances.cosine_distances`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distances import cosine_distances
from ..reference import group_by_label_epoch
from .runner import Miss, run_checks

__all__ = ["check_group_by_label_usage", "check_semantic_search"]


def check_group_by_label_usage(fn: Callable[[Sequence[int], int], int]) -> bool:
    """``fn(counts, batch_size)`` returns how many examples one epoch of ``GROUP_BY_LABEL`` batches uses.

    ``counts`` lists the number of examples of each label; the last partial batch is kept when it holds at least 4.
    """
    hints = {
        "balanced": "labels enter the stream two examples at a time; the stream is cut into batches of batch_size.",
        "odd": "a label with an odd count can only give whole pairs: one example waits for the next epoch.",
        "single": "a label with a single example is never sampled: it cannot give a pair.",
        "dominant": "the stream stops when only one label has pairs left: the largest label gives no more pairs "
                    "than the second largest.",
        "remainder": "a last, partial batch is kept when it holds at least 4 examples; a smaller one is dropped.",
    }

    def case(counts: list[int], batch_size: int, what: str, key: str) -> tuple:
        def run(f):
            got = f(list(counts), batch_size)
            try:
                value = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {got!r}.", "return one whole number of examples.")
            if value != group_by_label_epoch(counts, batch_size)[0]:
                return Miss(f"for counts {counts} and batch size {batch_size} it returned {value}.", hints[key])
            return None

        return what, run

    return run_checks("check_group_by_label_usage", fn, [
        case([120] * 7, 30, "7 balanced labels", "balanced"),
        case([5, 7, 7, 5], 4, "labels with odd counts", "odd"),
        case([1, 1, 6, 6, 6], 6, "two labels with a single example", "single"),
        case([100, 10, 10], 10, "one label much larger than the others", "dominant"),
        case([4, 4, 4], 10, "a stream that leaves 2 examples over", "remainder"),
        case([4, 4, 4, 4], 12, "a stream that leaves 4 examples over", "remainder"),
    ], "Check this before training on imbalanced data: what the sampler never draws, the model never learns from.")


def check_semantic_search(fn: Callable[[Any, Any, int], Any]) -> bool:
    """``fn(queries, corpus, k)`` returns, for each query, the indices of the ``k`` corpus rows most similar to it by
    cosine similarity, most similar first: (Q, D) and (N, D) float arrays in, (Q, k) integer indices out."""

    def top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
        # The query-by-corpus block of the cosine distances of all rows together: smallest distance first.
        dist = cosine_distances(torch.from_numpy(np.concatenate([queries, corpus])))[:len(queries), len(queries):]
        return torch.argsort(dist, dim=1, stable=True)[:, :k].numpy()

    def case(queries: np.ndarray, corpus: np.ndarray, k: int, what: str, hint: str) -> tuple:
        def run(f):
            got = f(queries.copy(), corpus.copy(), k)
            try:
                top = np.asarray(got.detach().cpu() if isinstance(got, Tensor) else got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {type(got).__name__}.", "return a (Q, k) array of indices.")
            expected = top_k(queries, corpus, k)
            if top.shape != expected.shape:
                return Miss(f"for {what} ({len(queries)} queries, k = {k}) it returned shape {top.shape}.",
                            "one row per query, k indices per row.")
            if not np.issubdtype(top.dtype, np.integer):
                return Miss(f"for {what} it returned values of dtype {top.dtype}.",
                            "return the positions of the corpus rows (integers), not their similarities.")
            if not np.array_equal(np.sort(top, axis=1), np.sort(expected, axis=1)):
                return Miss(f"for {what} some rows hold other corpus sentences than the {k} most similar.", hint)
            if not np.array_equal(top, expected):
                return Miss(f"for {what} the right sentences come back in the wrong order.",
                            "sort by similarity, the highest first (a distance would sort the other way).")
            return None

        return what, run, hint

    rng = np.random.default_rng(9)
    unit = rng.normal(size=(40, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scaled = unit * rng.uniform(0.2, 5.0, size=(40, 1))  # same directions, very different lengths
    queries = rng.normal(size=(5, 8))
    near = unit[:3] + 0.1 * rng.normal(size=(3, 8))
    others = rng.normal(size=(4, 8))
    return run_checks("check_semantic_search", fn, [
        case(queries, unit, 4, "five random queries, k = 4",
             "keep the k highest similarities of each row, not the lowest."),
        case(near, unit, 1, "three queries near corpus rows, k = 1",
             "score every corpus row against every query with the cosine similarity."),
        case(others, scaled, 3, "a corpus whose vectors have very different lengths",
             "a plain dot product favours long vectors: divide each vector by its length first (cosine)."),
    ], "This is what sentence_transformers.util.semantic_search does, in batches, for large corpora.")
