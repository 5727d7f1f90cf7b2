"""Fused Triton kernels for BatchSemiHard on CUDA: each positive's semi-hard negative without sorting every row.

For the anchor-positive pair (a, p) BatchSemiHard uses the nearest negative strictly farther than p (lowest index
among equal distances), or, when there is none, the farthest negative (lowest index again): the rule of
:func:`tutorial_lib.engine.selection.semi_hard_indices`, which sorts every row (stable) and bisects it. As in
:mod:`.fused_kernels`, the formulation is chosen per anchor on the device from its group size:

* ``_semi_direct_kernel`` -- at most ``direct_max`` positives: one pass over the row per tile of positives keeps,
  per positive, the smallest negative distance above its own (a masked ``min`` with its first index);
* ``_semi_sorted_kernel`` -- more positives (the few-label layout): the row's negatives are sorted inside the
  kernel as 64-bit keys (distance bits, column), so that one bisection per positive finds the same negative.

Both write the row of dL/d(dist) up to the 1 / (number of positive pairs) scale: +1 at each positive pair with a
positive hinge, minus the number of such pairs that selected it at each negative, 0 elsewhere. Used only where
:func:`tutorial_lib.engine.counting.use_fused` says so. This module imports triton at import time.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .fused_kernels import _BLOCK, _CHUNK, _TILE, DIRECT_MAX_POSITIVES, group_index, sorted_launch


@triton.jit(do_not_specialize=["direct_max"])  # size stays specialised: aligned row loads
def _semi_direct_kernel(
    d_ptr,  # (B, B) float32 distances (>= 0, as the engine computes them)
    labels_ptr,  # (B,) integer labels
    order_ptr, first_ptr, size_ptr,  # (B,) int32 each: fused_kernels.group_index
    out_ptr,  # out (B, B) float32: dL/d(dist) times the number of positive pairs
    hinge_ptr,  # out (B,) float32: per anchor, the sum of its positive pairs' hinges
    size, margin, direct_max,
    BLOCK: tl.constexpr, TILE: tl.constexpr,
):
    a = tl.program_id(0)
    group = tl.load(size_ptr + a)
    if group - 1 <= direct_max:
        first = tl.load(first_ptr + a)
        label = tl.load(labels_ptr + a)
        base = a.to(tl.int64) * size
        # Zero the row and find the farthest negative (the fallback); scanning blocks in column order with a
        # strict comparison keeps the lowest index among equal distances.
        far_v = tl.full([], float("-inf"), tl.float32)
        far_i = tl.zeros([], dtype=tl.int32)
        for start in range(0, size, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            inside = cols < size
            is_neg = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) != label)
            x = tl.where(is_neg, tl.load(d_ptr + base + cols, mask=inside, other=0.0), float("-inf"))
            tl.store(out_ptr + base + cols, tl.zeros([BLOCK], dtype=tl.float32), mask=inside)
            value, index = tl.max(x, axis=0, return_indices=True, return_indices_tie_break_left=True)
            better = value > far_v
            far_i = tl.where(better, start + index, far_i)
            far_v = tl.where(better, value, far_v)
        tl.debug_barrier()  # the entries written below land on zeros stored by other threads
        members = tl.arange(0, TILE)
        hinge = tl.zeros([TILE], dtype=tl.float32)
        for t in range(0, group, TILE):
            j = t + members
            p = tl.load(order_ptr + first + j, mask=j < group, other=0)
            ok = (j < group) & (p != a)
            v = tl.load(d_ptr + base + p, mask=ok, other=0.0)
            best_v = tl.full([TILE], float("inf"), tl.float32)
            best_i = tl.zeros([TILE], dtype=tl.int32)
            for start in range(0, size, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                inside = cols < size
                is_neg = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) != label)
                x = tl.where(is_neg, tl.load(d_ptr + base + cols, mask=inside, other=0.0), float("inf"))
                above = tl.where(x[None, :] > v[:, None], x[None, :], float("inf"))  # (TILE, BLOCK)
                value, index = tl.min(above, axis=1, return_indices=True, return_indices_tie_break_left=True)
                better = value < best_v
                best_i = tl.where(better, start + index, best_i)
                best_v = tl.where(better, value, best_v)
            found = best_v < float("inf")
            chosen = tl.where(found, best_i, far_i)
            z = (v - tl.where(found, best_v, far_v)) + margin  # the engine's expression
            # (a vector comparison: the interpreter rejects masks broadcast from a scalar)
            active = ok & (z > 0.0) & ((tl.zeros([TILE], dtype=tl.int32) + group) < size)
            hinge += tl.where(active, z, 0.0)
            tl.store(out_ptr + base + p, active.to(tl.float32), mask=ok)
            # several positives may share a negative: atomics add their -1s (exact small integers)
            tl.atomic_add(out_ptr + base + chosen, tl.full([TILE], -1.0, tl.float32), mask=active)
        tl.store(hinge_ptr + a, tl.sum(hinge, axis=0))


@triton.jit(do_not_specialize=["size", "direct_max"])  # one compiled variant per row size
def _semi_sorted_kernel(
    d_ptr, labels_ptr, size_ptr,  # as in _semi_direct_kernel
    scratch_ptr,  # (programs, BLOCK_B) int64: each program's sorted keys
    out_ptr, hinge_ptr,  # outputs as in _semi_direct_kernel, for the other anchors
    size, margin, direct_max,
    BLOCK_B: tl.constexpr, CHUNK: tl.constexpr, STEPS: tl.constexpr,
):
    everything = tl.arange(0, BLOCK_B)
    keys_ptr = scratch_ptr + tl.program_id(0).to(tl.int64) * BLOCK_B
    for a in range(tl.program_id(0), size, tl.num_programs(0)):
        group = tl.load(size_ptr + a)
        if group - 1 > direct_max:
            label = tl.load(labels_ptr + a)
            base = a * size  # int32 is enough: semi_hard_terms checks B * B < 2**31
            row_in = everything < size
            row_neg = row_in & (tl.load(labels_ptr + everything, mask=row_in, other=0) != label)
            row = tl.load(d_ptr + base + everything, mask=row_in, other=0.0)
            # Non-negative floats order as their bit patterns (-0.0 made +0.0 first); the column in the low bits
            # puts the lowest index first among equal distances, as the engine's stable sort does.
            bits = tl.where(row == 0.0, 0.0, row).to(tl.int32, bitcast=True).to(tl.int64)
            keys = tl.where(row_neg, (bits << 32) | everything.to(tl.int64), 0x7FFFFFFFFFFFFFFF)
            tl.store(keys_ptr + everything, tl.sort(keys))
            far_v = tl.max(tl.where(row_neg, row, float("-inf")), axis=0)
            far_i = tl.min(tl.where(row_neg & (row == far_v), everything, BLOCK_B), axis=0)
            tl.store(out_ptr + base + everything, tl.zeros([BLOCK_B], dtype=tl.float32), mask=row_in)
            tl.debug_barrier()  # the keys are read, and the zeros updated, by other threads
            negatives = size - group
            hinge = tl.zeros([CHUNK], dtype=tl.float32)
            for start in range(0, size, CHUNK):
                cols = start + tl.arange(0, CHUNK)
                inside = cols < size
                is_pos = inside & (tl.load(labels_ptr + cols, mask=inside, other=0) == label) & (cols != a)
                x = tl.load(d_ptr + base + cols, mask=inside, other=0.0)
                # first key whose distance is strictly above x: its bits are at least bits(x) + 1
                target = (tl.where(x == 0.0, 0.0, x).to(tl.int32, bitcast=True).to(tl.int64) + 1) << 32
                low = tl.zeros([CHUNK], dtype=tl.int32)
                high = tl.zeros([CHUNK], dtype=tl.int32) + BLOCK_B
                for _ in range(STEPS):  # a loop, not unrolled: compile time
                    middle = (low + high) // 2
                    move = (tl.load(keys_ptr + tl.minimum(middle, BLOCK_B - 1)) < target) & (middle < high)
                    low = tl.where(move, middle + 1, low)
                    high = tl.where(move, high, middle)
                found = low < negatives
                key = tl.load(keys_ptr + tl.minimum(low, BLOCK_B - 1))
                chosen = tl.where(found, (key & 0xFFFFFFFF).to(tl.int32), far_i)
                value = tl.where(found, (key >> 32).to(tl.int32).to(tl.float32, bitcast=True), far_v)
                z = (x - value) + margin
                active = is_pos & (z > 0.0) & ((tl.zeros([CHUNK], dtype=tl.int32) + negatives) > 0)
                hinge += tl.where(active, z, 0.0)
                tl.store(out_ptr + base + cols, active.to(tl.float32), mask=is_pos)
                tl.atomic_add(out_ptr + base + chosen, tl.full([CHUNK], -1.0, tl.float32), mask=active)
            tl.store(hinge_ptr + a, tl.sum(hinge, axis=0))
            tl.debug_barrier()  # the next anchor's sort overwrites the keys


def semi_hard_terms(d: Tensor, labels: Tensor, margin: float, direct_max: int = DIRECT_MAX_POSITIVES,
                    programs: int | None = None, block: int = _BLOCK, chunk: int = _CHUNK
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """BatchSemiHard's loss numerator and gradient counts from a (B, B) float32 distance matrix, in O(B^2) memory.

    Args:
        d: (B, B) float32 distances (>= 0); labels: (B,) integers; margin: >= 0; direct_max, programs, block,
            chunk: as in :func:`tutorial_lib.engine.fused_kernels.batch_all_terms`.
    Returns:
        ``(signed, total, pairs)``: (B, B) float32 dL/d(dist) times the number of positive pairs (+1 at each
        positive pair with a positive hinge, minus the number of such pairs that chose it at each negative); the
        0-dim float32 sum of the hinges; the 0-dim int64 number of positive pairs (a, p), a != p.
    """
    size = d.shape[0]
    if size * size >= 2**31:
        raise ValueError(f"the fused kernels index rows with int32 offsets: B = {size} is too large")
    d, labels = d.contiguous(), labels.contiguous()
    order, first, group = group_index(labels)
    out = torch.empty_like(d)
    hinge = torch.empty(size, dtype=torch.float32, device=d.device)
    _semi_direct_kernel[(size,)](
        d, labels, order, first, group, out, hinge, size, margin, direct_max, BLOCK=block, TILE=_TILE, num_warps=4,
    )
    if direct_max < size - 1:  # else every anchor took the direct pass
        grid, row, warps = sorted_launch(d, programs)
        scratch = torch.empty((grid, row), dtype=torch.int64, device=d.device)
        _semi_sorted_kernel[(grid,)](
            d, labels, group, scratch, out, hinge, size, margin, direct_max,
            BLOCK_B=row, CHUNK=min(chunk, row), STEPS=row.bit_length(), num_warps=warps,
        )
    return out, hinge.sum(), (group - 1).sum(dtype=torch.int64)
