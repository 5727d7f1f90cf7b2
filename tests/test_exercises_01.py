"""Notebook 01's self-checks (the triplet loss): right answers pass, each typical wrong answer fails with its own hint
(never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib.exercises import check_hardest_pair, check_triplet_category, check_triplet_loss, nb01

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "argmax", "argmin")


# Right answers -------------------------------------------------------------------------------------------------

def triplet_loss(d_ap, d_an, margin):
    return torch.relu(d_ap - d_an + margin)


def triplet_loss_clamp(d_ap, d_an, margin):
    return (d_ap - d_an + margin).clamp(min=0)


def category(d_ap, d_an, margin):
    if d_an <= d_ap:
        return "hard"
    return "semi-hard" if d_an < d_ap + margin else "easy"


def hardest_pair(dist_row, labels, anchor):
    same = labels == labels[anchor]
    positives = same.clone()
    positives[anchor] = False
    p = torch.where(positives, dist_row, torch.tensor(-1.0)).argmax()
    n = torch.where(~same, dist_row, torch.tensor(float("inf"))).argmin()
    return int(p), int(n)


# Wrong answers -------------------------------------------------------------------------------------------------

def unclipped(d_ap, d_an, margin):
    return d_ap - d_an + margin


def python_max(d_ap, d_an, margin):
    return torch.tensor(max(0.0, float(d_ap - d_an + margin)))


def no_gradient(d_ap, d_an, margin):
    return torch.relu(d_ap - d_an + margin).detach()


def summed(d_ap, d_an, margin):
    return torch.relu(d_ap - d_an + margin).sum()


def tie_is_semi_hard(d_ap, d_an, margin):
    if d_an < d_ap:
        return "hard"
    return "semi-hard" if d_an <= d_ap + margin else "easy"


def boundary_is_semi_hard(d_ap, d_an, margin):
    if d_an <= d_ap:
        return "hard"
    return "semi-hard" if d_an <= d_ap + margin else "easy"


def a_number(d_ap, d_an, margin):
    return 2


def nearest_positive(dist_row, labels, anchor):
    _, n = hardest_pair(dist_row, labels, anchor)
    same = (labels == labels[anchor]).clone()
    same[anchor] = False
    return int(torch.where(same, dist_row, torch.tensor(float("inf"))).argmin()), n


def includes_anchor(dist_row, labels, anchor):
    same = labels == labels[anchor]
    nearest_same = int(torch.where(same, dist_row, torch.tensor(float("inf"))).argmin())  # the anchor, at 0
    return nearest_same, hardest_pair(dist_row, labels, anchor)[1]


def farthest_negative(dist_row, labels, anchor):
    p, _ = hardest_pair(dist_row, labels, anchor)
    return p, int(torch.where(labels != labels[anchor], dist_row, torch.tensor(-1.0)).argmax())


CHECKS = [check_triplet_loss, check_triplet_category, check_hardest_pair]
RIGHT = [
    (check_triplet_loss, triplet_loss),
    (check_triplet_loss, triplet_loss_clamp),
    (check_triplet_category, category),
    (check_hardest_pair, hardest_pair),
]
WRONG = [
    (check_triplet_loss, unclipped, "never negative"),
    (check_triplet_loss, python_max, "elementwise"),
    (check_triplet_loss, no_gradient, "gradient"),
    (check_triplet_loss, summed, "no sum or mean"),
    (check_triplet_category, tie_is_semi_hard, "tie counts as hard"),
    (check_triplet_category, boundary_is_semi_hard, "the loss is already 0"),
    (check_triplet_category, a_number, "return one of"),
    (check_hardest_pair, nearest_positive, "farthest"),
    (check_hardest_pair, includes_anchor, "anchor itself"),
    (check_hardest_pair, farthest_negative, "*nearest*"),
]
ORACLES = [(nb01, "triplet_loss")]

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb01, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
