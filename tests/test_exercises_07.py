"""Notebook 07's self-checks (comparing the strategies): right answers pass whatever their random draws, each typical
wrong answer fails with its own hint (never an exception), and no verdict shows the solution or the oracle's interval
(tests/exercise_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest
from exercise_contract import contract_tests

from tutorial_lib.bootstrap import paired_bootstrap
from tutorial_lib.evaluation import sample_triplets
from tutorial_lib.exercises import check_bootstrap_interval, check_offline_triplets, nb07

SOLUTION_FRAGMENTS = ("def ", "lambda", "argsort", "argmax", "argmin", "default_rng(seed)", "integers(", "choice(",
                      "percentile(diffs", "quantile(", "[idx]", "// 2", "min(")


# Right answers -------------------------------------------------------------------------------------------------

def bootstrap_interval(correct_a, correct_b, n_boot, seed):
    rng = np.random.default_rng(seed)
    q = len(correct_a)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, q, q)  # the same questions for both models
        diffs.append(correct_a[idx].mean() - correct_b[idx].mean())
    low, high = np.percentile(diffs, [2.5, 97.5])
    return low, high


def bootstrap_interval_vectorized(correct_a, correct_b, n_boot, seed):
    idx = np.random.default_rng(seed).integers(0, len(correct_a), (n_boot, len(correct_a)))
    return tuple(np.quantile(correct_a[idx].mean(axis=1) - correct_b[idx].mean(axis=1), [0.025, 0.975]))


def bootstrap_interval_of_the_per_question_difference(correct_a, correct_b, n_boot, seed):
    rng = np.random.default_rng(seed)
    d = correct_a - correct_b
    diffs = [d[rng.choice(len(d), len(d))].mean() for _ in range(n_boot)]
    return np.percentile(diffs, [2.5, 97.5])  # an array of two is fine


def library_interval(correct_a, correct_b, n_boot, seed):
    result = paired_bootstrap(correct_a, correct_b, n_boot, seed)
    return result.low, result.high


def offline_triplets(labels, seed):
    return sample_triplets(labels, seed=seed)


def offline_triplets_by_hand(labels, seed):
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    rows = []
    for a in range(len(labels)):
        positives = [i for i in range(len(labels)) if i != a and labels[i] == labels[a]]
        negatives = [i for i in range(len(labels)) if labels[i] != labels[a]]
        if positives and negatives:
            rows.append([a, rng.choice(positives), rng.choice(negatives)])
    return rows


# Wrong answers -------------------------------------------------------------------------------------------------

def _diffs(correct_a, correct_b, n_boot, seed, paired=True):
    rng = np.random.default_rng(seed)
    q = len(correct_a)
    ia = rng.integers(0, q, (n_boot, q))
    ib = ia if paired else rng.integers(0, q, (n_boot, q))
    return correct_a[ia].mean(axis=1) - correct_b[ib].mean(axis=1)


def unpaired(correct_a, correct_b, n_boot, seed):
    return tuple(np.percentile(_diffs(correct_a, correct_b, n_boot, seed, paired=False), [2.5, 97.5]))


def unpaired_only_when_alike(correct_a, correct_b, n_boot, seed):
    """Paired, except that it resamples the models independently when they answer alike: the identical case's job."""
    paired = not np.array_equal(correct_a, correct_b)
    return tuple(np.percentile(_diffs(correct_a, correct_b, n_boot, seed, paired=paired), [2.5, 97.5]))


def fractions_to_percentile(correct_a, correct_b, n_boot, seed):
    return tuple(np.percentile(_diffs(correct_a, correct_b, n_boot, seed), [0.025, 0.975]))


def b_minus_a(correct_a, correct_b, n_boot, seed):
    return tuple(np.percentile(-_diffs(correct_a, correct_b, n_boot, seed), [2.5, 97.5]))


def standard_error_of_the_mean(correct_a, correct_b, n_boot, seed):
    diffs = _diffs(correct_a, correct_b, n_boot, seed)
    half = 1.96 * diffs.std() / np.sqrt(n_boot)
    return diffs.mean() - half, diffs.mean() + half


def high_first(correct_a, correct_b, n_boot, seed):
    low, high = np.percentile(_diffs(correct_a, correct_b, n_boot, seed), [2.5, 97.5])
    return high, low


def with_the_difference(correct_a, correct_b, n_boot, seed):
    low, high = np.percentile(_diffs(correct_a, correct_b, n_boot, seed), [2.5, 97.5])
    return correct_a.mean() - correct_b.mean(), low, high


def unseeded(correct_a, correct_b, n_boot, seed):
    return tuple(np.percentile(_diffs(correct_a, correct_b, n_boot, None), [2.5, 97.5]))


def random_seed_draws(labels, seed):
    return sample_triplets(labels, seed=int(np.random.default_rng().integers(1 << 30)))


def first_candidates(labels, seed):
    labels = np.asarray(labels)
    rows = []
    for a in range(len(labels)):
        positives = [i for i in range(len(labels)) if i != a and labels[i] == labels[a]]
        negatives = [i for i in range(len(labels)) if labels[i] != labels[a]]
        if positives and negatives:
            rows.append([a, positives[0], negatives[0]])
    return rows


def self_positive(labels, seed):
    rows = sample_triplets(labels, seed=seed)
    rows[:, 1] = rows[:, 0]
    return rows


def every_row_an_anchor(labels, seed):
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    rows = []
    for a in range(len(labels)):
        same = [i for i in range(len(labels)) if i != a and labels[i] == labels[a]] or [a]
        other = [i for i in range(len(labels)) if labels[i] != labels[a]] or same
        rows.append([a, rng.choice(same), rng.choice(other)])
    return rows


CHECKS = [check_bootstrap_interval, check_offline_triplets]
RIGHT = [
    (check_bootstrap_interval, bootstrap_interval),
    (check_bootstrap_interval, bootstrap_interval_vectorized),
    (check_bootstrap_interval, bootstrap_interval_of_the_per_question_difference),
    (check_bootstrap_interval, library_interval),
    (check_offline_triplets, offline_triplets),
    (check_offline_triplets, offline_triplets_by_hand),
]
WRONG = [
    (check_bootstrap_interval, unpaired, "*same* question indices for both models"),
    (check_bootstrap_interval, unpaired_only_when_alike, "*same* question indices for both models"),
    (check_bootstrap_interval, fractions_to_percentile, "np.percentile takes percents"),
    (check_bootstrap_interval, b_minus_a, "a minus b"),
    (check_bootstrap_interval, standard_error_of_the_mean, "narrower than a 95% interval"),
    (check_bootstrap_interval, high_first, "the 2.5th percentile first"),
    (check_bootstrap_interval, with_the_difference, "and nothing else"),
    (check_bootstrap_interval, unseeded, "same seed"),
    (check_offline_triplets, random_seed_draws, "same seed"),
    (check_offline_triplets, first_candidates, "depend on the seed"),
    (check_offline_triplets, self_positive, "*another* example"),
    (check_offline_triplets, every_row_an_anchor, "one triplet per anchor"),
]
ORACLES = [(nb07, "paired_bootstrap")]


@pytest.mark.parametrize("offset", range(1, 13))
def test_a_right_interval_passes_whatever_its_random_draws(offset, capsys):
    """The learner's draws never match the oracle's: a right answer passes with any stream of random numbers."""

    def shifted(correct_a, correct_b, n_boot, seed):
        return bootstrap_interval_vectorized(correct_a, correct_b, n_boot, seed * 1000 + offset)

    assert check_bootstrap_interval(shifted), capsys.readouterr().out


def test_the_hidden_cases_say_what_their_descriptions_say(monkeypatch):
    """The oracle's intervals on the hidden cases: the clear winner's excludes 0, the 2-question difference's and
    the identical pair's include it, and every one holds its observed difference."""
    intervals = {}

    def spy(a, b, n_boot, seed):
        result = paired_bootstrap(a, b, n_boot, seed)
        intervals[seed] = (result, int((a != b).sum()), len(a))
        return result

    monkeypatch.setattr(nb07, "paired_bootstrap", spy)
    assert check_bootstrap_interval(library_interval)
    assert all(r.low <= r.diff <= r.high for r, *_ in intervals.values())
    assert intervals[2][0].excludes_zero and intervals[2][1:] == (84, 400)  # 0.97 against 0.80
    assert not intervals[3][0].excludes_zero and intervals[3][1:] == (2, 210)
    assert intervals[0][1] == 12 and intervals[0][0].high - intervals[0][0].low < 0.06  # a highly correlated pair
    assert nb07.N_BOOT >= 2000


(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb07, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
