"""The four batch triplet losses as plain loops: the teaching version and the test oracle (notebooks 02-06).

Read these line by line next to the formulas; they are deliberately slow (O(B^3) Python iterations) and never used
by training code. The vectorized versions in :mod:`tutorial_lib.losses` must agree with them.

Tie rule (the same as :mod:`tutorial_lib.losses`):

* when several positives are equally far (or negatives equally near), the one with the **lowest index** wins: the
  loops below only replace the current choice on a *strictly* better candidate;
* a triplet whose loss is exactly 0 contributes a **zero gradient** (``x if x > 0 else 0`` is a valid subgradient
  of ``max(0, x)`` at 0);
* sentence-transformers' conventions are kept: an anchor without a positive has a hardest-positive distance of 0
  in BatchHard and soft margin, and still counts in their mean; BatchAll divides by the number of triplets whose
  loss is > 1e-16; BatchSemiHard divides by the number of anchor-positive pairs;
* documented exceptions: a batch with a single label (no negative anywhere), and a BatchAll batch with no triplet
  above 1e-16, return 0.

Distances come from a double loop over pairs (:func:`pairwise_distances`), so they can differ from the Gram-trick
distances of :mod:`tutorial_lib.distances` by rounding; compare with a tolerance.

This module imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

COUNT_THRESHOLD = 1e-16


def distance_between(u: Tensor, v: Tensor, distance: str = "euclidean") -> Tensor:
    """Distance between two vectors (D,), the slow and obvious way."""
    if distance == "cosine":
        return 1 - torch.dot(u, v) / (u.norm().clamp_min(1e-12) * v.norm().clamp_min(1e-12))
    squared = ((u - v) ** 2).sum()
    if distance == "squared_euclidean":
        return squared
    if squared == 0:
        # sqrt'(0) is infinite: return a 0 that carries a zero gradient instead.
        return squared * 0
    return torch.sqrt(squared)


def pairwise_distances(embeddings: Tensor, distance: str = "euclidean") -> Tensor:
    """(B, D) -> (B, B) by a double loop over pairs."""
    batch_size = embeddings.shape[0]
    rows = []
    for i in range(batch_size):
        rows.append(torch.stack([distance_between(embeddings[i], embeddings[j], distance) for j in range(batch_size)]))
    return torch.stack(rows)


def _has_negative(labels: list[int]) -> bool:
    return len(set(labels)) > 1


def batch_all_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """Sum of max(0, d(a,p) - d(a,n) + margin) over every valid triplet / number of triplets with loss > 1e-16."""
    return batch_all_from_distances(pairwise_distances(embeddings, distance), labels, margin)


def batch_all_from_distances(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """BatchAll on a given (B, B) distance matrix (the loops of :func:`batch_all_triplet_loss`)."""
    labels = labels.tolist()
    batch_size = len(labels)
    total = dist.sum() * 0  # a zero that keeps the graph (and the dtype)
    counted = 0
    for a in range(batch_size):
        for p in range(batch_size):
            if p == a or labels[p] != labels[a]:
                continue  # not a positive of a
            for n in range(batch_size):
                if labels[n] == labels[a]:
                    continue  # not a negative of a
                loss = (dist[a, p] - dist[a, n]) + margin
                if loss > 0:
                    total = total + loss
                if loss > COUNT_THRESHOLD:
                    counted += 1
    if counted == 0:
        return total * 0  # documented exception: nothing active, zero loss and gradient
    return total / counted


def hardest_positive(dist: Tensor, labels: list[int], a: int) -> int | None:
    """Index of the farthest positive of anchor a (lowest index on ties), or None."""
    best = None
    for p in range(len(labels)):
        if p != a and labels[p] == labels[a] and (best is None or dist[a, p] > dist[a, best]):
            best = p
    return best


def hardest_negative(dist: Tensor, labels: list[int], a: int) -> int | None:
    """Index of the nearest negative of anchor a (lowest index on ties), or None."""
    best = None
    for n in range(len(labels)):
        if labels[n] != labels[a] and (best is None or dist[a, n] < dist[a, best]):
            best = n
    return best


def semi_hard_negative(dist: Tensor, labels: list[int], a: int, p: int) -> tuple[int | None, bool]:
    """(negative, fallback) for the pair (a, p): the nearest negative farther than p, else the farthest negative."""
    nearest_beyond = None
    farthest = None
    for n in range(len(labels)):
        if labels[n] == labels[a]:
            continue
        if dist[a, n] > dist[a, p] and (nearest_beyond is None or dist[a, n] < dist[a, nearest_beyond]):
            nearest_beyond = n
        if farthest is None or dist[a, n] > dist[a, farthest]:
            farthest = n
    if nearest_beyond is not None:
        return nearest_beyond, False
    return farthest, True


def _hard_terms(dist: Tensor, labels: list[int]) -> list[tuple[Tensor, Tensor]]:
    """(hardest-positive distance, hardest-negative distance) per anchor; the batch must have two labels."""
    terms = []
    for a in range(len(labels)):
        p = hardest_positive(dist, labels, a)
        n = hardest_negative(dist, labels, a)
        # No positive: sentence-transformers uses 0 as the hardest-positive distance (and keeps the anchor).
        # Its hardest-positive distance is never below 0 (cosine distances can round to -1e-7).
        d_ap = dist[a, p] if p is not None and dist[a, p] > 0 else dist[a, a] * 0
        terms.append((d_ap, dist[a, n]))
    return terms


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Tensor:
    """Mean over anchors of max(0, d(a, hardest p) - d(a, hardest n) + margin)."""
    return batch_hard_from_distances(pairwise_distances(embeddings, distance), labels, margin)


def batch_hard_from_distances(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """BatchHard on a given (B, B) distance matrix."""
    labels = labels.tolist()
    if not _has_negative(labels):
        return dist.sum() * 0  # documented exception: no negative anywhere
    total = dist.sum() * 0
    for d_ap, d_an in _hard_terms(dist, labels):
        loss = (d_ap - d_an) + margin
        if loss > 0:
            total = total + loss
    return total / len(labels)


def batch_hard_soft_margin_triplet_loss(embeddings: Tensor, labels: Tensor, distance: str = "euclidean") -> Tensor:
    """Mean over anchors of softplus(d(a, hardest p) - d(a, hardest n)), softplus(x) = log(1 + exp(x))."""
    return batch_hard_soft_margin_from_distances(pairwise_distances(embeddings, distance), labels)


def batch_hard_soft_margin_from_distances(dist: Tensor, labels: Tensor) -> Tensor:
    """Soft-margin BatchHard on a given (B, B) distance matrix.

    torch's softplus, used here as in sentence-transformers, returns x itself above x = 20 (where log(1 + e^x) and
    x agree to float precision) so that exp never overflows.
    """
    labels = labels.tolist()
    if not _has_negative(labels):
        return dist.sum() * 0
    total = dist.sum() * 0
    for d_ap, d_an in _hard_terms(dist, labels):
        total = total + torch.nn.functional.softplus(d_ap - d_an)
    return total / len(labels)


def batch_semi_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean"
) -> Tensor:
    """Mean over anchor-positive pairs of max(0, d(a,p) - d(a, semi-hard n) + margin)."""
    return batch_semi_hard_from_distances(pairwise_distances(embeddings, distance), labels, margin)


def batch_semi_hard_from_distances(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """BatchSemiHard on a given (B, B) distance matrix."""
    labels = labels.tolist()
    total = dist.sum() * 0
    if not _has_negative(labels):
        return total
    pairs = 0
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            pairs += 1
            n, _ = semi_hard_negative(dist, labels, a, p)
            loss = (dist[a, p] - dist[a, n]) + margin
            if loss > 0:
                total = total + loss
    return total / max(pairs, 1)
