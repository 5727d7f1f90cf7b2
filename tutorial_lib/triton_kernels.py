"""Optional Triton kernel for BatchAll's exact counting on CUDA (the pure-PyTorch version is in :mod:`mining`).

:func:`tutorial_lib.mining.count_active` finds, by bisection, how many of an anchor's sorted negative distances make
sentence-transformers' float expression ``(d_ap - d_an) + margin`` exceed a threshold. In PyTorch each bisection
round is a dozen (B, B) kernels; here one kernel runs every round in registers, reading each anchor's sorted row
from cache. Same predicate, same float32 operations, so the counts are identical (the CUDA test run compares them).

Used only for float32 CUDA tensors when Triton imports; ``TRIPLET_TRITON=0`` disables it, ``TRIPLET_TRITON=force``
also uses it on CPU tensors (with ``TRITON_INTERPRET=1``, for testing on a machine without a GPU).
This module imports triton at import time: import it only through :func:`available`.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _bisect_rows_kernel(
    query_ptr,  # (B, B) float32: the value compared against each sorted row
    sorted_ptr,  # (B, B) float32: each row ascending
    out_ptr,  # (B, B) int32: the count for every query
    out2_ptr,  # (B, B) int32: the count for the second threshold (only written when TWO_THRESHOLDS)
    size,  # B
    margin,  # float32
    QUERY_IS_POSITIVE: tl.constexpr,  # True: count prefix of sorted negatives; False: suffix of sorted positives
    TWO_THRESHOLDS: tl.constexpr,
    STEPS: tl.constexpr,  # ceil(log2(B + 1))
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < size
    base = row.to(tl.int64) * size
    q = tl.load(query_ptr + base + cols, mask=inside, other=0.0)
    low = tl.zeros([BLOCK], dtype=tl.int32)  # invariant: positions < low pass (prefix) / fail (suffix)
    high = tl.zeros([BLOCK], dtype=tl.int32) + size  # invariant: positions >= high fail / pass
    low2 = tl.zeros([BLOCK], dtype=tl.int32)
    high2 = tl.zeros([BLOCK], dtype=tl.int32) + size
    for _ in tl.static_range(STEPS):
        middle = (low + high) // 2
        value = tl.load(sorted_ptr + base + tl.minimum(middle, size - 1), mask=inside, other=0.0)
        if QUERY_IS_POSITIVE:  # q = d(a, p), value = a sorted negative distance
            loss = (q - value) + margin
        else:  # q = d(a, n), value = a sorted positive distance
            loss = (value - q) + margin
        if QUERY_IS_POSITIVE:
            move = (loss > 0.0) & (middle < high)  # passes: the prefix goes on
        else:
            move = (loss <= 0.0) & (middle < high)  # fails: the passing suffix starts later
        low = tl.where(move, middle + 1, low)
        high = tl.where(move, high, middle)
        if TWO_THRESHOLDS:
            middle2 = (low2 + high2) // 2
            value2 = tl.load(sorted_ptr + base + tl.minimum(middle2, size - 1), mask=inside, other=0.0)
            loss2 = (q - value2) + margin
            move2 = (loss2 > 1e-16) & (middle2 < high2)
            low2 = tl.where(move2, middle2 + 1, low2)
            high2 = tl.where(move2, high2, middle2)
    tl.store(out_ptr + base + cols, low, mask=inside)
    if TWO_THRESHOLDS:
        tl.store(out2_ptr + base + cols, low2, mask=inside)


def _launch(query: torch.Tensor, sorted_rows: torch.Tensor, margin: float, query_is_positive: bool, two: bool):
    size = sorted_rows.shape[1]
    out = torch.empty(query.shape, dtype=torch.int32, device=query.device)
    out2 = torch.empty_like(out) if two else out
    block = min(1024, triton.next_power_of_2(size))
    grid = (query.shape[0], triton.cdiv(size, block))
    _bisect_rows_kernel[grid](
        query.contiguous(), sorted_rows.contiguous(), out, out2, size, margin,
        QUERY_IS_POSITIVE=query_is_positive, TWO_THRESHOLDS=two, STEPS=math.ceil(math.log2(size + 1)), BLOCK=block,
    )
    return out, out2


def count_prefix(d_ap: torch.Tensor, sorted_neg: torch.Tensor, margin: float):
    """(B, B) int32 counts of sorted negatives with loss > 0 and with loss > 1e-16, for every query d_ap."""
    return _launch(d_ap, sorted_neg, margin, True, True)


def count_suffix(d_an: torch.Tensor, sorted_pos: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, B) int32 number of sorted positive distances x with ``(x - d_an) + margin > 0``, for every query d_an."""
    first_pass, _ = _launch(d_an, sorted_pos, margin, False, False)
    return sorted_pos.shape[1] - first_pass
