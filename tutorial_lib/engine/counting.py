"""BatchAll's exact counting: how many triplets are active, per pair, in O(B^2) memory (the engine).

BatchAll divides its summed loss by the number of triplets whose loss is above 1e-16. Counting them naively means
one entry per triplet, O(B^2 * K) with K examples per label; here each anchor's negative distances are sorted once
and the active ones, a prefix of that order, are counted by bisection. The readable version of the same loss is
:func:`tutorial_lib.vectorized.batch_all_triplet_loss`; the tests hold the two equal.

Three formulations give identical counts: float32 CUDA inputs use the Triton kernels of
:mod:`tutorial_lib.engine.triton_kernels` (when Triton imports); CPU inputs the compact one
(:func:`batch_all_compact`); anything else the synchronisation-free PyTorch code of :func:`batch_all_counts`.
"""

from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

import torch
from torch import Tensor

from ..reference import COUNT_THRESHOLD


def _triplet_loss_expr(d_ap: Tensor, d_an: Tensor, margin: float) -> Tensor:
    """ST's float expression for one triplet, evaluated operation by operation as ST does: (d_ap - d_an) + margin."""
    return (d_ap - d_an) + margin


def count_active(d_ap: Tensor, sorted_neg: Tensor, margin: float, threshold: float) -> Tensor:
    """Exact number of sorted negatives with ``(d_ap - d_an) + margin > threshold`` in floating-point arithmetic.

    Whether a triplet counts depends on the *rounded* value of ST's expression, and near the boundary that can
    disagree with the real-number test ``d_an < d_ap + margin`` (in float32, 0.3 + 0.1 == 0.4, so the
    test says inactive, but (0.3 - 0.4) + 0.1 = 7e-9 > 0). A threshold search on ``d_ap + margin`` therefore miscounts such ties, by as many
    triplets as there are equal or nearly equal distances. The expression is monotone in ``d_an`` (rounding is
    monotone), so the counted negatives are a prefix of each sorted row and bisection on positions finds its length
    exactly: ceil(log2(B + 1)) rounds of gather-and-compare, a fixed number that depends only on B.

    Args:
        d_ap: (B, Q) anchor-positive distances (-inf where there is nothing to count).
        sorted_neg: (B, B) each anchor's negative distances in ascending order, +inf for non-negatives.
    Returns:
        (B, Q) long counts.
    """
    batch_size = sorted_neg.shape[1]
    low = torch.zeros_like(d_ap, dtype=torch.long)  # invariant: positions < low pass
    high = torch.full_like(d_ap, batch_size, dtype=torch.long)  # invariant: positions >= high fail
    for _ in range(math.ceil(math.log2(batch_size + 1))):
        middle = (low + high) // 2
        value = sorted_neg.gather(1, middle.clamp(max=batch_size - 1))
        passes = (_triplet_loss_expr(d_ap, value, margin) > threshold) & (middle < high)
        low = torch.where(passes, middle + 1, low)
        high = torch.where(passes, high, middle)
    return low


@functools.lru_cache(maxsize=1)
def _triton_importable() -> bool:
    try:
        from . import triton_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def use_triton(d: Tensor) -> bool:
    """The Triton counting kernel serves float32 CUDA tensors (``TRIPLET_TRITON=0`` turns it off, ``force`` on)."""
    mode = os.environ.get("TRIPLET_TRITON", "auto")
    if mode == "0" or d.dtype != torch.float32 or not (d.is_cuda or mode == "force"):
        return False
    return _triton_importable()


FUSED_MAX_BATCH = 8192
"""Largest batch the fused kernels serve (their sorted kernel holds a padded row in registers)."""


def use_fused(d: Tensor) -> bool:
    """With ``TRIPLET_FUSED=1``, BatchAll and BatchSemiHard use the fused kernels (:mod:`.fused_kernels`,
    :mod:`.fused_semi_hard`) wherever the Triton counting kernel would serve (:func:`use_triton`) and
    B <= :data:`FUSED_MAX_BATCH`. Off by default: they are exact on the CPU (Triton's interpreter) but not yet
    measured, or run, on a GPU (``benchmarks/gpu_check.sh`` does both)."""
    if os.environ.get("TRIPLET_FUSED", "0") != "1" or d.shape[0] > FUSED_MAX_BATCH:
        return False
    return use_triton(d)


class AllCounts(NamedTuple):
    per_positive: Tensor  # (B, B) long: [a, p] = number of negatives n with loss(a, p, n) > 0; 0 off positive pairs
    per_negative: Tensor  # (B, B) long: [a, n] = number of positives p with loss(a, p, n) > 0; 0 off negative pairs
    counted: Tensor  # 0-dim long: number of triplets with loss > 1e-16 (BatchAll's denominator)
    sorted_neg: Tensor  # (B, B) each anchor's negative distances, ascending, +inf for non-negatives


def use_compact(d: Tensor) -> bool:
    """On the CPU, BatchAll compacts the positive pairs (``nonzero``): with no device to synchronise with, a
    data-dependent shape costs nothing, and P x K batches then need only B * (K - 1) queries instead of B^2.
    ``TRIPLET_DENSE=1`` selects the GPU's synchronisation-free formulation on the CPU too (the tests use it)."""
    return d.device.type == "cpu" and os.environ.get("TRIPLET_DENSE", "0") != "1"


def batch_all_counts(
    d: Tensor, pos_mask: Tensor, neg_mask: Tensor, margin: float, labels: Tensor | None = None
) -> AllCounts:
    """Per pair, how many triplets are active, in O(B^2) memory.

    * per positive pair (a, p): sort a's negative distances once; the active negatives are a prefix of that order,
      whose length :func:`count_active` finds by bisection;
    * per negative pair (a, n): n is active for p exactly when d(a, n) is at most p's last active negative distance
      (its *boundary*); sorting each anchor's boundaries lets one ``searchsorted`` count them.

    Both counts come from the same floating-point predicate as ST's expression, so the two totals agree exactly
    (sum over p of per_positive = sum over n of per_negative = active triplets of anchor a).

    Three formulations give identical counts: float32 CUDA inputs (with ``labels`` given) use the Triton kernels of
    :mod:`tutorial_lib.triton_kernels`; CPU inputs the compact one (:func:`batch_all_compact`); anything else the
    synchronisation-free PyTorch code below, O(B^2 log B).
    """
    sorted_neg = d.masked_fill(~neg_mask, math.inf).sort(dim=1).values.contiguous()
    if labels is not None and use_triton(d):
        from . import triton_kernels

        per_pos, per_neg, counted, _, _ = triton_kernels.batch_all_terms(d, labels, margin)
        return AllCounts(per_pos.long(), per_neg.long(), counted, sorted_neg)
    if use_compact(d):
        per_pos, per_neg, counted, _ = batch_all_compact(d, pos_mask, neg_mask, margin)
        return AllCounts(per_pos.long(), per_neg.long(), counted, sorted_neg)
    zero = torch.zeros((), dtype=torch.long, device=d.device)
    queries = d.masked_fill(~pos_mask, -math.inf)  # non-positive entries count nothing
    active = count_active(queries, sorted_neg, margin, 0.0)
    counted = count_active(queries, sorted_neg, margin, COUNT_THRESHOLD)
    # Positive p activates exactly the negatives with distance <= its last active one (equal distances share the
    # verdict), which gives each positive a boundary value for the negative side below.
    last = sorted_neg.gather(1, (active - 1).clamp(min=0))
    boundary = torch.where(active > 0, last, torch.full_like(last, -math.inf))
    active = torch.where(pos_mask, active, zero)
    counted = torch.where(pos_mask, counted, zero).sum()
    # Negative side: n is active for p iff d(a, n) <= boundary(a, p). Sorting the boundaries (non-positives: -inf,
    # which never reach a distance) lets one searchsorted count, per (a, n), the boundaries below d(a, n).
    sorted_boundary = boundary.masked_fill(~pos_mask, -math.inf).sort(dim=1).values.contiguous()
    below = torch.searchsorted(sorted_boundary, d.contiguous(), right=False)  # boundaries < d(a, n)
    per_negative = torch.where(neg_mask, d.shape[0] - below, zero)
    return AllCounts(active, per_negative, counted, sorted_neg)


_DIRECT_PAIRS_PER_ANCHOR = 8  # compact BatchAll compares every triplet directly up to this many positives per anchor


def batch_all_compact(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, margin: float):
    """BatchAll's counts and loss numerator on the CPU, from the Q compacted positive pairs.

    With few positives per anchor (P x K batches) every triplet is compared directly, like ST but in chunks of at
    most B pairs (memory O(B^2)); the numerator then sums ST's per-triplet values. With many (a few large label
    groups) each anchor's negatives are sorted once, the Q queries bisect them, and the per-negative counts come
    from a histogram of the per-positive counts.

    Returns:
        ``(per_positive, per_negative, counted, total)``: (B, B) counts in ``d``'s dtype, the 0-dim number of
        triplets with loss > 1e-16, and the 0-dim sum of all triplet losses.
    """
    batch_size = d.shape[0]
    anchor, positive = pos_mask.nonzero(as_tuple=True)
    x = d[anchor, positive]
    per_negative = torch.zeros_like(d)
    per_pair = torch.zeros_like(x, dtype=torch.long)
    counted = torch.zeros((), dtype=torch.long, device=d.device)
    total = torch.zeros((), dtype=d.dtype, device=d.device)
    if anchor.numel() <= _DIRECT_PAIRS_PER_ANCHOR * batch_size:
        for start in range(0, anchor.numel(), batch_size):
            a, x_a = anchor[start:start + batch_size], x[start:start + batch_size]
            loss = _triplet_loss_expr(x_a.unsqueeze(1), d[a], margin)  # (pairs, B), ST's expression
            negatives = neg_mask[a]
            active = (loss > 0) & negatives
            per_pair[start:start + batch_size] = active.sum(dim=1)
            counted += ((loss > COUNT_THRESHOLD) & negatives).sum()
            total += torch.where(active, loss, 0.0).sum()
            per_negative.index_add_(0, a, active.to(d.dtype))
    else:
        sorted_neg, order = d.masked_fill(~neg_mask, math.inf).sort(dim=1)
        flat = sorted_neg.reshape(-1)
        offset = anchor * batch_size
        for threshold in (0.0, COUNT_THRESHOLD):
            low = torch.zeros_like(anchor)
            high = torch.full_like(anchor, batch_size)
            for _ in range(math.ceil(math.log2(batch_size + 1))):
                middle = (low + high) // 2
                value = flat[offset + middle.clamp(max=batch_size - 1)]
                passes = (_triplet_loss_expr(x, value, margin) > threshold) & (middle < high)
                low = torch.where(passes, middle + 1, low)
                high = torch.where(passes, high, middle)
            if threshold == 0.0:
                per_pair = low
            else:
                counted = low.sum()
        # per-negative count at sorted position j = number of positives whose count exceeds j
        histogram = torch.bincount(anchor * (batch_size + 1) + per_pair, minlength=batch_size * (batch_size + 1))
        exceeding = histogram.view(batch_size, batch_size + 1).flip(1).cumsum(1).flip(1)[:, 1:]
        per_negative.scatter_(1, order, exceeding.to(d.dtype))
        reference = torch.where(torch.isfinite(sorted_neg[:, :1]), sorted_neg[:, :1], 0.0)
        total = (per_pair.to(d.dtype) * ((x - reference[anchor, 0]) + margin)).sum() - (
            per_negative * (d - reference)).sum()
    per_positive = torch.zeros_like(d)
    per_positive[anchor, positive] = per_pair.to(d.dtype)
    return per_positive, per_negative, counted, total
