"""The four batch triplet losses of sentence-transformers: the public, fast, exact API (notebooks 00-10).

Public API (stable; notebooks, tests and users call it)::

    batch_all_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_hard_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_semi_hard_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_hard_soft_margin_triplet_loss(embeddings, labels, distance="euclidean")
    mine(embeddings, labels, margin, distance="euclidean")          -> Mined
    triplet_stats(embeddings, labels, margin, distance="euclidean") -> dict of 0-dim tensors

Shapes: ``embeddings`` (B, D) floating, ``labels`` (B,) integer, ``dist`` (B, B). Each loss returns a 0-dim tensor.

Semantics (the same as sentence-transformers 6.3, ``ST`` below, on every batch with at least two labels; 6.2
differs only in its cosine distance, which it does not clamp at 0):

* **BatchAll**: every valid triplet (a, p, n) has the loss ``(d(a,p) - d(a,n)) + margin``, clamped at 0. The sum over
  all triplets is divided by the number of triplets whose loss is > 1e-16 (the *active* ones), not by the number of
  valid triplets, so the curve reports the mean over active triplets only (notebook 03).
* **BatchHard**: per anchor, the farthest positive and the nearest negative; ``relu(d_ap - d_an + margin)`` averaged
  over all anchors. An anchor with no positive gets a hardest-positive distance of 0 and stays in the mean (ST's
  convention).
* **BatchSemiHard** (FaceNet, TensorFlow's ``triplet_semihard_loss``): per anchor-positive pair, the nearest
  negative that is farther than the positive; if there is none, the farthest negative (the *fallback*). Averaged
  over all anchor-positive pairs.
* **BatchHardSoftMargin**: BatchHard with ``softplus(d_ap - d_an)`` instead of the hinge; no margin.

Documented differences from ST (each also in notebooks 03-06):

* a batch with a single label has no negative: every loss returns 0 with a zero gradient (ST returns a positive
  loss computed against the anchor itself or the farthest positive);
* BatchAll with no triplet above 1e-16 returns 0 with a zero gradient (ST divides by 1e-16 and can return a
  gradient of +-1e16);
* ties: where several candidates are equally hard, the one with the lowest index is selected; a triplet whose loss
  is exactly 0 contributes a zero gradient (ST passes the gradient of the linear piece there, and its semi-hard loss
  half of it); ST's batch-hard "+ row max" masking can select the anchor itself at a tie, this code never does;
* inputs are checked: 2-D float embeddings, 1-D integer labels of the same length, margin >= 0 (ST flattens (B, 1)
  labels and accepts float labels silently).

Non-finite input: a NaN or infinite embedding, or embeddings so large that the float32 distances overflow
(~1e19), give a NaN loss (as ST does), never a finite loss with non-finite gradients.

Where to read what: the readable versions of these losses, plain autograd code built on
:mod:`tutorial_lib.distances` and :mod:`tutorial_lib.masks`, are in :mod:`tutorial_lib.vectorized` (what notebooks
03-06 build); the naive loops in :mod:`tutorial_lib.reference`. This module calls the fast exact engine,
:mod:`tutorial_lib.engine`: autograd Functions with written backward passes, O(B^2) memory, no host
synchronisation, CUDA graphs at small batch sizes. The tests hold all three equal to each other and to ST.
"""

from __future__ import annotations

import math
import numbers

from torch import Tensor

from .distances import check_distance, check_embeddings
from .engine.counting import batch_all_counts
from .engine.functions import triplet_loss
from .engine.gradients import distances_for_backward
from .engine.selection import Masks, Mined, batch_masks, mine_distances, statistics
from .masks import check_labels
from .reference import COUNT_THRESHOLD
from .strategies import STRATEGIES, TITLES, check_strategy, st_class_name

__all__ = [
    "COUNT_THRESHOLD",
    "Mined",
    "STRATEGIES",
    "TITLES",
    "batch_all_triplet_loss",
    "batch_hard_triplet_loss",
    "batch_semi_hard_triplet_loss",
    "batch_hard_soft_margin_triplet_loss",
    "loss_function",
    "mine",
    "st_class_name",
    "triplet_stats",
]


# ----------------------------------------------------------------------------------------------------------------
# Input checks (host-side metadata only: no synchronisation)
# ----------------------------------------------------------------------------------------------------------------


def check_margin(margin: float) -> float:
    """Return ``margin`` as a float if it is a finite number >= 0, else raise a clear error."""
    if isinstance(margin, Tensor):
        if margin.numel() != 1 or margin.device.type != "cpu":
            raise TypeError("margin must be a Python number (or a one-element CPU tensor)")
        margin = margin.item()
    # numbers.Real covers int, float and NumPy scalars such as np.float32 (not a float subclass); bool is excluded.
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
        raise TypeError(f"margin must be a number; got {type(margin).__name__}")
    margin = float(margin)
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite; got {margin}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (a negative margin rewards collapsed embeddings); got {margin}")
    return margin


def _checked(embeddings: Tensor, labels: Tensor, distance: str) -> Tensor:
    check_embeddings(embeddings)
    check_labels(labels, embeddings.shape[0])
    check_distance(distance)
    return labels.to(embeddings.device)


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def batch_all_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """BatchAll: the mean loss over the active triplets of every valid (anchor, positive, negative) triplet.

    ``sum over valid triplets of max(0, (d_ap - d_an) + margin) / number of triplets with loss > 1e-16``

    Args:
        embeddings: (B, D) floating tensor, B >= 2.
        labels: (B,) integer tensor.
        margin: >= 0.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        0-dim tensor. 0 (zero gradient) for a single-label batch or when no triplet's loss exceeds 1e-16.

    Memory O(B^2) whatever the label layout (ST's grows as B^2 * K for K examples per label).
    """
    margin = check_margin(margin)
    labels = _checked(embeddings, labels, distance)
    return triplet_loss(embeddings, labels, margin, distance, "all")


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """BatchHard: per anchor, its farthest positive against its nearest negative; mean over anchors.

    ``mean over anchors a of max(0, max_p d(a, p) - min_n d(a, n) + margin)``

    An anchor without a positive uses 0 as its hardest-positive distance and stays in the mean (ST's convention).

    Args:
        embeddings: (B, D) floating tensor, B >= 2.
        labels: (B,) integer tensor.
        margin: >= 0.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        0-dim tensor; 0 with a zero gradient for a single-label batch.
    """
    margin = check_margin(margin)
    labels = _checked(embeddings, labels, distance)
    return triplet_loss(embeddings, labels, margin, distance, "hard")


def batch_hard_soft_margin_triplet_loss(embeddings: Tensor, labels: Tensor, distance: str = "euclidean") -> Tensor:
    """BatchHard with a soft margin: ``mean over anchors of softplus(max_p d(a, p) - min_n d(a, n))``.

    No margin to tune; the gradient never vanishes (easy triplets still pull). A loss of ln 2 ~ 0.693 means
    d_ap == d_an on average: the embeddings may have collapsed (notebook 06).

    Args:
        embeddings: (B, D) floating tensor, B >= 2.
        labels: (B,) integer tensor.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        0-dim tensor; 0 with a zero gradient for a single-label batch.
    """
    labels = _checked(embeddings, labels, distance)
    return triplet_loss(embeddings, labels, None, distance, "hard")


def batch_semi_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean"
) -> Tensor:
    """BatchSemiHard (FaceNet): per anchor-positive pair, the nearest negative farther than the positive.

    For each pair (a, p): n* = the negative with the smallest d(a, n) among those with d(a, n) > d(a, p); if there
    is none, the farthest negative (TensorFlow's and ST's fallback). Loss: ``max(0, d(a,p) - d(a,n*) + margin)``
    averaged over all anchor-positive pairs.

    Args:
        embeddings: (B, D) floating tensor, B >= 2.
        labels: (B,) integer tensor.
        margin: >= 0.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        0-dim tensor; 0 with a zero gradient for a single-label batch or a batch without positive pairs.
    """
    margin = check_margin(margin)
    labels = _checked(embeddings, labels, distance)
    return triplet_loss(embeddings, labels, margin, distance, "semi_hard")


def _mined(embeddings: Tensor, labels: Tensor, distance: str) -> tuple[Mined, Masks]:
    labels = _checked(embeddings, labels, distance)
    _, d = distances_for_backward(embeddings, distance)
    masks = batch_masks(labels)
    return mine_distances(d, masks), masks


def mine(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Mined:
    """The positives and negatives each strategy selects, per anchor (and per anchor-positive pair for semi-hard).

    Args:
        embeddings: (B, D) floating tensor.
        labels: (B,) integer tensor.
        margin: >= 0. Selection does not depend on it (semi-hard's rule compares distances only); it is checked
            and accepted so every function of this module takes the same arguments.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        A :class:`tutorial_lib.engine.selection.Mined` tuple (see there for shapes). Ties go to the lowest index.
    """
    check_margin(margin)
    return _mined(embeddings, labels, distance)[0]


def triplet_stats(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> dict[str, Tensor]:
    """Counts and distances that tell how training is going, as detached 0-dim tensors (no host sync).

    Keys:
        ``valid_triplets``: number of valid (a, p, n).
        ``hard_triplets``: d_an <= d_ap.
        ``semi_hard_triplets``: d_ap < d_an and the triplet is active (i.e. d_an < d_ap + margin up to rounding).
        ``easy_triplets``: neither (loss 0). The three categories partition the valid triplets; with margin 0 a
            triplet with d_an == d_ap counts as hard.
        ``active_triplets``, ``active_fraction``: triplets with loss > 0, and their share of the valid ones.
        ``hardest_positive_mean``, ``hardest_negative_mean``: mean over anchors that have a positive (and a
            negative) of their farthest-positive and nearest-negative distances.
        ``semi_hard_fallback_rate``: share of anchor-positive pairs where no negative was farther than the positive.
        ``mean_distance``: mean distance over all pairs i != j (a collapse drives it to 0).

    Args:
        embeddings: (B, D) floating tensor; labels: (B,) integer tensor; margin >= 0; distance: see
            :func:`tutorial_lib.distances.pairwise_distances`.
    """
    margin = check_margin(margin)
    mined, masks = _mined(embeddings, labels, distance)
    counts = batch_all_counts(mined.dist, masks.pos, masks.neg, margin, labels=labels.to(mined.dist.device))
    return statistics(mined, masks, counts)


def loss_function(strategy: str, module=None):
    """``fn(embeddings, labels, margin, distance)`` for a strategy name, from this module or from any module with
    the same four functions (:mod:`tutorial_lib.vectorized`, :mod:`tutorial_lib.reference`). The soft margin's
    function takes no margin: the ``margin`` argument is dropped for it."""
    check_strategy(strategy)
    fn = getattr(module, f"{strategy}_triplet_loss") if module is not None else globals()[f"{strategy}_triplet_loss"]
    if strategy == "batch_hard_soft_margin":
        return lambda embeddings, labels, margin, distance="euclidean": fn(embeddings, labels, distance)
    return fn


def loss_and_stats(
    strategy: str,
    embeddings: Tensor,
    labels: Tensor,
    margin: float | None,
    distance: str = "euclidean",
    with_stats: bool = True,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """The loss of ``strategy`` and, optionally, :func:`triplet_stats` of the same batch (used by ``st_losses``).

    ``margin`` is ignored for ``"batch_hard_soft_margin"`` (its statistics use margin 0).
    """
    check_strategy(strategy)
    margin = 0.0 if strategy == "batch_hard_soft_margin" or margin is None else check_margin(margin)
    loss = loss_function(strategy)(embeddings, labels, margin, distance)
    if not with_stats:
        return loss, None
    return loss, triplet_stats(embeddings.detach(), labels, margin, distance)
