"""Mining across processes: every GPU mines the global batch (notebook 08).

With ``torch.distributed`` (what sentence-transformers and accelerate use for multi-GPU training) each process
embeds its own slice of the batch. :func:`gather_across_processes` all-gathers embeddings and labels so that every
process mines over the whole global batch.

The gather keeps the gradient of the **local slice only**: the other processes' embeddings arrive as constants.
Every process then computes the same global loss L, and its backward pass reaches only its own encoder pass, giving
dL/d(theta) restricted to its slice. DDP averages the parameter gradients over the W processes, which would give
(1/W) dL/d(theta); so the losses multiply L by W (:func:`world_size`) and the averaged gradient equals
single-process training on the concatenated batch. (A gather that back-propagates into every slice, such as
``torch.distributed.nn.all_gather``, would need no factor but moves W times more gradient data.)

Launch as usual: ``torchrun --nproc_per_node 4 train.py`` or ``accelerate launch train.py``, with
``gather_across_devices=True`` on a :mod:`tutorial_lib.st_losses` or :mod:`tutorial_lib.scaling` loss.

For demonstrations and tests on one CPU, :func:`run_processes` starts W processes with a gloo process group and
returns what each computed. It ends every process group in an order that cannot crash: wait until every process
has finished its collectives (a barrier), free everything that still holds the group (DDP reducers keep it alive,
and their gloo work objects hold tensors), destroy it, and only then let the interpreter exit. Tearing down in any
other order can let a process finalise the interpreter while a gloo worker thread still owns such work, which
aborts it with "terminate called without an active exception".

This module imports torch only.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

PROCESS_TIMEOUT = datetime.timedelta(seconds=120)
"""How long a collective (or the start of the group) may wait for the other processes before failing."""


# ------------------------------------------------------------------------------------------------------------------


def world_size() -> int:
    """Number of processes in the default ``torch.distributed`` group (1 when not initialised)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_across_processes(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All processes' embeddings and labels, concatenated in rank order; only the local slice carries gradient.

    Args:
        embeddings: (b, D) this process's embeddings (with autograd).
        labels: (b,) this process's labels. Processes may hold different b (padding is handled here).

    Returns:
        ``(all_embeddings (B, D), all_labels (B,))`` with B the sum of every process's b. Without an initialised
        process group (or with one process) the inputs are returned unchanged.
    """
    size = world_size()
    if size == 1:
        return embeddings, labels
    dist = torch.distributed
    rank = dist.get_rank()
    local = torch.tensor([embeddings.shape[0]], device=embeddings.device)
    sizes = [torch.zeros_like(local) for _ in range(size)]
    dist.all_gather(sizes, local)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)

    def padded(t: Tensor) -> Tensor:
        pad = torch.zeros((longest - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
        return torch.cat([t, pad])

    emb_parts = [torch.empty_like(padded(embeddings.detach())) for _ in range(size)]
    lab_parts = [torch.empty_like(padded(labels)) for _ in range(size)]
    dist.all_gather(emb_parts, padded(embeddings.detach()).contiguous())
    dist.all_gather(lab_parts, padded(labels).contiguous())
    emb_parts = [part[:n] for part, n in zip(emb_parts, sizes)]
    emb_parts[rank] = embeddings  # the local slice keeps its autograd graph; the others are constants
    lab_parts = [part[:n] for part, n in zip(lab_parts, sizes)]
    return torch.cat(emb_parts), torch.cat(lab_parts)


# ------------------------------------------------------------------------------------------------------------------
# Several CPU processes on one machine (notebook 08's live demo, the tests)
# ------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def process_group(rank: int, world: int, init_file: str) -> Iterator[None]:
    """A gloo process group for the block, ended in the safe order (see the module docstring).

    Args:
        rank: this process's rank, 0..world-1.
        world: number of processes.
        init_file: a path every process can reach, unused before (the rendezvous file).
    """
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=PROCESS_TIMEOUT)
    finished = False
    try:
        yield
        finished = True
    finally:
        # DDP models and losses of the block are garbage by now, but reference cycles can keep them (and the
        # group they hold) alive until the interpreter exits: collect them while Python is fully alive.
        gc.collect()
        if finished:
            dist.barrier()  # every process is done communicating before any process tears down
        dist.destroy_process_group()
        gc.collect()


def _entry(rank: int, fn: Callable[..., Any], world: int, folder: str, args: tuple) -> None:
    torch.set_num_threads(1)  # W processes share the machine's cores
    with process_group(rank, world, os.path.join(folder, "init")):
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
        del result


def run_processes(fn: Callable[..., Any], world: int = 2, *args: Any) -> list[Any]:
    """Run ``fn(rank, world, *args)`` in ``world`` fresh CPU processes that share a gloo process group.

    ``torch.multiprocessing`` starts every process as a fresh Python that imports ``fn`` by name, so ``fn`` must be
    a module-level function of an importable module (not a notebook cell). Each process's return value (tensors,
    numbers, strings, and lists/dicts of them) is saved by that process and loaded here.

    Returns:
        The return values, in rank order.

    Raises:
        torch.multiprocessing.ProcessRaisedException / ProcessExitedException: a process failed.
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="processes-") as folder:
        mp.spawn(_entry, args=(fn, world, folder, args), nprocs=world, join=True)
        return [torch.load(os.path.join(folder, f"rank{rank}.pt"), weights_only=True) for rank in range(world)]
