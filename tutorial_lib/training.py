"""Train a sentence-transformer with a batch triplet loss and watch the mining statistics (notebook 07).

:func:`train` is a thin wrapper over sentence-transformers' ``SentenceTransformerTrainer`` with the settings online
triplet mining needs:

* ``BatchSamplers.GROUP_BY_LABEL``: every batch holds at least 2 labels with at least 2 examples each, so every
  anchor can have a positive and a negative. Its rules (sentence-transformers 6.2, ``GroupByLabelBatchSampler``) are
  checked up front by :func:`group_by_label_plan`: the batch size must be even and >= 4 (labels enter a batch two
  examples at a time); labels with fewer than 2 examples are never sampled; each label's examples are used in pairs
  (an odd one out waits for the next epoch); and the stream stops when only one label is left, so the largest label
  is used only as often as the second largest -- on imbalanced data much of it is unused in every epoch.
* a per-step history (:class:`TrainResult` ``.history``, a ``pandas.DataFrame``): ``step``, ``epoch``, ``loss`` (the
  batch's own loss, not the trainer's running average), ``learning_rate`` and, when the loss is a
  :mod:`tutorial_lib.st_losses` module, its ``last_stats`` (``active_fraction``, ``mean_distance``,
  ``hardest_positive_mean``, ``hardest_negative_mean``, ``semi_hard_fallback_rate``, triplet counts).
* guards: a NaN/inf loss stops training *before* its backward pass (the weights keep their last finite values) and
  raises :class:`NonFiniteLossError`, which carries the history; a collapse (loss pinned at the margin -- ln 2 for
  the soft margin -- for ``collapse_patience`` steps, or the mean distance below 1% of its first value) gives a
  :class:`CollapseWarning` and sets ``TrainResult.collapsed``; training goes on.

Public API::

    train(model, train_dataset, loss, *, epochs=1, max_steps=None, batch_size=32, ...) -> TrainResult
    group_by_label_plan(labels, batch_size, label_names=None)                           -> SamplerPlan

Imports sentence-transformers and transformers inside the functions (importing this module is instant).
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = ["CollapseWarning", "NonFiniteLossError", "SamplerPlan", "TrainResult", "group_by_label_plan", "quiet_model_card", "train"]

_UNUSED_WARN_FRACTION = 0.1  # warn when GROUP_BY_LABEL leaves more than this share of examples unused per epoch


class CollapseWarning(UserWarning):
    """Training looks collapsed: every embedding is drifting to the same point."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training was stopped before that step's update.

    Attributes:
        step: the optimizer step (1-based) whose batch gave the non-finite loss.
        history: the per-step history up to and including that batch.
    """

    def __init__(self, message: str, step: int, history: pd.DataFrame):
        super().__init__(message)
        self.step = step
        self.history = history


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (the same object that was passed in).
        history: one row per optimizer step: step, epoch, loss, learning_rate and the loss's statistics.
        eval_history: one row per evaluation (step, eval_loss); empty without ``eval_dataset``.
        train_seconds: wall-clock time of ``trainer.train()``.
        steps: optimizer steps taken.
        collapsed: True if a :class:`CollapseWarning` was given.
        plan: what GROUP_BY_LABEL does with the training labels (:class:`SamplerPlan`).
        messages: the warnings given (sampler explanations, collapse), as text.
    """

    model: Any
    history: pd.DataFrame
    eval_history: pd.DataFrame
    train_seconds: float
    steps: int
    collapsed: bool = False
    plan: SamplerPlan | None = None
    messages: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# GROUP_BY_LABEL's rules, checked before any work
# ----------------------------------------------------------------------------------------------------------------


class SamplerPlan(NamedTuple):
    """What ``GroupByLabelBatchSampler`` draws from a training set in one epoch (sentence-transformers 6.2)."""

    examples: int  # rows in the data set
    used_per_epoch: int  # rows that appear in some batch of an epoch
    batches_per_epoch: int
    dropped_labels: dict[str, int]  # labels with < 2 examples (never sampled) -> count
    capped_label: str | None  # the largest label, used only as often as the second largest
    messages: list[str]  # explanations worth a warning


def group_by_label_plan(
    labels: Sequence[int], batch_size: int, label_names: Sequence[str] | None = None, drop_last: bool = False
) -> SamplerPlan:
    """Check the GROUP_BY_LABEL rules for ``labels`` and count how many examples one epoch uses.

    Mirrors ``GroupByLabelBatchSampler.__init__``/``__len__`` of sentence-transformers 6.2: labels take turns
    emitting 2 examples each until fewer than 2 labels are left; the stream is cut into batches of ``batch_size``;
    a last partial batch is kept if it holds at least 4 examples (and ``drop_last`` is False).

    Raises:
        ValueError: an odd batch size or one below 4; fewer than 2 labels with at least 2 examples.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 4 or batch_size % 2:
        hint = f" Try {max(4, batch_size // 2 * 2)}." if isinstance(batch_size, int) else ""
        raise ValueError(
            f"batch_size must be an even number >= 4 for GROUP_BY_LABEL batches (each label enters a batch with 2 "
            f"examples, and a batch needs at least 2 labels); got {batch_size!r}.{hint}"
        )

    def name(label: int) -> str:
        return str(label_names[label]) if label_names is not None else str(label)

    counts = Counter(int(label) for label in labels)
    dropped = {name(k): n for k, n in sorted(counts.items()) if n < 2}
    kept = {k: n for k, n in counts.items() if n >= 2}
    if len(kept) < 2:
        raise ValueError(
            f"GROUP_BY_LABEL needs at least 2 labels with at least 2 examples each (an anchor needs a positive and "
            f"a negative); found {len(kept)} such label(s) among {len(counts)}"
        )
    pairs = sorted(((n // 2, k) for k, n in kept.items()), reverse=True)
    cap = pairs[1][0]  # the stream stops when only one label is left: the largest is cut to the second largest
    stream = 2 * sum(min(p, cap) for p, _ in pairs)
    batches, remainder = divmod(stream, batch_size)
    used = batches * batch_size
    if remainder >= 4 and not drop_last:
        batches, used = batches + 1, stream
    total = sum(counts.values())
    messages = []
    if dropped:
        listed = ", ".join(f"{k!r} ({n})" for k, n in list(dropped.items())[:5])
        messages.append(f"{len(dropped)} label(s) with fewer than 2 examples are never sampled: {listed}")
    largest_pairs, largest = pairs[0]
    capped = name(largest) if largest_pairs > cap else None
    if total - used > _UNUSED_WARN_FRACTION * total:
        reasons = []
        if capped is not None:
            reasons.append(
                f"label {capped!r} has {kept[largest]} examples but only {2 * cap} are drawn, as many as the second "
                f"largest label {name(pairs[1][1])!r} (the sampler stops when only one label is left; balance the "
                "classes to use more)"
            )
        if odd := sum(n % 2 for n in kept.values()):
            reasons.append(f"{odd} label(s) with an odd count leave one example out")
        if stream - used:
            reasons.append(f"the last partial batch of {stream - used} is dropped (under 4, or drop_last)")
        if dropped:
            reasons.append(f"{sum(dropped.values())} example(s) of labels with a single example")
        messages.append(
            f"GROUP_BY_LABEL uses {used} of {total} training examples per epoch ({total - used} unused, "
            f"{(total - used) / total:.0%}): {'; '.join(reasons)}. Examples are reshuffled every epoch, so "
            "different ones are left out each time."
        )
    return SamplerPlan(total, used, batches, dropped, capped, messages)


# ----------------------------------------------------------------------------------------------------------------
# Per-step recording, NaN stop and collapse detection
# ----------------------------------------------------------------------------------------------------------------


class _NonFinite(Exception):
    """Raised inside the loss hook to stop the trainer before the backward pass of a non-finite loss."""


def _pinned_loss(loss: nn.Module) -> float | None:
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


class _Recorder:
    """Forward hook on the loss module plus a ``TrainerCallback``: one history row per optimizer step."""

    def __init__(self, loss: nn.Module, collapse_patience: int, distance_ratio: float):
        self.loss_module = loss
        self.pinned = _pinned_loss(loss)
        self.patience = collapse_patience
        self.distance_ratio = distance_ratio
        self.pending: list[tuple[Any, dict | None]] = []  # (loss tensor, stats) of the micro-batches of this step
        self.rows: list[dict[str, float]] = []
        self.eval_rows: list[dict[str, float]] = []
        self.learning_rate = float("nan")
        self.pinned_steps = 0
        self.first_distance: float | None = None
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
            raise _NonFinite

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
        distance = row.get("mean_distance")
        if distance is not None and self.first_distance is None:
            self.first_distance = distance
        if self.pinned_steps >= self.patience:
            what = (
                f"the loss has stayed at {self.pinned:.4g} (its value when all distances are 0) "
                f"for {self.patience} steps"
            )
        elif distance is not None and self.first_distance and distance < self.distance_ratio * self.first_distance:
            what = f"the mean pairwise distance fell from {self.first_distance:.4g} to {distance:.4g}"
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

            def on_step_end(self, args, state, control, **kwargs):
                recorder.flush()

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                if metrics and "eval_loss" in metrics:
                    recorder.eval_rows.append({"step": state.global_step, "eval_loss": float(metrics["eval_loss"])})

        return _Callback()


# ----------------------------------------------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------------------------------------------


def _prepare_dataset(dataset: Any, text_column: str, label_column: str) -> Any:
    missing = [c for c in (text_column, label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"training data lacks column(s) {missing}; columns: {dataset.column_names}")
    dataset = dataset.select_columns([text_column, label_column])  # the trainer feeds every other column as text
    renames = {old: new for old, new in ((text_column, "sentence"), (label_column, "label")) if old != new}
    return dataset.rename_columns(renames) if renames else dataset


@contextlib.contextmanager
def quiet_model_card(quiet: bool = True) -> Iterator[None]:
    """Silence the progress bar sentence-transformers' model card shows while it picks widget examples from the
    training data ("Computing widget examples"). In a notebook it would be the only output of a training cell, and
    a progress-bar widget, which a committed notebook cannot show. :func:`train` uses it when ``progress=False``;
    wrap your own ``SentenceTransformerTrainer`` run in it for the same (notebook 07's offline baseline)."""
    import sentence_transformers.base.model_card as card

    original = getattr(card, "tqdm", None)
    if not quiet or original is None:
        yield
        return
    card.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        card.tqdm = original


def train(
    model: Any,
    train_dataset: Any,
    loss: nn.Module,
    *,
    eval_dataset: Any = None,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    eval_steps: int | None = None,
    output_dir: str | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    collapse_patience: int = 5,
    collapse_distance_ratio: float = 0.01,
    callbacks: list | None = None,
) -> TrainResult:
    """Fine-tune ``model`` with ``loss`` on label-grouped batches and record every step.

    Args:
        model: a ``SentenceTransformer``; it trains on its own device (fp16/bf16 mixed precision only on CUDA).
        train_dataset: a ``datasets.Dataset`` with a text and an integer label column (see :mod:`tutorial_lib.data`).
        loss: a loss module built on ``model``, e.g. ``tutorial_lib.st_losses.make_loss("batch_hard", model)``
            (statistics are recorded) or a sentence-transformers batch triplet loss (only the loss is recorded).
        eval_dataset: optional labelled split; its loss is computed every ``eval_steps`` (default: 5 times) into
            ``eval_history``.
        epochs: passes over the data (ignored when ``max_steps`` is given).
        max_steps: optimizer steps to take (the sampler restarts as needed).
        batch_size: even and >= 4 (see :func:`group_by_label_plan`).
        learning_rate, warmup_ratio, weight_decay: AdamW with linear warmup over ``warmup_ratio`` of the steps,
            then linear decay. 2e-5 suits small pretrained models like all-MiniLM-L6-v2.
        seed: seeds everything (``transformers.set_seed``) and the batch sampler.
        progress: show a progress bar.
        output_dir: the trainer's working folder; default a temporary folder, deleted afterwards. No checkpoints
            are saved either way (save the model with ``result.model.save(path)``).
        text_column, label_column: the columns to train on (others are ignored).
        collapse_patience, collapse_distance_ratio: see :class:`CollapseWarning` in the module docstring.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: GROUP_BY_LABEL's rules are broken (odd or small batch size, fewer than 2 usable labels).
        NonFiniteLossError: the loss became NaN/inf; ``error.history`` holds the steps so far.
    """
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import PrinterCallback

    train_dataset = _prepare_dataset(train_dataset, text_column, label_column)
    names = getattr(train_dataset.features["label"], "names", None)
    plan = group_by_label_plan(list(train_dataset["label"]), batch_size, names)
    for message in plan.messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    if eval_dataset is not None:
        eval_dataset = _prepare_dataset(eval_dataset, text_column, label_column)
        group_by_label_plan(list(eval_dataset["label"]), batch_size)
    total_steps = max_steps if max_steps is not None else max(1, math.ceil(epochs * plan.batches_per_epoch))

    on_cuda = model.device.type == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    recorder = _Recorder(loss, collapse_patience, collapse_distance_ratio)
    with tempfile.TemporaryDirectory(prefix="triplet-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir or scratch,
            num_train_epochs=epochs,
            max_steps=max_steps if max_steps is not None else -1,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=warmup_ratio,  # a float in [0, 1) is a share of the steps (transformers >= 5)
            weight_decay=weight_decay,
            batch_sampler=BatchSamplers.GROUP_BY_LABEL,
            seed=seed,
            data_seed=seed,
            bf16=bf16,
            fp16=on_cuda and not bf16,
            use_cpu=model.device.type == "cpu",  # train where the model is
            report_to="none",
            save_strategy="no",
            logging_strategy="no",  # the per-step history replaces the trainer's averaged logs
            eval_strategy="steps" if eval_dataset is not None else "no",
            eval_steps=eval_steps or max(1, total_steps // 5),
            disable_tqdm=not progress,
        )
        with quiet_model_card(not progress):
            trainer = SentenceTransformerTrainer(
                model=model,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                loss=loss,
                callbacks=[recorder.callback(), *(callbacks or [])],
            )
        trainer.remove_callback(PrinterCallback)  # without a progress bar, do not print log dicts either
        handle = loss.register_forward_hook(recorder.hook)
        start = time.perf_counter()
        try:
            trainer.train()
        except _NonFinite:
            history = pd.DataFrame(recorder.rows)
            step = int(history["step"].iloc[-1])
            raise NonFiniteLossError(
                f"the loss became {history['loss'].iloc[-1]} at step {step}; training stopped before that update, "
                "so the model keeps its last finite weights. Lower the learning rate, check the data for empty or "
                "duplicated texts, or use fp32.",
                step,
                history,
            ) from None
        finally:
            handle.remove()
            model.eval()
        seconds = time.perf_counter() - start
    return TrainResult(
        model=model,
        history=pd.DataFrame(recorder.rows),
        eval_history=pd.DataFrame(recorder.eval_rows, columns=["step", "eval_loss"]),
        train_seconds=seconds,
        steps=int(trainer.state.global_step),
        collapsed=recorder.collapse_message is not None,
        plan=plan,
        messages=plan.messages + ([recorder.collapse_message] if recorder.collapse_message else []),
    )
