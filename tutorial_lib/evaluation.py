"""How good are the embeddings? Four numbers, before and after training (notebooks 03-10;
``sample_triplets`` in 01).

* ``knn_accuracy``: each test sentence is classified by a majority vote of its k = 10 nearest training sentences
  (cosine distance, sklearn ``KNeighborsClassifier``, uniform weights). A tied vote goes to the smallest label id
  (sklearn takes the first maximum); neighbours at exactly equal distance are ordered as the brute-force search
  returns them.
* ``triplet_accuracy``: the share of seeded held-out triplets (anchor, positive, negative) of the test split with
  ``cos(anchor, positive) > cos(anchor, negative)``. One triplet per test sentence that can be an anchor (its label
  has another test example, and another label exists): the positive is drawn uniformly from the other sentences of
  its label, the negative uniformly from the other labels' sentences (``numpy.random.default_rng(seed)``). This is
  exactly sentence-transformers' ``TripletEvaluator`` (cosine, margin 0) on those triplets --
  :func:`triplet_evaluator` builds that evaluator, and the tests check the two agree -- computed from embeddings so
  nothing is encoded twice.
* ``silhouette``: sklearn ``silhouette_score`` of the test embeddings with their labels, cosine distance, in [-1, 1].
* ``recall_at_1``: each test sentence retrieves its nearest training sentence (cosine); correct if the labels match.

Public API::

    encode(model, sentences, batch_size=64, show_progress_bar=False)             -> (N, D) float32 array
    evaluate(model, train_dataset, test_dataset, batch_size=64, k=10, seed=0)    -> dict of floats
    evaluate_embeddings(train_emb, train_labels, test_emb, test_labels, k=10, seed=0) -> dict of floats
    per_question(train_emb, train_labels, test_emb, test_labels, k=10)          -> dict of (N_test,) 0/1 arrays
    recall_at_1_within(embeddings, labels)                                       -> (N,) 0/1 array
    sample_triplets(labels, seed=0, max_triplets=None)                           -> (T, 3) index array
    triplet_evaluator(dataset, seed=0, max_triplets=None)                        -> TripletEvaluator

Imports numpy and scikit-learn (sentence-transformers only inside :func:`triplet_evaluator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

K_NEIGHBORS = 10

__all__ = ["encode", "evaluate", "evaluate_embeddings", "per_question", "recall_at_1_within", "sample_triplets",
           "triplet_evaluator"]


def encode(model: Any, sentences: Sequence[str], batch_size: int = 64, show_progress_bar: bool = False) -> np.ndarray:
    """Embed sentences with ``model.encode``: (N,) texts -> (N, D) float32 numpy array."""
    return model.encode(
        list(sentences), batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_numpy=True
    ).astype(np.float32, copy=False)


def sample_triplets(labels: Sequence[int], seed: int = 0, max_triplets: int | None = None) -> np.ndarray:
    """Seeded (anchor, positive, negative) row indices: at most one triplet per anchor.

    Args:
        labels: (N,) integer labels.
        seed: seed of ``numpy.random.default_rng``.
        max_triplets: keep only the first this many (in anchor order); None keeps all.

    Returns:
        (T, 3) int64 array; rows ``[a, p, n]`` with ``labels[a] == labels[p]``, ``a != p``, ``labels[n] != labels[a]``.
        T = number of rows whose label has at least 2 members (0 if there is a single label).
    """
    labels = np.asarray(list(labels))
    rng = np.random.default_rng(seed)
    rows = np.arange(len(labels))
    triplets = []
    for anchor in rows:
        positives = rows[(labels == labels[anchor]) & (rows != anchor)]
        negatives = rows[labels != labels[anchor]]
        if len(positives) and len(negatives):
            triplets.append((anchor, rng.choice(positives), rng.choice(negatives)))
    out = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
    return out if max_triplets is None else out[:max_triplets]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    # max(norm, 1e-12): a zero vector stays zero instead of dividing by 0 (cosine is undefined there anyway)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def per_question(
    train_emb: np.ndarray, train_labels: Sequence[int], test_emb: np.ndarray, test_labels: Sequence[int],
    k: int = K_NEIGHBORS,
) -> dict[str, np.ndarray]:
    """Which test questions the embeddings get right: the per-question view of ``knn_accuracy`` and ``recall_at_1``.

    Args:
        train_emb: (N_train, D) index embeddings; train_labels: (N_train,) integers.
        test_emb: (N_test, D) query embeddings; test_labels: (N_test,) integers.

    Returns:
        ``{"accuracy": (N_test,), "recall_at_1": (N_test,)}`` int arrays, 1 where the k-NN vote (cosine, k = 10), or
        the single nearest training question, has the question's label. Their means are :func:`evaluate_embeddings`'
        ``knn_accuracy`` and ``recall_at_1``; a paired bootstrap over them (:mod:`tutorial_lib.bootstrap`) compares
        two models.
    """
    from sklearn.neighbors import KNeighborsClassifier

    train_labels, test_labels = np.asarray(list(train_labels)), np.asarray(list(test_labels))
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", algorithm="brute")
    knn.fit(np.asarray(train_emb), train_labels)
    votes = knn.predict(np.asarray(test_emb))
    nearest = np.argmax(_unit(test_emb) @ _unit(train_emb).T, axis=1)  # highest cosine = smallest cosine distance
    return {"accuracy": (votes == test_labels).astype(int),
            "recall_at_1": (train_labels[nearest] == test_labels).astype(int)}


def recall_at_1_within(embeddings: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Retrieval inside one set: 1 where an item's nearest *other* item (cosine) has its label (notebook 10).

    Args:
        embeddings: (N, D); labels: (N,) integers.

    Returns:
        (N,) int array; its mean is the set's Recall@1 (leave-one-out: an item never retrieves itself).
    """
    unit = _unit(embeddings)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)  # an item is not its own neighbour
    labels = np.asarray(list(labels))
    return (labels[np.argmax(similarity, axis=1)] == labels).astype(int)


def evaluate_embeddings(
    train_emb: np.ndarray,
    train_labels: Sequence[int],
    test_emb: np.ndarray,
    test_labels: Sequence[int],
    k: int = K_NEIGHBORS,
    seed: int = 0,
    max_triplets: int | None = None,
) -> dict[str, float]:
    """The four metrics (see the module docstring) from precomputed embeddings.

    Args:
        train_emb: (N_train, D) embeddings of the training split (the kNN and retrieval index).
        train_labels: (N_train,) integer labels.
        test_emb: (N_test, D) embeddings of the test split (the queries; triplets and silhouette use it).
        test_labels: (N_test,) integer labels.
        k: neighbours of the kNN vote (capped at N_train).
        seed, max_triplets: see :func:`sample_triplets`.

    Returns:
        dict with ``knn_accuracy``, ``triplet_accuracy``, ``silhouette``, ``recall_at_1`` (floats; NaN where a
        metric is undefined: no triplet, or fewer than 2 / more than N-1 labels for the silhouette) and
        ``n_triplets``.
    """
    from sklearn.metrics import silhouette_score

    correct = per_question(train_emb, train_labels, test_emb, test_labels, k)
    knn_accuracy, recall_at_1 = float(correct["accuracy"].mean()), float(correct["recall_at_1"].mean())
    test_labels = np.asarray(list(test_labels))
    test_unit = _unit(test_emb)

    triplets = sample_triplets(test_labels, seed, max_triplets)
    if len(triplets):
        a, p, n = (test_unit[triplets[:, i]] for i in range(3))
        triplet_accuracy = float(np.mean(np.sum(a * p, axis=1) > np.sum(a * n, axis=1)))
    else:
        triplet_accuracy = float("nan")

    n_labels = len(np.unique(test_labels))
    silhouette = (
        float(silhouette_score(test_unit, test_labels, metric="cosine"))
        if 2 <= n_labels <= len(test_labels) - 1
        else float("nan")
    )
    return {
        "knn_accuracy": knn_accuracy,
        "triplet_accuracy": triplet_accuracy,
        "silhouette": silhouette,
        "recall_at_1": recall_at_1,
        "n_triplets": int(len(triplets)),
    }


def evaluate(
    model: Any,
    train_dataset: Any,
    test_dataset: Any,
    batch_size: int = 64,
    k: int = K_NEIGHBORS,
    seed: int = 0,
    max_triplets: int | None = None,
    show_progress_bar: bool = False,
) -> dict[str, float]:
    """Encode both splits (columns ``sentence`` and ``label``) and return :func:`evaluate_embeddings`' metrics."""
    train_emb = encode(model, train_dataset["sentence"], batch_size, show_progress_bar)
    test_emb = encode(model, test_dataset["sentence"], batch_size, show_progress_bar)
    return evaluate_embeddings(
        train_emb, list(train_dataset["label"]), test_emb, list(test_dataset["label"]), k, seed, max_triplets
    )


def triplet_evaluator(dataset: Any, seed: int = 0, max_triplets: int | None = None, name: str = "test", **kwargs):
    """sentence-transformers' ``TripletEvaluator`` (cosine) on :func:`sample_triplets` of a labelled split.

    Use it as ``evaluator=`` during training, or to check ``triplet_accuracy``: its ``{name}_cosine_accuracy``
    equals :func:`evaluate`'s ``triplet_accuracy`` for the same seed.
    """
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    sentences = list(dataset["sentence"])
    triplets = sample_triplets(list(dataset["label"]), seed, max_triplets)
    anchors, positives, negatives = ([sentences[i] for i in triplets[:, j]] for j in range(3))
    kwargs.setdefault("write_csv", False)
    return TripletEvaluator(
        anchors, positives, negatives, main_similarity_function="cosine", name=name, **kwargs
    )
