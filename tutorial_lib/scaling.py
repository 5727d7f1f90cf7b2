"""Mining over batches larger than memory allows, and across GPUs (notebook 08).

Online mining improves with the batch: more candidates, harder negatives. Two things cap it.

**The encoder's activations.** A batch of B sentences keeps B sentences' activations for the backward pass.
Gradient caching (GradCache, Gao et al. 2021) removes that cap. sentence-transformers implements it once, in
``sentence_transformers.base.losses.CachedLossMixin`` (its cached losses, such as
``CachedMultipleNegativesRankingLoss``, are built on it); :class:`CachedBatchTripletLoss` plugs the four batch
triplet losses into that mixin. The mixin does:

1. embed the whole mining batch in mini-batches *without* gradients (activations freed at once), remembering each
   mini-batch's random-number state;
2. compute the loss on all B embeddings and its gradient with respect to them, dL/dE, a (B, D) tensor (the *cache*)
   -- this class's :meth:`CachedBatchTripletLoss.calculate_loss`;
3. when the trainer calls ``backward``, re-embed each mini-batch *with* gradients, replaying its random state so
   dropout draws the same masks, and backpropagate ``sum(E_mb * dL/dE_mb)`` (under DDP, synchronising once).

The parameter gradients are those of the uncached loss on the same batch (with the same dropout masks); peak
memory is that of one mini-batch plus the O(B^2) loss, at the price of a second forward pass. Notebook 08 builds the
three steps by hand, then checks that this class computes the same gradients.

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

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses import CachedLossMixin
from torch import Tensor, nn

from .distances import check_distance
from .distributed import gather_across_processes, run_processes
from .losses import check_margin, check_strategy
from .st_losses import batch_loss, make_loss, single_text_column

# ------------------------------------------------------------------------------------------------------------------
# Gradient caching, on sentence-transformers' own mixin
# ------------------------------------------------------------------------------------------------------------------


class CachedBatchTripletLoss(CachedLossMixin, nn.Module):
    """Any of the four batch triplet losses over a large mining batch, with gradient caching.

    Usable as ``SentenceTransformerTrainer(loss=...)`` with a large ``per_device_train_batch_size`` (the mining
    batch); the encoder only ever sees one mini-batch with gradients at a time. The caching itself (mini-batches,
    random-state replay, the backward hook, DDP synchronisation, progress bar) is sentence-transformers'
    ``CachedLossMixin``, unchanged; this class supplies the loss of the whole batch (:meth:`calculate_loss`).

    Args:
        model: the SentenceTransformer being trained.
        strategy: ``"batch_all"``, ``"batch_hard"``, ``"batch_semi_hard"`` or ``"batch_hard_soft_margin"``.
        margin: >= 0 (ignored for the soft margin).
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.
        mini_batch_size: sentences embedded at once (memory scales with this, not with the mining batch).
        mini_batch_num_tokens: instead, a budget of non-padding tokens per mini-batch (the mixin's option).
        show_progress_bar: a bar over the mini-batches of each embedding pass.
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
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
        gather_across_devices: bool = False,
        track_stats: bool = True,
    ):
        super().__init__()
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be a positive integer; got {mini_batch_size!r}")
        if mini_batch_num_tokens is not None and (not isinstance(mini_batch_num_tokens, int) or mini_batch_num_tokens < 1):
            raise ValueError(f"mini_batch_num_tokens must be a positive integer or None; got {mini_batch_num_tokens!r}")
        self.model = model
        self.strategy = check_strategy(strategy)
        self.margin = None if strategy == "batch_hard_soft_margin" else check_margin(margin)
        self.distance = check_distance(distance)
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self.gather_across_devices = gather_across_devices
        self.track_stats = track_stats
        self.last_stats: dict[str, Tensor] | None = None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        """The loss of the mining batch (one text column), with its backward pass deferred to the mixin's hook."""
        return self.forward_cached([single_text_column(self, sentence_features)], labels)

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *,
                       with_backward: bool = False) -> Tensor:
        """The triplet loss of the whole batch from its per-mini-batch embeddings (the mixin's step 2).

        Args:
            reps: one list (the single text column) of (b_i, D) embeddings, one per mini-batch.
            labels: (B,) or (B, 1) integer labels.
            with_backward: also back-propagate into ``reps`` (filling the cache) and return the detached loss.
        """
        loss, self.last_stats = batch_loss(self, torch.cat(reps[0]), labels)
        if with_backward:
            loss.backward()
            return loss.detach()
        return loss

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


def demo_share(rank: int, world: int, sentences, labels: Tensor, strategy: str, margin: float) -> dict[str, Tensor]:
    """One process of :func:`two_process_gradients`: this rank embeds its consecutive share of the batch."""
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
    return out


def two_process_gradients(sentences, labels, strategy: str = "batch_hard", margin: float = 0.5, world: int = 2):
    """Start ``world`` CPU processes (gloo), each embedding ``len(sentences) // world`` consecutive sentences with
    :func:`demo_model`, and return what each computed (:func:`tutorial_lib.distributed.run_processes`).

    Returns:
        One dict per rank: ``share`` (gather, plain loss, no DDP), ``ddp_gather`` (DDP with
        ``gather_across_devices=True``: gather and the loss times W) and ``ddp_local`` (DDP, each process mines only
        its own slice) as flat parameter gradients; ``loss``, ``ddp_gather_loss``, ``ddp_local_loss`` (0-dim) and
        ``gathered_labels``.
    """
    return run_processes(demo_share, world, list(sentences), torch.as_tensor(labels), strategy, margin)
