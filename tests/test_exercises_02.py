"""Notebook 02's self-checks (distances and masks): right answers pass, each typical wrong answer fails with its own
hint (never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib.distances import pairwise_distances
from tutorial_lib.exercises import (
    check_count_valid_triplets,
    check_negative_mask,
    check_pairwise_distances,
    check_positive_mask,
    check_triplet_mask,
    nb02,
)

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", ".sqrt()", "torch.where", "unsqueeze", "[:, None]", "lambda",
                      "def ", "torch.eye", "argmax", "argmin", "n_c * (n_c - 1)", "bincount")


# Right answers -------------------------------------------------------------------------------------------------

def safe_pairwise(x):
    gram = x @ x.T
    sq = gram.diagonal()
    d2 = (sq[:, None] - 2 * gram + sq[None, :]).clamp_min(0)
    positive = d2 > 0
    return torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def library_pairwise(x):
    return pairwise_distances(x)


def positive_mask(labels):
    return (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)


def negative_mask(labels):
    return labels[:, None] != labels[None, :]


def triplet_mask(labels):
    return positive_mask(labels)[:, :, None] & negative_mask(labels)[:, None, :]


def count_valid(labels):
    counts = torch.bincount(labels)
    return int((counts * (counts - 1) * (len(labels) - counts)).sum())


def count_valid_tensor(labels):
    return triplet_mask(labels).sum()  # a 0-dim tensor is fine


# Wrong answers -------------------------------------------------------------------------------------------------

def unclamped(x):
    gram = x @ x.T
    sq = gram.diagonal()
    return (sq[:, None] - 2 * gram + sq[None, :]).sqrt()


def clamped_plain_sqrt(x):
    gram = x @ x.T
    sq = gram.diagonal()
    return (sq[:, None] - 2 * gram + sq[None, :]).clamp_min(0).sqrt()


def squared(x):
    gram = x @ x.T
    sq = gram.diagonal()
    return (sq[:, None] - 2 * gram + sq[None, :]).clamp_min(0)


def with_diagonal(labels):
    return labels[:, None] == labels[None, :]


def by_position(labels):
    size = len(labels)
    out = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size - 1):
        out[i, i + 1] = out[i + 1, i] = bool(labels[i] == labels[i + 1])
    return out


def float_mask(labels):
    return negative_mask(labels).float() * 0.5


def negative_without_diagonal_logic(labels):
    return negative_mask(labels) | torch.eye(len(labels), dtype=torch.bool)


def forgets_a_ne_p(labels):
    return (labels[:, None] == labels[None, :])[:, :, None] & negative_mask(labels)[:, None, :]


def n_squared(labels):
    counts = torch.bincount(labels)
    return int((counts * counts * (len(labels) - counts)).sum())


def a_float_count(labels):
    return count_valid(labels) / 3


CHECKS = [check_pairwise_distances, check_positive_mask, check_negative_mask, check_triplet_mask,
          check_count_valid_triplets]
RIGHT = [
    (check_pairwise_distances, safe_pairwise),
    (check_pairwise_distances, library_pairwise),
    (check_positive_mask, positive_mask),
    (check_negative_mask, negative_mask),
    (check_triplet_mask, triplet_mask),
    (check_count_valid_triplets, count_valid),
    (check_count_valid_triplets, count_valid_tensor),
]
WRONG = [
    (check_pairwise_distances, unclamped, "slightly negative"),
    (check_pairwise_distances, clamped_plain_sqrt, "derivative of sqrt at 0"),
    (check_pairwise_distances, squared, "then a square root"),
    (check_positive_mask, with_diagonal, "never its own positive"),
    (check_positive_mask, by_position, "compare labels, not positions"),
    (check_negative_mask, float_mask, "True/False"),
    (check_negative_mask, negative_without_diagonal_logic, "labels of a and n differ"),
    (check_triplet_mask, forgets_a_ne_p, "a != p"),
    (check_count_valid_triplets, n_squared, "n_c - 1"),
    (check_count_valid_triplets, a_float_count, "not a whole number"),
]

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb02, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
