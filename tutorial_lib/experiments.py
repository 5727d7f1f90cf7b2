"""Training runs under one budget, for the comparisons of notebooks 07 and 10 (a fair comparison needs one loop).

Kinds of run (the ``kind`` column of the results files):

* ``untrained``: the model as loaded;
* ``linear_probe``: logistic regression on the frozen, untrained embeddings (scikit-learn), a classifier;
* ``online``: one of the four batch triplet losses on ``GROUP_BY_LABEL`` batches (:func:`tutorial_lib.training.train`);
* ``mnrl``: sentence-transformers' ``MultipleNegativesRankingLoss`` on pairs of same-label questions: each anchor's
  positive is its pair, every other positive in the batch is a negative -- including those that share its label;
* ``offline_random``: ``TripletLoss`` on fixed triplets drawn at random (:func:`random_triplets`);
* ``offline_mined``: ``TripletLoss`` on triplets whose negative was mined by sentence-transformers'
  ``util.mine_hard_negatives`` with the untrained model (:func:`mined_triplets`).

**The budget** (:func:`budget`): every trained run embeds the same number of sentences, one pass over the training
questions: ``ceil(N / 32)`` steps of 32 sentences for the online losses (27 for the 840 bundled questions) and for
MNRL (16 pairs of 2), ``ceil(N / 30)`` steps of 10 triplets (30 sentences) for TripletLoss. Every run uses the
same optimiser and schedule (:func:`tutorial_lib.training.learning_rate_factor`), margin 0.5 (euclidean) where
there is one, and its own learning rate, chosen on a validation split.

Public API::

    budget(n_train)                                         -> Budget
    same_label_pairs(dataset, seed)                         -> Dataset (anchor, positive)
    random_triplets(dataset, seed)                          -> Dataset (anchor, positive, negative)
    mined_triplets(dataset, model, seed, num_negatives=10)  -> (Dataset, MiningReport)
    train_run(model, kind, loss, dataset, learning_rate, seed, budget, margin=0.5) -> (history, seconds, extra)
    evaluate_run(model, train, test)                        -> (metrics, answers, test embeddings)
    probe_predictions(train_emb, train_labels, test_emb, c) -> (N_test,) predicted labels
    same_label_collisions(pairs, seed)                      -> dict: what MNRL's in-batch negatives share
    flip_labels(dataset, fraction, seed)                    -> (Dataset, (N,) bool: which labels were flipped)

Imports sentence-transformers, datasets and scikit-learn inside the functions.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .env import quiet
from .evaluation import sample_triplets

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Budget", "MARGIN", "MiningReport", "budget", "evaluate_run", "flip_labels", "method_kind", "mined_triplets",
           "probe_predictions", "random_triplets", "same_label_collisions", "same_label_pairs", "train_run"]

MARGIN = 0.5
"""The margin of every loss that has one (euclidean distances between unit vectors lie in [0, 2])."""
ONLINE_BATCH = 32
PAIRS_PER_STEP = 16
TRIPLETS_PER_STEP = 10


class Budget(NamedTuple):
    """Steps and batch sizes that give every kind of run one pass over ``n_train`` training questions."""

    n_train: int
    online_steps: int  # GROUP_BY_LABEL batches of ONLINE_BATCH sentences
    pair_steps: int  # PAIRS_PER_STEP pairs (2 sentences each)
    triplet_steps: int  # TRIPLETS_PER_STEP triplets (3 sentences each)

    def steps(self, kind: str) -> int:
        return {"online": self.online_steps, "mnrl": self.pair_steps}.get(kind, self.triplet_steps)

    def batch_size(self, kind: str) -> int:
        """Sentences per step."""
        return {"online": ONLINE_BATCH, "mnrl": 2 * PAIRS_PER_STEP}.get(kind, 3 * TRIPLETS_PER_STEP)


def budget(n_train: int) -> Budget:
    """One pass over ``n_train`` questions for every kind of run (see the module docstring)."""
    return Budget(n_train, math.ceil(n_train / ONLINE_BATCH), math.ceil(n_train / (2 * PAIRS_PER_STEP)),
                  math.ceil(n_train / (3 * TRIPLETS_PER_STEP)))


# ----------------------------------------------------------------------------------------------------------------
# Rows for the pair and triplet losses
# ----------------------------------------------------------------------------------------------------------------


def same_label_pairs(dataset: Any, seed: int) -> Any:
    """(anchor, positive) rows: each label's questions shuffled and paired off, so every question appears once.

    Args:
        dataset: a ``Dataset`` with ``sentence`` and ``label`` columns.
        seed: the shuffle's seed.
    """
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    sentences, labels = list(dataset["sentence"]), np.asarray(dataset["label"])
    rows = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        rows += [(int(members[i]), int(members[i + 1]), int(label)) for i in range(0, len(members) - 1, 2)]
    order = rng.permutation(len(rows))  # labels interleaved, as a sampler would see them
    rows = [rows[i] for i in order]
    return Dataset.from_dict({"anchor": [sentences[a] for a, _, _ in rows],
                              "positive": [sentences[p] for _, p, _ in rows],
                              "label_of_pair": [y for _, _, y in rows]})


def flip_labels(dataset: Any, fraction: float, seed: int) -> tuple[Any, np.ndarray]:
    """Label noise: ``round(fraction * N)`` rows, chosen at random, get another label, chosen uniformly among the rest.

    Returns:
        The noisy copy of ``dataset`` (same ``ClassLabel`` names) and the (N,) bool mask of the flipped rows.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset["label"])
    n_labels = len(dataset.features["label"].names)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)] = True
    noisy = labels.copy()
    for row in np.flatnonzero(flipped):
        noisy[row] = rng.choice([y for y in range(n_labels) if y != labels[row]])
    from datasets import Dataset

    rows = {"sentence": list(dataset["sentence"]), "label": noisy.tolist()}
    return Dataset.from_dict(rows, features=dataset.features), flipped


def same_label_collisions(pairs: Any, seed: int, pairs_per_step: int = PAIRS_PER_STEP) -> dict[str, float]:
    """How many of MNRL's in-batch negatives share the anchor's label, in the batches sentence-transformers' default
    sampler draws from ``pairs`` (:func:`same_label_pairs`, same seed as the trainer's).

    Returns:
        ``negatives_per_anchor`` (the other pairs of a full batch), ``same_label_per_anchor`` (how many of those
        share the anchor's label, on average) and ``anchors_with_one`` (the share of anchors with at least one).
    """
    import torch
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import RandomSampler

    labels = np.asarray(pairs["label_of_pair"])
    generator = torch.Generator().manual_seed(seed)  # what the trainer builds for its default batches
    sampler = DefaultBatchSampler(RandomSampler(range(len(pairs)), generator=generator), pairs_per_step,
                                  drop_last=False, generator=generator, seed=seed)
    same = []
    for batch in sampler:
        batch_labels = labels[list(batch)]
        same += [int((batch_labels == y).sum()) - 1 for y in batch_labels]  # the others with the anchor's label
    same = np.asarray(same)
    return {"negatives_per_anchor": pairs_per_step - 1, "same_label_per_anchor": float(same.mean()),
            "anchors_with_one": float((same > 0).mean())}


def random_triplets(dataset: Any, seed: int) -> Any:
    """(anchor, positive, negative) rows: one per training question, the positive and the negative drawn at random
    (:func:`tutorial_lib.evaluation.sample_triplets`), in a seeded random order."""
    from datasets import Dataset

    sentences = list(dataset["sentence"])
    rows = sample_triplets(list(dataset["label"]), seed=seed)
    rows = rows[np.random.default_rng(seed).permutation(len(rows))]
    return Dataset.from_dict({column: [sentences[i] for i in rows[:, j]]
                              for j, column in enumerate(["anchor", "positive", "negative"])})


class MiningReport(NamedTuple):
    """What label-blind mining proposed: ``mined`` negatives in all, of which ``same_label`` share the anchor's
    label (dropped), and ``anchors_without_negative`` anchors left with no usable one (dropped)."""

    mined: int
    same_label: int
    anchors_without_negative: int


def mined_triplets(dataset: Any, model: Any, seed: int, num_negatives: int = 10) -> tuple[Any, MiningReport]:
    """Triplets with hard negatives mined by sentence-transformers' ``util.mine_hard_negatives``.

    Each question is an anchor with a random same-label positive; the corpus is every training question.
    ``mine_hard_negatives`` knows nothing of labels: it proposes the ``num_negatives`` nearest questions (by
    ``model``) other than the positive, and many of them share the anchor's label. Those are dropped (counted in
    the report) and the nearest remaining one becomes the negative.
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    sentences, labels = list(dataset["sentence"]), list(dataset["label"])
    label_of = dict(zip(sentences, labels))
    positives = sample_triplets(labels, seed=seed)[:, :2]
    pairs = Dataset.from_dict({"anchor": [sentences[a] for a, _ in positives],
                               "positive": [sentences[p] for _, p in positives]})
    mined = mine_hard_negatives(pairs, model, corpus=sentences, num_negatives=num_negatives, sampling_strategy="top",
                                output_format="n-tuple", batch_size=64, verbose=False)
    columns = [c for c in mined.column_names if c.startswith("negative")]
    rows, same, without = [], 0, 0
    for record in mined:
        candidates = [record[c] for c in columns if record[c] is not None]
        same += sum(label_of[c] == label_of[record["anchor"]] for c in candidates)
        usable = [c for c in candidates if label_of[c] != label_of[record["anchor"]]]
        if usable:
            rows.append((record["anchor"], record["positive"], usable[0]))
        else:
            without += 1
    order = np.random.default_rng(seed).permutation(len(rows))
    triplets = Dataset.from_dict({name: [rows[i][j] for i in order] for j, name in
                                  enumerate(["anchor", "positive", "negative"])})
    return triplets, MiningReport(len(mined) * len(columns), same, without)


# ----------------------------------------------------------------------------------------------------------------
# One training run
# ----------------------------------------------------------------------------------------------------------------


def _fit_rows(model: Any, rows: Any, loss: Any, batch_size: int, steps: int, learning_rate: float, seed: int
              ) -> tuple[pd.DataFrame, float]:
    """Train on pair/triplet rows with the default sampler, the series' schedule and its per-step recorder (the
    same optimiser, schedule and non-finite stop as :func:`tutorial_lib.training.train`)."""
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import PrinterCallback

    from .monitor import StepRecorder
    from .training import trainer_class

    on_cuda = model.device.type == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    recorder = StepRecorder(loss, model, check_gradients=not (on_cuda and not bf16))
    with tempfile.TemporaryDirectory(prefix="triplet-rows-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
            warmup_steps=0.1, weight_decay=0.01, seed=seed, data_seed=seed, bf16=bf16, fp16=on_cuda and not bf16,
            use_cpu=not on_cuda, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=quiet())
        trainer = trainer_class()(model=model, args=args, train_dataset=rows, loss=loss,
                                  callbacks=[recorder.callback()])
        trainer.remove_callback(PrinterCallback)  # the recorder's history replaces printed log lines
        handle = loss.register_forward_hook(recorder.hook)
        start = time.perf_counter()
        try:
            trainer.train()
        finally:
            handle.remove()
            model.eval()
        seconds = time.perf_counter() - start
    return pd.DataFrame(recorder.rows), seconds


def train_run(model: Any, kind: str, loss: str | None, dataset: Any, learning_rate: float, seed: int,
              budget: Budget, margin: float = MARGIN) -> tuple[pd.DataFrame, float, dict[str, Any]]:
    """Train ``model`` in place: one run of ``kind`` (``online``, ``mnrl``, ``offline_random``, ``offline_mined``).

    Args:
        loss: the strategy name for ``online`` runs, else ignored.
        dataset: the labelled training split (``sentence``, ``label``).

    Returns:
        ``(history, train_seconds, extra)``: the per-step history (online runs: the mining statistics too), the
        wall-clock time of training alone, and what else the run measured (``mining`` report for ``offline_mined``).
    """
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
        TripletDistanceMetric,
        TripletLoss,
    )

    from .st_losses import make_loss
    from .training import train

    steps, batch = budget.steps(kind), budget.batch_size(kind)
    if kind == "online":
        result = train(model, dataset, make_loss(loss, model, margin=margin), max_steps=steps, batch_size=batch,
                       learning_rate=learning_rate, seed=seed)
        return result.history, result.train_seconds, {}
    extra: dict[str, Any] = {}
    if kind == "mnrl":
        rows = same_label_pairs(dataset, seed).remove_columns("label_of_pair")
        objective = MultipleNegativesRankingLoss(model)
        per_step = PAIRS_PER_STEP
    elif kind in ("offline_random", "offline_mined"):
        if kind == "offline_random":
            rows = random_triplets(dataset, seed)
        else:
            rows, extra["mining"] = mined_triplets(dataset, model, seed)
        objective = TripletLoss(model, distance_metric=TripletDistanceMetric.EUCLIDEAN, triplet_margin=margin)
        per_step = TRIPLETS_PER_STEP
    else:
        raise ValueError(f"unknown kind of run {kind!r}; expected online, mnrl, offline_random or offline_mined")
    history, seconds = _fit_rows(model, rows, objective, per_step, steps, learning_rate, seed)
    return history, seconds, extra


def method_kind(method: str) -> tuple[str, str | None]:
    """``(kind, strategy)`` of a method name: ``("online", "batch_all")`` for a strategy, ``(method, None)`` else."""
    from .strategies import STRATEGIES

    return ("online", method) if method in STRATEGIES else (method, None)


def evaluate_run(model: Any, train: Any, test: Any) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """The four metrics of :func:`tutorial_lib.evaluation.evaluate_embeddings` on ``test`` (``train`` as the index),
    ``accuracy`` (= ``knn_accuracy``), the per-question answers and the (N_test, D) test embeddings."""
    from .evaluation import encode, evaluate_embeddings, per_question

    train_emb, test_emb = encode(model, train["sentence"]), encode(model, test["sentence"])
    metrics = evaluate_embeddings(train_emb, train["label"], test_emb, test["label"])
    answers = per_question(train_emb, train["label"], test_emb, test["label"])
    metrics["accuracy"] = metrics["knn_accuracy"]
    return metrics, answers, test_emb


def probe_predictions(train_emb: np.ndarray, train_labels: Any, test_emb: np.ndarray, c: float) -> np.ndarray:
    """A linear probe: logistic regression (C = ``c``) on frozen, L2-normalised (N, D) embeddings; (N_test,) labels.

    Normalised like the cosine metrics, so that the probe and kNN see the same geometry.
    """
    from sklearn.linear_model import LogisticRegression

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # a zero row stays zero

    probe = LogisticRegression(C=c, max_iter=2000)
    probe.fit(unit(train_emb), np.asarray(list(train_labels)))
    return probe.predict(unit(test_emb))
