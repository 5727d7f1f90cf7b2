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

This module imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
