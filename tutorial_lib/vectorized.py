"""The four batch triplet losses as plain, readable PyTorch: what notebooks 03-06 build (teaching core).

Each loss is a few lines of ordinary autograd code on top of the two functions of notebook 02:
:func:`tutorial_lib.distances.pairwise_distances` (the (B, B) matrix ``dist``) and the masks of
:mod:`tutorial_lib.masks` (``pos_mask``: a != p with the same label; ``neg_mask``: another label). Read them next
to the formulas; autograd writes the backward pass.

They give the same values as :mod:`tutorial_lib.losses` (the fast exact engine) and as sentence-transformers 6.3,
and the same gradients wherever the loss is differentiable (the tests check all of it). Two conventions are kept
from :mod:`tutorial_lib.losses`: a batch with a single label returns 0 (no negative exists), and BatchAll with no
triplet above 1e-16 returns 0 instead of dividing by 1e-16. At exact ties (two candidates equally hard) the gradient
may be shared differently: ``amax``/``amin`` split it between the tied candidates, the engine gives it to the one
with the lowest index.

What they cost: BatchAll materialises one row per anchor-positive pair against every candidate, B(K-1) x B entries
for K examples per label (sentence-transformers' layout); BatchSemiHard compares every pair with every negative, a
(B, B, B) tensor (TensorFlow's layout). Fine for the batch sizes of the notebooks; the engine needs only (B, B).

Shapes: ``embeddings`` (B, D) floating, ``labels`` (B,) integer, ``dist`` (B, B); every loss returns a 0-dim
tensor. Teaching core: imports torch, :mod:`tutorial_lib.distances`, :mod:`tutorial_lib.masks` and the constant
of :mod:`tutorial_lib.reference`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distances import pairwise_distances
from .masks import anchor_negative_mask, anchor_positive_mask
from .reference import COUNT_THRESHOLD

__all__ = [
    "batch_all_triplet_loss",
    "batch_hard_soft_margin_triplet_loss",
    "batch_hard_triplet_loss",
    "batch_semi_hard_triplet_loss",
    "hardest_distances",
]


def batch_all_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """BatchAll: every valid triplet's loss, summed, divided by the number of *active* triplets (loss > 1e-16).

    ``sum over (a, p, n) of max(0, (d(a,p) - d(a,n)) + margin) / #{triplets with loss > 1e-16}``
    """
    dist = pairwise_distances(embeddings, distance)  # (B, B)
    pos_mask, neg_mask = anchor_positive_mask(labels), anchor_negative_mask(labels)  # (B, B) each
    a, p = torch.nonzero(pos_mask, as_tuple=True)  # (P,) each: every anchor-positive pair
    # Row (a, p) against every candidate n at once: (P, 1) - (P, B). Evaluated as (d_ap - d_an) + margin, the
    # order sentence-transformers uses, so that the same triplets count as active.
    losses = (dist[a, p].unsqueeze(1) - dist[a]) + margin  # (P, B)
    is_negative = neg_mask[a]  # (P, B): n must have another label than a
    hinge = torch.where(is_negative, torch.relu(losses), torch.zeros_like(losses))  # relu: 0 gradient at exactly 0
    active = (is_negative & (losses > COUNT_THRESHOLD)).sum()
    # Nothing active: 0 with a zero gradient (sentence-transformers divides by 1e-16 here).
    return torch.where(active > 0, hinge.sum() / active.clamp(min=1), hinge.sum() * 0)


def hardest_distances(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per anchor: its farthest positive's distance, its nearest negative's distance, and whether it has a negative.

    Args:
        dist: (B, B) distances; labels: (B,) integers.

    Returns:
        ``(d_ap, d_an, has_negative)``, each (B,). ``d_ap`` is 0 for an anchor without a positive
        (sentence-transformers' convention: such an anchor stays in the mean); ``d_an`` is +inf without a negative.
    """
    pos_mask, neg_mask = anchor_positive_mask(labels), anchor_negative_mask(labels)
    # Masked entries become 0 (never larger than a real distance) and +inf (never smaller).
    d_ap = torch.where(pos_mask, dist, torch.zeros_like(dist)).amax(dim=1)
    d_an = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).amin(dim=1)
    return d_ap, d_an, neg_mask.any(dim=1)


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """BatchHard: ``mean over anchors a of max(0, max_p d(a, p) - min_n d(a, n) + margin)``."""
    d_ap, d_an, has_negative = hardest_distances(pairwise_distances(embeddings, distance), labels)
    if not has_negative.any():
        return d_ap.sum() * 0  # a single label: no negative anywhere, 0 with a zero gradient
    return torch.relu((d_ap - d_an) + margin).mean()


def batch_hard_soft_margin_triplet_loss(embeddings: Tensor, labels: Tensor, distance: str = "euclidean") -> Tensor:
    """BatchHard with a soft margin: ``mean over anchors of softplus(max_p d(a, p) - min_n d(a, n))``.

    ``softplus(x) = log(1 + exp(x))`` never reaches 0, so every anchor keeps a gradient; no margin to tune.
    """
    d_ap, d_an, has_negative = hardest_distances(pairwise_distances(embeddings, distance), labels)
    if not has_negative.any():
        return d_ap.sum() * 0
    return torch.nn.functional.softplus(d_ap - d_an).mean()


def batch_semi_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean"
) -> Tensor:
    """BatchSemiHard (FaceNet): per anchor-positive pair, the nearest negative *farther* than the positive.

    For each pair (a, p): ``n*`` = the negative with the smallest d(a, n) among those with d(a, n) > d(a, p); if
    there is none, the farthest negative (the fallback). Loss: ``max(0, d(a,p) - d(a,n*) + margin)``, averaged over
    all anchor-positive pairs.
    """
    dist = pairwise_distances(embeddings, distance)  # (B, B)
    pos_mask, neg_mask = anchor_positive_mask(labels), anchor_negative_mask(labels)
    if not neg_mask.any():
        return dist.sum() * 0  # a single label: no negative anywhere
    inf = torch.full_like(dist, float("inf"))
    # beyond[a, p, n]: n is a negative of a, farther from a than p is. (B, B, B): the cube is the readable way.
    beyond = neg_mask.unsqueeze(1) & (dist.unsqueeze(1) > dist.unsqueeze(2))
    nearest_beyond = torch.where(beyond, dist.unsqueeze(1), inf.unsqueeze(1)).amin(dim=2)  # (B, B), inf if none
    farthest = torch.where(neg_mask, dist, -inf).amax(dim=1, keepdim=True)  # (B, 1): the fallback
    d_an = torch.where(torch.isfinite(nearest_beyond), nearest_beyond, farthest)  # (B, B): d(a, n*(a, p))
    hinge = torch.where(pos_mask, torch.relu((dist - d_an) + margin), torch.zeros_like(dist))
    return hinge.sum() / pos_mask.sum().clamp(min=1)  # an all-singleton batch has no pair: 0, not 0/0
