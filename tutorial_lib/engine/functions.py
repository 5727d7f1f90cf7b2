"""The four losses as one ``torch.autograd.Function`` with its backward pass written out (the engine).

The forward computes the distances without an autograd graph (no (B, B) intermediates kept), selects triplets with
:mod:`.selection` and counts BatchAll's active ones with :mod:`.counting`; the backward needs one (B, B) x (B, D)
product (BatchAll, semi-hard) or only O(B * D) work (batch-hard and soft margin select two pairs per anchor). Both
passes are replayed as CUDA graphs at small batch sizes (:mod:`.cuda_graphs`). No Python loop over batch elements,
no host synchronisation, nothing larger than O(B^2).

Non-finite input: a NaN or infinite distance (a NaN/inf embedding, or a float32 overflow of the Gram matrix at
norms ~1e19) makes the loss NaN, without a host synchronisation, so that no finite loss ever hides non-finite
gradients (sentence-transformers' losses return NaN there too).

The readable versions of the same losses are in :mod:`tutorial_lib.vectorized`; the public API is
:mod:`tutorial_lib.losses`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import cuda_graphs
from .counting import batch_all_compact, batch_all_counts, use_compact, use_fused, use_triton
from .gradients import distances_for_backward, pairwise_distances_backward, sparse_distances_backward
from .selection import batch_masks, hardest_indices, semi_hard_indices

SOFTPLUS_THRESHOLD = 20.0  # torch's softplus returns x itself above this (its gradient is then exactly 1)


def _nan_if_not_finite(loss: Tensor, d: Tensor) -> Tensor:
    # A NaN/inf distance poisons the gradient of every row that meets it; make the loss say so (no host sync).
    return torch.where(torch.isfinite(d).all(), loss, torch.full_like(loss, float("nan")))


def hard_forward(embeddings: Tensor, labels: Tensor, margin: float | None, distance: str) -> tuple[Tensor, ...]:
    """BatchHard (``margin`` a float) or its soft-margin variant (``margin`` None): the loss and what backward needs."""
    x, d = distances_for_backward(embeddings, distance)
    masks = batch_masks(labels)
    hardest_pos, hardest_neg = hardest_indices(d, masks.pos, masks.neg, masks.has_pos, masks.has_neg)
    rows = torch.arange(d.shape[0], device=d.device)
    pos_col, neg_col = hardest_pos.clamp(min=0), hardest_neg.clamp(min=0)
    d_ap_raw, d_an = d[rows, pos_col], d[rows, neg_col]
    # ST's convention: no positive -> hardest-positive distance 0 (and never below 0).
    d_ap = torch.where(masks.has_pos, d_ap_raw.clamp_min(0.0), torch.zeros_like(d_ap_raw))
    if margin is None:
        z = d_ap - d_an
        per_anchor = torch.nn.functional.softplus(z)
        slope = torch.where(z > SOFTPLUS_THRESHOLD, torch.ones_like(z), torch.sigmoid(z))
    else:
        z = (d_ap - d_an) + margin
        per_anchor = torch.relu(z)
        slope = (z > 0).to(z.dtype)  # zero subgradient at exactly zero loss (the reference's tie rule)
    # A single-label batch has no negative anywhere: 0 loss, 0 gradient (documented exception).
    per_anchor = torch.where(masks.has_neg, per_anchor, torch.zeros_like(per_anchor))
    slope = torch.where(masks.has_neg, slope, torch.zeros_like(slope)) / d.shape[0]
    # dL/d d(a, p) = slope where the positive really was selected (and clamp_min passed it); -slope for d(a, n)
    pos_slope = torch.where(masks.has_pos & (d_ap_raw >= 0), slope, torch.zeros_like(slope))
    return (_nan_if_not_finite(per_anchor.mean(), d), x, torch.cat([rows, rows]), torch.cat([pos_col, neg_col]),
            torch.cat([pos_slope, -slope]), torch.cat([d_ap_raw, d_an]))


def hard_backward(grad_output, x, rows, cols, slopes, dists, distance: str) -> tuple[Tensor]:
    return (sparse_distances_backward(rows, cols, slopes * grad_output, x, dists, distance),)


def semi_hard_forward(embeddings: Tensor, labels: Tensor, margin: float, distance: str) -> tuple[Tensor, ...]:
    x, d = distances_for_backward(embeddings, distance)
    if use_fused(d):  # float32 CUDA: the semi-hard negatives found without sorting every row
        from . import fused_semi_hard

        signed, total, pairs = fused_semi_hard.semi_hard_terms(d, labels, margin)
        num_pairs = pairs.clamp(min=1).to(d.dtype)
        return _nan_if_not_finite(total / num_pairs, d), x, signed.div_(num_pairs), d
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
    return _nan_if_not_finite(loss, d), x, grad_dist, d


def batch_all_forward(embeddings: Tensor, labels: Tensor, margin: float, distance: str) -> tuple[Tensor, ...]:
    x, d = distances_for_backward(embeddings, distance)
    # Once the active set is known the loss is linear in the distances:
    #   sum_{a,p} c[a,p] * (d(a,p) + margin) - sum_{a,n} c'[a,n] * d(a,n).
    # Both sums are large and nearly cancel; subtracting a per-anchor reference r_a (its nearest negative) from
    # every distance leaves the value unchanged (both sums count each active triplet once) but keeps the terms
    # at the scale of the hinge, not of the distances, which preserves float32 precision.
    per_neg = None
    if use_fused(d):  # float32 CUDA: direct sums where labels have few examples, no sort of every row
        from . import fused_kernels

        per_pos, counted, total = fused_kernels.batch_all_terms(d, labels, margin)  # per_pos - per_neg already
    elif use_triton(d):
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
    grad_dist = (per_pos if per_neg is None else per_pos.sub_(per_neg)).mul_(scale)  # dL/d dist, in place
    return _nan_if_not_finite(total * scale, d), x, grad_dist, d


def dense_backward(grad_output, x, grad_dist, d, distance: str) -> tuple[Tensor]:
    return (pairwise_distances_backward(grad_dist * grad_output, x, d, distance),)


FORWARD = {"hard": hard_forward, "semi_hard": semi_hard_forward, "all": batch_all_forward}
BACKWARD = {"hard": hard_backward, "semi_hard": dense_backward, "all": dense_backward}


class TripletLossFunction(torch.autograd.Function):
    """Any of the four losses (``kind`` "all", "hard" or "semi_hard"; soft margin = "hard" with margin None):
    forward and backward written out, and replayed as CUDA graphs at small B."""

    @staticmethod
    def forward(ctx, embeddings: Tensor, labels: Tensor, margin: float | None, distance: str, kind: str) -> Tensor:
        loss, *saved = cuda_graphs.call(FORWARD[kind], embeddings, labels, margin, distance)
        ctx.save_for_backward(*saved)
        ctx.distance, ctx.kind, ctx.input_dtype = distance, kind, embeddings.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = cuda_graphs.call(BACKWARD[ctx.kind], grad_output, *ctx.saved_tensors, ctx.distance)
        return grad.to(ctx.input_dtype), None, None, None, None


def triplet_loss(embeddings: Tensor, labels: Tensor, margin: float | None, distance: str, kind: str) -> Tensor:
    """The loss of ``kind`` on checked inputs, through :class:`TripletLossFunction`."""
    return TripletLossFunction.apply(embeddings, labels, margin, distance, kind)
