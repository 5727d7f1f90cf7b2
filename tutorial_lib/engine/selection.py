"""Which positives and negatives each strategy selects, and the statistics of a batch (the engine's mining).

Everything here works on a detached (B, B) distance matrix ``d`` and the two (B, B) masks of
:mod:`tutorial_lib.masks`, allocates O(B^2) memory, and never synchronises with the host (no ``.item()``, no
data-dependent shapes). :func:`tutorial_lib.losses.mine` and :func:`tutorial_lib.losses.triplet_stats` (used by the
widgets, the training history and the notebooks) return what these functions compute. The readable definitions of
the same rules are the loops of :mod:`tutorial_lib.reference`; the tests hold the two equal.

Tie rule: among equally hard candidates the lowest index wins (``argmax``/``argmin`` return the first maximum,
a stable sort keeps the lowest index first among equal values).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from ..masks import anchor_negative_mask, anchor_positive_mask

if TYPE_CHECKING:
    from .counting import AllCounts


class Masks(NamedTuple):
    """The masks of one batch. pos: (B, B) a != p, same label; neg: (B, B) different label; has_*: (B,) any."""

    pos: Tensor
    neg: Tensor
    has_pos: Tensor
    has_neg: Tensor


def batch_masks(labels: Tensor) -> Masks:
    """Both pair masks of a (B,) label tensor (:mod:`tutorial_lib.masks`), and which anchors have a positive / a
    negative."""
    pos, neg = anchor_positive_mask(labels), anchor_negative_mask(labels)
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
