"""Functions that run inside the processes of tutorial_lib.distributed.run_processes during the tests.

Each process imports this module by name (torch.multiprocessing starts fresh interpreters), so it imports only torch
and the module under test: a process starts in about a second instead of the ten it takes to import
sentence-transformers.
"""

from __future__ import annotations

import torch

from tutorial_lib.distributed import gather_across_processes


def ddp_round_trip(rank: int, world: int, steps: int = 3) -> dict[str, torch.Tensor]:
    """What the notebook demo does, on a small MLP: DDP forward/backward, a gather with gradient, several times.

    Returns this rank's last gradient and the gathered labels (every rank must see the same gradient).
    """
    torch.manual_seed(0)  # the same weights in every process
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    for step in range(steps):
        x = torch.randn(8, 16, generator=torch.Generator().manual_seed(10 * step + rank))
        embeddings, labels = gather_across_processes(ddp(x), torch.arange(8) % 4 + 4 * rank)
        model.zero_grad()
        (embeddings ** 2).sum().backward()
    return {"grad": model[0].weight.grad.clone(), "labels": labels}
