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

This module imports torch, :mod:`tutorial_lib.distances` and :mod:`tutorial_lib.masks` only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .distances import check_distance, check_embeddings, pairwise_distances
from .masks import check_labels, same_label

COUNT_THRESHOLD = 1e-16
"""BatchAll's denominator counts triplets whose loss is above this value (ST's constant)."""


__all__ = [
    "COUNT_THRESHOLD",
    "Mined",
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


class _Batch(NamedTuple):
    dist: Tensor  # (B, B) distances, with autograd
    pos_mask: Tensor  # (B, B) bool, a != p and same label
    neg_mask: Tensor  # (B, B) bool, different label
    has_pos: Tensor  # (B,) bool
    has_neg: Tensor  # (B,) bool


def _prepare(embeddings: Tensor, labels: Tensor, distance: str) -> _Batch:
    check_embeddings(embeddings)
    check_labels(labels, embeddings.shape[0])
    check_distance(distance)
    labels = labels.to(embeddings.device)
    dist = pairwise_distances(embeddings, distance)
    same = same_label(labels)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    return _Batch(dist, pos_mask, neg_mask, pos_mask.any(dim=1), neg_mask.any(dim=1))


# ----------------------------------------------------------------------------------------------------------------
# Mining: which positive and negative each strategy selects (defined once, used by losses, stats and widgets)
# ----------------------------------------------------------------------------------------------------------------


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


def _hardest_indices(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, has_pos: Tensor, has_neg: Tensor):
    """(B,) indices of the farthest positive and the nearest negative; -1 where there is none.

    ``argmax``/``argmin`` return the first index among equal values, which is the tie rule of
    :mod:`tutorial_lib.reference`. Invalid entries are masked with -inf/+inf so they can never win.
    """
    hardest_pos = d.masked_fill(~pos_mask, -math.inf).argmax(dim=1)
    hardest_neg = d.masked_fill(~neg_mask, math.inf).argmin(dim=1)
    minus_one = torch.full_like(hardest_pos, -1)
    return torch.where(has_pos, hardest_pos, minus_one), torch.where(has_neg, hardest_neg, minus_one)


def _semi_hard_indices(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, has_neg: Tensor):
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


def _mine(batch: _Batch) -> Mined:
    d = batch.dist.detach()
    hardest_pos, hardest_neg = _hardest_indices(d, batch.pos_mask, batch.neg_mask, batch.has_pos, batch.has_neg)
    semi_hard, fallback = _semi_hard_indices(d, batch.pos_mask, batch.neg_mask, batch.has_neg)
    return Mined(d, batch.pos_mask, batch.neg_mask, hardest_pos, hardest_neg, semi_hard, fallback)


def mine(embeddings: Tensor, labels: Tensor, margin: float, distance: str = "euclidean") -> Mined:
    """The positives and negatives each strategy selects, per anchor (and per anchor-positive pair for semi-hard).

    Args:
        embeddings: (B, D) floating tensor.
        labels: (B,) integer tensor.
        margin: >= 0. Selection does not depend on it (semi-hard's rule compares distances only); it is checked
            and accepted so every function of this module takes the same arguments.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.

    Returns:
        A :class:`Mined` tuple (see there for shapes). Ties go to the lowest index.
    """
    check_margin(margin)
    return _mine(_prepare(embeddings, labels, distance))


# ----------------------------------------------------------------------------------------------------------------
# BatchAll: exact counting of active triplets without a B x B x B tensor
# ----------------------------------------------------------------------------------------------------------------


def _triplet_loss_expr(d_ap: Tensor, d_an: Tensor, margin: float) -> Tensor:
    """ST's float expression for one triplet, evaluated operation by operation as ST does: (d_ap - d_an) + margin."""
    return (d_ap - d_an) + margin


def _count_active(d_ap: Tensor, sorted_neg: Tensor, margin: float, threshold: float) -> Tensor:
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


class _AllCounts(NamedTuple):
    per_positive: Tensor  # (B, B) long: [a, p] = number of negatives n with loss(a, p, n) > 0; 0 off positive pairs
    per_negative: Tensor  # (B, B) long: [a, n] = number of positives p with loss(a, p, n) > 0; 0 off negative pairs
    counted: Tensor  # 0-dim long: number of triplets with loss > 1e-16 (BatchAll's denominator)
    sorted_neg: Tensor  # (B, B) each anchor's negative distances, ascending, +inf for non-negatives


def _batch_all_counts(d: Tensor, pos_mask: Tensor, neg_mask: Tensor, margin: float) -> _AllCounts:
    """Per pair, how many triplets are active, in O(B^2) memory and O(B^2 log B) time.

    * per positive pair (a, p): sort a's negative distances once; the active negatives are a prefix of that order,
      whose length :func:`_count_active` finds by bisection;
    * per negative pair (a, n): n is active for p exactly when d(a, n) is at most p's last active negative distance
      (its *boundary*); sorting each anchor's boundaries lets one ``searchsorted`` count them.

    Both counts come from the same floating-point predicate as ST's expression, so the two totals agree exactly
    (sum over p of per_positive = sum over n of per_negative = active triplets of anchor a).
    """
    zero = torch.zeros((), dtype=torch.long, device=d.device)
    sorted_neg = d.masked_fill(~neg_mask, math.inf).sort(dim=1).values.contiguous()
    queries = d.masked_fill(~pos_mask, -math.inf)  # non-positive entries count nothing
    active = _count_active(queries, sorted_neg, margin, 0.0)
    counted = _count_active(queries, sorted_neg, margin, COUNT_THRESHOLD)
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
    return _AllCounts(active, per_negative, counted, sorted_neg)


def _batch_all_from_batch(batch: _Batch, margin: float, distance: str):
    dist = batch.dist
    counts = _batch_all_counts(dist.detach(), batch.pos_mask, batch.neg_mask, margin)
    # The loss is linear in the distances once the active set is known:
    #   sum_{a,p} c[a,p] * (d(a,p) + margin) - sum_{a,n} c'[a,n] * d(a,n)
    # Both sums are large and nearly cancel; subtracting a per-anchor reference r_a (its nearest negative, detached)
    # from every distance leaves the value and gradient unchanged (both sums count each active triplet once) but
    # keeps the terms at the scale of the hinge, not of the distances, which preserves float32 precision.
    reference = counts.sorted_neg[:, :1]
    reference = torch.where(torch.isfinite(reference), reference, torch.zeros_like(reference))
    per_pos = counts.per_positive.to(dist.dtype)
    per_neg = counts.per_negative.to(dist.dtype)
    total = (per_pos * ((dist - reference) + margin)).sum() - (per_neg * (dist - reference)).sum()
    counted = counts.counted
    # No counted triplet: return 0 with a zero gradient instead of ST's division by 1e-16.
    loss = torch.where(counted > 0, total / counted.clamp(min=1).to(dist.dtype), torch.zeros_like(total))
    return loss, counts


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
    loss, _ = _batch_all_from_batch(_prepare(embeddings, labels, distance), margin, distance)
    return loss


# ----------------------------------------------------------------------------------------------------------------
# BatchHard, soft margin and semi-hard
# ----------------------------------------------------------------------------------------------------------------


def _hardest_distances(batch: _Batch, mined: Mined) -> tuple[Tensor, Tensor]:
    """(B,) hardest-positive and hardest-negative distances, with autograd through the selected entries.

    ST's convention: an anchor without a positive gets a hardest-positive distance of 0 (``max`` over a row of
    masked zeros), and a hardest-positive distance is never below 0 (cosine distances can round to -1e-7).
    """
    dist = batch.dist
    d_ap = dist.gather(1, mined.hardest_positive.clamp(min=0).unsqueeze(1)).squeeze(1)
    d_ap = torch.where(batch.has_pos, d_ap.clamp_min(0.0), torch.zeros_like(d_ap))
    d_an = dist.gather(1, mined.hardest_negative.clamp(min=0).unsqueeze(1)).squeeze(1)
    return d_ap, d_an


def _batch_hard_from_batch(batch: _Batch, mined: Mined, margin: float | None) -> Tensor:
    d_ap, d_an = _hardest_distances(batch, mined)
    if margin is None:  # soft margin: log(1 + exp(d_ap - d_an)), torch's softplus (linear above 20)
        per_anchor = torch.nn.functional.softplus(d_ap - d_an)
    else:
        per_anchor = torch.relu((d_ap - d_an) + margin)
    # A single-label batch has no negative at all: return 0 with a zero gradient (documented exception).
    per_anchor = torch.where(batch.has_neg, per_anchor, torch.zeros_like(per_anchor))
    return per_anchor.mean()


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
    batch = _prepare(embeddings, labels, distance)
    return _batch_hard_from_batch(batch, _mine(batch), margin)


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
    batch = _prepare(embeddings, labels, distance)
    return _batch_hard_from_batch(batch, _mine(batch), None)


def _batch_semi_hard_from_batch(batch: _Batch, mined: Mined, margin: float) -> Tensor:
    dist = batch.dist
    valid = mined.semi_hard_negative >= 0  # (B, B): positive pairs of anchors that have a negative
    d_sn = dist.gather(1, mined.semi_hard_negative.clamp(min=0))  # (B, B) semi-hard negative distance per pair
    per_pair = torch.relu((dist - d_sn) + margin)
    per_pair = torch.where(valid, per_pair, torch.zeros_like(per_pair))
    # ST divides by the number of anchor-positive pairs (clamped so an all-singleton batch gives 0, not NaN).
    num_pairs = batch.pos_mask.sum().clamp(min=1).to(dist.dtype)
    return per_pair.sum() / num_pairs


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
    batch = _prepare(embeddings, labels, distance)
    return _batch_semi_hard_from_batch(batch, _mine(batch), margin)


# ----------------------------------------------------------------------------------------------------------------
# Statistics for monitoring (training callback, widgets, notebooks)
# ----------------------------------------------------------------------------------------------------------------


def _stats(batch: _Batch, mined: Mined, counts: _AllCounts, distance: str) -> dict[str, Tensor]:
    d = mined.dist
    pos_mask, neg_mask = batch.pos_mask, batch.neg_mask
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
    anchors = batch.has_pos & batch.has_neg
    n_anchors = anchors.sum()
    d_ap = d.gather(1, mined.hardest_positive.clamp(min=0).unsqueeze(1)).squeeze(1)
    d_an = d.gather(1, mined.hardest_negative.clamp(min=0).unsqueeze(1)).squeeze(1)
    f = d.dtype
    batch_size = d.shape[0]
    n_pairs = (pos_mask & batch.has_neg.unsqueeze(1)).sum()

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
    with torch.no_grad():
        batch = _prepare(embeddings, labels, distance)
        mined = _mine(batch)
        counts = _batch_all_counts(mined.dist, batch.pos_mask, batch.neg_mask, margin)
        return _stats(batch, mined, counts, distance)


# ----------------------------------------------------------------------------------------------------------------
# One call for the sentence-transformers modules: loss and statistics from one distance matrix
# ----------------------------------------------------------------------------------------------------------------

STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")


def loss_and_stats(
    strategy: str,
    embeddings: Tensor,
    labels: Tensor,
    margin: float | None,
    distance: str = "euclidean",
    with_stats: bool = True,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """The loss of ``strategy`` and, optionally, :func:`triplet_stats` for the same batch, sharing one distance matrix.

    ``margin`` is ignored for ``"batch_hard_soft_margin"`` (statistics then use margin 0). Used by
    :mod:`tutorial_lib.st_losses`; the four public loss functions are the reference API.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    soft = strategy == "batch_hard_soft_margin"
    margin = 0.0 if soft or margin is None else check_margin(margin)
    batch = _prepare(embeddings, labels, distance)
    counts = None
    if strategy == "batch_all":
        loss, counts = _batch_all_from_batch(batch, margin, distance)
        mined = _mine(batch) if with_stats else None
    else:
        mined = _mine(batch)
        if strategy == "batch_semi_hard":
            loss = _batch_semi_hard_from_batch(batch, mined, margin)
        else:
            loss = _batch_hard_from_batch(batch, mined, None if soft else margin)
    if not with_stats:
        return loss, None
    with torch.no_grad():
        if counts is None:
            counts = _batch_all_counts(mined.dist, batch.pos_mask, batch.neg_mask, margin)
        return loss, _stats(batch, mined, counts, distance)
