"""tutorial_lib.training: GROUP_BY_LABEL rules, the schedule, the per-step history, the non-finite stops, the collapse
warning, evaluators and progress bars.

Everything trains the tiny random model for a few steps on 24 toy sentences (about a second per run).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorial_lib import reference, st_losses, training
from tutorial_lib.training import CollapseWarning, NonFiniteLossError, group_by_label_plan, learning_rate_factor

pytestmark = pytest.mark.usefixtures("single_thread")

STAT_COLUMNS = {
    "active_fraction", "mean_distance", "hardest_positive_mean", "hardest_negative_mean",
    "semi_hard_fallback_rate", "valid_triplets", "active_triplets",
}


def _quick(model, dataset, loss, **kwargs):
    kwargs = {"max_steps": 4, "batch_size": 8, "progress": False, "learning_rate": 1e-3, **kwargs}
    return training.train(model, dataset, loss, **kwargs)


# --- GROUP_BY_LABEL's rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 3, 7, 31])
def test_odd_or_small_batch_sizes_are_refused_with_the_reason(batch_size):
    with pytest.raises(ValueError, match="even number >= 4.*2 examples.*at least 2 labels"):
        group_by_label_plan([0, 0, 1, 1] * 10, batch_size)


def test_fewer_than_two_usable_labels_are_refused():
    with pytest.raises(ValueError, match="at least 2 labels with at least 2 examples"):
        group_by_label_plan([0, 0, 0, 1, 2], 4)


def test_singleton_labels_are_named_as_never_sampled():
    plan = group_by_label_plan([0, 0, 1, 1, 2], 4, ["a", "b", "lonely"])
    assert plan.dropped_labels == {"lonely": 1}
    assert any("'lonely' (1)" in m and "never sampled" in m for m in plan.messages)


def test_imbalance_is_explained_with_numbers():
    labels = [0] * 100 + [1] * 20 + [2] * 10
    plan = group_by_label_plan(labels, 8, ["big", "mid", "small"])
    # big is cut to mid's 20: 20 + 20 + 10 = 50 in the stream -> 6 batches of 8 + a remainder of 2 (< 4: dropped)
    assert (plan.used_per_epoch, plan.batches_per_epoch, plan.capped_label) == (48, 6, "big")
    message = " ".join(plan.messages)
    assert "uses 48 of 130" in message and "82 unused" in message and "'big' has 100 examples" in message
    assert "only 20 are drawn" in message and "last partial batch of 2" in message


def test_a_small_remainder_is_not_blamed_on_imbalance():
    plan = group_by_label_plan([0] * 7 + [1] * 6 + [2] * 6, 8)  # 18 in the stream, 16 in two batches
    message = " ".join(plan.messages)
    assert "uses 16 of 19" in message and "1 label(s) with an odd count" in message
    assert "last partial batch of 2" in message and "balance" not in message


@pytest.mark.parametrize(
    "counts, batch_size, drop_last",
    [
        ((5, 5, 5), 4, False), ((100, 20, 10), 8, False), ((9, 3, 2, 1), 6, True), ((40, 40), 32, False),
        ((7, 6), 4, True),
    ],
)
def test_plan_matches_sentence_transformers_sampler(counts, batch_size, drop_last):
    from datasets import Dataset
    from sentence_transformers.base.sampler import GroupByLabelBatchSampler

    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    sampler = GroupByLabelBatchSampler(
        Dataset.from_dict({"label": labels}), batch_size, drop_last, valid_label_columns=["label"],
        generator=torch.Generator(), seed=0,
    )
    batches = list(sampler)
    plan = group_by_label_plan(labels, batch_size, drop_last=drop_last)
    assert plan.batches_per_epoch == len(sampler) == len(batches)
    assert plan.used_per_epoch == sum(len(b) for b in batches)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=2, max_size=8), half=st.integers(2, 20), drop_last=st.booleans())
def test_the_sampler_and_the_teaching_arithmetic_agree(counts, half, drop_last):
    """The plan comes from sentence-transformers' sampler itself; reference.group_by_label_epoch writes its
    arithmetic out for notebook 02. The two agree on the installed version."""
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    if sum(n >= 2 for n in counts) < 2:
        return
    plan = group_by_label_plan(labels, 2 * half, drop_last=drop_last)
    assert (plan.used_per_epoch, plan.batches_per_epoch) == reference.group_by_label_epoch(counts, 2 * half, drop_last)


# --- the schedule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total, warmup", [(1, 0), (2, 1), (10, 1), (27, 3), (100, 10)])
def test_no_update_runs_at_learning_rate_0(total, warmup):
    factors = [learning_rate_factor(step, warmup, total) for step in range(total)]
    assert all(f > 0 for f in factors) and max(factors) == 1.0
    assert factors[:warmup + 1] == sorted(factors[:warmup + 1]) and factors[warmup:] == sorted(factors[warmup:])[::-1]


def test_a_single_step_changes_the_weights(tiny_st_model, toy_dataset):
    """transformers' own warm-up starts at 0: a 1-step run (or the first step of any run) used to change nothing."""
    before = {k: v.detach().clone() for k, v in tiny_st_model.state_dict().items()}
    result = _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_hard", tiny_st_model), max_steps=1)
    assert result.steps == 1 and result.history["learning_rate"].iloc[0] > 0
    assert any(not torch.equal(v, before[k]) for k, v in tiny_st_model.state_dict().items())


@pytest.mark.parametrize("kwargs", [{"max_steps": 0}, {"max_steps": -3}, {"max_steps": None, "epochs": -1},
                                    {"max_steps": None, "epochs": float("nan")}, {"warmup_ratio": 1.5}])
def test_nonsense_lengths_are_refused_before_training(tiny_st_model, toy_dataset, kwargs):
    with pytest.raises(ValueError, match="max_steps|epochs|warmup_ratio"):
        _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_hard", tiny_st_model), **kwargs)


# --- train() -----------------------------------------------------------------------------------------------------


class _Recording(st_losses.BatchSemiHardTripletLoss):
    """Remembers every loss value and statistics it returned."""

    returned: list

    def forward(self, features, labels):
        value = super().forward(features, labels)
        self.returned.append((value.item(), {k: v.item() for k, v in self.last_stats.items()}))
        return value


def test_train_records_one_row_per_step_with_the_mining_stats(tiny_st_model, toy_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory
    loss = _Recording(tiny_st_model, margin=0.5)
    loss.returned = []
    result = _quick(tiny_st_model, toy_dataset, loss)
    history = result.history
    assert result.steps == 4 and list(history["step"]) == [1, 2, 3, 4]
    assert {"step", "epoch", "loss", "learning_rate"} | STAT_COLUMNS <= set(history.columns)
    assert np.isfinite(history["loss"]).all() and (history["loss"] >= 0).all()
    assert result.train_seconds > 0 and result.model is tiny_st_model and not result.collapsed
    assert result.eval_history.empty
    assert 0 < history["learning_rate"].iloc[0] < history["learning_rate"].max()  # warm-up, never at 0
    # each row is that step's batch: the value and the statistics the loss module returned, not a running average
    np.testing.assert_allclose(history["loss"], [v for v, _ in loss.returned], rtol=1e-6)
    for column in STAT_COLUMNS:
        np.testing.assert_allclose(history[column], [s[column] for _, s in loss.returned], rtol=1e-6)
    assert list(tmp_path.iterdir()) == []


def test_train_is_seeded(toy_dataset):
    from tutorial_lib.models import tiny_model

    runs = []
    for _ in range(2):
        model = tiny_model(seed=0)
        runs.append(_quick(model, toy_dataset, st_losses.make_loss("batch_hard", model), max_steps=3).history)
    np.testing.assert_allclose(runs[0]["loss"], runs[1]["loss"], rtol=1e-6)


def test_train_with_a_sentence_transformers_loss_logs_the_loss_only(tiny_st_model, toy_dataset):
    loss = st_losses.sentence_transformers_loss("batch_hard", tiny_st_model, margin=0.5)
    history = _quick(tiny_st_model, toy_dataset, loss, max_steps=2).history
    assert list(history.columns) == ["step", "epoch", "loss", "learning_rate"] and len(history) == 2


def test_train_with_an_eval_split_and_other_column_names(tiny_st_model, toy_dataset):
    renamed = toy_dataset.rename_columns({"sentence": "text", "label": "topic"}).add_column("id", list(range(24)))
    loss = st_losses.make_loss("batch_all", tiny_st_model)
    result = _quick(tiny_st_model, renamed, loss, eval_dataset=renamed, eval_steps=2, text_column="text",
                    label_column="topic")
    assert list(result.eval_history["step"]) == [2, 4]
    assert np.isfinite(result.eval_history["eval_loss"]).all()
    assert len(result.history) == 4  # evaluation batches are not training steps


def test_a_bad_batch_size_fails_before_training(tiny_st_model, toy_dataset):
    with pytest.raises(ValueError, match="even number >= 4"):
        _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_hard", tiny_st_model), batch_size=6 + 1)


class _NanOnCall(nn.Module):
    """A batch-hard loss that returns NaN from its ``nan_at``-th call on."""

    def __init__(self, model, nan_at: int):
        super().__init__()
        self.inner = st_losses.make_loss("batch_hard", model)
        self.model = model
        self.calls, self.nan_at = 0, nan_at

    def forward(self, features, labels):
        self.calls += 1
        value = self.inner(features, labels)
        return value * float("nan") if self.calls >= self.nan_at else value


def _last_weights():
    """A trainer callback that keeps a copy of the model's weights after every completed step (``.weights``)."""
    from transformers import TrainerCallback

    class KeepWeights(TrainerCallback):
        weights: dict = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    return KeepWeights()


def test_a_nan_loss_stops_training_before_the_update(tiny_st_model, toy_dataset):
    loss = _NanOnCall(tiny_st_model, nan_at=3)
    keep = _last_weights()
    with pytest.raises(NonFiniteLossError, match="became nan at step 3.*stopped before that update") as info:
        _quick(tiny_st_model, toy_dataset, loss, max_steps=6, callbacks=[keep])
    error = info.value
    assert error.step == 3 and len(error.history) == 3 and math.isnan(error.history["loss"].iloc[-1])
    assert np.isfinite(error.history["loss"].iloc[:2]).all()
    for name, value in tiny_st_model.state_dict().items():  # the NaN batch changed nothing
        assert torch.equal(value, keep.weights[name]), name
    assert not tiny_st_model.training


class _Constant(nn.Module):
    """A fake triplet loss: returns ``value`` (with a gradient path) and optionally shrinking ``last_stats``."""

    def __init__(self, model, value: float, margin: float | None = None, shrink: bool = False):
        super().__init__()
        self.model, self.value, self.shrink, self.calls = model, value, shrink, 0
        if margin is not None:
            self.margin = margin
        self.last_stats = None

    def forward(self, features, labels):
        self.calls += 1
        emb = self.model(features[0])["sentence_embedding"]
        if self.shrink:
            self.last_stats = {"mean_distance": torch.tensor(1.0 / self.calls**3)}
        return emb.sum() * 0.0 + self.value


def test_a_loss_pinned_at_the_margin_warns_of_collapse(tiny_st_model, toy_dataset):
    loss = _Constant(tiny_st_model, 0.5, margin=0.5)
    with pytest.warns(CollapseWarning, match="stayed at 0.5 .* for 3 steps"):
        result = _quick(tiny_st_model, toy_dataset, loss, max_steps=4, collapse_patience=3)
    assert result.collapsed and any("collapsed" in m for m in result.messages)


def test_a_soft_margin_loss_pinned_at_ln2_warns_of_collapse(tiny_st_model, toy_dataset):
    loss = _Constant(tiny_st_model, math.log(2.0))
    loss.strategy = "batch_hard_soft_margin"
    with pytest.warns(CollapseWarning, match="stayed at 0.6931"):
        _quick(tiny_st_model, toy_dataset, loss, max_steps=3, collapse_patience=3)


def test_a_vanishing_mean_distance_warns_of_collapse(tiny_st_model, toy_dataset):
    loss = _Constant(tiny_st_model, 0.3, margin=0.5, shrink=True)  # mean distance 1, 1/8, 1/27, 1/64, 1/125
    with pytest.warns(CollapseWarning, match=r"at step 2: the mean pairwise distance fell from 1 to 0.125 \(below 0.3"):
        _quick(tiny_st_model, toy_dataset, loss, max_steps=5)


def test_a_healthy_run_does_not_warn(tiny_st_model, toy_dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        result = _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_hard", tiny_st_model), max_steps=3)
    assert not result.collapsed


class _NanGradient(torch.autograd.Function):
    """Identity forward; a NaN gradient backward (a finite loss hiding non-finite gradients)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class _NanGradientLoss(nn.Module):
    def __init__(self, model, nan_at: int):
        super().__init__()
        self.inner = st_losses.make_loss("batch_hard", model)
        self.model = model
        self.calls, self.nan_at = 0, nan_at

    def forward(self, features, labels):
        self.calls += 1
        embeddings = self.model(features[0])["sentence_embedding"]
        if self.calls >= self.nan_at:
            embeddings = _NanGradient.apply(embeddings)
        return self.inner.compute_loss_from_embeddings([embeddings], labels)


def test_non_finite_gradients_stop_training_before_the_update(tiny_st_model, toy_dataset):
    loss = _NanGradientLoss(tiny_st_model, nan_at=2)
    keep = _last_weights()
    with pytest.raises(NonFiniteLossError, match="gradients became NaN/inf at step 2") as info:
        _quick(tiny_st_model, toy_dataset, loss, max_steps=4, callbacks=[keep])
    assert info.value.step == 2 and np.isfinite(info.value.history["loss"]).all()
    for name, value in tiny_st_model.state_dict().items():  # the NaN gradients changed nothing
        assert torch.equal(value, keep.weights[name]), name


def test_an_evaluator_is_logged_and_the_best_checkpoint_kept(tiny_st_model, toy_dataset, tmp_path):
    from tutorial_lib.evaluation import triplet_evaluator

    evaluator = triplet_evaluator(toy_dataset, name="toy")
    result = _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_all", tiny_st_model), evaluator=evaluator,
                    keep_best=True, eval_steps=2, output_dir=str(tmp_path / "checkpoints"))
    metric = f"eval_{evaluator.primary_metric}"
    assert list(result.eval_history["step"]) == [0, 2, 4] and metric in result.eval_history  # 0: before training
    trained = result.eval_history[result.eval_history["step"] > 0]
    best = trained.loc[trained[metric].idxmax(), "step"]
    assert result.best_step == best
    assert len(list((tmp_path / "checkpoints").glob("checkpoint-*"))) <= 2  # save_total_limit=1 (+ the best)


def test_keep_best_needs_an_evaluator(tiny_st_model, toy_dataset):
    with pytest.raises(ValueError, match="keep_best=True needs an evaluator"):
        _quick(tiny_st_model, toy_dataset, st_losses.make_loss("batch_all", tiny_st_model), keep_best=True)


def test_progress_bars_follow_triplet_quiet(tiny_st_model, toy_dataset, monkeypatch, capfd):
    loss = st_losses.make_loss("batch_hard", tiny_st_model)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("TRIPLET_QUIET", raising=False)
    _quick(tiny_st_model, toy_dataset, loss, max_steps=2, progress=None)
    assert "2/2" in capfd.readouterr().err  # the trainer's bar, for a learner
    monkeypatch.setenv("TRIPLET_QUIET", "1")
    _quick(tiny_st_model, toy_dataset, loss, max_steps=2, progress=None)
    assert "2/2" not in capfd.readouterr().err
