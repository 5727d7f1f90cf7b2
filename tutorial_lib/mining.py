"""Which triplets each strategy selects, and how many are active: the mining rules, defined once (notebooks 02-06).

Everything here works on a detached (B, B) distance matrix ``d`` and the two (B, B) masks, allocates O(B^2) memory,
and never synchronises with the host (no ``.item()``, no data-dependent shapes). The losses
(:mod:`tutorial_lib.losses`), the statistics, the widgets and the notebooks all call these functions.

Tie rule: among equally hard candidates the lowest index wins (``argmax``/``argmin`` return the first maximum,
a stable sort keeps the lowest index first among equal values).

This module imports torch only.
"""

from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

import torch
from torch import Tensor

COUNT_THRESHOLD = 1e-16
"""BatchAll's denominator counts triplets whose loss is above this value (sentence-transformers' constant)."""


class Masks(NamedTuple):
    """The masks of one batch. pos: (B, B) a != p, same label; neg: (B, B) different label; has_*: (B,) any."""

    pos: Tensor
    neg: Tensor
    has_pos: Tensor
    has_neg: Tensor


def batch_masks(labels: Tensor) -> Masks:
    """Both pair masks of a (B,) label tensor, and which anchors have a positive / a negative."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    return Masks(pos, neg, pos.any(dim=1), neg.any(dim=1))


class Mined(NamedTuple):
    """What each strategy selects in one batch. Indices are row numbers of the batch; -1 means "none".

    Attributes:
        dist: (B, B) detached distance matrix the selection was made on.
        pos_mask: (B, B) bool, valid anchor-positive pairs.
        neg_mask: (B, B) bool, valid anchor-negative pairs.
        hardest_positive: (B,) long, farthest positive of each anchor (-1 if the anchor has no positive).
        hardest_negative: (B,) long, nearest negative of each anchor (-1 if it has none).
        semi_hard_negative: (B, B) long, ``[a, p]`` is the negative BatchSemiHard pairs with the anchor-positive pair
            (a, p): the nearest negative farther than p, else the farthest negative; -1 where (a, p) is not a
            positive pair or a has no negative.
        semi_hard_fallback: (B, B) bool, True where no negative was farther than the positive, so the farthest
            negative was used.
    """

    dist: Tensor
    pos_mask: Tensor
    neg_mask: Tensor
    hardest_positive: Tensor
    hardest_negative: Tensor
    semi_hard_negative: Tensor
    semi_hard_fallback: Tensor


def hardest_indices(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, has_pos: Tensor, has_neg: Tensor):
    """(B,) indices of the farthest positive and the nearest negative; -1 where there is none.

    ``argmax``/``argmin`` return the first index among equal values, which is the tie rule of
    :mod:`tutorial_lib.reference`. Invalid entries are masked with -inf/+inf so they can never win.
    """
    hardest_pos = d.masked_fill(~pos_mask, -math.inf).argmax(dim=1)
    hardest_neg = d.masked_fill(~neg_mask, math.inf).argmin(dim=1)
    minus_one = torch.full_like(hardest_pos, -1)
    return torch.where(has_pos, hardest_pos, minus_one), torch.where(has_neg, hardest_neg, minus_one)


def semi_hard_indices(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, has_neg: Tensor):
    """(B, B) semi-hard negative per anchor-positive pair and (B, B) fallback flags, in O(B^2) memory.

    Each anchor's negatives are sorted once (other entries as +inf, which sort last). For the pair (a, p) the first
    sorted value strictly greater than d(a, p) is the semi-hard negative (``searchsorted(..., right=True)``); a stable
    sort puts the lowest index first among equal distances. When no finite value is greater, the farthest negative
    is used instead.
    """
    batch_size = d.shape[0]
    sorted_neg, order = d.masked_fill(~neg_mask, math.inf).sort(dim=1, stable=True)
    position = torch.searchsorted(sorted_neg, d.contiguous(), right=True)  # (B, B), in [0, B]
    clipped = position.clamp(max=batch_size - 1)
    found = (position < batch_size) & torch.isfinite(sorted_neg.gather(1, clipped))
    farthest = d.masked_fill(~neg_mask, -math.inf).argmax(dim=1, keepdim=True)  # (B, 1), first on ties
    semi_hard = torch.where(found, order.gather(1, clipped), farthest)
    valid = pos_mask & has_neg.unsqueeze(1)
    semi_hard = torch.where(valid, semi_hard, torch.full_like(semi_hard, -1))
    return semi_hard, valid & ~found



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


def sorted_masked_rows(d: Tensor, labels: Tensor, positives: bool, max_elements: int = 1 << 24) -> Tensor:
    """(B, B): each anchor's negative distances ascending (others +inf), or its positive ones (others and itself
    -inf), sorted in a number of row chunks that depends only on B, so that the sort's temporary int64 indices stay
    below ``max_elements`` entries (a full (B, B) int64 tensor is 512 MB at B = 8192)."""
    size = d.shape[0]
    out = torch.empty_like(d)
    rows_per_chunk = max(1, max_elements // size)
    for start in range(0, size, rows_per_chunk):
        stop = min(start + rows_per_chunk, size)
        same = labels[start:stop].unsqueeze(1) == labels.unsqueeze(0)
        if positives:
            # an anchor is not its own positive (a mask built on the device: no host-to-device copy)
            itself = torch.arange(size, device=d.device).unsqueeze(0) == torch.arange(
                start, stop, device=d.device).unsqueeze(1)
            rows = torch.where(same & ~itself, d[start:stop], -math.inf)
        else:
            rows = torch.where(same, math.inf, d[start:stop])
        out[start:stop] = rows.sort(dim=1).values
    return out


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


def mine_distances(d: Tensor, masks: Masks) -> Mined:
    """:class:`Mined` for a detached (B, B) distance matrix."""
    hardest_pos, hardest_neg = hardest_indices(d, masks.pos, masks.neg, masks.has_pos, masks.has_neg)
    semi_hard, fallback = semi_hard_indices(d, masks.pos, masks.neg, masks.has_neg)
    return Mined(d, masks.pos, masks.neg, hardest_pos, hardest_neg, semi_hard, fallback)


def statistics(mined: Mined, masks: Masks, counts: AllCounts) -> dict[str, Tensor]:
    """The numbers of :func:`tutorial_lib.losses.triplet_stats`, from what mining already computed."""
    d = mined.dist
    pos_mask, neg_mask = masks.pos, masks.neg
    n_neg = neg_mask.sum(dim=1, keepdim=True)  # (B, 1)
    active = counts.per_positive  # (B, B) active negatives per positive pair (loss > 0)
    # Hard: d_an <= d_ap. Both "hard" and "active" are prefixes of the sorted negatives, hence the max/min below.
    hard = torch.searchsorted(counts.sorted_neg, d.contiguous(), right=True)
    zero = torch.zeros_like(hard)
    hard = torch.where(pos_mask, hard, zero)
    semi_hard = torch.where(pos_mask, (active - hard).clamp(min=0), zero)
    easy = torch.where(pos_mask, n_neg - torch.maximum(active, hard), zero)
    n_valid = (pos_mask.sum(dim=1) * n_neg.squeeze(1)).sum()
    n_active = active.sum()
    anchors = masks.has_pos & masks.has_neg
    n_anchors = anchors.sum()
    d_ap = d.gather(1, mined.hardest_positive.clamp(min=0).unsqueeze(1)).squeeze(1)
    d_an = d.gather(1, mined.hardest_negative.clamp(min=0).unsqueeze(1)).squeeze(1)
    f = d.dtype
    batch_size = d.shape[0]
    n_pairs = (pos_mask & masks.has_neg.unsqueeze(1)).sum()

    def ratio(num: Tensor, den: Tensor) -> Tensor:
        # 0/0 (no valid triplet, no anchor with a positive) reports 0 rather than NaN.
        return torch.where(den > 0, num.to(f) / den.clamp(min=1).to(f), torch.zeros((), dtype=f, device=d.device))

    return {
        "valid_triplets": n_valid,
        "hard_triplets": hard.sum(),
        "semi_hard_triplets": semi_hard.sum(),
        "easy_triplets": easy.sum(),
        "active_triplets": n_active,
        "active_fraction": ratio(n_active, n_valid),
        "hardest_positive_mean": ratio(torch.where(anchors, d_ap, torch.zeros_like(d_ap)).sum(), n_anchors),
        "hardest_negative_mean": ratio(torch.where(anchors, d_an, torch.zeros_like(d_an)).sum(), n_anchors),
        "semi_hard_fallback_rate": ratio(mined.semi_hard_fallback.sum(), n_pairs),
        # The diagonal is 0 for euclidean distances (rounding noise for cosine): excluded, without boolean indexing
        # (a data-dependent shape would synchronise with the GPU).
        "mean_distance": (d.sum() - d.diagonal().sum()) / (batch_size * (batch_size - 1)),
    }
