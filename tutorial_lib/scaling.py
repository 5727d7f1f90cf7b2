"""Mining over batches larger than memory allows, and across GPUs (notebook 08).

Online mining improves with the batch: more candidates, harder negatives. Two things cap it.

**The encoder's activations.** A batch of B sentences keeps B sentences' activations for the backward pass.
Gradient caching (GradCache; sentence-transformers uses it for ``CachedMultipleNegativesRankingLoss`` only) removes
that cap for all four batch triplet losses:

1. embed the whole mining batch in mini-batches *without* gradients (activations freed at once), remembering each
   mini-batch's random-number state;
2. compute the loss on all B embeddings and its gradient with respect to them, dL/dE, a (B, D) tensor (the *cache*);
3. when the trainer calls ``backward``, re-embed each mini-batch *with* gradients, replaying its random state so
   dropout draws the same masks, and backpropagate ``sum(E_mb * dL/dE_mb)``.

The parameter gradients are those of the uncached loss on the same batch (with the same dropout masks); peak
memory is that of one mini-batch plus the O(B^2) loss, at the price of a second forward pass.

**One device.** With several GPUs each process normally mines only its own slice.
:func:`tutorial_lib.distributed.gather_across_processes`
all-gathers embeddings and labels so every process mines the global batch. The gather keeps the gradient of the
*local slice only* (the other slices arrive as constants); every process computes the same global loss, and
multiplying it by the world size makes the parameter gradients, after DDP averages them over processes, equal to
single-process training on the concatenated batch (tests/test_scaling.py checks this with 2 CPU processes).

Launch multi-GPU training as usual for sentence-transformers, e.g. ``torchrun --nproc_per_node 4 train.py`` or
``accelerate launch train.py``, with ``gather_across_devices=True`` on the loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from .distances import check_distance
from .distributed import gather_across_processes
from .losses import check_margin
from .st_losses import LOSSES, batch_loss, make_loss, single_text_column

# ------------------------------------------------------------------------------------------------------------------
# Gradient caching
# ------------------------------------------------------------------------------------------------------------------


class _RandomState:
    """The CPU (and, for CUDA inputs, that device's) random state, to replay a forward pass's dropout masks."""

    def __init__(self, device: torch.device):
        self.cuda_device = device.index if device.type == "cuda" else None
        if self.cuda_device is None and device.type == "cuda":
            self.cuda_device = torch.cuda.current_device()
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self.cuda_device) if self.cuda_device is not None else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block with this state, then restore the surrounding one (``fork_rng``)."""
        devices = [self.cuda_device] if self.cuda_device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_device)
            yield


def _batch_size(features: dict[str, Any]) -> int:
    for value in features.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return value.shape[0]
    raise ValueError("could not find a batch dimension in the tokenized features")


def _slice(features: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    size = _batch_size(features)
    return {key: value[start:stop] if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == size
            else value for key, value in features.items()}


class CachedBatchTripletLoss(nn.Module):
    """Any of the four batch triplet losses over a large mining batch, with gradient caching.

    Usable as ``SentenceTransformerTrainer(loss=...)`` with a large ``per_device_train_batch_size`` (the mining
    batch); the encoder only ever sees ``mini_batch_size`` sentences with gradients at a time.

    Args:
        model: the SentenceTransformer being trained.
        strategy: ``"batch_all"``, ``"batch_hard"``, ``"batch_semi_hard"`` or ``"batch_hard_soft_margin"``.
        margin: >= 0 (ignored for the soft margin).
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.
        mini_batch_size: sentences embedded at once (memory scales with this, not with the mining batch).
        gather_across_devices: mine over the batches of all processes (see :func:`gather_across_processes`).
        track_stats: keep :func:`tutorial_lib.losses.triplet_stats` of the last mining batch in ``last_stats``.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: str = "batch_hard",
        margin: float = 0.5,
        distance: str = "euclidean",
        mini_batch_size: int = 32,
        gather_across_devices: bool = False,
        track_stats: bool = True,
    ):
        super().__init__()
        if strategy not in LOSSES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(LOSSES)}")
        if not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer; got {mini_batch_size!r}")
        self.model = model
        self.strategy = strategy
        self.margin = None if strategy == "batch_hard_soft_margin" else check_margin(margin)
        self.distance = check_distance(distance)
        self.mini_batch_size = mini_batch_size
        self.gather_across_devices = gather_across_devices
        self.track_stats = track_stats
        self.last_stats: dict[str, Tensor] | None = None

    def _embed(self, features: dict[str, Any], with_grad: bool) -> Tensor:
        with nullcontext() if with_grad else torch.no_grad():
            return self.model(features)["sentence_embedding"]

    def _loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        loss, self.last_stats = batch_loss(self, embeddings, labels)
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        features = single_text_column(self, sentence_features)
        batch_size = _batch_size(features)
        bounds = [(start, min(start + self.mini_batch_size, batch_size))
                  for start in range(0, batch_size, self.mini_batch_size)]
        grad_enabled = torch.is_grad_enabled()
        states, parts = [], []
        for start, stop in bounds:  # step 1: embed without gradients, remember each mini-batch's random state
            chunk = _slice(features, start, stop)
            if grad_enabled:
                states.append(_RandomState(next(v for v in chunk.values() if isinstance(v, Tensor)).device))
            parts.append(self._embed(chunk, with_grad=False))
        embeddings = torch.cat(parts).detach()
        if not grad_enabled:
            return self._loss(embeddings, labels)
        embeddings.requires_grad_(True)
        with torch.enable_grad():  # step 2: the loss and its gradient with respect to the embeddings: the cache
            loss = self._loss(embeddings, labels)
            (cache,) = torch.autograd.grad(loss, embeddings)
        result = loss.detach().requires_grad_(True)
        # Step 3 runs when the trainer back-propagates `result`. The hook receives this call's own cache, so a
        # second forward before the first backward cannot mix up batches.
        result.register_hook(lambda grad_output: self._replay(features, bounds, states, cache, grad_output))
        return result

    def _replay(self, features, bounds, states, cache: Tensor, grad_output: Tensor) -> None:
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        with torch.enable_grad():
            for index, ((start, stop), state) in enumerate(zip(bounds, states)):
                last = index == len(bounds) - 1
                sync = nullcontext() if (last or not ddp) else self.model.no_sync()  # DDP: reduce once, at the end
                with sync, state.replay():
                    part = self._embed(_slice(features, start, stop), with_grad=True)
                    # d/dθ of sum(E_mb * cache_mb) is exactly the chain rule's contribution of this mini-batch
                    surrogate = (part * cache[start:stop].to(part.dtype)).sum() * grad_output
                    surrogate.backward()

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"strategy": self.strategy, "distance": self.distance,
                                  "mini_batch_size": self.mini_batch_size}
        if self.margin is not None:
            config["margin"] = self.margin
        return config

    @property
    def citation(self) -> str:
        return """
@inproceedings{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Gao, Luyu and Zhang, Yunyi and Han, Jiawei and Callan, Jamie},
    booktitle={Proceedings of the 6th Workshop on Representation Learning for NLP},
    year={2021}
}
"""


# ------------------------------------------------------------------------------------------------------------------
# Measuring what the encoder keeps for backward
# ------------------------------------------------------------------------------------------------------------------


class SavedActivations:
    """Context manager: peak bytes of the tensors autograd keeps for the backward pass at the same time.

    ``torch.autograd.graph.saved_tensors_hooks`` hands every tensor saved for backward to ``pack``; we count its
    bytes and wrap it in a box whose ``__del__`` runs when autograd lets go of it, so ``live`` follows what is held
    and ``peak`` records the maximum. The model's parameters are saved too (a linear layer keeps its weight) but exist
    anyway, so they are left out. Use it around forward *and* backward::

        with SavedActivations(model) as saved:
            loss([features], labels).backward()
        saved.peak  # bytes

    Attributes:
        live: bytes held right now. peak: the most held at once.
    """

    def __init__(self, model: nn.Module | None = None):
        self._parameters = {p.untyped_storage().data_ptr() for p in model.parameters()} if model is not None else set()
        self.live = 0
        self.peak = 0

    def __enter__(self) -> SavedActivations:
        tracker = self

        class Box:  # autograd keeps this instead of the tensor; __del__ runs when autograd frees it
            def __init__(self, tensor: Tensor):
                self.tensor = tensor
                is_parameter = tensor.untyped_storage().data_ptr() in tracker._parameters
                self.size = 0 if is_parameter else tensor.numel() * tensor.element_size()
                tracker.live += self.size
                tracker.peak = max(tracker.peak, tracker.live)

            def __del__(self):
                tracker.live -= self.size

        self._hooks = torch.autograd.graph.saved_tensors_hooks(Box, lambda box: box.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


# ------------------------------------------------------------------------------------------------------------------
# A live demonstration of mining across processes (notebook 08), on the CPU
# ------------------------------------------------------------------------------------------------------------------


def demo_model(seed: int = 3) -> nn.Module:
    """The tiny model every demo process (and the single-process reference) starts from: same weights, no dropout,
    and no unused pooler (DDP expects every parameter to receive a gradient)."""
    from .models import tiny_model

    model = tiny_model(seed=seed)
    model.eval()
    model[0].model.pooler = None
    return model


def flat_gradient(model: nn.Module) -> Tensor:
    """All parameter gradients of ``model`` as one flat vector (zeros where a parameter got none)."""
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


def _demo_worker(rank: int, world: int, init_file: str, out_dir: str, sentences, labels, strategy: str,
                 margin: float) -> None:
    import os

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        per_process = len(sentences) // world
        mine = slice(rank * per_process, (rank + 1) * per_process)
        local_sentences, local_labels = sentences[mine], labels[mine]
        out = {}
        model = demo_model()  # this process's share: gather, plain loss, no DDP
        embeddings = model(model.preprocess(local_sentences))["sentence_embedding"]
        all_embeddings, all_labels = gather_across_processes(embeddings, local_labels)
        loss = make_loss(strategy, model, margin=margin).compute_loss_from_embeddings([all_embeddings], all_labels)
        loss.backward()
        out["share"], out["gathered_labels"], out["loss"] = flat_gradient(model), all_labels, loss.detach()
        for name, gather in (("ddp_gather", True), ("ddp_local", False)):  # DDP averages the gradients
            model = demo_model()
            ddp = nn.parallel.DistributedDataParallel(model)
            loss_fn = make_loss(strategy, ddp, margin=margin, gather_across_devices=gather)
            value = loss_fn([model.preprocess(local_sentences)], local_labels)
            value.backward()
            out[name], out[f"{name}_loss"] = flat_gradient(model), value.detach()
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def two_process_gradients(sentences, labels, strategy: str = "batch_hard", margin: float = 0.5, world: int = 2):
    """Start ``world`` CPU processes (gloo), each embedding ``len(sentences) // world`` consecutive sentences with
    :func:`demo_model`, and return what each computed.

    ``torch.multiprocessing`` starts every process as a fresh Python that imports its function by name, which is
    why this lives in the library rather than in a notebook cell.

    Returns:
        One dict per rank: ``share`` (gather, plain loss, no DDP), ``ddp_gather`` (DDP with
        ``gather_across_devices=True``: gather and the loss times W) and ``ddp_local`` (DDP, each process mines only
        its own slice) as flat parameter gradients; ``loss``, ``ddp_gather_loss``, ``ddp_local_loss`` (0-dim) and
        ``gathered_labels``.
    """
    import os
    import tempfile

    import torch.multiprocessing as mp

    labels = torch.as_tensor(labels)
    with tempfile.TemporaryDirectory(prefix="two-process-") as out_dir:
        mp.spawn(_demo_worker, args=(world, os.path.join(out_dir, "init"), out_dir, list(sentences), labels,
                                     strategy, margin), nprocs=world, join=True)
        return [torch.load(os.path.join(out_dir, f"rank{rank}.pt")) for rank in range(world)]
