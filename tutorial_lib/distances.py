"""Pairwise distances between the embeddings of one batch (introduced in notebook 02).

Every loss in this package starts from the same (B, B) distance matrix, so it is defined once, here.

The euclidean variants use the Gram trick ``||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2``: one matrix product instead of
B^2 vector differences. It has two numerical traps, both guarded below and both taught in notebook 02:

1. rounding can make a squared distance slightly negative (then ``sqrt`` would return NaN);
2. ``d/dx sqrt(x) = 1 / (2 sqrt(x))`` is infinite at ``x = 0``, i.e. on the diagonal and for duplicate points.

The operations and their order are the same as in sentence-transformers' ``BatchHardTripletLossDistanceFunction``
so that, for the same input, the distances agree bit for bit with the library the learner trains with (the exact
BatchAll counting in :mod:`tutorial_lib.losses` relies on this).

This module imports torch only.
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


def _upcast(embeddings: Tensor) -> Tensor:
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


def pairwise_distances(embeddings: Tensor, distance: str = "euclidean") -> Tensor:
    """All pairwise distances of one batch.

    Args:
        embeddings: (B, D) floating tensor, B >= 2. float16/bfloat16 inputs (and inputs under ``torch.autocast``)
            are computed in float32.
        distance: ``"euclidean"`` (``||a - b||``), ``"squared_euclidean"`` (``||a - b||^2``) or ``"cosine"``
            (``1 - cos(a, b)``, in [0, 2] up to rounding).

    Returns:
        (B, B) tensor ``dist`` with ``dist[i, j]`` the distance between rows i and j; float32 or float64.

    Note:
        The result is not scanned for NaN/inf (that would need a host synchronisation on a GPU). Non-finite
        embeddings give non-finite distances.
    """
    check_embeddings(embeddings)
    check_distance(distance)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = _upcast(embeddings)
        if distance == "cosine":
            # F.normalize divides by max(||x||, 1e-12): a zero vector stays zero instead of producing NaN.
            unit = torch.nn.functional.normalize(x, p=2, dim=-1)
            return 1 - torch.mm(unit, unit.t())
        dist2 = squared_euclidean_gram(x)
        if distance == "squared_euclidean":
            return dist2
        return safe_sqrt(dist2)


# ----------------------------------------------------------------------------------------------------------------
# The same distances without autograd, and their backward pass written out (used by the fused losses)
# ----------------------------------------------------------------------------------------------------------------


def distances_for_backward(embeddings: Tensor, distance: str) -> tuple[Tensor, Tensor]:
    """``(x, dist)``: the upcast embeddings and the values of :func:`pairwise_distances`, without autograd.

    Computed in place where possible (one (B, B) buffer instead of four) and bit for bit equal to
    :func:`pairwise_distances`: ``(-2 * dot + a) + b`` and ``(a - 2 * dot) + b`` round identically in IEEE
    arithmetic, as do ``-s + 1`` and ``1 - s``.
    """
    with torch.no_grad(), torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = _upcast(embeddings.detach())
        if distance == "cosine":
            unit = torch.nn.functional.normalize(x, p=2, dim=-1)
            return x, torch.mm(unit, unit.t()).neg_().add_(1)
        dot = torch.matmul(x, x.t())
        square_norm = dot.diagonal().clone()
        dist2 = dot.mul_(-2.0).add_(square_norm.unsqueeze(0)).add_(square_norm.unsqueeze(1)).clamp_min_(0.0)
        if distance == "squared_euclidean":
            return x, dist2
        return x, dist2.sqrt_()  # sqrt(0) = 0: the values of safe_sqrt


def _weights_on_squared(grad_dist: Tensor, dist: Tensor, distance: str) -> Tensor:
    """dL/d(squared distance) from dL/d(distance); zero where the distance is 0 (the guarded sqrt, or clamped)."""
    if distance == "euclidean":
        # d(d)/d(d^2) = 1 / (2 d); dividing by +inf where d == 0 gives the guard's zero without a 0 * inf
        return grad_dist * 0.5 / torch.where(dist > 0, dist, torch.inf)
    return torch.where(dist > 0, grad_dist, 0.0)


def pairwise_distances_backward(grad_dist: Tensor, x: Tensor, dist: Tensor, distance: str) -> Tensor:
    """dL/dx (B, D) from a dense dL/d(dist) (B, B), the backward of :func:`pairwise_distances` in one matmul.

    Euclidean: with W = dL/d(d^2) and d^2_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j,
    ``dL/dx = 2 (rowsum W + colsum W) * x - 2 (W + W^T) @ x``. Cosine: with u = x / |x|,
    ``dL/du = -(G + G^T) @ u``, then the backward of the normalisation.
    """
    if distance == "cosine":
        return _normalize_backward(-(grad_dist + grad_dist.t()) @ _unit(x), x)
    w = _weights_on_squared(grad_dist, dist, distance)
    scale = w.sum(dim=0) + w.sum(dim=1)
    w = w + w.t()
    return 2 * (scale.unsqueeze(1) * x - w @ x)


def sparse_distances_backward(rows: Tensor, cols: Tensor, grad: Tensor, x: Tensor, dist: Tensor, distance: str) -> Tensor:
    """dL/dx (B, D) when dL/d(dist) is nonzero only at entries ``(rows[k], cols[k])`` with values ``grad[k]``.

    O(K * D) work instead of a (B, B) x (B, D) matmul: batch-hard selects two pairs per anchor. Entries may repeat.

    Args:
        rows, cols: (K,) long; grad: (K,) dL/d dist[rows, cols]; x: (B, D); dist: (K,) the distances at the entries.
    """
    if distance == "cosine":
        unit = _unit(x)
        grad_unit = torch.zeros_like(x)
        grad_unit.index_add_(0, rows, -grad.unsqueeze(1) * unit[cols])
        grad_unit.index_add_(0, cols, -grad.unsqueeze(1) * unit[rows])
        return _normalize_backward(grad_unit, x)
    w = _weights_on_squared(grad, dist, distance)
    diff = 2 * w.unsqueeze(1) * (x[rows] - x[cols])  # d(d^2_ij)/dx_i = 2 (x_i - x_j), and the negative for x_j
    out = torch.zeros_like(x)
    out.index_add_(0, rows, diff)
    out.index_add_(0, cols, -diff)
    return out


def _unit(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x, p=2, dim=-1)


def _normalize_backward(grad_unit: Tensor, x: Tensor) -> Tensor:
    # u = x / max(|x|, 1e-12): where |x| > 1e-12, du/dx projects out the radial direction; below it (a zero vector)
    # u = x / 1e-12 is linear.
    norm = x.norm(dim=-1, keepdim=True)
    unit = x / norm.clamp_min(1e-12)
    radial = (unit * grad_unit).sum(dim=-1, keepdim=True)
    return torch.where(norm > 1e-12, (grad_unit - unit * radial) / norm.clamp_min(1e-12), grad_unit / 1e-12)
