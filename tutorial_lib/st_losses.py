"""sentence-transformers loss modules built on :mod:`tutorial_lib.losses` (notebooks 03-10).

Drop-in for ``SentenceTransformerTrainer(loss=...)`` where sentence-transformers' ``BatchAllTripletLoss``,
``BatchHardTripletLoss``, ``BatchSemiHardTripletLoss`` and ``BatchHardSoftMarginTripletLoss`` go::

    from tutorial_lib.st_losses import BatchHardTripletLoss
    loss = BatchHardTripletLoss(model, margin=0.5)
    trainer = SentenceTransformerTrainer(model=model, train_dataset=ds, loss=loss, args=args)

Differences from the sentence-transformers classes:

* ``distance`` is a name (``"euclidean"``, ``"squared_euclidean"``, ``"cosine"``) instead of a function;
* the default margin is 0.5, not 5: sentence-transformers' default of 5 can never be met by a model that
  normalizes its embeddings (like all-MiniLM-L6-v2), whose euclidean distances are at most 2 (notebook 01);
* ``gather_across_devices=True`` mines over the batches of all processes in multi-GPU training
  (:mod:`tutorial_lib.distributed`);
* after every forward pass ``last_stats`` holds :func:`tutorial_lib.losses.triplet_stats` of the batch as
  detached 0-dim tensors, which :mod:`tutorial_lib.training` logs (``track_stats=False`` skips that work);
* the semantics of :mod:`tutorial_lib.losses` (single-label batches give 0, ties go to the lowest index).

Labels: like sentence-transformers' four losses, these modules accept any label tensor with one entry per example
-- shape (B,), or (B, 1) as a dataset's label column of one-element lists is collated -- and flatten it; a wrong
count raises a ``ValueError`` naming both numbers. Labels must be integers (sentence-transformers also accepts
floats, which usually means a regression column was passed by mistake). The functional API,
:mod:`tutorial_lib.losses`, is strict: (B,) integer labels only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from .distances import check_distance
from .distributed import gather_across_processes, world_size
from .losses import check_margin, check_strategy, loss_and_stats, st_class_name

_HERMANS = """
@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017},
    eprint={1703.07737},
    archivePrefix={arXiv},
    primaryClass={cs.CV}
}
"""

_FACENET = """
@inproceedings{schroff2015facenet,
    title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
    author={Schroff, Florian and Kalenichenko, Dmitry and Philbin, James},
    booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
    pages={815--823},
    year={2015}
}
"""


def single_text_column(loss: nn.Module, sentence_features: Iterable[dict[str, Tensor]]) -> dict[str, Tensor]:
    """The tokenized batch of the one text column the trainer passes; a clear error for any other number."""
    features = list(sentence_features)
    if len(features) != 1:
        raise ValueError(
            f"{type(loss).__name__} expects one text column plus a label column; got {len(features)} text columns"
        )
    return features[0]


def flat_labels(loss: nn.Module, labels: Tensor | None, batch_size: int) -> Tensor:
    """``labels`` as a (B,) tensor: (B,) and (B, 1) (any shape with B entries) are accepted, as in
    sentence-transformers; anything else raises a one-line ``ValueError``."""
    name = type(loss).__name__
    if labels is None:
        raise ValueError(f"{name} needs a 'label' column in the training data")
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} expects the labels as a torch.Tensor; got {type(labels).__name__}")
    if labels.numel() != batch_size:
        raise ValueError(f"{name} expects {batch_size} labels (one per example), but got {labels.numel()} labels "
                         f"with shape {tuple(labels.shape)}")
    return labels.reshape(-1)


def batch_loss(loss: nn.Module, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor] | None]:
    """The loss of one batch for a loss module with ``strategy``, ``margin``, ``distance``, ``track_stats`` and
    ``gather_across_devices`` attributes, and its statistics (None unless tracked).

    With ``gather_across_devices`` every process mines the whole global batch, and the loss is multiplied by the
    number of processes so that DDP's gradient averaging gives the single-process gradient
    (see :mod:`tutorial_lib.distributed`).

    Args:
        embeddings: (B, D) this process's embeddings.
        labels: (B,) or (B, 1) integer labels.
    """
    labels = flat_labels(loss, labels, embeddings.shape[0])
    scale = 1
    if loss.gather_across_devices:
        scale = world_size()
        embeddings, labels = gather_across_processes(embeddings, labels)
    value, stats = loss_and_stats(
        loss.strategy, embeddings, labels, loss.margin, loss.distance, with_stats=loss.track_stats
    )
    return (value * scale if scale != 1 else value), stats


class _BatchTripletLoss(nn.Module):
    strategy: str = ""
    has_margin: bool = True
    citation: str = _HERMANS

    def __init__(
        self,
        model: nn.Module,
        distance: str = "euclidean",
        margin: float = 0.5,
        track_stats: bool = True,
        gather_across_devices: bool = False,
    ):
        super().__init__()
        self.model = model  # the trainer swaps in the wrapped (DDP/compiled) model under this attribute name
        self.distance = check_distance(distance)
        self.margin = check_margin(margin) if self.has_margin else None
        self.track_stats = track_stats
        self.gather_across_devices = gather_across_devices
        self.last_stats: dict[str, Tensor] | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        """Embed the single input column and return the loss of the batch.

        Args:
            sentence_features: a one-element list with the tokenized batch (what the trainer passes).
            labels: (B,) or (B, 1) integer tensor.
        """
        embeddings = self.model(single_text_column(self, sentence_features))["sentence_embedding"]
        return self.compute_loss_from_embeddings([embeddings], labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss from already computed embeddings ((B, D) tensor in a one-element list), as in ST's losses.

        Args:
            embeddings: ``[(B, D) tensor]``.
            labels: (B,) or (B, 1) integer tensor.
        """
        loss, self.last_stats = batch_loss(self, embeddings[0], labels)
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"distance": self.distance}
        if self.has_margin:
            config["margin"] = self.margin
        return config

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items())


class BatchAllTripletLoss(_BatchTripletLoss):
    """Every valid triplet of the batch; the mean over the active ones. See :func:`tutorial_lib.losses.batch_all_triplet_loss`."""

    strategy = "batch_all"


class BatchHardTripletLoss(_BatchTripletLoss):
    """Farthest positive vs nearest negative per anchor. See :func:`tutorial_lib.losses.batch_hard_triplet_loss`."""

    strategy = "batch_hard"


class BatchSemiHardTripletLoss(_BatchTripletLoss):
    """FaceNet's semi-hard negatives. See :func:`tutorial_lib.losses.batch_semi_hard_triplet_loss`."""

    strategy = "batch_semi_hard"
    citation = _FACENET


class BatchHardSoftMarginTripletLoss(_BatchTripletLoss):
    """Batch-hard with softplus instead of a margin. See :func:`tutorial_lib.losses.batch_hard_soft_margin_triplet_loss`."""

    strategy = "batch_hard_soft_margin"
    has_margin = False

    def __init__(
        self, model: nn.Module, distance: str = "euclidean", track_stats: bool = True, gather_across_devices: bool = False
    ):
        super().__init__(model, distance=distance, margin=0.0, track_stats=track_stats,
                         gather_across_devices=gather_across_devices)


LOSSES = {
    "batch_all": BatchAllTripletLoss,
    "batch_hard": BatchHardTripletLoss,
    "batch_semi_hard": BatchSemiHardTripletLoss,
    "batch_hard_soft_margin": BatchHardSoftMarginTripletLoss,
}
"""Strategy name -> loss class (the names used by ``python -m tutorial_lib.train --loss``)."""


def make_loss(strategy: str, model: nn.Module, margin: float | None = 0.5, distance: str = "euclidean", **kwargs):
    """Build the loss module for a strategy name; ``margin`` is ignored for the soft-margin loss."""
    check_strategy(strategy)
    if strategy == "batch_hard_soft_margin":
        return LOSSES[strategy](model, distance=distance, **kwargs)
    return LOSSES[strategy](model, distance=distance, margin=0.5 if margin is None else margin, **kwargs)


def sentence_transformers_loss(strategy: str, model: nn.Module, margin: float | None = 0.5, distance: str = "euclidean"):
    """sentence-transformers' own loss module for a strategy, with the matching distance function (the oracle)."""
    import functools

    from sentence_transformers.sentence_transformer import losses as st

    fn = st.BatchHardTripletLossDistanceFunction
    distance_fn = {
        "euclidean": fn.euclidean_distance,
        "squared_euclidean": functools.partial(fn.euclidean_distance, squared=True),
        "cosine": fn.cosine_distance,
    }[check_distance(distance)]
    cls = getattr(st, st_class_name(strategy))  # e.g. BatchHardTripletLoss
    if strategy == "batch_hard_soft_margin":
        return cls(model, distance_metric=distance_fn)
    return cls(model, distance_metric=distance_fn, margin=margin)


__all__ = [
    "BatchAllTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "BatchHardSoftMarginTripletLoss",
    "LOSSES",
    "make_loss",
    "sentence_transformers_loss",
]
