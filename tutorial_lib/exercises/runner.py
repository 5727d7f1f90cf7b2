"""What every exercise self-check shares: run the hidden cases, print one verdict, read the learner's result.

A check builds its hidden cases and hands them to :func:`run_checks`. A case is ``(description, run)`` or
``(description, run, hint)``; ``run(fn)`` calls the learner's function and returns None when the answer is right, or
a :class:`Miss` saying what the learner's function did and what to think about. The helpers below render only what
the learner returned: a verdict never shows an expected value.

Also here: the small builders of hidden cases that several notebooks use (:func:`line_distances`,
:func:`clustered_distances`, :func:`anchor_rows`), :func:`matching_slips`, which names a usual mistake by matching
the learner's value against deliberately wrong variants, and :func:`number_case`, a whole hidden case for a batch
loss (or rate) computed from ``(dist, labels, margin)``.

Imports torch and :mod:`tutorial_lib.distances`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..distances import pairwise_distances

__all__ = [
    "Case",
    "Miss",
    "anchor_rows",
    "as_float64",
    "as_mask",
    "as_number",
    "as_whole_number",
    "clustered_distances",
    "either",
    "gradient_miss",
    "line_distances",
    "matching_slips",
    "number_case",
    "run_checks",
    "show",
]


class Miss(NamedTuple):
    """Why a case failed: ``problem`` (what the learner's function did) and ``hint`` (what to think about)."""

    problem: str
    hint: str


Case = Callable[[Callable], "Miss | None"]
"""One hidden case: calls the learner's function, returns None (right) or a :class:`Miss`."""

_GENERIC_ERROR_HINT = "run it by hand on a tiny input and read the error; check the shapes and types it receives."


def run_checks(name: str, fn: Callable, cases: Sequence[tuple], success: str) -> bool:
    """Run ``cases`` against ``fn`` in order, stop at the first miss, print one verdict; True if all pass.

    Each case is ``(description, case)`` or ``(description, case, hint)``. An exception raised by ``fn`` fails the
    case with its type and message (and the case's hint, if it has one), never the check itself: a crash in the
    learner's code is part of the verdict, not a crash of the notebook.
    """
    if not callable(fn):
        print(f"❌ {name}: pass your function itself, e.g. {name}(my_function) (without parentheses after it).")
        return False
    for description, case, *hint in cases:
        try:
            miss = case(fn)
        except NotImplementedError:
            print(f"✏️ {name}: your function is not written yet. Replace its `raise NotImplementedError` line with "
                  "your code, run that cell, then run this check again.")
            return False
        except Exception as error:  # the learner's code failed: report it, do not crash the notebook
            miss = Miss(f"on {description}, your function raised {type(error).__name__}: {error}",
                        hint[0] if hint else _GENERIC_ERROR_HINT)
        if miss is not None:
            problem = miss.problem[:1].upper() + miss.problem[1:]
            print(f"❌ {name}: not yet. {problem}\n   Hint: {miss.hint}")
            return False
    print(f"✅ {name}: correct on all {len(cases)} hidden cases. {success}")
    return True


# Reading the learner's result ------------------------------------------------------------------------------------


def as_float64(value: Any) -> Tensor:
    """The learner's result as a detached float64 tensor (numbers, lists, numpy arrays and tensors are accepted)."""
    if isinstance(value, Tensor):
        return value.detach().to(torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)


def show(x: Any) -> str:
    """A short rendering of a value the learner returned (never of an expected value)."""
    if isinstance(x, Tensor):
        x = x.detach()
        if x.numel() == 1:
            return f"{x.item():.4g}"
        if x.numel() <= 12:
            return str([round(v, 4) if isinstance(v, float) else v for v in x.flatten().tolist()])
        return f"a tensor of shape {tuple(x.shape)}"
    return repr(x)


def as_mask(value: Any, shape: tuple[int, ...], what: str) -> tuple[Tensor | None, Miss | None]:
    """The learner's mask as a bool tensor of ``shape`` (0/1 integers are accepted), or why it is not one."""
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value)
    if tuple(value.shape) != shape:
        return None, Miss(f"it returned shape {tuple(value.shape)} for {what}; expected shape {shape}.",
                          "one entry per pair (or triplet) of batch positions.")
    if value.dtype != torch.bool:
        if value.is_floating_point() or not bool(((value == 0) | (value == 1)).all()):
            return None, Miss(f"it returned dtype {value.dtype} with values other than 0/1.",
                              "a mask holds True/False; comparisons like `a == b` give exactly that.")
        value = value.bool()
    return value, None


def as_number(got: Any, what: str, one: str = "one number (a tensor)",
              reduce: str = "average the per-pair (or per-anchor)") -> tuple[Tensor | None, Miss | None]:
    """The learner's batch loss (or rate) as a 0-dim float64 tensor, or why it cannot be one.

    The hints name ``one`` and ``reduce``: how each notebook words "one number" and "combine the parts".
    """
    try:
        value = as_float64(got)
    except (TypeError, ValueError, RuntimeError):
        return None, Miss(f"for {what} it returned {got!r}.", f"return the loss of the batch: {one}.")
    if value.numel() != 1:
        return None, Miss(f"for {what} it returned {value.numel()} numbers (shape {tuple(value.shape)}).",
                          f"the loss of a batch is one number: {reduce} losses.")
    return value.reshape(()), None


def as_whole_number(got: Any, what: str, hint: str) -> tuple[int | None, Miss | None]:
    """The learner's count as an int (an int, a whole float or a 0-dim tensor), or why it is not one."""
    try:
        value = int(got)
    except (TypeError, ValueError, RuntimeError):
        return None, Miss(f"for {what} it returned {show(got)}.", "return one whole number.")
    if value != float(as_float64(got)):
        return None, Miss(f"for {what} it returned {show(got)}, which is not a whole number.", hint)
    return value, None


def matching_slips(value: float, want: float, slips: dict[str, float]) -> list[str]:
    """The keys of the usual mistakes whose value on this case the learner's ``value`` matches, in ``slips`` order.

    A slip that happens to give the right value on this case (``want``) names nothing: the learner could not have
    been told apart from a right answer.
    """
    return [key for key, slip in slips.items()
            if math.isclose(value, slip, rel_tol=1e-5, abs_tol=1e-7)
            and not math.isclose(slip, want, rel_tol=1e-5, abs_tol=1e-7)]


def either(hints: Sequence[str]) -> str:
    """One hint from the hints of the matching slips: when several give the learner's value, name them all."""
    return hints[0] if len(hints) == 1 else "this value fits more than one usual slip: " + " Or: ".join(hints)


def number_case(dist: Tensor, labels: Tensor, margin: float, what: str, hint: str, *,
                oracle: Callable[[Tensor, Tensor, float], Any],
                slip_value: Callable[[Tensor, Tensor, float, str], float],
                slips: Mapping[str, str | tuple[str, str]],
                nan_hint: str | None = None,
                rel_tol: float = 1e-5, abs_tol: float = 1e-7) -> tuple[str, Case, str]:
    """One hidden case ``(what, run, hint)`` for :func:`run_checks`: ``fn(dist, labels, margin)`` must give one number.

    ``run(fn)`` calls ``fn(dist.clone(), labels.clone(), margin)``, reads its result with :func:`as_number` and
    compares it with ``oracle(dist, labels, margin)`` (:func:`math.isclose` with ``rel_tol`` and ``abs_tol``). A wrong
    value is matched against the usual slips (:func:`matching_slips`): the miss gives the hint of the slip it fits
    (:func:`either` when it fits several), or the case's ``hint`` when it fits none.

    Args:
        dist: (B, B) distance matrix of the batch.
        labels: (B,) labels of the batch.
        margin: passed to ``fn``, ``oracle`` and ``slip_value`` as their third argument.
        what: the case as the verdict names it ("for <what> it returned ...").
        hint: the case's hint, for a value that fits no slip (and for an exception ``fn`` raises).
        oracle: the right value (a number or a 0-dim tensor) of ``(dist, labels, margin)``.
        slip_value: ``slip_value(dist, labels, margin, key)`` is the value under the slip ``key`` of ``slips``
            (called only when the learner's value is wrong).
        slips: the usual slips, in the order they are matched: ``key -> hint``, or ``key -> (what it does, hint)``
            to also say what the learner's function does when that slip alone fits ("it returned 0.25: <what it
            does>"; end it with a full stop).
        nan_hint: None: a NaN or infinite value fails at once, shown as Python prints it ("nan", "inf"), with the
            case's ``hint``. A string: a NaN fails at once, shown as "NaN", with this hint; an infinite value is
            then matched against the slips like any other wrong value.
        rel_tol, abs_tol: how close to the oracle's value counts as right.
    """
    def run(fn: Callable) -> Miss | None:
        value, miss = as_number(fn(dist.clone(), labels.clone(), margin), what, one="one number",
                                reduce="reduce the per-triplet (or per-anchor)")
        if miss:
            return miss
        got, want = float(value), float(oracle(dist, labels, margin))
        if nan_hint is not None and math.isnan(got):
            return Miss(f"for {what} it returned NaN.", nan_hint)
        if nan_hint is None and not math.isfinite(got):
            return Miss(f"for {what} it returned {got}.", hint)
        if math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol):
            return None
        keys = matching_slips(got, want, {key: slip_value(dist, labels, margin, key) for key in slips})
        if len(keys) == 1 and isinstance(slips[keys[0]], tuple):
            does, slip_hint = slips[keys[0]]
            return Miss(f"for {what} it returned {got:.4g}: {does}", slip_hint)
        hints = [slip[1] if isinstance(slip, tuple) else slip for slip in (slips[key] for key in keys)]
        return Miss(f"for {what} it returned {got:.4g}.", either(hints or [hint]))

    return what, run, hint


def gradient_miss(fn: Callable, oracle: Callable, dist: Tensor, labels: Tensor, *args: Any,
                  no_gradient: str, wrong_gradient: str) -> Miss | None:
    """Compare d fn(dist, labels, *args) / d dist with the oracle's; None when they agree (to 1e-8).

    Args:
        fn, oracle: map ``(dist (B, B), labels (B,), *args)`` to a 0-dim tensor.
        no_gradient, wrong_gradient: the hints for a result without a gradient and for a different gradient.
    """
    mine = dist.detach().clone().requires_grad_(True)
    out = fn(mine, labels.clone(), *args)
    if not isinstance(out, Tensor) or not out.requires_grad:
        return Miss("its result carries no gradient back to dist (it is not a tensor computed from dist).",
                    no_gradient)
    out.sum().backward()
    theirs = dist.detach().clone().requires_grad_(True)
    oracle(theirs, labels, *args).backward()
    if mine.grad is None or not torch.allclose(mine.grad, theirs.grad, atol=1e-8):
        return Miss("its value is right but its gradient with respect to dist is not.", wrong_gradient)
    return None


# Building hidden cases -------------------------------------------------------------------------------------------


def line_distances(coordinates: Sequence[float]) -> Tensor:
    """(B, B) float64 distances between points on a line: exact in floating point for dyadic coordinates."""
    x = torch.tensor(coordinates, dtype=torch.float64)
    return (x.reshape(-1, 1) - x.reshape(1, -1)).abs()


def clustered_distances(size: int, n_labels: int, seed: int, spread: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(dist (B, B) float64, labels (B,))`` of ``size`` random 8-D points around one centre per label.

    Labels are ``arange(size) % n_labels``; a larger ``spread`` puts the centres farther apart (more easy triplets).
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % n_labels
    centres = torch.randn(n_labels, 8, generator=g, dtype=torch.float64) * spread
    points = centres[labels] + torch.randn(size, 8, generator=g, dtype=torch.float64)
    return pairwise_distances(points), labels


def anchor_rows(dist_row: Tensor) -> Tensor:
    """A (B, B) view whose every row is the anchor's (B,) ``dist_row``.

    The per-anchor rules of :mod:`tutorial_lib.reference` (``hardest_positive``, ``semi_hard_negative``) take the
    whole matrix and read only the anchor's row, so one row is all an exercise about one anchor needs.
    """
    return dist_row.reshape(1, -1).expand(len(dist_row), -1)
