"""Notebook 09's self-checks (your own data): right answers pass, each typical wrong answer fails with its own hint
(never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import numpy as np
import torch
from exercise_contract import contract_tests

from tutorial_lib.exercises import check_group_by_label_usage, check_semantic_search, nb09
from tutorial_lib.reference import group_by_label_epoch
from tutorial_lib.training import group_by_label_plan

SOLUTION_FRAGMENTS = ("def ", "lambda", "argsort", "argmax", "argmin", "// 2", "min(", "topk", "linalg.norm")


# Right answers -------------------------------------------------------------------------------------------------

def usage(counts, batch_size):
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    return group_by_label_plan(labels, batch_size).used_per_epoch


def usage_by_hand(counts, batch_size):
    pairs = sorted((n // 2 for n in counts if n >= 2), reverse=True)
    stream = 2 * sum(min(p, pairs[1]) for p in pairs)
    full, rest = divmod(stream, batch_size)
    return full * batch_size + (rest if rest >= 4 else 0)


def search(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(-(q @ c.T), axis=1)[:, :k]


def search_torch(queries, corpus, k):
    sims = torch.nn.functional.cosine_similarity(torch.tensor(queries)[:, None], torch.tensor(corpus)[None], dim=2)
    return sims.topk(k, dim=1).indices  # a tensor is fine


# Wrong answers -------------------------------------------------------------------------------------------------

def everything(counts, batch_size):
    return sum(counts)


def no_cap(counts, batch_size):
    stream = 2 * sum(n // 2 for n in counts)
    full, rest = divmod(stream, batch_size)
    return full * batch_size + (rest if rest >= 4 else 0)


def whole_counts(counts, batch_size):
    pairs = sorted((n for n in counts if n >= 2), reverse=True)
    return sum(min(p, pairs[1]) for p in pairs) // batch_size * batch_size


def full_batches_only(counts, batch_size):
    return usage_by_hand(counts, batch_size) // batch_size * batch_size


def dot_product(queries, corpus, k):
    return np.argsort(-(queries @ corpus.T), axis=1)[:, :k]


def nearest_last(queries, corpus, k):
    return search(queries, corpus, k)[:, ::-1]


def lowest(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(q @ c.T, axis=1)[:, :k]


def similarities(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return -np.sort(-(q @ c.T), axis=1)[:, :k]


CHECKS = [check_group_by_label_usage, check_semantic_search]
RIGHT = [
    (check_group_by_label_usage, usage),
    (check_group_by_label_usage, usage_by_hand),
    (check_semantic_search, search),
    (check_semantic_search, search_torch),
]
WRONG = [
    (check_group_by_label_usage, everything, "odd count"),
    (check_group_by_label_usage, no_cap, "second largest"),
    (check_group_by_label_usage, whole_counts, "odd count"),
    (check_group_by_label_usage, full_batches_only, "at least 4"),
    (check_semantic_search, dot_product, "divide each vector by its length"),
    (check_semantic_search, nearest_last, "wrong order"),
    (check_semantic_search, lowest, "highest similarities"),
    (check_semantic_search, similarities, "integers"),
]


def test_the_oracle_is_the_sampler(monkeypatch):
    """On every hidden case, the check's oracle (reference.group_by_label_epoch) is what sentence-transformers'
    sampler draws (training.group_by_label_plan asks the sampler itself)."""
    asked = []

    def spy(counts, batch_size):
        asked.append((list(counts), batch_size))
        return group_by_label_epoch(counts, batch_size)

    monkeypatch.setattr(nb09, "group_by_label_epoch", spy)
    assert check_group_by_label_usage(usage)
    assert len(asked) >= 5
    for counts, batch_size in asked:
        assert group_by_label_epoch(counts, batch_size)[0] == usage(counts, batch_size)


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb09, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
