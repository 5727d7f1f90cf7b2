"""The pairwise distances without autograd, and their backward pass written out.

The engine's losses compute the (B, B) distance matrix once, without keeping an autograd graph (no (B, B)
intermediates saved for backward), and later turn dL/d(dist) into dL/d(embeddings) with one matrix product (dense)
or O(K * D) work (when only K entries of dL/d(dist) are nonzero, as in batch-hard). The values are bit for bit those
of :func:`tutorial_lib.distances.pairwise_distances`, which the exact counting relies on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..distances import upcast


def distances_for_backward(embeddings: Tensor, distance: str) -> tuple[Tensor, Tensor]:
    """``(x, dist)``: the upcast embeddings (B, D) and the (B, B) values of ``pairwise_distances``, without autograd.

    Computed in place where possible (one (B, B) buffer instead of four) and bit for bit equal to
    :func:`tutorial_lib.distances.pairwise_distances`: ``(-2 * dot + a) + b`` and ``(a - 2 * dot) + b`` round
    identically in IEEE arithmetic, as do ``-s + 1`` and ``1 - s``.
    """
    with torch.no_grad(), torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = upcast(embeddings.detach())
        if distance == "cosine":
            unit = torch.nn.functional.normalize(x, p=2, dim=-1)
            # 1 - cos, clamped at 0 with an exact 0 diagonal (sentence-transformers 6.3's cosine distance)
            return x, torch.mm(unit, unit.t()).neg_().add_(1).clamp_min_(0.0).fill_diagonal_(0.0)
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
    """dL/dx (B, D) from a dense dL/d(dist) (B, B), the backward of ``pairwise_distances`` in one matmul.

    Euclidean: with W = dL/d(d^2) and d^2_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j,
    ``dL/dx = 2 (rowsum W + colsum W) * x - 2 (W + W^T) @ x``. Cosine: with u = x / |x|,
    ``dL/du = -(G + G^T) @ u`` where G is dL/d(dist) with the clamped entries and the diagonal zeroed (both pass no
    gradient), then the backward of the normalisation.
    """
    if distance == "cosine":
        grad_dist = torch.where(dist > 0, grad_dist, 0.0)
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
        grad = torch.where(dist > 0, grad, 0.0)  # clamped entries and the diagonal pass no gradient
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
