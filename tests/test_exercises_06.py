"""Notebook 06's self-checks (BatchHardSoftMargin): right answers pass, each typical wrong answer fails with the hint
that names its mistake (never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import math

import torch
from exercise_contract import contract_tests

from tutorial_lib.distances import pairwise_distances
from tutorial_lib.exercises import check_batch_hard_soft_margin, check_soft_margin, nb06

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "torch.eye", "argmax", "argmin", "amin", "amax", ".min(", ".max(", "functional.softplus", "log1p",
                      "logaddexp", "sigmoid(", "isfinite")

INF = float("inf")


# Right answers -------------------------------------------------------------------------------------------------

def soft_margin(d_ap, d_an):
    return torch.nn.functional.softplus(d_ap - d_an)


def soft_margin_by_hand(d_ap, d_an):
    x = d_ap - d_an
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))  # never exponentiates a large positive number


def batch_hard_soft_margin(dist, labels):
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    d_ap = (dist * pos).amax(1)  # 0 for an anchor without a positive, as sentence-transformers
    d_an = torch.where(same, torch.tensor(INF, dtype=dist.dtype), dist).amin(1)
    return torch.nn.functional.softplus(d_ap - d_an).mean()


# Wrong answers -------------------------------------------------------------------------------------------------

def log_of_exp(d_ap, d_an):
    return torch.log(1 + torch.exp(d_ap - d_an))


def hinge_at_zero(d_ap, d_an):
    return torch.relu(d_ap - d_an)


def swapped(d_ap, d_an):
    return torch.nn.functional.softplus(d_an - d_ap)


def python_math(d_ap, d_an):
    return torch.tensor(math.log(1 + math.exp(float(d_ap - d_an))))


def summed(d_ap, d_an):
    return torch.nn.functional.softplus(d_ap - d_an).sum()


def no_gradient(d_ap, d_an):
    return torch.nn.functional.softplus(d_ap - d_an).detach()


def _hardest(dist, labels, positive="farthest", negative="nearest"):
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    inf = torch.tensor(INF, dtype=dist.dtype)
    if positive == "farthest":
        d_ap = (dist * pos).amax(1)
    else:
        d_ap = torch.where(pos, dist, inf).amin(1)
        d_ap = torch.where(pos.any(1), d_ap, torch.zeros_like(d_ap))
    d_an = torch.where(same, inf, dist).amin(1) if negative == "nearest" else torch.where(same, -inf, dist).amax(1)
    return d_ap, d_an, pos


def nearest_positive(dist, labels):
    d_ap, d_an, _ = _hardest(dist, labels, positive="nearest")
    return torch.nn.functional.softplus(d_ap - d_an).mean()


def farthest_negative(dist, labels):
    d_ap, d_an, _ = _hardest(dist, labels, negative="farthest")
    return torch.nn.functional.softplus(d_ap - d_an).mean()


def hinge_without_margin(dist, labels):
    d_ap, d_an, _ = _hardest(dist, labels)
    return torch.relu(d_ap - d_an).mean()


def skips_anchors_without_positive(dist, labels):
    d_ap, d_an, pos = _hardest(dist, labels)
    return torch.nn.functional.softplus(d_ap - d_an)[pos.any(1)].mean()


def every_triplet(dist, labels):
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    valid = pos[:, :, None] & ~same[:, None, :]
    return torch.nn.functional.softplus(dist[:, :, None] - dist[:, None, :])[valid].mean()


def per_anchor_losses(dist, labels):
    d_ap, d_an, _ = _hardest(dist, labels)
    return torch.nn.functional.softplus(d_ap - d_an)


def detached_batch(dist, labels):
    return torch.tensor(batch_hard_soft_margin(dist, labels).detach().item())


CHECKS = [check_soft_margin, check_batch_hard_soft_margin]
RIGHT = [
    (check_soft_margin, soft_margin),
    (check_soft_margin, soft_margin_by_hand),
    (check_batch_hard_soft_margin, batch_hard_soft_margin),
]
WRONG = [
    (check_soft_margin, log_of_exp, "overflows"),
    (check_soft_margin, hinge_at_zero, "ln 2"),
    (check_soft_margin, swapped, "x = d_ap - d_an"),
    (check_soft_margin, python_math, "elementwise"),
    (check_soft_margin, summed, "no sum or mean"),
    (check_soft_margin, no_gradient, "no gradient"),
    (check_batch_hard_soft_margin, nearest_positive, "*farthest* example with the anchor's label"),
    (check_batch_hard_soft_margin, farthest_negative, "*nearest* example with another label"),
    (check_batch_hard_soft_margin, hinge_without_margin, "never 0"),
    (check_batch_hard_soft_margin, skips_anchors_without_positive, "stays in the mean"),
    (check_batch_hard_soft_margin, every_triplet, "not one per triplet"),
    (check_batch_hard_soft_margin, per_anchor_losses, "one number"),
    (check_batch_hard_soft_margin, detached_batch, "no gradient"),
]
ORACLES = [(nb06, "batch_hard_soft_margin_from_distances")]


def test_the_oracle_agrees_with_sentence_transformers():
    """The check's oracle (reference loops on a distance matrix) equals sentence-transformers' own loss."""
    from sentence_transformers.sentence_transformer import losses as st

    from tutorial_lib.reference import batch_hard_soft_margin_from_distances

    g = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(14, 8, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5])  # label 5 appears once
    dist = pairwise_distances(embeddings)
    ours = float(batch_hard_soft_margin_from_distances(dist, labels))
    theirs = float(st.BatchHardSoftMarginTripletLoss(model=None).compute_loss_from_embeddings([embeddings], labels))
    assert math.isclose(ours, theirs, rel_tol=1e-9)
    assert math.isclose(float(batch_hard_soft_margin(dist, labels)), ours, rel_tol=1e-9)


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb06, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
