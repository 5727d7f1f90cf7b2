"""Notebook 05's self-checks (BatchSemiHard): right answers pass, each typical wrong answer fails with the hint that
names its mistake (never an exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import math

import torch
from exercise_contract import contract_tests

from tutorial_lib.distances import pairwise_distances
from tutorial_lib.exercises import check_fallback_rate, check_semi_hard_loss, check_semi_hard_negative, nb05

SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", "torch.where", "unsqueeze", "[:, None]", "lambda", "def ",
                      "torch.eye", "argmax", "argmin", "amin", "amax", ".min(", ".max(", "searchsorted", "isfinite")

INF = float("inf")


# Right answers -------------------------------------------------------------------------------------------------

def semi_hard_negative(dist_row, labels, anchor, positive):
    negative = labels != labels[anchor]
    beyond = negative & (dist_row > dist_row[positive])
    if beyond.any():
        return int(torch.where(beyond, dist_row, torch.tensor(INF, dtype=dist_row.dtype)).argmin())
    return int(torch.where(negative, dist_row, torch.tensor(-INF, dtype=dist_row.dtype)).argmax())


def semi_hard_negative_loop(dist_row, labels, anchor, positive):
    beyond, farthest = None, None
    for n in range(len(labels)):
        if labels[n] == labels[anchor]:
            continue
        if dist_row[n] > dist_row[positive] and (beyond is None or dist_row[n] < dist_row[beyond]):
            beyond = n
        if farthest is None or dist_row[n] > dist_row[farthest]:
            farthest = n
    return beyond if beyond is not None else farthest


def _fallback_flags(dist, labels, strict=True):
    """(B, B): True where (a, p) is an anchor-positive pair with no negative (strictly) farther than p."""
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    farther = dist[:, None, :] > dist[:, :, None] if strict else dist[:, None, :] >= dist[:, :, None]
    beyond = (~same)[:, None, :] & farther  # [a, p, n]
    return pos & ~beyond.any(-1), pos


def fallback_rate(dist, labels):
    flags, pos = _fallback_flags(dist, labels)
    return flags[pos].float().mean()


def fallback_rate_loop(dist, labels):
    pairs = fallbacks = 0
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p != a and labels[p] == labels[a]:
                pairs += 1
                fallbacks += not any(labels[n] != labels[a] and dist[a, n] > dist[a, p] for n in range(len(labels)))
    return fallbacks / pairs


def semi_hard_loss(dist, labels, margin):
    total, pairs = dist.sum() * 0, 0
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            pairs += 1
            n = semi_hard_negative(dist[a], labels, a, p)
            total = total + torch.relu(dist[a, p] - dist[a, n] + margin)
    return total / pairs


def semi_hard_loss_vectorized(dist, labels, margin):
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    neg = ~same
    beyond = neg[:, None, :] & (dist[:, None, :] > dist[:, :, None])  # [a, p, n]: n is a negative beyond p
    nearest_beyond = torch.where(beyond, dist[:, None, :], torch.tensor(INF, dtype=dist.dtype)).amin(-1)
    farthest = torch.where(neg, dist, torch.tensor(-INF, dtype=dist.dtype)).amax(1, keepdim=True)
    chosen = torch.where(torch.isfinite(nearest_beyond), nearest_beyond, farthest)
    return (torch.relu(dist - chosen + margin) * pos).sum() / pos.sum()


# Wrong answers -------------------------------------------------------------------------------------------------

def _pick(dist_row, labels, anchor, positive, *, strict=True, nearest_beyond=True, fallback="farthest",
          negatives_only=True):
    candidates = labels != labels[anchor] if negatives_only else torch.arange(len(labels)) != anchor
    if not negatives_only:
        candidates[positive] = False
    beyond = candidates & ((dist_row > dist_row[positive]) if strict else (dist_row >= dist_row[positive]))
    if beyond.any():
        if nearest_beyond:
            return int(torch.where(beyond, dist_row, torch.tensor(INF, dtype=dist_row.dtype)).argmin())
        return int(torch.where(beyond, dist_row, torch.tensor(-INF, dtype=dist_row.dtype)).argmax())
    if fallback == "farthest":
        return int(torch.where(candidates, dist_row, torch.tensor(-INF, dtype=dist_row.dtype)).argmax())
    return int(torch.where(candidates, dist_row, torch.tensor(INF, dtype=dist_row.dtype)).argmin())


def nearest_negative_overall(dist_row, labels, anchor, positive):
    return int(torch.where(labels != labels[anchor], dist_row, torch.tensor(INF, dtype=dist_row.dtype)).argmin())


def farthest_beyond(dist_row, labels, anchor, positive):
    return _pick(dist_row, labels, anchor, positive, nearest_beyond=False)


def non_strict(dist_row, labels, anchor, positive):
    return _pick(dist_row, labels, anchor, positive, strict=False)


def fallback_to_nearest(dist_row, labels, anchor, positive):
    return _pick(dist_row, labels, anchor, positive, fallback="nearest")


def any_label(dist_row, labels, anchor, positive):
    return _pick(dist_row, labels, anchor, positive, negatives_only=False)


def returns_a_distance(dist_row, labels, anchor, positive):
    return dist_row[semi_hard_negative(dist_row, labels, anchor, positive)] + 0.5  # a distance, not an index


def fallback_count(dist, labels):
    flags, _ = _fallback_flags(dist, labels)
    return flags.sum()


def fallback_non_strict(dist, labels):
    flags, pos = _fallback_flags(dist, labels, strict=False)
    return flags[pos].float().mean()


def fallback_per_anchor(dist, labels):
    flags, pos = _fallback_flags(dist, labels)
    return flags.any(1)[pos.any(1)].float().mean()


def fallback_per_example(dist, labels):
    flags, _ = _fallback_flags(dist, labels)
    return flags.sum() / len(labels)


def _semi_hard_terms(dist, labels, margin, pick=semi_hard_negative, skip_fallback=False):
    terms = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            if skip_fallback and not ((labels != labels[a]) & (dist[a] > dist[a, p])).any():
                continue
            n = pick(dist[a], labels, a, p)
            terms.append(torch.relu(dist[a, p] - dist[a, n] + margin))
    return terms


def no_fallback(dist, labels, margin):
    terms = _semi_hard_terms(dist, labels, margin, skip_fallback=True)
    return sum(terms) / len(terms)


def mean_over_anchors(dist, labels, margin):
    return sum(_semi_hard_terms(dist, labels, margin)) / len(labels)


def mean_over_active_pairs(dist, labels, margin):
    terms = _semi_hard_terms(dist, labels, margin)
    return sum(terms) / max(sum(1 for t in terms if t > 0), 1)


def non_strict_loss(dist, labels, margin):
    terms = _semi_hard_terms(dist, labels, margin, pick=non_strict)
    return sum(terms) / len(terms)


def detached_loss(dist, labels, margin):
    return torch.tensor(float(semi_hard_loss(dist, labels, margin).detach()))


def per_pair_losses(dist, labels, margin):
    return torch.stack(_semi_hard_terms(dist, labels, margin))


CHECKS = [check_semi_hard_negative, check_fallback_rate, check_semi_hard_loss]
RIGHT = [
    (check_semi_hard_negative, semi_hard_negative),
    (check_semi_hard_negative, semi_hard_negative_loop),
    (check_fallback_rate, fallback_rate),
    (check_fallback_rate, fallback_rate_loop),
    (check_semi_hard_loss, semi_hard_loss),
    (check_semi_hard_loss, semi_hard_loss_vectorized),
]
WRONG = [
    (check_semi_hard_negative, nearest_negative_overall, "farther from the anchor than the positive"),
    (check_semi_hard_negative, farthest_beyond, "take the nearest one"),
    (check_semi_hard_negative, non_strict, "'farther' is strict"),
    (check_semi_hard_negative, fallback_to_nearest, "falls back to the *farthest* negative"),
    (check_semi_hard_negative, any_label, "has the anchor's label"),
    (check_semi_hard_negative, returns_a_distance, "not its distance"),
    (check_fallback_rate, fallback_count, "return a share"),
    (check_fallback_rate, fallback_non_strict, "'farther' is strict"),
    (check_fallback_rate, fallback_per_anchor, "not anchors"),
    (check_fallback_rate, fallback_per_example, "count anchor-positive pairs"),
    (check_semi_hard_loss, no_fallback, "the fallback"),
    (check_semi_hard_loss, mean_over_anchors, "not over anchors"),
    (check_semi_hard_loss, mean_over_active_pairs, "including those whose loss is 0"),
    (check_semi_hard_loss, non_strict_loss, "not 'farther'"),
    (check_semi_hard_loss, detached_loss, "no gradient"),
    (check_semi_hard_loss, per_pair_losses, "one number"),
]
ORACLES = [(nb05, "batch_semi_hard_from_distances")]


def test_the_oracles_agree_with_sentence_transformers_and_the_logged_rate():
    """The semi-hard oracle equals sentence-transformers' own loss, and the fallback rate the check expects (from
    reference.semi_hard_negative's flag) is the statistic training logs."""
    from sentence_transformers.sentence_transformer import losses as st

    from tutorial_lib.losses import triplet_stats
    from tutorial_lib.reference import batch_semi_hard_from_distances

    g = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(14, 8, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5])  # label 5 appears once
    dist = pairwise_distances(embeddings)
    ours = float(batch_semi_hard_from_distances(dist, labels, 0.3))
    theirs = float(st.BatchSemiHardTripletLoss(model=None, margin=0.3).compute_loss_from_embeddings([embeddings],
                                                                                                    labels))
    assert math.isclose(ours, theirs, rel_tol=1e-9)
    assert math.isclose(float(semi_hard_loss_vectorized(dist, labels, 0.3)), float(semi_hard_loss(dist, labels, 0.3)))
    logged = float(triplet_stats(embeddings.float(), labels, 0.3)["semi_hard_fallback_rate"])
    assert math.isclose(float(fallback_rate(dist, labels)), logged, rel_tol=1e-6)


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb05, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
