"""Notebook 00's self-check (the warm-up): a right answer passes, the notebook's own first attempt fails with its
hint, and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

from exercise_contract import contract_tests

from tutorial_lib.exercises import check_euclidean_distance, nb00

SOLUTION_FRAGMENTS = (".sqrt()", "sqrt(", "** 2", "def ", "lambda")


def euclidean(u, v):
    return ((u - v) ** 2).sum().sqrt()


def squared_only(u, v):
    return ((u - v) ** 2).sum()


def first_two_coordinates(u, v):
    return ((u[:2] - v[:2]) ** 2).sum().sqrt()


def per_coordinate(u, v):
    return (u - v).abs()


CHECKS = [check_euclidean_distance]
RIGHT = [(check_euclidean_distance, euclidean)]
WRONG = [
    (check_euclidean_distance, squared_only, "square root"),
    (check_euclidean_distance, first_two_coordinates, "every coordinate"),
    (check_euclidean_distance, per_coordinate, "one number"),
]
ORACLES = [(nb00, "distance_between")]

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb00, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
