"""Train a sentence-transformer with a batch triplet loss and watch the mining statistics (notebooks 03-10).

:func:`train` is a thin wrapper over sentence-transformers' ``SentenceTransformerTrainer`` with the settings online
triplet mining needs:

* ``BatchSamplers.GROUP_BY_LABEL``: every batch holds at least 2 labels with at least 2 examples each, so every
  anchor has a positive and a negative. :func:`group_by_label_plan` checks its rules up front and asks the sampler
  itself how many examples one epoch uses (labels with one example are never drawn, odd counts leave one out, and
  the largest label is used only as often as the second largest: the arithmetic is
  :func:`tutorial_lib.reference.group_by_label_epoch`);
* every reported step is an update: AdamW with a linear warm-up that starts *above* 0 (the first update uses
  ``peak / (W + 1)`` for W warm-up steps; a warm-up that starts at 0, as transformers' schedule does, makes the
  first step a no-op) and a linear decay that ends above 0 (:func:`learning_rate_factor`);
* a per-step history, a stop before any update whose loss or gradients are non-finite, and the collapse detector
  (:mod:`tutorial_lib.monitor`);
* optional sentence-transformers evaluators (``evaluator=``), logged into ``eval_history`` and, with
  ``keep_best=True``, used to keep the best checkpoint by the evaluator's primary metric;
* progress bars on, unless ``progress=False`` or ``TRIPLET_QUIET=1`` (the build of the committed notebooks).

Public API::

    train(model, train_dataset, loss, *, epochs=1, max_steps=None, batch_size=32, ...) -> TrainResult
    group_by_label_plan(labels, batch_size, label_names=None)                           -> SamplerPlan
    learning_rate_factor(step, warmup_steps, total_steps)                              -> float

Imports sentence-transformers and transformers inside the functions (importing this module is instant).
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .env import quiet
from .monitor import CollapseWarning, NonFinite, NonFiniteLossError, StepRecorder

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = ["CollapseWarning", "NonFiniteLossError", "SamplerPlan", "TrainResult", "group_by_label_plan",
           "learning_rate_factor", "train", "trainer_class"]

_UNUSED_WARN_FRACTION = 0.1  # warn when GROUP_BY_LABEL leaves more than this share of examples unused per epoch


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (the same object that was passed in; with ``keep_best``, the best checkpoint).
        history: one row per optimizer step: step, epoch, loss, learning_rate and the loss's statistics.
        eval_history: one row per evaluation: step, eval_loss (with ``eval_dataset``) and the evaluator's metrics.
        train_seconds: wall-clock time of ``trainer.train()``.
        steps: optimizer steps taken (every one an update).
        collapsed: True if a :class:`CollapseWarning` was given.
        plan: what GROUP_BY_LABEL does with the training labels (:class:`SamplerPlan`).
        messages: the warnings given (sampler explanations, collapse), as text.
        best_step: with ``keep_best``, the step of the checkpoint that was kept.
    """

    model: Any
    history: pd.DataFrame
    eval_history: pd.DataFrame
    train_seconds: float
    steps: int
    collapsed: bool = False
    plan: SamplerPlan | None = None
    messages: list[str] = field(default_factory=list)
    best_step: int | None = None


# ----------------------------------------------------------------------------------------------------------------
# GROUP_BY_LABEL, checked before any work and measured by the sampler itself
# ----------------------------------------------------------------------------------------------------------------


class SamplerPlan(NamedTuple):
    """What ``GroupByLabelBatchSampler`` draws from a training set in one epoch."""

    examples: int  # rows in the data set
    used_per_epoch: int  # rows that appear in some batch of an epoch
    batches_per_epoch: int
    dropped_labels: dict[str, int]  # labels with < 2 examples (never sampled) -> count
    capped_label: str | None  # the largest label, used only as often as the second largest
    messages: list[str]  # explanations worth a warning


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 4 or batch_size % 2:
        hint = f" Try {max(4, batch_size // 2 * 2)}." if isinstance(batch_size, int) else ""
        raise ValueError(
            f"batch_size must be an even number >= 4 for GROUP_BY_LABEL batches (each label enters a batch with 2 "
            f"examples, and a batch needs at least 2 labels); got {batch_size!r}.{hint}"
        )


def group_by_label_plan(
    labels: Sequence[int], batch_size: int, label_names: Sequence[str] | None = None, drop_last: bool = False
) -> SamplerPlan:
    """Check the GROUP_BY_LABEL rules for ``labels`` and count, with the sampler itself, what one epoch uses.

    Raises:
        ValueError: an odd batch size or one below 4; fewer than 2 labels with at least 2 examples.
    """
    from datasets import Dataset
    from sentence_transformers.base.sampler import GroupByLabelBatchSampler

    _check_batch_size(batch_size)

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
    sampler = GroupByLabelBatchSampler(Dataset.from_dict({"label": [int(y) for y in labels]}), batch_size=batch_size,
                                       drop_last=drop_last, valid_label_columns=["label"], seed=0)
    batches = list(sampler)  # indices only: no text is read
    used, total = sum(len(batch) for batch in batches), sum(counts.values())
    pairs = sorted(((n // 2, k) for k, n in kept.items()), reverse=True)
    cap = pairs[1][0]  # the stream stops when only one label is left (see reference.group_by_label_epoch)
    capped = name(pairs[0][1]) if pairs[0][0] > cap else None
    messages = []
    if dropped:
        listed = ", ".join(f"{k!r} ({n})" for k, n in list(dropped.items())[:5])
        messages.append(f"{len(dropped)} label(s) with fewer than 2 examples are never sampled: {listed}")
    if total - used > _UNUSED_WARN_FRACTION * total:
        reasons = []
        if capped is not None:
            reasons.append(
                f"label {capped!r} has {kept[pairs[0][1]]} examples but only {2 * cap} are drawn, as many as the "
                f"second largest label {name(pairs[1][1])!r} (the sampler stops when only one label is left; "
                "balance the classes to use more)"
            )
        if odd := sum(n % 2 for n in kept.values()):
            reasons.append(f"{odd} label(s) with an odd count leave one example out")
        stream = 2 * sum(min(p, cap) for p, _ in pairs)
        if stream - used:
            reasons.append(f"the last partial batch of {stream - used} is dropped (under 4, or drop_last)")
        if dropped:
            reasons.append(f"{sum(dropped.values())} example(s) of labels with a single example")
        messages.append(
            f"GROUP_BY_LABEL uses {used} of {total} training examples per epoch ({total - used} unused, "
            f"{(total - used) / total:.0%}): {'; '.join(reasons)}. Examples are reshuffled every epoch, so "
            "different ones are left out each time."
        )
    return SamplerPlan(total, used, len(batches), dropped, capped, messages)


# ----------------------------------------------------------------------------------------------------------------
# The learning-rate schedule
# ----------------------------------------------------------------------------------------------------------------


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The share of the peak learning rate that update ``step`` (0-based) uses: never 0 on a real update.

    Linear warm-up ``(step + 1) / (warmup_steps + 1)`` for the first ``warmup_steps`` updates, then linear decay
    ``(total_steps - step) / (total_steps - warmup_steps)``, which is 1 at the end of the warm-up and
    ``1 / (total - warmup)`` at the last update.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@functools.cache
def trainer_class():
    """``SentenceTransformerTrainer`` with the schedule of :func:`learning_rate_factor` (defined on first call, so
    that importing this module does not import sentence-transformers)."""
    from sentence_transformers import SentenceTransformerTrainer

    class Trainer(SentenceTransformerTrainer):
        """``SentenceTransformerTrainer`` with :func:`learning_rate_factor` as its schedule (transformers' documented
        way to change it: override ``create_scheduler``)."""

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            from torch.optim.lr_scheduler import LambdaLR

            if self.lr_scheduler is None:
                warmup = self.args.get_warmup_steps(num_training_steps)
                self.lr_scheduler = LambdaLR(optimizer or self.optimizer, functools.partial(
                    learning_rate_factor, warmup_steps=warmup, total_steps=num_training_steps))
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return Trainer


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


def _check_length(epochs: float, max_steps: int | None, warmup_ratio: float) -> None:
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer (or None for epochs); got {max_steps!r}")
    if max_steps is None and not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"epochs must be a finite number > 0; got {epochs!r}")
    if not (isinstance(warmup_ratio, (int, float)) and 0 <= warmup_ratio < 1):
        raise ValueError(f"warmup_ratio must be in [0, 1); got {warmup_ratio!r}")


def train(
    model: Any,
    train_dataset: Any,
    loss: nn.Module,
    *,
    eval_dataset: Any = None,
    evaluator: Any = None,
    keep_best: bool = False,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool | None = None,
    eval_steps: int | None = None,
    output_dir: str | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    collapse_patience: int = 5,
    callbacks: list | None = None,
) -> TrainResult:
    """Fine-tune ``model`` with ``loss`` on label-grouped batches and record every step.

    Args:
        model: a ``SentenceTransformer``; it trains on its own device (fp16/bf16 mixed precision only on CUDA).
        train_dataset: a ``datasets.Dataset`` with a text and an integer label column (see :mod:`tutorial_lib.data`).
        loss: a loss module built on ``model``, e.g. ``tutorial_lib.st_losses.make_loss("batch_hard", model)``
            (statistics are recorded) or a sentence-transformers batch triplet loss (only the loss is recorded).
        eval_dataset: optional labelled split; its loss is computed every ``eval_steps`` into ``eval_history``.
        evaluator: optional sentence-transformers evaluator (e.g. ``TripletEvaluator``,
            ``InformationRetrievalEvaluator``, or a ``SequentialEvaluator`` of several), run every ``eval_steps``;
            its metrics go into ``eval_history``.
        keep_best: save a checkpoint at every evaluation (only the best is kept, ``save_total_limit=1``) and load
            the best one by the evaluator's primary metric at the end. Needs ``evaluator``; the evaluator also runs
            once before training (row ``step = 0`` of ``eval_history``), which is how it names its metric.
        epochs: passes over the data (ignored when ``max_steps`` is given); > 0.
        max_steps: optimizer steps to take, >= 1 (the sampler restarts as needed).
        batch_size: even and >= 4 (see :func:`group_by_label_plan`).
        learning_rate, warmup_ratio, weight_decay: AdamW with the schedule of :func:`learning_rate_factor` (warm-up
            over ``warmup_ratio`` of the steps). 2e-5 suits small pretrained models like all-MiniLM-L6-v2.
        seed: seeds everything (``transformers.set_seed``) and the batch sampler.
        progress: show progress bars; None (the default) shows them unless ``TRIPLET_QUIET=1``.
        eval_steps: steps between evaluations (default: 5 evaluations per run).
        output_dir: the trainer's working folder (checkpoints with ``keep_best``); default a temporary folder,
            deleted afterwards. Save the model with ``result.model.save(path)``.
        text_column, label_column: the columns to train on (others are ignored).
        collapse_patience: steps the loss may stay pinned at its collapsed value before a :class:`CollapseWarning`.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: GROUP_BY_LABEL's rules are broken, or a length / schedule argument is out of range.
        NonFiniteLossError: the loss or the gradients became NaN/inf; ``error.history`` holds the steps so far.
    """
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import PrinterCallback

    _check_length(epochs, max_steps, warmup_ratio)
    if keep_best and evaluator is None:
        raise ValueError("keep_best=True needs an evaluator: the best checkpoint is chosen by its primary metric")
    progress = not quiet() if progress is None else progress
    train_dataset = _prepare_dataset(train_dataset, text_column, label_column)
    names = getattr(train_dataset.features["label"], "names", None)
    plan = group_by_label_plan(list(train_dataset["label"]), batch_size, names)
    for message in plan.messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    if eval_dataset is not None:
        eval_dataset = _prepare_dataset(eval_dataset, text_column, label_column)
        group_by_label_plan(list(eval_dataset["label"]), batch_size)
    total_steps = max_steps if max_steps is not None else max(1, math.ceil(epochs * plan.batches_per_epoch))
    evaluating = eval_dataset is not None or evaluator is not None
    every = eval_steps or max(1, total_steps // 5)

    on_cuda = model.device.type == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    fp16 = on_cuda and not bf16  # the gradient scaler skips non-finite steps itself: only the loss is checked
    recorder = StepRecorder(loss, model, collapse_patience, check_gradients=not fp16)
    best_metric = None
    if keep_best:  # an evaluator names its primary metric when it first runs: run it on the model before training
        before = evaluator(model)

        def logged(key: str) -> str:  # the trainer's name for an evaluator metric: "eval_" added once
            return key if key.startswith("eval_") else f"eval_{key}"

        best_metric = logged(evaluator.primary_metric)
        recorder.eval_rows.append({"step": 0, **{logged(k): float(v) for k, v in before.items()}})
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
            fp16=fp16,
            use_cpu=model.device.type == "cpu",  # train where the model is
            report_to="none",
            save_strategy="steps" if keep_best else "no",
            save_steps=every,
            save_total_limit=1 if keep_best else None,
            load_best_model_at_end=keep_best,
            metric_for_best_model=best_metric,
            logging_strategy="no",  # the per-step history replaces the trainer's averaged logs
            eval_strategy="steps" if evaluating else "no",
            eval_steps=every,
            disable_tqdm=not progress,
        )
        trainer = trainer_class()(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            evaluator=evaluator,
            loss=loss,
            callbacks=[recorder.callback(), *(callbacks or [])],
        )
        trainer.remove_callback(PrinterCallback)  # the history replaces printed log dicts
        handle = loss.register_forward_hook(recorder.hook)
        start = time.perf_counter()
        try:
            trainer.train()
        except NonFinite as stop:
            history = pd.DataFrame(recorder.rows)
            step = int(history["step"].iloc[-1])
            became = (f"the loss became {history['loss'].iloc[-1]}" if stop.what == "loss"
                      else "the gradients became NaN/inf")
            raise NonFiniteLossError(
                f"{became} at step {step}; training stopped before that update, so the model keeps its last finite "
                "weights. Lower the learning rate, check the data for empty or duplicated texts, or use fp32.",
                step,
                history,
            ) from None
        finally:
            handle.remove()
            model.eval()
        seconds = time.perf_counter() - start
        best = trainer.state.best_global_step if keep_best else None
    return TrainResult(
        model=model,
        history=pd.DataFrame(recorder.rows),
        eval_history=pd.DataFrame(recorder.eval_rows) if recorder.eval_rows else pd.DataFrame(columns=["step"]),
        train_seconds=seconds,
        steps=int(trainer.state.global_step),
        collapsed=recorder.collapse_message is not None,
        plan=plan,
        messages=plan.messages + ([recorder.collapse_message] if recorder.collapse_message else []),
        best_step=best,
    )
