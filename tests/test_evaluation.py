"""tutorial_lib.evaluation: the four metrics on hand-built embeddings, against sklearn/ST, and on real models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tutorial_lib import evaluation
from tutorial_lib.evaluation import evaluate_embeddings, sample_triplets

pytestmark = pytest.mark.usefixtures("single_thread")


def _clusters(n_per_label: int, n_labels: int, spread: float, seed: int, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_labels] * 5
    labels = np.repeat(np.arange(n_labels), n_per_label)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_separated_clusters_score_perfectly():
    train, train_labels = _clusters(12, 3, 0.1, seed=0)
    test, test_labels = _clusters(5, 3, 0.1, seed=1)
    metrics = evaluate_embeddings(train, train_labels, test, test_labels)
    assert metrics["knn_accuracy"] == metrics["triplet_accuracy"] == metrics["recall_at_1"] == 1.0
    assert metrics["silhouette"] > 0.9
    assert metrics["n_triplets"] == 15


def test_random_embeddings_score_near_chance():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    train_labels, test_labels = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    metrics = evaluate_embeddings(train, train_labels, test, test_labels)
    assert abs(metrics["knn_accuracy"] - 1 / 3) < 0.1 and abs(metrics["recall_at_1"] - 1 / 3) < 0.1
    assert abs(metrics["triplet_accuracy"] - 0.5) < 0.1 and abs(metrics["silhouette"]) < 0.1


def test_knn_and_recall_match_sklearn_and_brute_force():
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier

    train, train_labels = _clusters(20, 4, 3.0, seed=2)
    test, test_labels = _clusters(10, 4, 3.0, seed=3)
    metrics = evaluate_embeddings(train, train_labels, test, test_labels)
    knn = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(train, train_labels)
    assert metrics["knn_accuracy"] == pytest.approx(np.mean(knn.predict(test) == test_labels))
    cos = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))  # noqa: E731
    hits = [train_labels[np.argmax([cos(q, t) for t in train])] == y for q, y in zip(test, test_labels)]
    assert metrics["recall_at_1"] == pytest.approx(np.mean(hits))
    assert metrics["silhouette"] == pytest.approx(silhouette_score(test, test_labels, metric="cosine"))


def test_a_tied_knn_vote_goes_to_the_smallest_label():
    # two training points per label at the same angle from the query: 2 votes for label 1, 2 for label 0
    train = np.array([[1.0, 0.1], [1.0, -0.1], [1.0, 0.1], [1.0, -0.1]])
    train_labels = np.array([1, 1, 0, 0])
    metrics = evaluate_embeddings(train, train_labels, np.array([[1.0, 0.0]]), np.array([0]), k=4)
    assert metrics["knn_accuracy"] == 1.0


def test_sampled_triplets_are_valid_seeded_and_one_per_anchor():
    labels = [0, 0, 0, 1, 1, 2]  # label 2 has no positive: its row is no anchor
    triplets = sample_triplets(labels, seed=5)
    assert triplets.shape == (5, 3) and list(triplets[:, 0]) == [0, 1, 2, 3, 4]
    lab = np.asarray(labels)
    assert (lab[triplets[:, 0]] == lab[triplets[:, 1]]).all() and (triplets[:, 0] != triplets[:, 1]).all()
    assert (lab[triplets[:, 0]] != lab[triplets[:, 2]]).all()
    np.testing.assert_array_equal(triplets, sample_triplets(labels, seed=5))
    assert len(sample_triplets(labels, seed=5, max_triplets=2)) == 2


def test_undefined_metrics_are_nan():
    emb = np.random.default_rng(0).normal(size=(4, 3))
    metrics = evaluate_embeddings(emb, [0, 0, 1, 1], emb, [0, 0, 0, 0])  # one test label: no negative
    assert metrics["n_triplets"] == 0 and math.isnan(metrics["triplet_accuracy"]) and math.isnan(metrics["silhouette"])


def test_evaluate_encodes_and_agrees_with_sentence_transformers_triplet_evaluator(tiny_st_model, toy_dataset):
    split = toy_dataset.train_test_split(test_size=9, seed=0, stratify_by_column="label")
    metrics = evaluation.evaluate(tiny_st_model, split["train"], split["test"], batch_size=8)
    st_result = evaluation.triplet_evaluator(split["test"], name="toy")(tiny_st_model)
    assert metrics["triplet_accuracy"] == pytest.approx(st_result["toy_cosine_accuracy"])
    train_emb = evaluation.encode(tiny_st_model, split["train"]["sentence"])
    test_emb = evaluation.encode(tiny_st_model, split["test"]["sentence"])
    assert train_emb.shape == (15, 32) and train_emb.dtype == np.float32
    expected = evaluate_embeddings(train_emb, split["train"]["label"], test_emb, split["test"]["label"])
    assert metrics == pytest.approx(expected)


@pytest.mark.slow
def test_default_model_separates_the_bundled_classes(default_st_model):
    from tutorial_lib.data import load_bundled

    ds = load_bundled()
    train = ds["train"].shuffle(seed=0).select(range(210))  # a subset keeps the test fast on a CPU
    metrics = evaluation.evaluate(default_st_model, train, ds["test"])
    assert set(metrics) == {"knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1", "n_triplets"}
    n_labels = len(ds["train"].features["label"].names)
    assert metrics["knn_accuracy"] > 2 / n_labels  # well above chance before any training
    assert metrics["triplet_accuracy"] > 0.6
