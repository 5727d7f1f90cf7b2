"""Fused Triton kernels for BatchAll on CUDA: exact counts without sorting every row (semi-hard: :mod:`.fused_semi_hard`).

The sort-based engine (:mod:`.counting`, :mod:`.triton_kernels`) sorts every anchor's B distances so that bisection
can count the active triplets; at B = 8192 those sorts dominate the loss. With few examples per label the direct sum
is cheaper: an anchor with K - 1 positives has (K - 1) * B triplets, so one program per anchor reads its row of the
distance matrix, evaluates sentence-transformers' expression ``(d_ap - d_an) + margin`` for every (positive,
negative) pair in registers and writes its row of dL/d(dist); nothing of size B * (K - 1) * B is materialised.

Which anchors take which formulation is decided on the device, per anchor, from its group size (no host
synchronisation, shapes depend on B only): two kernels are launched and each skips the other's anchors.

* ``_all_direct_kernel`` -- anchors with at most ``direct_max`` positives: the direct sum (cost ~ (K - 1) * B);
* ``_all_sorted_kernel`` -- anchors with more (the few-label layout): the sort-and-bisect algorithm of
  :mod:`.triton_kernels`, with each row sorted inside the kernel, so a P x K batch sorts nothing.

Both evaluate the same float32 predicates as the engine, so the counts are identical integers; the loss numerator
equals it to rounding. The positives of an anchor are found through the batch's labels sorted once
(:func:`group_index`): its group is a contiguous slice of that order.

Used only where :func:`tutorial_lib.engine.counting.use_fused` says so (float32 CUDA tensors, Triton importable,
B <= ``FUSED_MAX_BATCH``, only with ``TRIPLET_FUSED=1`` until measured on a GPU). This module imports triton at import time.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..reference import COUNT_THRESHOLD

DIRECT_MAX_POSITIVES = 32
"""Anchors with at most this many positives take the direct sum; more take the in-kernel sort."""

_BLOCK = 512  # columns per step of the direct kernels
_TILE = 4  # positives evaluated together by the direct kernels (P x 4 batches: one tile)
_CHUNK = 1024  # columns per bisection step of the sorted kernels
_MIN_SORTED_BLOCK = 1024  # on CUDA, the smallest row the sorted kernels sort: one compiled variant for B <= 1024


def group_index(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each anchor's group as a slice of the label-sorted batch, with static shapes and no host synchronisation.

    Returns:
        ``(order, first, size)``, (B,) int32 each: ``order`` the stable argsort of ``labels`` (a group's members in
        increasing index), and for anchor a its group ``order[first[a] : first[a] + size[a]]`` (a itself included).
    """
    order = torch.argsort(labels, stable=True)
    ordered = labels[order].contiguous()
    first = torch.searchsorted(ordered, labels, right=False)
    last = torch.searchsorted(ordered, labels, right=True)
    return order.to(torch.int32), first.to(torch.int32), (last - first).to(torch.int32)


@functools.lru_cache(maxsize=8)
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def sorted_launch(d: Tensor, programs: int | None) -> tuple[int, int, int]:
    """``(programs, block, warps)`` of a sorted kernel: a persistent grid (a few programs per multiprocessor, each
    looping over anchors, so that skipped anchors cost one load) and the padded row it sorts (the interpreter, which
    sorts slowly, sorts the smallest power of two that holds a row)."""
    size = d.shape[0]
    if programs is None:
        programs = min(size, 4 * _multiprocessors(d.device)) if d.is_cuda else min(size, 16)
    block = max(_MIN_SORTED_BLOCK if d.is_cuda else 16, triton.next_power_of_2(size))
    return programs, block, min(32, max(4, block // 256))  # 32 warps at B = 8192: no spill-heavy sort


@triton.jit(do_not_specialize=["direct_max"])  # size stays specialised: aligned row loads
def _all_direct_kernel(
    d_ptr,  # (B, B) float32 distances
    labels_ptr,  # (B,) integer labels
    order_ptr, first_ptr, size_ptr,  # (B,) int32 each: group_index
    out_ptr,  # out (B, B) float32: +active negatives at positives, -active positives at negatives, 0 elsewhere
    counted_ptr,  # out (B,) int32: per anchor, triplets with loss > threshold
    hinge_ptr,  # out (B,) float32: per anchor, sum of the active triplets' losses
    size, margin, threshold, direct_max,
    BLOCK: tl.constexpr, TILE: tl.constexpr,
):
    a = tl.program_id(0)
    group = tl.load(size_ptr + a)
    if group - 1 <= direct_max:
        first = tl.load(first_ptr + a)
        label = tl.load(labels_ptr + a)
        base = a.to(tl.int64) * size
        members = tl.arange(0, TILE)
        # Per negative: the positives it is active with. Non-negatives read +inf, so (d_ap - inf) + m fails.
        for start in range(0, size, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < size
            is_neg = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) != label)
            x = tl.where(is_neg, tl.load(d_ptr + base + cols, mask=inside, other=0.0), float("inf"))
            per_neg = tl.zeros([BLOCK], dtype=tl.int32)
            for t in range(0, group, TILE):
                j = t + members
                p = tl.load(order_ptr + first + j, mask=j < group, other=0)
                ok = (j < group) & (p != a)
                v = tl.load(d_ptr + base + p, mask=ok, other=float("-inf"))  # absent positives: -inf, never active
                loss = (v[:, None] - x[None, :]) + margin  # ST's expression, operation by operation
                per_neg += tl.sum((loss > 0.0).to(tl.int32), axis=0)
            tl.store(out_ptr + base + cols, tl.where(is_neg, -per_neg.to(tl.float32), 0.0), mask=inside)
        tl.debug_barrier()  # the positives' entries below overwrite the zeros just stored by other threads
        counted = tl.zeros([TILE], dtype=tl.int32)
        hinge = tl.zeros([TILE], dtype=tl.float32)
        for t in range(0, group, TILE):
            j = t + members
            p = tl.load(order_ptr + first + j, mask=j < group, other=0)
            ok = (j < group) & (p != a)
            v = tl.load(d_ptr + base + p, mask=ok, other=float("-inf"))
            per_pos = tl.zeros([TILE], dtype=tl.int32)
            for start in range(0, size, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                inside = cols < size
                is_neg = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) != label)
                x = tl.where(is_neg, tl.load(d_ptr + base + cols, mask=inside, other=0.0), float("inf"))
                loss = (v[:, None] - x[None, :]) + margin
                active = loss > 0.0
                per_pos += tl.sum(active.to(tl.int32), axis=1)
                counted += tl.sum((loss > threshold).to(tl.int32), axis=1)
                hinge += tl.sum(tl.where(active, loss, 0.0), axis=1)
            tl.store(out_ptr + base + p, per_pos.to(tl.float32), mask=ok)
        tl.store(counted_ptr + a, tl.sum(counted, axis=0))
        tl.store(hinge_ptr + a, tl.sum(hinge, axis=0))


@triton.jit
def _prefix_length(sorted_ptr, q, margin, threshold, FAIL_PREFIX: tl.constexpr, LENGTH: tl.constexpr,
                   STEPS: tl.constexpr):
    """Per query, the length of the prefix of a sorted row (LENGTH entries at ``sorted_ptr``) on which
    ``(q - s) + margin > threshold`` holds (negatives sorted ascending), or, with FAIL_PREFIX, on which
    ``(s - q) + margin > threshold`` fails (positives sorted ascending: the passing ones are a suffix)."""
    low = tl.zeros(q.shape, dtype=tl.int32)  # invariant: positions < low are in the prefix
    high = tl.zeros(q.shape, dtype=tl.int32) + LENGTH  # invariant: positions >= high are not
    for _ in range(STEPS):  # a loop, not unrolled: compile time
        middle = (low + high) // 2
        s = tl.load(sorted_ptr + tl.minimum(middle, LENGTH - 1))
        if FAIL_PREFIX:
            move = (((s - q) + margin) <= threshold) & (middle < high)
        else:
            move = (((q - s) + margin) > threshold) & (middle < high)
        low = tl.where(move, middle + 1, low)
        high = tl.where(move, high, middle)
    return low


@triton.jit(do_not_specialize=["size", "direct_max"])  # one compiled variant per row size
def _all_sorted_kernel(
    d_ptr, labels_ptr, size_ptr,  # as in _all_direct_kernel
    scratch_ptr,  # (programs, 2 * BLOCK_B) float32: each program's sorted negatives, then sorted positives
    out_ptr, counted_ptr, hinge_ptr,  # outputs as in _all_direct_kernel, for the other anchors
    size, margin, threshold, direct_max,
    BLOCK_B: tl.constexpr, CHUNK: tl.constexpr, STEPS: tl.constexpr,
):
    everything = tl.arange(0, BLOCK_B)
    neg_sorted = scratch_ptr + tl.program_id(0).to(tl.int64) * (2 * BLOCK_B)
    pos_sorted = neg_sorted + BLOCK_B
    for a in range(tl.program_id(0), size, tl.num_programs(0)):
        group = tl.load(size_ptr + a)
        if group - 1 > direct_max:
            label = tl.load(labels_ptr + a)
            base = a * size  # int32 is enough: batch_all_terms checks B * B < 2**31
            row_in = everything < size
            row_same = tl.load(labels_ptr + everything, mask=row_in, other=0) == label
            row = tl.load(d_ptr + base + everything, mask=row_in, other=0.0)
            row_neg = tl.where(row_in & ~row_same, row, float("inf"))
            tl.store(neg_sorted + everything, tl.sort(row_neg))
            tl.store(pos_sorted + everything, tl.sort(tl.where(row_in & row_same & (everything != a), row, float("-inf"))))
            # The reference keeps the numerator's terms at the hinge's scale (see functions.batch_all_forward).
            ref = tl.min(row_neg, axis=0)
            ref = tl.where(ref < float("inf"), ref, 0.0)
            tl.debug_barrier()  # the sorted rows are read back by other threads
            counted = tl.zeros([CHUNK], dtype=tl.int32)
            hinge = tl.zeros([CHUNK], dtype=tl.float32)
            for start in range(0, size, CHUNK):
                cols = start + tl.arange(0, CHUNK)
                inside = cols < size
                same = tl.load(labels_ptr + cols, mask=inside, other=0) == label
                is_pos = inside & same & (cols != a)
                is_neg = inside & ~same
                x = tl.load(d_ptr + base + cols, mask=inside, other=0.0)
                q = tl.where(is_pos, x, float("-inf"))
                per_pos = tl.where(is_pos, _prefix_length(neg_sorted, q, margin, 0.0, False, BLOCK_B, STEPS), 0)
                above = _prefix_length(neg_sorted, q, margin, threshold, False, BLOCK_B, STEPS)
                counted += tl.where(is_pos, above, 0)
                failing = _prefix_length(pos_sorted, x, margin, 0.0, True, BLOCK_B, STEPS)
                per_neg = tl.where(is_neg, BLOCK_B - failing, 0)
                hinge += tl.where(is_pos, per_pos.to(tl.float32) * ((x - ref) + margin), 0.0)
                hinge -= tl.where(is_neg, per_neg.to(tl.float32) * (x - ref), 0.0)
                tl.store(out_ptr + base + cols, (per_pos - per_neg).to(tl.float32), mask=inside)
            tl.store(counted_ptr + a, tl.sum(counted, axis=0))
            tl.store(hinge_ptr + a, tl.sum(hinge, axis=0))
            tl.debug_barrier()  # the next anchor's sort overwrites the scratch rows


def batch_all_terms(d: Tensor, labels: Tensor, margin: float, direct_max: int = DIRECT_MAX_POSITIVES,
                    programs: int | None = None, block: int = _BLOCK, chunk: int = _CHUNK
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """BatchAll's counts and loss numerator from a (B, B) float32 distance matrix, in O(B^2) memory.

    Args:
        d: (B, B) float32 distances; labels: (B,) integers; margin: >= 0.
        direct_max: anchors with at most this many positives take the direct sum, the others the in-kernel sort
            (both give the same counts; the tests move it to cover both kernels).
        programs: the sorted kernel's grid (default: a few per multiprocessor); block, chunk: columns per step of
            the direct and the sorted kernel (powers of two; the tests make them small to cover several steps).
    Returns:
        ``(signed, counted, total)``: (B, B) float32 with, at [a, p], the number of negatives active with the
        positive pair (a, p) and, at [a, n], minus the number of positives active with the negative pair (a, n)
        (0 elsewhere: dL/d(dist) up to the 1 / counted scale); the 0-dim int64 number of triplets with
        loss > 1e-16; the 0-dim float32 sum of all triplet losses.
    """
    size = d.shape[0]
    if size * size >= 2**31:
        raise ValueError(f"the fused kernels index rows with int32 offsets: B = {size} is too large")
    d, labels = d.contiguous(), labels.contiguous()
    order, first, group = group_index(labels)
    out = torch.empty_like(d)
    counted = torch.empty(size, dtype=torch.int32, device=d.device)
    hinge = torch.empty(size, dtype=torch.float32, device=d.device)
    _all_direct_kernel[(size,)](
        d, labels, order, first, group, out, counted, hinge, size, margin, COUNT_THRESHOLD, direct_max,
        BLOCK=block, TILE=_TILE, num_warps=4,
    )
    if direct_max < size - 1:  # else every anchor took the direct sum
        grid, row, warps = sorted_launch(d, programs)
        scratch = torch.empty((grid, 2 * row), dtype=torch.float32, device=d.device)
        _all_sorted_kernel[(grid,)](
            d, labels, group, scratch, out, counted, hinge, size, margin, COUNT_THRESHOLD, direct_max,
            BLOCK_B=row, CHUNK=min(chunk, row), STEPS=row.bit_length(), num_warps=warps,
        )
    return out, counted.sum(dtype=torch.int64), hinge.sum()
