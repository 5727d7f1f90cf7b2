"""Pairwise distances between the embeddings of one batch (introduced in notebook 02).

Every loss in this package starts from the same (B, B) distance matrix, so it is defined once, here.

The euclidean variants use the Gram trick ``||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2``: one matrix product instead of
B^2 vector differences. It has two numerical traps, both guarded below and both taught in notebook 02:

1. rounding can make a squared distance slightly negative (then ``sqrt`` would return NaN);
2. ``d/dx sqrt(x) = 1 / (2 sqrt(x))`` is infinite at ``x = 0``, i.e. on the diagonal and for duplicate points.

Cosine distances have a trap of their own: ``1 - cos`` rounds to about -1e-7 for (near-)duplicate points. Since
sentence-transformers 6.3 they are clamped at 0 and the diagonal is set to exactly 0; this module does the same.

The operations and their order are the same as in sentence-transformers' ``BatchHardTripletLossDistanceFunction``
(6.3) so that, for the same input, the distances agree bit for bit with the library the learner trains with (the
exact BatchAll counting of the fast engine, :mod:`tutorial_lib.engine`, relies on this).

Teaching core: this module imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
"""Names accepted by every ``distance=`` argument in this package."""


def check_distance(distance: str) -> str:
    """Return ``distance`` if it is a known name, else raise a ``ValueError`` that lists the valid ones."""
    if not isinstance(distance, str) or distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(repr(d) for d in DISTANCES)}; got {distance!r}")
    return distance


def check_embeddings(embeddings: Tensor, name: str = "embeddings") -> None:
    """Raise a clear ``TypeError``/``ValueError`` unless ``embeddings`` is a floating (B, D) tensor with B >= 2."""
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch_size, dim); got {type(embeddings).__name__}")
    if embeddings.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (batch_size, dim); got shape {tuple(embeddings.shape)}"
        )
    if not embeddings.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float16/bfloat16/float32/float64); got {embeddings.dtype}")
    if embeddings.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 rows (a batch needs pairs); got {embeddings.shape[0]}")
    if embeddings.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 column; got shape {tuple(embeddings.shape)}")


def upcast(embeddings: Tensor) -> Tensor:
    """float16/bfloat16 embeddings as float32; other dtypes unchanged."""
    # float16/bfloat16 cannot hold squared distances accurately (and overflow at |x| ~ 256 in float16):
    # distances are always computed in float32 or better.
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        return embeddings.float()
    return embeddings


def squared_euclidean_gram(embeddings: Tensor) -> Tensor:
    """Squared euclidean distances via the Gram trick.

    Args:
        embeddings: (B, D) floating tensor.

    Returns:
        (B, B) tensor of ``||e_i - e_j||^2``, never negative, exactly 0 on the diagonal.
    """
    dot = torch.matmul(embeddings, embeddings.t())  # (B, B) Gram matrix
    square_norm = torch.diagonal(dot)  # (B,) ||e_i||^2, read off the Gram matrix so the diagonal cancels exactly
    dist2 = square_norm.unsqueeze(0) - 2.0 * dot + square_norm.unsqueeze(1)
    # Guard 1: a - 2b + c can round to a tiny negative number for (near-)duplicate points. A squared distance is
    # never negative, and sqrt of a negative number is NaN, so clamp at 0.
    return dist2.clamp_min(0.0)


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient where ``x == 0``.

    Guard 2: the derivative 1 / (2 sqrt(x)) is infinite at 0 (the diagonal, duplicate points), and 0 * inf = NaN in
    the backward pass. The inner ``where`` feeds sqrt a harmless 1 there and the outer ``where`` returns 0, so no
    infinity is ever created. Where ``x > 0`` the value is exactly ``torch.sqrt(x)``.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def cosine_distances(x: Tensor) -> Tensor:
    """``1 - cos(x_i, x_j)`` for (B, D) rows, clamped at 0 with an exact 0 diagonal (sentence-transformers 6.3).

    Guard 3: for (near-)duplicate rows ``1 - cos`` rounds to about -1e-7; a distance is never negative, so clamp at
    0 (the clamp passes no gradient where it is active). The diagonal (a point and itself) is set to exactly 0.
    ``F.normalize`` divides by ``max(||x||, 1e-12)``: a zero vector stays zero instead of producing NaN.
    """
    unit = torch.nn.functional.normalize(x, p=2, dim=-1)
    dist = (1 - torch.mm(unit, unit.t())).clamp_min(0.0)
    return dist.fill_diagonal_(0.0)


def pairwise_distances(embeddings: Tensor, distance: str = "euclidean") -> Tensor:
    """All pairwise distances of one batch.

    Args:
        embeddings: (B, D) floating tensor, B >= 2. float16/bfloat16 inputs (and inputs under ``torch.autocast``)
            are computed in float32.
        distance: ``"euclidean"`` (``||a - b||``), ``"squared_euclidean"`` (``||a - b||^2``) or ``"cosine"``
            (``1 - cos(a, b)``, clamped to [0, 2 + rounding], 0 on the diagonal).

    Returns:
        (B, B) tensor ``dist`` with ``dist[i, j]`` the distance between rows i and j; float32 or float64.

    Note:
        The result is not scanned for NaN/inf (that would need a host synchronisation on a GPU). Non-finite
        embeddings give non-finite distances.
    """
    check_embeddings(embeddings)
    check_distance(distance)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = upcast(embeddings)
        if distance == "cosine":
            return cosine_distances(x)
        dist2 = squared_euclidean_gram(x)
        if distance == "squared_euclidean":
            return dist2
        return safe_sqrt(dist2)
