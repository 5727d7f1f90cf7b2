"""The exercises' self-checks: a right answer passes, a wrong one fails with a hint (and no exception), and the
printed verdict never shows the solution."""

from __future__ import annotations

import inspect

import pytest
import torch
from exercise_contract import crashes, make_verdict, not_written

from tutorial_lib import exercises, masks
from tutorial_lib.distances import pairwise_distances

# Code that a solution would contain and a verdict must never print.
SOLUTION_FRAGMENTS = ("relu(", "clamp(", "clamp_min", ".sqrt()", "torch.where", "unsqueeze", "[:, None]", "lambda",
                      "def ", "torch.eye", "argmax", "argmin", "n_c * (n_c - 1)")


verdict = make_verdict(SOLUTION_FRAGMENTS)


# Right answers -------------------------------------------------------------------------------------------------

def euclidean(u, v):
    return ((u - v) ** 2).sum().sqrt()


def triplet_loss(d_ap, d_an, margin):
    return torch.relu(d_ap - d_an + margin)


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


def safe_pairwise(x):
    gram = x @ x.T
    sq = gram.diagonal()
    d2 = (sq[:, None] - 2 * gram + sq[None, :]).clamp_min(0)
    positive = d2 > 0
    return torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def positive_mask(labels):
    return (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)


def negative_mask(labels):
    return labels[:, None] != labels[None, :]


def triplet_mask(labels):
    return positive_mask(labels)[:, :, None] & negative_mask(labels)[:, None, :]


def count_valid(labels):
    counts = torch.bincount(labels)
    return int((counts * (counts - 1) * (len(labels) - counts)).sum())


RIGHT = [
    (exercises.check_euclidean_distance, euclidean),
    (exercises.check_triplet_loss, triplet_loss),
    (exercises.check_triplet_category, category),
    (exercises.check_hardest_pair, hardest_pair),
    (exercises.check_pairwise_distances, safe_pairwise),
    (exercises.check_pairwise_distances, lambda x: pairwise_distances(x)),
    (exercises.check_positive_mask, positive_mask),
    (exercises.check_negative_mask, negative_mask),
    (exercises.check_triplet_mask, triplet_mask),
    (exercises.check_count_valid_triplets, count_valid),
    (exercises.check_count_valid_triplets, lambda labels: triplet_mask(labels).sum()),  # a 0-dim tensor is fine
]


@pytest.mark.parametrize(("check", "fn"), RIGHT, ids=lambda x: getattr(x, "__name__", "fn"))
def test_a_right_answer_passes(check, fn, capsys):
    ok, out = verdict(check, fn, capsys)
    assert ok, out
    assert out.startswith("✅") and "correct" in out


# Wrong answers, each with the hint it should get -----------------------------------------------------------------

def squared_only(u, v):
    return ((u - v) ** 2).sum()


def unclipped(d_ap, d_an, margin):
    return d_ap - d_an + margin


def python_max(d_ap, d_an, margin):
    return torch.tensor(max(0.0, float(d_ap - d_an + margin)))


def no_gradient(d_ap, d_an, margin):
    return torch.relu(d_ap - d_an + margin).detach()


def tie_is_semi_hard(d_ap, d_an, margin):
    if d_an < d_ap:
        return "hard"
    return "semi-hard" if d_an <= d_ap + margin else "easy"


def nearest_positive(dist_row, labels, anchor):
    p, n = hardest_pair(dist_row, labels, anchor)
    same = (labels == labels[anchor]).clone()
    same[anchor] = False
    return int(torch.where(same, dist_row, torch.tensor(float("inf"))).argmin()), n


def includes_anchor(dist_row, labels, anchor):
    same = labels == labels[anchor]
    nearest_same = int(torch.where(same, dist_row, torch.tensor(float("inf"))).argmin())  # the anchor, at 0
    return nearest_same, hardest_pair(dist_row, labels, anchor)[1]


def unclamped(x):
    gram = x @ x.T
    sq = gram.diagonal()
    return (sq[:, None] - 2 * gram + sq[None, :]).sqrt()


def clamped_plain_sqrt(x):
    gram = x @ x.T
    sq = gram.diagonal()
    return (sq[:, None] - 2 * gram + sq[None, :]).clamp_min(0).sqrt()


def with_diagonal(labels):
    return labels[:, None] == labels[None, :]


def by_position(labels):
    size = len(labels)
    out = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size - 1):
        out[i, i + 1] = out[i + 1, i] = bool(labels[i] == labels[i + 1])
    return out


def forgets_a_ne_p(labels):
    return (labels[:, None] == labels[None, :])[:, :, None] & negative_mask(labels)[:, None, :]


def float_mask(labels):
    return negative_mask(labels).float() * 0.5


def n_squared(labels):
    counts = torch.bincount(labels)
    return int((counts * counts * (len(labels) - counts)).sum())


WRONG = [
    (exercises.check_euclidean_distance, squared_only, "square root"),
    (exercises.check_triplet_loss, unclipped, "never negative"),
    (exercises.check_triplet_loss, python_max, "elementwise"),
    (exercises.check_triplet_loss, no_gradient, "gradient"),
    (exercises.check_triplet_category, tie_is_semi_hard, "tie counts as hard"),
    (exercises.check_hardest_pair, nearest_positive, "farthest"),
    (exercises.check_hardest_pair, includes_anchor, "anchor itself"),
    (exercises.check_pairwise_distances, unclamped, "slightly negative"),
    (exercises.check_pairwise_distances, clamped_plain_sqrt, "derivative of sqrt at 0"),
    (exercises.check_positive_mask, with_diagonal, "never its own positive"),
    (exercises.check_positive_mask, by_position, "compare labels, not positions"),
    (exercises.check_negative_mask, float_mask, "True/False"),
    (exercises.check_triplet_mask, forgets_a_ne_p, "a != p"),
    (exercises.check_count_valid_triplets, n_squared, "n_c - 1"),
]


@pytest.mark.parametrize(("check", "fn", "hint"), WRONG, ids=lambda x: getattr(x, "__name__", str(x)[:20]))
def test_a_wrong_answer_fails_with_its_hint(check, fn, hint, capsys):
    ok, out = verdict(check, fn, capsys)
    assert ok is False
    assert out.startswith("❌") and "Hint:" in out and hint in out, out


@pytest.mark.parametrize("check", [exercises.check_triplet_loss, exercises.check_positive_mask,
                                   exercises.check_pairwise_distances, exercises.check_hardest_pair])
def test_an_exception_is_reported_not_raised(check, capsys):
    ok, out = verdict(check, crashes, capsys)
    assert ok is False and "ValueError: shapes do not match" in out and "Hint:" in out


@pytest.mark.parametrize("check", [getattr(exercises, name) for name in exercises.__all__ if name.startswith("check_")])
def test_every_check_handles_a_stub_and_a_non_function(check, capsys):
    ok, out = verdict(check, not_written, capsys)
    assert ok is False and "not written yet" in out
    ok, out = verdict(check, None, capsys)
    assert ok is False and "pass your function itself" in out


def test_verdicts_never_quote_the_reference_code(capsys):
    """No line of the library's own mask or distance code appears in any verdict."""
    sources = [inspect.getsource(f) for f in (masks.anchor_positive_mask, masks.anchor_negative_mask,
                                              masks.triplet_mask, pairwise_distances)]
    lines = {line.strip() for src in sources for line in src.splitlines() if len(line.strip()) > 20}
    outputs = []
    for check, fn, _ in WRONG:
        check(fn)
        outputs.append(capsys.readouterr().out)
    text = "\n".join(outputs)
    assert not [line for line in lines if line in text]


def test_checks_are_deterministic(capsys):
    first = [exercises.check_triplet_loss(unclipped), exercises.check_hardest_pair(nearest_positive)]
    out1 = capsys.readouterr().out
    second = [exercises.check_triplet_loss(unclipped), exercises.check_hardest_pair(nearest_positive)]
    assert first == second and capsys.readouterr().out == out1
