"""The rules of triplet mining as plain loops: the teaching version and the test oracle (notebooks 01-06).

Read these line by line next to the formulas; they are deliberately slow (O(B^3) Python iterations) and never used
by training code. The readable vectorized losses (:mod:`tutorial_lib.vectorized`) and the fast engine behind
:mod:`tutorial_lib.losses` must agree with them. Besides the four losses, this module is the one home of a few
small rules the whole series uses: which category a triplet falls in (:func:`triplet_category`), BatchAll's count
threshold (:data:`COUNT_THRESHOLD`), how many examples sentence-transformers' ``GROUP_BY_LABEL`` sampler uses per
epoch (:func:`group_by_label_epoch`), and how to compare two implementations (:func:`value_and_grad`).

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
distances of :mod:`tutorial_lib.distances` by rounding; compare with a tolerance. Cosine distances are clamped at 0
and 0 on the diagonal, as in sentence-transformers 6.3.

Teaching core: this module imports torch only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

COUNT_THRESHOLD = 1e-16
"""BatchAll's denominator counts triplets whose loss is above this value (sentence-transformers' constant)."""

CATEGORIES = ("hard", "semi-hard", "easy")


def triplet_category(d_ap: float, d_an: float, margin: float) -> str:
    """The category of one triplet: ``"hard"``, ``"semi-hard"`` or ``"easy"`` (notebook 01).

    * hard: the negative is no farther than the positive, ``d_an <= d_ap`` (the order is wrong);
    * semi-hard: the order is right but the triplet is still active, ``(d_ap - d_an) + margin > 0``;
    * easy: the loss is 0.

    With margin 0 a triplet with ``d_an == d_ap`` counts as hard. The statistics of :func:`tutorial_lib.losses.
    triplet_stats` and the pictures of :mod:`tutorial_lib.widgets` follow this rule (the tests check it).
    """
    if d_an <= d_ap:
        return "hard"
    if (d_ap - d_an) + margin > 0:
        return "semi-hard"
    return "easy"


def triplet_loss(d_ap: Tensor, d_an: Tensor, margin: float) -> Tensor:
    """The loss of a triplet, elementwise (any shape): ``max(0, (d_ap - d_an) + margin)`` (notebook 01).

    Evaluated as ``(d_ap - d_an) + margin``, the order sentence-transformers uses; ``relu`` has a zero gradient
    where the loss is exactly 0 (the tie rule above).
    """
    return torch.relu((d_ap - d_an) + margin)


def value_and_grad(loss_fn, embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """``(loss_fn(x), d loss_fn / d x)`` at ``x = embeddings``, the way the notebooks compare implementations.

    Args:
        loss_fn: maps a (B, D) tensor to a 0-dim tensor.
        embeddings: (B, D); not modified (a detached copy is differentiated).

    Returns:
        The detached 0-dim value and the (B, D) gradient (zeros where the value does not depend on the input).
    """
    x = embeddings.detach().clone().requires_grad_(True)
    value = loss_fn(x)
    grad = torch.autograd.grad(value, x, allow_unused=True)[0] if value.requires_grad else None
    return value.detach(), torch.zeros_like(x) if grad is None else grad


def group_by_label_epoch(label_counts: Sequence[int], batch_size: int, drop_last: bool = False) -> tuple[int, int]:
    """``(examples used, batches)`` in one epoch of sentence-transformers' ``GroupByLabelBatchSampler``.

    The sampler's arithmetic, written out (notebook 02): labels with fewer than 2 examples are never drawn; each
    label contributes its examples in pairs (an odd one out waits); labels take turns emitting a pair until fewer
    than 2 labels are left, so the largest label yields only as many pairs as the second largest; the stream is cut
    into batches of ``batch_size``, and a last partial batch is kept when it holds at least 4 examples (and
    ``drop_last`` is False). :func:`tutorial_lib.training.group_by_label_plan` asks the sampler itself; the tests
    hold the two equal.

    Args:
        label_counts: the number of examples of each label.
        batch_size: even and >= 4.

    Returns:
        ``(0, 0)`` when fewer than 2 labels have 2 examples (the sampler refuses such data).
    """
    pairs = sorted((n // 2 for n in label_counts if n >= 2), reverse=True)
    if len(pairs) < 2:
        return 0, 0
    cap = pairs[1]  # the round in which only one label would be left
    stream = 2 * sum(min(p, cap) for p in pairs)
    batches, remainder = divmod(stream, batch_size)
    if remainder >= 4 and not drop_last:
        return stream, batches + 1
    return batches * batch_size, batches


def distance_between(u: Tensor, v: Tensor, distance: str = "euclidean") -> Tensor:
    """Distance between two vectors (D,), the slow and obvious way."""
    if distance == "cosine":
        # 1 - cos rounds to about -1e-7 for duplicates; a distance is never negative (sentence-transformers 6.3)
        return (1 - torch.dot(u, v) / (u.norm().clamp_min(1e-12) * v.norm().clamp_min(1e-12))).clamp_min(0.0)
    squared = ((u - v) ** 2).sum()
    if distance == "squared_euclidean":
        return squared
    if squared == 0:
        # sqrt'(0) is infinite: return a 0 that carries a zero gradient instead.
        return squared * 0
    return torch.sqrt(squared)


def pairwise_distances(embeddings: Tensor, distance: str = "euclidean") -> Tensor:
    """(B, D) -> (B, B) by a double loop over pairs; a point is at distance exactly 0 from itself."""
    batch_size = embeddings.shape[0]
    zero = embeddings.sum() * 0  # a zero that keeps the graph (and the dtype)
    rows = []
    for i in range(batch_size):
        rows.append(torch.stack([zero if i == j else distance_between(embeddings[i], embeddings[j], distance)
                                 for j in range(batch_size)]))
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


def active_fraction_from_distances(dist: Tensor, labels: Tensor, margin: float) -> float:
    """The share of valid triplets whose loss on a (B, B) distance matrix is above 0; 0.0 without a valid triplet.

    BatchAll's number to watch (notebook 03): :func:`tutorial_lib.losses.triplet_stats` reports it as
    ``active_fraction`` for a batch of embeddings.
    """
    labels = labels.tolist()
    valid = active = 0
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(len(labels)):
                if labels[n] != labels[a]:
                    valid += 1
                    active += bool(triplet_loss(dist[a, p], dist[a, n], margin) > 0)
    return active / valid if valid else 0.0


def recall_at_1_from_distances(dist: Tensor, labels: Tensor) -> float:
    """Retrieval inside one set: the share of items whose nearest *other* item (lowest index on ties) has their label.

    Args:
        dist: (N, N) distances; labels: (N,) integers. Notebook 10 measures labels never seen in training with it
            (``tutorial_lib.evaluation.recall_at_1_within`` is the same with cosine similarities, in NumPy).
    """
    labels = labels.tolist()
    hits = 0
    for i in range(len(labels)):
        nearest = None
        for j in range(len(labels)):
            if j != i and (nearest is None or dist[i, j] < dist[i, nearest]):
                nearest = j
        hits += nearest is not None and labels[nearest] == labels[i]
    return hits / len(labels) if labels else 0.0


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
