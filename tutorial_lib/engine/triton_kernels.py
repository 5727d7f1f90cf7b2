"""Optional Triton kernels for BatchAll's exact counting on CUDA (the PyTorch version is in :mod:`.counting`).

:func:`tutorial_lib.engine.counting.count_active` finds, by bisection, how many of an anchor's sorted negative distances make
sentence-transformers' float expression ``(d_ap - d_an) + margin`` exceed a threshold. In PyTorch each bisection
round is a dozen (B, B) kernels; here one kernel runs every round in registers, reading each anchor's sorted row
from cache, and also sums what the loss value needs, so no (B, B) integer tensor is ever written. Same predicate,
same float32 operations, so the counts are identical (the CUDA test run compares them with the PyTorch version).

Used only for float32 CUDA tensors when Triton imports (:func:`tutorial_lib.engine.counting.use_triton`);
``TRIPLET_TRITON=0`` disables it, ``TRIPLET_TRITON=force``
also uses it on CPU tensors (with ``TRITON_INTERPRET=1``, for testing on a machine without a GPU).
This module imports triton at import time: it is imported only where ``use_triton`` says so.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..reference import COUNT_THRESHOLD

_BLOCK = 512


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


@triton.jit
def _positive_side_kernel(
    d_ptr,  # (B, B) float32 distances
    labels_ptr,  # (B,) integer labels
    sorted_neg_ptr,  # (B, B) float32: each anchor's negative distances ascending, +inf for the rest
    ref_ptr,  # (B,) float32 per-anchor reference distance (see functions.batch_all_forward)
    count_ptr,  # out (B, B) float32: active negatives per positive pair, 0 elsewhere
    counted_ptr,  # out (programs,) int32: per-program number of triplets with loss > 1e-16
    value_ptr,  # out (programs,) float32: per-program sum of count * ((d_ap - ref) + margin)
    size,
    margin,
    threshold,
    STEPS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < size
    base = row.to(tl.int64) * size
    x = tl.load(d_ptr + base + cols, mask=inside, other=0.0)
    label = tl.load(labels_ptr + row)
    is_pos = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) == label) & (cols != row)
    low = tl.zeros([BLOCK], dtype=tl.int32)  # invariant: sorted positions < low pass
    high = tl.zeros([BLOCK], dtype=tl.int32) + size  # invariant: positions >= high fail
    low2 = tl.zeros([BLOCK], dtype=tl.int32)
    high2 = tl.zeros([BLOCK], dtype=tl.int32) + size
    for _ in tl.static_range(STEPS):
        middle = (low + high) // 2
        value = tl.load(sorted_neg_ptr + base + tl.minimum(middle, size - 1), mask=inside, other=0.0)
        move = (((x - value) + margin) > 0.0) & (middle < high)  # ST's expression, operation by operation
        low = tl.where(move, middle + 1, low)
        high = tl.where(move, high, middle)
        middle2 = (low2 + high2) // 2
        value2 = tl.load(sorted_neg_ptr + base + tl.minimum(middle2, size - 1), mask=inside, other=0.0)
        move2 = (((x - value2) + margin) > threshold) & (middle2 < high2)
        low2 = tl.where(move2, middle2 + 1, low2)
        high2 = tl.where(move2, high2, middle2)
    count = tl.where(is_pos, low, 0).to(tl.float32)
    tl.store(count_ptr + base + cols, count, mask=inside)
    program = row * tl.num_programs(1) + tl.program_id(1)
    ref = tl.load(ref_ptr + row)
    tl.store(counted_ptr + program, tl.sum(tl.where(is_pos, low2, 0), axis=0))
    tl.store(value_ptr + program, tl.sum(tl.where(is_pos, count * ((x - ref) + margin), 0.0), axis=0))


@triton.jit
def _negative_side_kernel(
    d_ptr,  # (B, B) float32 distances
    labels_ptr,  # (B,) integer labels
    sorted_pos_ptr,  # (B, B) float32: each anchor's positive distances ascending, -inf for the rest
    ref_ptr,  # (B,) float32 per-anchor reference distance
    count_ptr,  # out (B, B) float32: positives for which the negative is active, 0 elsewhere
    value_ptr,  # out (programs,) float32: per-program sum of count * (d_an - ref)
    size,
    margin,
    STEPS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < size
    base = row.to(tl.int64) * size
    y = tl.load(d_ptr + base + cols, mask=inside, other=0.0)
    label = tl.load(labels_ptr + row)
    is_neg = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) != label)
    low = tl.zeros([BLOCK], dtype=tl.int32)  # invariant: sorted positions < low fail (the passing set is a suffix)
    high = tl.zeros([BLOCK], dtype=tl.int32) + size
    for _ in tl.static_range(STEPS):
        middle = (low + high) // 2
        value = tl.load(sorted_pos_ptr + base + tl.minimum(middle, size - 1), mask=inside, other=0.0)
        move = (((value - y) + margin) <= 0.0) & (middle < high)
        low = tl.where(move, middle + 1, low)
        high = tl.where(move, high, middle)
    count = tl.where(is_neg, size - low, 0).to(tl.float32)
    tl.store(count_ptr + base + cols, count, mask=inside)
    program = row * tl.num_programs(1) + tl.program_id(1)
    ref = tl.load(ref_ptr + row)
    tl.store(value_ptr + program, tl.sum(tl.where(is_neg, count * (y - ref), 0.0), axis=0))


def batch_all_terms(d: torch.Tensor, labels: torch.Tensor, margin: float):
    """Everything BatchAll needs from a (B, B) float32 distance matrix, with O(B^2) float32 memory.

    Returns:
        ``(per_positive, per_negative, counted, total, reference)``: (B, B) float32 counts (0 off their pairs),
        the 0-dim int64 number of triplets with loss > 1e-16, the 0-dim float32 value numerator
        ``sum c (d_ap - r + m) - sum c' (d_an - r)`` with r the per-anchor reference, and that reference (B,).
    """
    size = d.shape[0]
    d = d.contiguous()
    labels = labels.contiguous()
    sorted_neg = sorted_masked_rows(d, labels, positives=False)
    ref = sorted_neg[:, 0]
    ref = torch.where(torch.isfinite(ref), ref, 0.0).contiguous()
    block = min(_BLOCK, triton.next_power_of_2(size))
    grid = (size, triton.cdiv(size, block))
    steps = math.ceil(math.log2(size + 1))
    per_positive = torch.empty_like(d)
    counted = torch.empty(grid[0] * grid[1], dtype=torch.int32, device=d.device)
    value_pos = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=d.device)
    _positive_side_kernel[grid](
        d, labels, sorted_neg, ref, per_positive, counted, value_pos, size, margin, COUNT_THRESHOLD,
        STEPS=steps, BLOCK=block,
    )
    del sorted_neg
    sorted_pos = sorted_masked_rows(d, labels, positives=True)
    per_negative = torch.empty_like(d)
    value_neg = torch.empty_like(value_pos)
    _negative_side_kernel[grid](
        d, labels, sorted_pos, ref, per_negative, value_neg, size, margin, STEPS=steps, BLOCK=block,
    )
    total = value_pos.sum() - value_neg.sum()
    return per_positive, per_negative, counted.sum(dtype=torch.int64), total, ref
