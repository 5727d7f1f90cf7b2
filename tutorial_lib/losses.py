"""The four batch triplet losses of sentence-transformers, vectorized, exact and GPU-ready (notebooks 03-06).

Public API (stable; notebooks, tests and users call it)::

    batch_all_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_hard_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_semi_hard_triplet_loss(embeddings, labels, margin, distance="euclidean")
    batch_hard_soft_margin_triplet_loss(embeddings, labels, distance="euclidean")
    mine(embeddings, labels, margin, distance="euclidean")          -> Mined
    triplet_stats(embeddings, labels, margin, distance="euclidean") -> dict of 0-dim tensors

Shapes: ``embeddings`` (B, D) floating, ``labels`` (B,) integer, ``dist`` (B, B). Each loss returns a 0-dim tensor.

Semantics (the same as sentence-transformers 6.2, ``ST`` below, on every batch with at least two labels):

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

GPU-ready: no Python loop over batch elements and no host synchronisation (no ``.item()``, ``.tolist()`` or
data-dependent shapes) in the loss path; nothing larger than O(B^2) is allocated, even for BatchAll with a few large
label groups. The losses do **not** scan for NaN/inf (that would force a synchronisation); the training callback in
:mod:`tutorial_lib.training` stops on a NaN loss.

Implementation: each loss is a ``torch.autograd.Function`` whose backward pass is written out. The forward computes
the distances without an autograd graph (no B x B intermediates kept), the selection comes from
:mod:`tutorial_lib.mining`, and the backward needs one (B, B) x (B, D) product (BatchAll, semi-hard) or only O(B * D)
work (batch-hard and soft margin select two pairs per anchor). Notebooks 02-06 build the same losses step by step
with autograd; the tests check both against the loops of :mod:`tutorial_lib.reference` and sentence-transformers.

This module imports torch and the core modules :mod:`tutorial_lib.distances`, :mod:`tutorial_lib.masks` and
:mod:`tutorial_lib.mining` only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import cuda_graphs
from .distances import (
    check_distance,
    check_embeddings,
    distances_for_backward,
    pairwise_distances_backward,
    sparse_distances_backward,
)
from .masks import check_labels
from .mining import (
    COUNT_THRESHOLD,
    Masks,
    Mined,
    batch_all_compact,
    batch_all_counts,
    batch_masks,
    hardest_indices,
    mine_distances,
    semi_hard_indices,
    statistics,
    use_compact,
    use_triton,
)

STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")
_SOFTPLUS_THRESHOLD = 20.0  # torch's softplus returns x itself above this (its gradient is then exactly 1)

__all__ = [
    "COUNT_THRESHOLD",
    "Mined",
    "STRATEGIES",
    "batch_all_triplet_loss",
    "batch_hard_triplet_loss",
    "batch_semi_hard_triplet_loss",
    "batch_hard_soft_margin_triplet_loss",
    "mine",
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
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
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
# The losses as autograd Functions
# ----------------------------------------------------------------------------------------------------------------


def _hard_forward(embeddings: Tensor, labels: Tensor, margin: float | None, distance: str) -> tuple[Tensor, ...]:
    """BatchHard (``margin`` a float) or its soft-margin variant (``margin`` None): the loss and what backward needs."""
    x, d = distances_for_backward(embeddings, distance)
    masks = batch_masks(labels)
    hardest_pos, hardest_neg = hardest_indices(d, masks.pos, masks.neg, masks.has_pos, masks.has_neg)
    rows = torch.arange(d.shape[0], device=d.device)
    pos_col, neg_col = hardest_pos.clamp(min=0), hardest_neg.clamp(min=0)
    d_ap_raw, d_an = d[rows, pos_col], d[rows, neg_col]
    # ST's convention: no positive -> hardest-positive distance 0; never below 0 (cosine rounds to -1e-7).
    d_ap = torch.where(masks.has_pos, d_ap_raw.clamp_min(0.0), torch.zeros_like(d_ap_raw))
    if margin is None:
        z = d_ap - d_an
        per_anchor = torch.nn.functional.softplus(z)
        slope = torch.where(z > _SOFTPLUS_THRESHOLD, torch.ones_like(z), torch.sigmoid(z))
    else:
        z = (d_ap - d_an) + margin
        per_anchor = torch.relu(z)
        slope = (z > 0).to(z.dtype)  # zero subgradient at exactly zero loss (the reference's tie rule)
    # A single-label batch has no negative anywhere: 0 loss, 0 gradient (documented exception).
    per_anchor = torch.where(masks.has_neg, per_anchor, torch.zeros_like(per_anchor))
    slope = torch.where(masks.has_neg, slope, torch.zeros_like(slope)) / d.shape[0]
    # dL/d d(a, p) = slope where the positive really was selected (and clamp_min passed it); -slope for d(a, n)
    pos_slope = torch.where(masks.has_pos & (d_ap_raw >= 0), slope, torch.zeros_like(slope))
    return (per_anchor.mean(), x, torch.cat([rows, rows]), torch.cat([pos_col, neg_col]),
            torch.cat([pos_slope, -slope]), torch.cat([d_ap_raw, d_an]))


def _hard_backward(grad_output, x, rows, cols, slopes, dists, distance: str) -> tuple[Tensor]:
    return (sparse_distances_backward(rows, cols, slopes * grad_output, x, dists, distance),)


def _semi_hard_forward(embeddings: Tensor, labels: Tensor, margin: float, distance: str) -> tuple[Tensor, ...]:
    x, d = distances_for_backward(embeddings, distance)
    masks = batch_masks(labels)
    semi_hard, _ = semi_hard_indices(d, masks.pos, masks.neg, masks.has_neg)
    valid = semi_hard >= 0  # (B, B): positive pairs of anchors that have a negative
    columns = semi_hard.clamp(min=0)
    z = (d - d.gather(1, columns)) + margin
    active = valid & (z > 0)
    # ST divides by the number of anchor-positive pairs (clamped: an all-singleton batch gives 0, not NaN).
    num_pairs = masks.pos.sum().clamp(min=1).to(d.dtype)
    loss = torch.where(active, z, torch.zeros_like(z)).sum() / num_pairs
    # dL/d dist: +1/N at each active (a, p), -1/N at its semi-hard negative (a, n); n may serve several p.
    grad_dist = active.to(d.dtype) / num_pairs
    grad_dist.scatter_add_(1, columns, -grad_dist)
    return loss, x, grad_dist, d


def _batch_all_forward(embeddings: Tensor, labels: Tensor, margin: float, distance: str) -> tuple[Tensor, ...]:
    x, d = distances_for_backward(embeddings, distance)
    # Once the active set is known the loss is linear in the distances:
    #   sum_{a,p} c[a,p] * (d(a,p) + margin) - sum_{a,n} c'[a,n] * d(a,n).
    # Both sums are large and nearly cancel; subtracting a per-anchor reference r_a (its nearest negative) from
    # every distance leaves the value unchanged (both sums count each active triplet once) but keeps the terms
    # at the scale of the hinge, not of the distances, which preserves float32 precision.
    if use_triton(d):
        from . import triton_kernels

        per_pos, per_neg, counted, total, _ = triton_kernels.batch_all_terms(d, labels, margin)
    elif use_compact(d):
        masks = batch_masks(labels)
        per_pos, per_neg, counted, total = batch_all_compact(d, masks.pos, masks.neg, margin)
    else:
        masks = batch_masks(labels)
        counts = batch_all_counts(d, masks.pos, masks.neg, margin)
        per_pos = counts.per_positive.to(d.dtype)
        per_neg = counts.per_negative.to(d.dtype)
        reference = counts.sorted_neg[:, :1]
        reference = torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference))
        total = (per_pos * ((d - reference) + margin)).sum() - (per_neg * (d - reference)).sum()
        counted = counts.counted
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    # No counted triplet: 0 with a zero gradient instead of ST's division by 1e-16 (documented exception).
    scale = torch.where(counted > 0, 1 / counted.clamp(min=1).to(d.dtype), zero)
    grad_dist = per_pos.sub_(per_neg).mul_(scale)  # dL/d dist, in place: no extra (B, B) buffer
    return total * scale, x, grad_dist, d


def _dense_backward(grad_output, x, grad_dist, d, distance: str) -> tuple[Tensor]:
    return (pairwise_distances_backward(grad_dist * grad_output, x, d, distance),)


_FORWARD = {"hard": _hard_forward, "semi_hard": _semi_hard_forward, "all": _batch_all_forward}
_BACKWARD = {"hard": _hard_backward, "semi_hard": _dense_backward, "all": _dense_backward}


class _Loss(torch.autograd.Function):
    """Any of the four losses: forward and backward written out (and replayed as CUDA graphs at small B)."""

    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor, margin: float | None, distance: str, kind: str) -> Tensor:
        loss, *saved = cuda_graphs.call(_FORWARD[kind], embeddings, labels, margin, distance)
        ctx.save_for_backward(*saved)
        ctx.distance, ctx.kind, ctx.input_dtype = distance, kind, embeddings.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = cuda_graphs.call(_BACKWARD[ctx.kind], grad_output, *ctx.saved_tensors, ctx.distance)
        return grad.to(ctx.input_dtype), None, None, None, None


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
    return _Loss.apply(embeddings, labels, margin, distance, "all")


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
    return _Loss.apply(embeddings, labels, margin, distance, "hard")


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
    return _Loss.apply(embeddings, labels, None, distance, "hard")


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
    return _Loss.apply(embeddings, labels, margin, distance, "semi_hard")


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
        A :class:`tutorial_lib.mining.Mined` tuple (see there for shapes). Ties go to the lowest index.
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


_LOSSES = {
    "batch_all": lambda e, y, m, d: batch_all_triplet_loss(e, y, m, d),
    "batch_hard": lambda e, y, m, d: batch_hard_triplet_loss(e, y, m, d),
    "batch_semi_hard": lambda e, y, m, d: batch_semi_hard_triplet_loss(e, y, m, d),
    "batch_hard_soft_margin": lambda e, y, m, d: batch_hard_soft_margin_triplet_loss(e, y, d),
}


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
    if strategy not in _LOSSES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    margin = 0.0 if strategy == "batch_hard_soft_margin" or margin is None else check_margin(margin)
    loss = _LOSSES[strategy](embeddings, labels, margin, distance)
    if not with_stats:
        return loss, None
    return loss, triplet_stats(embeddings.detach(), labels, margin, distance)
