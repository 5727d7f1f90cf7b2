"""Notebook 04's self-checks (BatchHard): right answers pass, each typical wrong answer fails with the hint that names
its mistake (never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib import losses, reference
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.exercises import check_batch_hard_loss, check_first_collapsed_step, nb04

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "torch.eye", "argmax", "argmin", "amin", "amax", ".min(", ".max(", "masked_fill", ".iloc",
                      "nonzero", ".sum()")


def _masks(labels):
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool), ~same


# Right answers -------------------------------------------------------------------------------------------------

def batch_hard(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    d_ap = (dist * pos).max(dim=1).values  # no positive: 0, as in sentence-transformers
    d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    return torch.relu(d_ap - d_an + margin).mean()


def batch_hard_reference(dist, labels, margin):
    return reference.batch_hard_from_distances(dist, labels, margin)


def first_collapsed_step(history, ratio):
    below = history["mean_distance"] < ratio * history["mean_distance"].iloc[0]
    return int(history.loc[below, "step"].iloc[0]) if below.any() else None


def first_collapsed_step_loop(history, ratio):
    rows = history.to_dict("records")
    for row in rows:
        if row["mean_distance"] < ratio * rows[0]["mean_distance"]:
            return row["step"]
    return None


# Wrong answers -------------------------------------------------------------------------------------------------

def hard_nearest_positive(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    nearest = dist.masked_fill(~pos, float("inf")).min(dim=1).values
    d_ap = torch.where(pos.any(dim=1), nearest, torch.zeros_like(nearest))
    d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    return torch.relu(d_ap - d_an + margin).mean()


def hard_farthest_negative(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    d_ap = (dist * pos).max(dim=1).values
    d_an = dist.masked_fill(~neg, -float("inf")).max(dim=1).values
    return torch.relu(d_ap - d_an + margin).mean()


def hard_including_diagonal(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    d_ap = (dist * pos).max(dim=1).values
    d_an = (dist * neg).min(dim=1).values  # zeros where not a negative, the diagonal included
    return torch.relu(d_ap - d_an + margin).mean()


def hard_skips_anchors_without_positive(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    d_ap = (dist * pos).max(dim=1).values
    d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    return torch.relu(d_ap - d_an + margin)[pos.any(dim=1)].mean()


def hard_margin_for_one_label(dist, labels, margin):
    """sentence-transformers' answer for a single-label batch: every anchor costs the margin."""
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0 + margin
    return batch_hard(dist, labels, margin)


def hard_mean_of_all_triplets(dist, labels, margin):
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    return (torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * valid).sum() / valid.sum().clamp(min=1)


def hard_detached(dist, labels, margin):
    return torch.tensor(batch_hard(dist, labels, margin).detach().item())


def collapsed_by_position(history, ratio):
    below = history["mean_distance"] < ratio * history["mean_distance"].iloc[0]
    return int(below.to_numpy().argmax()) + 1 if below.any() else None


def collapsed_fixed_ratio(history, ratio):
    return first_collapsed_step(history, 0.2)


def collapsed_at_or_below(history, ratio):
    below = history["mean_distance"] <= ratio * history["mean_distance"].iloc[0]
    return int(history.loc[below, "step"].iloc[0]) if below.any() else None


def collapsed_last_row(history, ratio):
    below = history["mean_distance"] < ratio * history["mean_distance"].iloc[0]
    return int(history.loc[below, "step"].iloc[-1]) if below.any() else None


def collapsed_never_none(history, ratio):
    below = history["mean_distance"] < ratio * history["mean_distance"].iloc[0]
    return int(history.loc[below, "step"].iloc[0]) if below.any() else 0


CHECKS = [check_batch_hard_loss, check_first_collapsed_step]
RIGHT = [
    (check_batch_hard_loss, batch_hard),
    (check_batch_hard_loss, batch_hard_reference),
    (check_first_collapsed_step, first_collapsed_step),
    (check_first_collapsed_step, first_collapsed_step_loop),
]
WRONG = [
    (check_batch_hard_loss, hard_nearest_positive, "*farthest*"),
    (check_batch_hard_loss, hard_farthest_negative, "*nearest*"),
    (check_batch_hard_loss, hard_including_diagonal, "anchor itself (distance 0) is not a negative"),
    (check_batch_hard_loss, hard_skips_anchors_without_positive, "divide by B"),
    (check_batch_hard_loss, hard_margin_for_one_label, "nothing to push away"),
    (check_batch_hard_loss, hard_mean_of_all_triplets, "per anchor"),
    (check_batch_hard_loss, hard_detached, "no gradient"),
    (check_first_collapsed_step, collapsed_by_position, "not the row's position"),
    (check_first_collapsed_step, collapsed_fixed_ratio, "ratio argument"),
    (check_first_collapsed_step, collapsed_at_or_below, "strict"),
    (check_first_collapsed_step, collapsed_last_row, "*first* row"),
    (check_first_collapsed_step, collapsed_never_none, "return None"),
]
ORACLES = [(nb04, "batch_hard_from_distances")]


def test_the_oracle_equals_the_library():
    """The check's oracle agrees with tutorial_lib's BatchHard on the embeddings behind the matrix."""
    g = torch.Generator().manual_seed(0)
    for labels in (torch.arange(12) % 3, torch.tensor([0, 1, 0, 0, 2]), torch.arange(20) % 4):
        x = torch.nn.functional.normalize(torch.randn(len(labels), 16, generator=g, dtype=torch.float64), dim=1)
        for margin in (0.1, 0.5, 1.0):
            assert abs(float(reference.batch_hard_from_distances(pairwise_distances(x), labels, margin))
                       - float(losses.batch_hard_triplet_loss(x, labels, margin))) < 1e-9


def test_the_history_is_not_modified_between_cases():
    """The check passes a copy of each history: a function that writes into it cannot spoil the next case."""

    def vandal(history, ratio):
        step = first_collapsed_step(history, ratio)
        history["mean_distance"] = 0.0
        return step

    assert check_first_collapsed_step(vandal)


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb04, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
