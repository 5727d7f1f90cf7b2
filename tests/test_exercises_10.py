"""Notebook 10's self-check (label noise): right answers pass, each typical wrong answer fails with its own hint
(never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import numpy as np
from exercise_contract import contract_tests

from tutorial_lib.data import to_dataset
from tutorial_lib.evaluation import recall_at_1_within
from tutorial_lib.exercises import check_flip_labels, check_recall_within, nb10
from tutorial_lib.experiments import flip_labels

SOLUTION_FRAGMENTS = ("def ", "lambda", "rng.choice", "replace=False", "default_rng")


# Right answers -------------------------------------------------------------------------------------------------

def flip(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    out = list(labels)
    choices = sorted(set(labels))
    for i in rng.choice(len(labels), size=round(fraction * len(labels)), replace=False):
        out[i] = int(rng.choice([y for y in choices if y != labels[i]]))
    return out


def flip_with_the_library(labels, fraction, seed):
    """The library's flip_labels on a Dataset (labels as names, so that any integers work)."""
    names = sorted(set(labels))
    noisy, _ = flip_labels(to_dataset([f"row {i}" for i in range(len(labels))], [str(y) for y in labels],
                                      [str(n) for n in names], min_per_class=1), fraction, seed)
    return [names[y] for y in noisy["label"]]


# Wrong answers -------------------------------------------------------------------------------------------------

def first_rows(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    out = list(labels)
    for i in range(round(fraction * len(labels))):
        out[i] = int(rng.choice([y for y in set(labels) if y != labels[i]]))
    return out


def maybe_same(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    out = list(labels)
    for i in rng.choice(len(labels), size=round(fraction * len(labels)), replace=False):
        out[i] = int(rng.choice(sorted(set(labels))))  # may draw the original label: fewer than k changes
    return out


def unseeded(labels, fraction, seed):
    return flip(labels, fraction, np.random.randint(1_000_000))


def label_range(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    out = list(labels)
    for i in rng.choice(len(labels), size=round(fraction * len(labels)), replace=False):
        out[i] = int(rng.choice([y for y in range(max(labels) + 1) if y != labels[i]]))
    return out


# Recall@1 inside a set ---------------------------------------------------------------------------------------------

def recall_within(embeddings, labels):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[similarity.argmax(axis=1)] == labels))


def recall_with_the_library(embeddings, labels):
    return recall_at_1_within(embeddings, labels).mean()


def itself_included(embeddings, labels):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return float(np.mean(labels[(unit @ unit.T).argmax(axis=1)] == labels))


def dot_product(embeddings, labels):
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[similarity.argmax(axis=1)] == labels))


CHECKS = [check_recall_within, check_flip_labels]
RIGHT = [(check_recall_within, recall_within), (check_recall_within, recall_with_the_library),
         (check_flip_labels, flip), (check_flip_labels, flip_with_the_library)]
WRONG = [
    (check_recall_within, itself_included, "exclude the item itself"),
    (check_recall_within, dot_product, "normalise every row"),
    (check_recall_within, recall_at_1_within, "return one number"),  # the library's per-item hits, not their mean
    (check_flip_labels, first_rows, "at random among all N, each at most once"),
    (check_flip_labels, maybe_same, "different from its own"),
    (check_flip_labels, unseeded, "one NumPy generator from the seed"),
    (check_flip_labels, label_range, "labels that occur in the list"),
]

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb10, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS + ("fill_diagonal", "argmax", "np.linalg.norm"),
    [(nb10, "recall_at_1_from_distances")])
