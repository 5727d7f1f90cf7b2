"""Notebook 03's self-checks (BatchAll): right answers pass, each typical wrong answer fails with the hint that names
its mistake (never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib import losses, reference
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.exercises import check_active_fraction, check_batch_all_loss, nb03

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "torch.eye", "argmax", "argmin", "amin", "amax", ".min(", ".max(", "masked_fill", "nonzero",
                      ".sum()")


def _masks(labels, self_positive=False):
    same = labels[:, None] == labels[None, :]
    pos = same if self_positive else same & ~torch.eye(len(labels), dtype=torch.bool)
    return pos, ~same


# Right answers -------------------------------------------------------------------------------------------------

def batch_all_cube(dist, labels, margin):
    pos, neg = _masks(labels)
    loss = torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])
    active = (loss > 1e-16).sum()
    return loss.sum() / active if active > 0 else loss.sum() * 0


def batch_all_pairs(dist, labels, margin):
    """The layout of sentence-transformers: one row per anchor-positive pair."""
    pos, neg = _masks(labels)
    a, p = torch.nonzero(pos, as_tuple=True)
    loss = torch.where(neg[a], torch.relu(dist[a, p][:, None] - dist[a] + margin), torch.zeros(()))
    active = loss[loss > 1e-16]
    return active.mean() if len(active) else loss.sum() * 0


def batch_all_reference(dist, labels, margin):
    return reference.batch_all_from_distances(dist, labels, margin)


def active_fraction(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    active = ((dist[:, :, None] - dist[:, None, :] + margin) > 0) & valid
    return float(active.sum()) / int(valid.sum()) if valid.any() else 0.0


# Wrong answers -------------------------------------------------------------------------------------------------

def all_over_valid(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    return (torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * valid).sum() / valid.sum().clamp(min=1)


def all_with_self_positive(dist, labels, margin):
    pos, neg = _masks(labels, self_positive=True)
    loss = torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])
    active = (loss > 1e-16).sum()
    return loss.sum() / active if active > 0 else loss.sum() * 0


def all_like_sentence_transformers(dist, labels, margin):
    pos, neg = _masks(labels)
    loss = torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])
    return loss.sum() / ((loss > 1e-16).sum() + 1e-16)


def all_nan_when_nothing_active(dist, labels, margin):
    pos, neg = _masks(labels)
    loss = torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])
    return loss.sum() / (loss > 1e-16).sum()


def all_detached(dist, labels, margin):
    return torch.tensor(batch_all_cube(dist, labels, margin).detach().item())


def all_per_triplet(dist, labels, margin):
    pos, neg = _masks(labels)
    return torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])


def all_counts_with_gradient(dist, labels, margin):
    """Divides by a count that depends on dist (a sum of sigmoids): the value is close, the gradient is not."""
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    loss = torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * valid
    count = (loss > 1e-16).sum() + (torch.sigmoid(dist).sum() - torch.sigmoid(dist).sum().detach())
    return loss.sum() / count if (loss > 1e-16).any() else loss.sum() * 0


def fraction_of_cube(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    return float((((dist[:, :, None] - dist[:, None, :] + margin) > 0) & valid).sum()) / len(labels) ** 3


def fraction_with_self_positive(dist, labels, margin):
    pos, neg = _masks(labels, self_positive=True)
    valid = pos[:, :, None] & neg[:, None, :]
    active = ((dist[:, :, None] - dist[:, None, :] + margin) > 0) & valid
    return float(active.sum()) / int(valid.sum()) if valid.any() else 0.0


def fraction_nan_without_triplets(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    active = ((dist[:, :, None] - dist[:, None, :] + margin) > 0) & valid
    return float(active.sum()) / float(valid.sum()) if valid.any() else float("nan")


def fraction_counts_boundary(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    active = ((dist[:, :, None] - dist[:, None, :] + margin) >= 0) & valid
    return float(active.sum()) / int(valid.sum()) if valid.any() else 0.0


CHECKS = [check_batch_all_loss, check_active_fraction]
RIGHT = [
    (check_batch_all_loss, batch_all_cube),
    (check_batch_all_loss, batch_all_pairs),
    (check_batch_all_loss, batch_all_reference),
    (check_active_fraction, active_fraction),
    (check_active_fraction, reference.active_fraction_from_distances),
]
WRONG = [
    (check_batch_all_loss, all_over_valid, "*active* triplets"),
    (check_batch_all_loss, all_with_self_positive, "exclude p == a"),
    (check_batch_all_loss, all_like_sentence_transformers, "sentence-transformers' rule"),
    (check_batch_all_loss, all_nan_when_nothing_active, "0 / 0 is NaN"),
    (check_batch_all_loss, all_detached, "no gradient"),
    (check_batch_all_loss, all_per_triplet, "one number"),
    (check_batch_all_loss, all_counts_with_gradient, "count the active triplets without a gradient"),
    (check_active_fraction, fraction_of_cube, "not by B^3"),
    (check_active_fraction, fraction_with_self_positive, "exclude p == a"),
    (check_active_fraction, fraction_nan_without_triplets, "instead of dividing 0 by 0"),
    (check_active_fraction, fraction_counts_boundary, "gives loss 0 (easy)"),
]
ORACLES = [(nb03, "batch_all_from_distances"), (nb03, "active_fraction_from_distances")]


def test_the_oracles_equal_the_library():
    """The checks' oracles agree with tutorial_lib's losses and statistics on the embeddings behind the matrix."""
    g = torch.Generator().manual_seed(0)
    for labels in (torch.arange(12) % 3, torch.tensor([0, 1, 0, 0, 2]), torch.arange(20) % 4):
        x = torch.nn.functional.normalize(torch.randn(len(labels), 16, generator=g, dtype=torch.float64), dim=1)
        dist = pairwise_distances(x)
        for margin in (0.1, 0.5, 1.0):
            assert abs(float(reference.batch_all_from_distances(dist, labels, margin))
                       - float(losses.batch_all_triplet_loss(x, labels, margin))) < 1e-9
            assert abs(nb03.active_fraction_from_distances(dist, labels, margin)
                       - float(losses.triplet_stats(x, labels, margin)["active_fraction"])) < 1e-9


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb03, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
