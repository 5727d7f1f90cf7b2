"""Watching a training run: one history row per step, a stop before a non-finite update, the collapse detector.

:func:`tutorial_lib.training.train` attaches a :class:`StepRecorder` to the loss module (a forward hook) and to the
trainer (a ``TrainerCallback``). Per optimizer step it records the batch's own loss (not the trainer's running
average), the learning rate the update used and, for a :mod:`tutorial_lib.st_losses` module, its ``last_stats``.

**The stop.** A NaN/inf loss stops training before its backward pass; non-finite gradients (after clipping) stop it
before the optimizer step. Either way the weights keep their last finite values and :class:`NonFiniteLossError`
carries the history so far. (With float16 mixed precision on a GPU the gradient scaler skips such steps itself, so
only the loss is checked there.)

**The collapse detector, defined once.** Training *collapses* when the embeddings drift towards one point: the
batches' mean pairwise distance (``mean_distance`` in the history) falls below :data:`COLLAPSE_RATIO` (0.3) of its
value at the first step (:func:`collapse_ratio`, :func:`first_collapsed_step`), or the loss stays pinned at its
value for all-equal distances (the margin; ln 2 for the soft margin) for ``patience`` steps. A run *trains* when the
ratio stays above :data:`TRAINS_RATIO` (0.5). The detector warns with a :class:`CollapseWarning` and training goes
on (notebook 04 shows why stopping is the user's call).

Imports the standard library only at import time (torch and transformers inside the methods).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

COLLAPSE_RATIO = 0.3
"""A run has collapsed once the mean pairwise distance is below this share of its value at the first step."""
TRAINS_RATIO = 0.5
"""A run trains (has not collapsed) while the mean pairwise distance stays above this share of its first value."""


class CollapseWarning(UserWarning):
    """Training looks collapsed: every embedding is drifting to the same point."""


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN or infinite; training was stopped before that step's update.

    Attributes:
        step: the optimizer step (1-based) whose batch gave the non-finite value.
        history: the per-step history up to and including that batch.
    """

    def __init__(self, message: str, step: int, history: pd.DataFrame):
        super().__init__(message)
        self.step = step
        self.history = history


def collapse_ratio(mean_distances: Sequence[float]) -> float:
    """The last mean pairwise distance divided by the first (NaN for fewer than one finite value or a first 0)."""
    values = [float(v) for v in mean_distances]
    if not values or not values[0] > 0:
        return float("nan")
    return values[-1] / values[0]


def first_collapsed_step(steps: Sequence[int], mean_distances: Sequence[float], ratio: float = COLLAPSE_RATIO
                         ) -> int | None:
    """The first step whose mean pairwise distance is below ``ratio`` times the first step's; None if none is."""
    values = [float(v) for v in mean_distances]
    for step, value in zip(steps, values):
        if values and value < ratio * values[0]:
            return int(step)
    return None


def pinned_loss(loss: nn.Module) -> float | None:
    """The loss value of a fully collapsed batch (all distances 0): the margin, or ln 2 for the soft margin.

    With ``gather_across_devices`` the losses return the global loss times the number of processes (so that DDP's
    averaging gives the single-process gradient, see :mod:`tutorial_lib.distributed`): the pinned value scales too.
    """
    from .distributed import world_size  # imports torch; kept out of module import time

    scale = world_size() if getattr(loss, "gather_across_devices", False) else 1
    if getattr(loss, "strategy", None) == "batch_hard_soft_margin" or "SoftMargin" in type(loss).__name__:
        return math.log(2.0) * scale
    for attribute in ("margin", "triplet_margin"):  # tutorial_lib's name, then sentence-transformers' name
        value = getattr(loss, attribute, None)
        if isinstance(value, (int, float)) and value > 0:  # with margin 0 a collapse is indistinguishable from 0 loss
            return float(value) * scale
    return None


class NonFinite(Exception):
    """Raised inside the hooks to stop the trainer before an update; :func:`train` turns it into the error above."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class StepRecorder:
    """Forward hook on the loss module plus a ``TrainerCallback``: one history row per optimizer step."""

    def __init__(self, loss: nn.Module, model: Any, collapse_patience: int = 5, check_gradients: bool = True):
        self.loss_module = loss
        self.model = model
        self.pinned = pinned_loss(loss)
        self.patience = collapse_patience
        self.check_gradients = check_gradients
        self.pending: list[tuple[Any, dict | None]] = []  # (loss tensor, stats) of the micro-batches of this step
        self.rows: list[dict[str, float]] = []
        self.eval_rows: list[dict[str, float]] = []
        self.learning_rate = float("nan")
        self.pinned_steps = 0
        self.collapse_message: str | None = None
        self.global_step = 0
        self.epoch = 0.0

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        import torch

        if not torch.is_grad_enabled():  # evaluation batches: not part of the training history
            return
        value = output.detach()
        self.pending.append((value, getattr(module, "last_stats", None)))
        if not math.isfinite(float(value)):  # one host sync per batch; stops before backward corrupts the weights
            self.flush()
            raise NonFinite("loss")

    def gradients_finite(self) -> bool:
        import torch

        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())  # one host sync

    def flush(self) -> None:
        """Turn the pending micro-batches into one history row (mean over micro-batches)."""
        import torch

        if not self.pending:
            return
        keys = list(self.pending[-1][1] or {})
        # float64 keeps triplet counts exact (B^3 outgrows float32's 2^24 near B = 256); MPS has no float64.
        dtype = torch.float32 if self.pending[0][0].device.type == "mps" else torch.float64
        columns = [torch.stack([v.to(dtype).reshape(()) for v, _ in self.pending]).mean()]
        for key in keys:
            columns.append(torch.stack([stats[key].to(dtype) for _, stats in self.pending if stats]).mean())
        means = torch.stack(columns).tolist()  # the one transfer to the host per step
        row = {"step": self.global_step + 1, "epoch": self.epoch, "loss": means[0], "learning_rate": self.learning_rate}
        row.update(zip(keys, means[1:]))
        self.rows.append(row)
        self.pending = []
        self._check_collapse(row)

    def _check_collapse(self, row: dict[str, float]) -> None:
        if self.collapse_message is not None:
            return
        if self.pinned is not None and abs(row["loss"] - self.pinned) <= 1e-3 * self.pinned:
            self.pinned_steps += 1
        else:
            self.pinned_steps = 0
        first = self.rows[0].get("mean_distance")
        distance = row.get("mean_distance")
        if self.pinned_steps >= self.patience:
            what = (f"the loss has stayed at {self.pinned:.4g} (its value when all distances are 0) "
                    f"for {self.patience} steps")
        elif distance is not None and first and distance < COLLAPSE_RATIO * first:
            what = f"the mean pairwise distance fell from {first:.4g} to {distance:.4g} (below {COLLAPSE_RATIO:g} x)"
        else:
            return
        self.collapse_message = (
            f"training looks collapsed at step {row['step']}: {what}. The embeddings are converging to one point. "
            "Try a smaller learning rate, batch_semi_hard mining, or a margin suited to the distance scale "
            "(normalized embeddings: euclidean distances are at most 2)."
        )
        warnings.warn(self.collapse_message, CollapseWarning, stacklevel=2)

    def callback(self):
        from transformers import TrainerCallback

        recorder = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
                recorder.global_step, recorder.epoch = state.global_step, float(state.epoch or 0.0)
                if optimizer is not None:  # the rate this step's update uses (the scheduler steps after it)
                    recorder.learning_rate = float(optimizer.param_groups[0]["lr"])

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                if recorder.check_gradients and not recorder.gradients_finite():
                    recorder.flush()
                    raise NonFinite("gradients")

            def on_step_end(self, args, state, control, **kwargs):
                recorder.flush()

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                numbers = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
                if numbers:
                    recorder.eval_rows.append({"step": state.global_step, **numbers})

        return _Callback()
