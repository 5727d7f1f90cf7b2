"""The self-checks of notebooks 03 (BatchAll) and 04 (BatchHard): a right answer passes; a wrong one returns False
with the hint that names its mistake (never an exception), and no verdict shows the solution."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib import exercises, losses, reference
from tutorial_lib.distances import pairwise_distances

CHECKS = [exercises.check_batch_all_loss, exercises.check_active_fraction, exercises.check_batch_hard_loss,
          exercises.check_first_collapsed_step]

# Code that a solution would contain and a verdict must never print.
SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "torch.eye", "argmax", "argmin", "amin", "amax", ".min(", ".max(", "masked_fill", ".iloc",
                      "nonzero", ".sum()")


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


def active_fraction_loops(dist, labels, margin):
    labels = labels.tolist()
    valid = active = 0
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(len(labels)):
                if labels[n] != labels[a]:
                    valid += 1
                    active += float(dist[a, p] - dist[a, n]) + margin > 0
    return active / valid if valid else 0.0


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


RIGHT = [
    (exercises.check_batch_all_loss, batch_all_cube),
    (exercises.check_batch_all_loss, batch_all_pairs),
    (exercises.check_batch_all_loss, batch_all_reference),
    (exercises.check_active_fraction, active_fraction),
    (exercises.check_active_fraction, active_fraction_loops),
    (exercises.check_batch_hard_loss, batch_hard),
    (exercises.check_batch_hard_loss, batch_hard_reference),
    (exercises.check_first_collapsed_step, first_collapsed_step),
    (exercises.check_first_collapsed_step, first_collapsed_step_loop),
]


def test_the_oracles_equal_the_library():
    """The checks' own oracles agree with tutorial_lib on the embeddings behind a distance matrix."""
    g = torch.Generator().manual_seed(0)
    for labels in (torch.arange(12) % 3, torch.tensor([0, 1, 0, 0, 2]), torch.arange(20) % 4):
        x = torch.nn.functional.normalize(torch.randn(len(labels), 16, generator=g, dtype=torch.float64), dim=1)
        dist = pairwise_distances(x)
        for margin in (0.1, 0.5, 1.0):
            assert abs(exercises._batch_all_0304(dist, labels, margin)
                       - float(losses.batch_all_triplet_loss(x, labels, margin))) < 1e-9
            assert abs(exercises._batch_hard_0304(dist, labels, margin)
                       - float(losses.batch_hard_triplet_loss(x, labels, margin))) < 1e-9
            assert abs(active_fraction(dist, labels, margin)
                       - float(losses.triplet_stats(x, labels, margin)["active_fraction"])) < 1e-9


# Wrong answers, each with the hint it should get -----------------------------------------------------------------

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
    return torch.tensor(float(batch_all_cube(dist, labels, margin)))


def all_per_triplet(dist, labels, margin):
    pos, neg = _masks(labels)
    return torch.relu(dist[:, :, None] - dist[:, None, :] + margin) * (pos[:, :, None] & neg[:, None, :])


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


def hard_nearest_positive(dist, labels, margin):
    pos, neg = _masks(labels)
    if not neg.any():
        return dist.sum() * 0
    nearest = dist.masked_fill(~pos, float("inf")).min(dim=1).values
    d_ap = torch.where(pos.any(dim=1), nearest, torch.zeros_like(nearest))
    d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
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


WRONG = [
    (exercises.check_batch_all_loss, all_over_valid, "*active* triplets"),
    (exercises.check_batch_all_loss, all_with_self_positive, "exclude p == a"),
    (exercises.check_batch_all_loss, all_like_sentence_transformers, "sentence-transformers' rule"),
    (exercises.check_batch_all_loss, all_nan_when_nothing_active, "0 / 0 is NaN"),
    (exercises.check_batch_all_loss, all_detached, "no gradient"),
    (exercises.check_batch_all_loss, all_per_triplet, "one number"),
    (exercises.check_active_fraction, fraction_of_cube, "not by B^3"),
    (exercises.check_active_fraction, fraction_with_self_positive, "exclude p == a"),
    (exercises.check_active_fraction, fraction_nan_without_triplets, "instead of dividing 0 by 0"),
    (exercises.check_active_fraction, fraction_counts_boundary, "gives loss 0 (easy)"),
    (exercises.check_batch_hard_loss, hard_nearest_positive, "*farthest*"),
    (exercises.check_batch_hard_loss, hard_including_diagonal, "anchor itself (distance 0) is not a negative"),
    (exercises.check_batch_hard_loss, hard_skips_anchors_without_positive, "divide by B"),
    (exercises.check_batch_hard_loss, hard_margin_for_one_label, "nothing to push away"),
    (exercises.check_batch_hard_loss, hard_mean_of_all_triplets, "per anchor"),
    (exercises.check_first_collapsed_step, collapsed_by_position, "not the row's position"),
    (exercises.check_first_collapsed_step, collapsed_fixed_ratio, "ratio argument"),
    (exercises.check_first_collapsed_step, collapsed_at_or_below, "strict"),
    (exercises.check_first_collapsed_step, collapsed_last_row, "*first* row"),
    (exercises.check_first_collapsed_step, collapsed_never_none, "return None"),
]






def test_the_history_is_not_modified_between_cases():
    """The check passes a copy of each history: a function that writes into it cannot spoil the next case."""

    def vandal(history, ratio):
        step = first_collapsed_step(history, ratio)
        history["mean_distance"] = 0.0
        return step

    assert exercises.check_first_collapsed_step(vandal)


# The contract every check keeps (tests/exercise_contract.py) -----------------------------------------------------

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic) = contract_tests(CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
