"""The self-checks of notebooks 07 and 09: a right answer passes, each typical wrong answer fails with its own hint
(and no exception), and no verdict prints code a solution would contain."""

from __future__ import annotations

import statistics

import numpy as np
import torch
from exercise_contract import contract_tests

from tutorial_lib import exercises
from tutorial_lib.evaluation import sample_triplets
from tutorial_lib.training import group_by_label_plan

SOLUTION_FRAGMENTS = ("def ", "lambda", "argsort", "argmax", "argmin", "default_rng(seed)", "np.std(", "stdev(",
                      "fmean", "// 2", "min(")


# Right answers -------------------------------------------------------------------------------------------------

def beyond_noise(a, b):
    return abs(np.mean(a) - np.mean(b)) > 2 * max(np.std(a, ddof=1), np.std(b, ddof=1))


def beyond_noise_statistics(a, b):
    return abs(statistics.mean(a) - statistics.mean(b)) > 2 * max(statistics.stdev(a), statistics.stdev(b))


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


def usage(counts, batch_size):
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    return group_by_label_plan(labels, batch_size).used_per_epoch


def usage_by_hand(counts, batch_size):
    pairs = sorted((n // 2 for n in counts if n >= 2), reverse=True)
    stream = 2 * sum(min(p, pairs[1]) for p in pairs)
    full, rest = divmod(stream, batch_size)
    return full * batch_size + (rest if rest >= 4 else 0)


def search(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(-(q @ c.T), axis=1)[:, :k]


def search_torch(queries, corpus, k):
    sims = torch.nn.functional.cosine_similarity(torch.tensor(queries)[:, None], torch.tensor(corpus)[None], dim=2)
    return sims.topk(k, dim=1).indices  # a tensor is fine


RIGHT = [
    (exercises.check_beyond_noise, beyond_noise),
    (exercises.check_beyond_noise, beyond_noise_statistics),
    (exercises.check_beyond_noise, lambda a, b: torch.tensor(bool(beyond_noise(a, b)))),  # a bool tensor is fine
    (exercises.check_offline_triplets, offline_triplets),
    (exercises.check_offline_triplets, offline_triplets_by_hand),
    (exercises.check_group_by_label_usage, usage),
    (exercises.check_group_by_label_usage, usage_by_hand),
    (exercises.check_semantic_search, search),
    (exercises.check_semantic_search, search_torch),
]


# Wrong answers, each with the hint it should get -----------------------------------------------------------------

def population_std(a, b):
    return abs(np.mean(a) - np.mean(b)) > 2 * max(np.std(a), np.std(b))


def signed(a, b):
    return np.mean(a) - np.mean(b) > 2 * max(np.std(a, ddof=1), np.std(b, ddof=1))


def first_std_only(a, b):
    return abs(np.mean(a) - np.mean(b)) > 2 * np.std(a, ddof=1)


def as_number(a, b):
    return float(abs(np.mean(a) - np.mean(b)))


def unseeded(labels, seed):
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


def everything(counts, batch_size):
    return sum(counts)


def no_cap(counts, batch_size):
    stream = 2 * sum(n // 2 for n in counts)
    full, rest = divmod(stream, batch_size)
    return full * batch_size + (rest if rest >= 4 else 0)


def whole_counts(counts, batch_size):
    pairs = sorted((n for n in counts if n >= 2), reverse=True)
    return sum(min(p, pairs[1]) for p in pairs) // batch_size * batch_size


def full_batches_only(counts, batch_size):
    return usage_by_hand(counts, batch_size) // batch_size * batch_size


def dot_product(queries, corpus, k):
    return np.argsort(-(queries @ corpus.T), axis=1)[:, :k]


def nearest_last(queries, corpus, k):
    return search(queries, corpus, k)[:, ::-1]


def lowest(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return np.argsort(q @ c.T, axis=1)[:, :k]


def similarities(queries, corpus, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    return -np.sort(-(q @ c.T), axis=1)[:, :k]


WRONG = [
    (exercises.check_beyond_noise, population_std, "ddof=1"),
    (exercises.check_beyond_noise, signed, "absolute value"),
    (exercises.check_beyond_noise, first_std_only, "larger of the two"),
    (exercises.check_beyond_noise, as_number, "True or False"),
    (exercises.check_offline_triplets, unseeded, "same seed"),
    (exercises.check_offline_triplets, first_candidates, "depend on the seed"),
    (exercises.check_offline_triplets, self_positive, "*another* example"),
    (exercises.check_offline_triplets, every_row_an_anchor, "one triplet per anchor"),
    (exercises.check_group_by_label_usage, everything, "odd count"),
    (exercises.check_group_by_label_usage, no_cap, "second largest"),
    (exercises.check_group_by_label_usage, whole_counts, "odd count"),
    (exercises.check_group_by_label_usage, full_batches_only, "at least 4"),
    (exercises.check_semantic_search, dot_product, "divide each vector by its length"),
    (exercises.check_semantic_search, nearest_last, "wrong order"),
    (exercises.check_semantic_search, lowest, "highest similarities"),
    (exercises.check_semantic_search, similarities, "integers"),
]


CHECKS = [exercises.check_beyond_noise, exercises.check_offline_triplets, exercises.check_group_by_label_usage,
          exercises.check_semantic_search]


# The contract every check keeps (tests/exercise_contract.py) -----------------------------------------------------

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic) = contract_tests(CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
