"""Notebook 08 (scaling): the self-checks of its exercises.

    check_st_batch_all_entries(fn)  fn(batch_size: int, per_label: int) -> int, entries of ST BatchAll's tensor
    check_gather_local_grad(fn)     fn(slices: list of W (b_r, D) tensors, rank: int) -> (sum b_r, D) tensor
    check_process_gradients(fn)     fn(embeddings: (B, D), labels: (B,), world_size: int, loss_fn) -> W (B, D) tensors

Oracles: sentence-transformers' layout B * (K - 1) rows by B columns; ``torch.cat`` of the slices; autograd through
:func:`tutorial_lib.vectorized.batch_hard_triplet_loss` and :func:`~tutorial_lib.vectorized.batch_all_triplet_loss`
on the whole batch (what one process would compute).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from ..vectorized import batch_all_triplet_loss, batch_hard_triplet_loss
from .runner import Miss, as_float64, as_whole_number, run_checks

__all__ = ["check_gather_local_grad", "check_process_gradients", "check_st_batch_all_entries"]


def check_st_batch_all_entries(fn: Callable[[int, int], int]) -> bool:
    """``fn(batch_size, per_label)`` returns the number of entries of sentence-transformers' BatchAll tensor.

    sentence-transformers compares every anchor-positive pair with every position of the batch: one row per positive
    pair, B columns. The batch holds ``batch_size // per_label`` labels of ``per_label`` examples each.
    """
    generic = ("one row per anchor-positive pair (B anchors, each with K - 1 positives), and in each row one entry "
               "per position of the batch.")

    def case(batch_size: int, per_label: int, what: str) -> tuple:
        def run(f):
            value, miss = as_whole_number(f(batch_size, per_label), what, generic)
            if miss:
                return miss
            b, k = batch_size, per_label
            if value == b * (k - 1) * b:
                return None
            known = {
                b**3: "that is the full cube of notebook 02; sentence-transformers keeps only the rows of valid "
                      "anchor-positive pairs.",
                b * k * b: "an anchor is not its own positive: K - 1 positives per anchor, not K.",
                b * (k - 1): "that counts the rows only; each row is compared with every position of the batch.",
                b * (k - 1) * (b - k): "that is the number of valid triplets. The tensor also holds the K columns of "
                                       "the anchor's own label (masked out afterwards, but allocated).",
            }
            hint = known.get(value, generic) if k > 1 else "with K = 1 no anchor has a positive: no row at all."
            return Miss(f"for {what} (B = {batch_size}, K = {per_label}) it returned {value}.", hint)

        return what, run

    return run_checks("check_st_batch_all_entries", fn, [
        case(8, 2, "a batch of 4 labels with 2 examples each"),
        case(256, 4, "a P x K batch of 256 with K = 4"),
        case(1024, 256, "4 labels of 256 examples each"),
        case(6, 6, "a batch with a single label"),
        case(10, 1, "every label once"),
    ], "With a few large labels (K = B / 4) that is about B^3 / 4 entries: the cube is back.")


def check_gather_local_grad(fn: Callable[[list, int], Tensor]) -> bool:
    """``fn(slices, rank)`` concatenates every process's (b_r, D) slice in rank order; only ``slices[rank]`` carries
    gradient (what :func:`tutorial_lib.distributed.gather_across_processes` returns, simulated in one process)."""

    def case(sizes: Sequence[int], rank: int, what: str, seed: int) -> tuple:
        def run(f):
            g = torch.Generator().manual_seed(seed)
            values = [torch.randn(size, 4, generator=g) for size in sizes]
            slices = [v.clone().requires_grad_(True) for v in values]
            got = f(list(slices), rank)
            want = torch.cat(values)
            if not isinstance(got, Tensor):
                return Miss(f"for {what} it returned a {type(got).__name__}.", "return one torch tensor.")
            if tuple(got.shape) != tuple(want.shape):
                return Miss(f"for {what} it returned shape {tuple(got.shape)}; expected {tuple(want.shape)}.",
                            "every process's rows, one after the other: the global batch.")
            if not torch.allclose(got.detach(), want):
                return Miss(f"for {what}, the values are not the slices in rank order.",
                            "concatenate the slices in rank order (rank 0 first), whatever the local rank is.")
            if not got.requires_grad:
                return Miss(f"for {what}, the result carries no gradient at all.",
                            "the local slice must keep its autograd graph: only the others arrive as constants.")
            weights = torch.randn(want.shape, generator=g)
            (got * weights).sum().backward()
            start = sum(sizes[:rank])
            local = slices[rank].grad
            if local is None or not torch.allclose(local, weights[start:start + sizes[rank]]):
                return Miss(f"for {what}, the local slice (rank {rank}) does not receive its gradient unchanged.",
                            "use the local slice itself (not a copy or a detached version) at its own position.")
            for other, part in enumerate(slices):
                if other != rank and part.grad is not None and bool(part.grad.abs().sum() > 0):
                    return Miss(f"for {what}, the slice of rank {other} received a gradient.",
                                "the other processes' embeddings arrive through all_gather as plain numbers: "
                                "detach them, so that no gradient flows to them.")
            return None

        return what, run

    return run_checks("check_gather_local_grad", fn, [
        case([3, 3], 0, "2 processes, rank 0", seed=10),
        case([3, 3], 1, "2 processes, rank 1", seed=11),
        case([2, 3, 1], 1, "3 processes with slices of 2, 3 and 1 rows, rank 1", seed=12),
        case([2, 2, 2, 2], 3, "4 processes, rank 3", seed=13),
    ], "Every process now mines the global batch, and its backward pass reaches only its own encoder pass.")


def check_process_gradients(fn: Callable[[Tensor, Tensor, int, Callable], list]) -> bool:
    """``fn(embeddings, labels, world_size, loss_fn)`` simulates ``world_size`` processes in one and returns the
    gradient each process computes with respect to the whole (B, D) batch, before DDP averages them.

    Process ``r`` holds the rows ``r * B / W`` to ``(r + 1) * B / W``. Each gathers the batch (only its own slice
    carrying gradient), computes the loss it would train with, and back-propagates. Right when each gradient is zero
    outside its own slice and their **average** (what DDP's all-reduce leaves) is the single-process gradient of
    ``loss_fn(embeddings, labels)``.
    """

    def case(batch_size: int, world: int, loss_fn: Callable, what: str, seed: int) -> tuple:
        def run(f):
            g = torch.Generator().manual_seed(seed)
            embeddings = torch.nn.functional.normalize(torch.randn(batch_size, 6, generator=g), dim=1)
            labels = torch.randperm(batch_size, generator=g) % 3
            leaf = embeddings.clone().requires_grad_(True)
            loss_fn(leaf, labels).backward()
            want = leaf.grad.double()
            got = f(embeddings.clone(), labels.clone(), world, loss_fn)
            if isinstance(got, Tensor) or not isinstance(got, (list, tuple)):
                return Miss(f"for {what} it returned a {type(got).__name__}.",
                            "return a list with one (B, D) gradient per process, before any averaging.")
            if len(got) != world:
                return Miss(f"for {what} it returned {len(got)} gradients.", "one gradient per process (rank).")
            grads = [as_float64(grad) for grad in got]
            rows = batch_size // world
            for rank, grad in enumerate(grads):
                if tuple(grad.shape) != tuple(embeddings.shape):
                    return Miss(f"for {what}, the gradient of rank {rank} has shape {tuple(grad.shape)}.",
                                "each process's gradient with respect to the whole batch: shape (B, D), zero outside "
                                "its own rows.")
                outside = torch.ones(batch_size, dtype=torch.bool)
                outside[rank * rows:(rank + 1) * rows] = False
                if bool(grad[outside].abs().sum() > 1e-12):
                    return Miss(f"for {what}, the gradient of rank {rank} is not zero outside its own rows.",
                                "a process back-propagates only into its own slice: the gathered slices of the other "
                                "processes are constants there.")
            mean = torch.stack(grads).mean(dim=0)
            scale = want.norm().clamp(min=1e-12)
            if bool((mean - want).norm() <= 1e-4 * scale):
                return None
            if bool((mean * world - want).norm() <= 1e-4 * scale):
                return Miss(f"for {what}, the average of the processes' gradients is 1/{world} of the single-process "
                            "gradient.",
                            "each process holds only its own share, and DDP *averages* the shares over the "
                            "processes: which factor on each process's loss turns that average into their sum?")
            return Miss(f"for {what}, the average of the processes' gradients differs from the single-process gradient.",
                        "every process computes the loss of the whole gathered batch (with its labels), "
                        "back-propagates into its own slice only, and returns that gradient.")

        return what, run

    batch_hard = partial(batch_hard_triplet_loss, margin=0.5)  # loss_fn(embeddings (B, D), labels (B,)) -> 0-dim
    batch_all = partial(batch_all_triplet_loss, margin=0.5)
    return run_checks("check_process_gradients", fn, [
        case(8, 2, batch_hard, "8 embeddings on 2 processes, BatchHard", seed=20),
        case(12, 3, batch_all, "12 embeddings on 3 processes, BatchAll", seed=21),
        case(16, 4, batch_hard, "16 embeddings on 4 processes, BatchHard", seed=22),
        case(6, 1, batch_all, "a single process", seed=23),
    ], "That is the world-size factor of tutorial_lib.distributed: after DDP's averaging, the gradient of the whole "
       "batch, as if one process had mined it.")
