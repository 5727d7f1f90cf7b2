"""Which pairs and triplets of a batch are valid (introduced in notebook 02).

A triplet (a, p, n) is *valid* when a and p are different examples with the same label and n has another label.
The losses only ever need the two (B, B) masks below; the 3-D mask exists to teach what "all valid triplets" means
and to test against, and costs B^3 booleans (1 GB at B = 1024), so no loss uses it.

This module imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_labels(labels: Tensor, batch_size: int | None = None) -> None:
    """Raise a clear error unless ``labels`` is a 1-D integer tensor (of length ``batch_size`` when given).

    sentence-transformers silently flattens 2-D labels and accepts float labels; this package does not, because a
    (B, 1) or float label tensor is usually a bug upstream (a wrong collate function, a regression column).
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a 1-D integer torch.Tensor; got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D with shape (batch_size,); got shape {tuple(labels.shape)}")
    if labels.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"labels must have an integer dtype (e.g. torch.long); got {labels.dtype}")
    if batch_size is not None and labels.shape[0] != batch_size:
        raise ValueError(
            f"labels must have one entry per embedding: got {labels.shape[0]} labels for {batch_size} embeddings"
        )


def same_label(labels: Tensor) -> Tensor:
    """(B, B) bool: ``out[i, j]`` is True when ``labels[i] == labels[j]`` (the diagonal included).

    Args:
        labels: (B,) integer tensor.
    """
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def anchor_positive_mask(labels: Tensor) -> Tensor:
    """(B, B) bool: ``mask[a, p]`` is True when a != p and ``labels[a] == labels[p]``.

    Args:
        labels: (B,) integer tensor.
    """
    check_labels(labels)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same_label(labels) & ~eye


def anchor_negative_mask(labels: Tensor) -> Tensor:
    """(B, B) bool: ``mask[a, n]`` is True when ``labels[a] != labels[n]`` (so a != n automatically).

    Args:
        labels: (B,) integer tensor.
    """
    check_labels(labels)
    return ~same_label(labels)


def triplet_mask(labels: Tensor) -> Tensor:
    """(B, B, B) bool: ``mask[a, p, n]`` is True when (a, p, n) is a valid triplet. Teaching and testing only.

    ``mask[a, p, n] = anchor_positive_mask[a, p] & anchor_negative_mask[a, n]``: a != p, same label for a and p, a
    different label for n (which makes n differ from a and p). Memory grows as B^3.

    Args:
        labels: (B,) integer tensor.
    """
    return anchor_positive_mask(labels).unsqueeze(2) & anchor_negative_mask(labels).unsqueeze(1)
