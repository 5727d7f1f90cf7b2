"""Notebook 06 (BatchHardSoftMargin): the self-checks of its exercises.

    check_soft_margin(fn)             fn(d_ap: tensor, d_an: tensor) -> tensor of d_ap's shape, softplus(d_ap - d_an)
    check_batch_hard_soft_margin(fn)  fn(dist: (B, B) tensor, labels: (B,) tensor) -> 0-dim tensor

Oracles: ``torch.nn.functional.softplus`` (the softplus :mod:`tutorial_lib.reference` uses) and
:func:`tutorial_lib.reference.batch_hard_soft_margin_from_distances` (value and gradient).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..distances import pairwise_distances
from ..reference import batch_hard_soft_margin_from_distances
from .runner import (
    Miss,
    as_number,
    either,
    gradient_miss,
    line_distances,
    matching_slips,
    run_checks,
    show,
)

__all__ = ["check_batch_hard_soft_margin", "check_soft_margin"]


def check_soft_margin(fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """``fn(d_ap, d_an)`` returns ``softplus(d_ap - d_an) = log(1 + exp(d_ap - d_an))`` elementwise, as a tensor of
    d_ap's shape that gradients flow through, without overflow for large gaps (float32 inputs included)."""
    hints = {
        "tie": "softplus is never exactly 0: at d_ap == d_an it is log(1 + e^0) = ln 2 (about 0.693).",
        "far": "the argument is x = d_ap - d_an: the loss is small when the negative is far (x very negative).",
        "many": "it works on single numbers but not elementwise on tensors: use torch operations that act on every "
                "element.",
        "overflow": "e^x overflows float32 beyond x = 88 or so, and log(inf) is inf: for large x, log(1 + e^x) is x "
                    "plus a tiny correction. Find a form that never exponentiates a large positive number (or "
                    "torch's built-in for this very function).",
    }

    def case(d_ap, d_an, what: str, hint_key: str, dtype: torch.dtype = torch.float64) -> tuple:
        d_ap, d_an = torch.as_tensor(d_ap, dtype=dtype), torch.as_tensor(d_an, dtype=dtype)

        def run(f):
            got = f(d_ap.clone(), d_an.clone())
            if not isinstance(got, Tensor):
                got = torch.as_tensor(got)
            want = torch.nn.functional.softplus((d_ap - d_an).double())
            if tuple(got.shape) != tuple(want.shape):
                return Miss(f"for {what} it returned shape {tuple(got.shape)}.",
                            "compute one loss per pair: same shape as d_ap; no sum or mean here.")
            got = got.detach().double()
            if not torch.isfinite(got).all():
                return Miss(f"for {what} it returned {show(got)}.", hints[hint_key])
            if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
                shown = f" (d_ap = {show(d_ap)}, d_an = {show(d_an)})" if d_ap.numel() == 1 else ""
                return Miss(f"for {what}{shown} it returned {show(got)}.", hints[hint_key])
            return None

        return what, run, hints[hint_key]

    def gradient(f):
        d_ap = torch.tensor([0.25, 1.0, 100.0], requires_grad=True)
        d_an = torch.tensor([0.75, 0.25, 0.0], requires_grad=True)
        out = f(d_ap, d_an)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient (it is not a tensor computed from d_ap and d_an).",
                        "stay with torch operations (no float(), .item() or math.log) so training can "
                        "backpropagate through the loss.")
        out.sum().backward()
        if d_ap.grad is None or not torch.isfinite(d_ap.grad).all():
            return Miss(f"its gradient with respect to d_ap is {show(d_ap.grad)}.", hints["overflow"])
        want = torch.autograd.grad(torch.nn.functional.softplus(d_ap - d_an).sum(), d_ap)[0]
        if not torch.allclose(d_ap.grad.double(), want.double(), atol=1e-5):
            return Miss(f"its gradient with respect to d_ap is {show(d_ap.grad)}.",
                        "the slope of log(1 + e^x) is e^x / (1 + e^x): between 0 and 1, never exactly 0.")
        return None

    g = torch.Generator().manual_seed(10)
    many_ap = torch.rand(64, generator=g, dtype=torch.float64) * 2
    many_an = torch.rand(64, generator=g, dtype=torch.float64) * 2
    return run_checks("check_soft_margin", fn, [
        case(0.75, 0.75, "a negative as far as the positive", "tie"),
        case(0.25, 1.75, "a far negative", "far"),
        case(1.5, 0.5, "a near negative", "far"),
        case(many_ap, many_an, "64 random pairs at once", "many"),
        case([100.0, 0.0], [0.0, 100.0], "float32 distances 100 apart (unnormalized embeddings)", "overflow",
             dtype=torch.float32),
        ("the gradient", gradient),
    ], "No margin to choose, and a gradient for every anchor, however easy.")


def _soft_margin_slip(dist: Tensor, labels: Tensor, slip: str) -> float:
    """BatchHardSoftMargin's value with one usual mistake, to name the learner's (never the right loss).

    ``"positive"``: the nearest positive; ``"negative"``: the farthest negative; ``"softplus"``: a hinge at 0
    instead of softplus; ``"singleton"``: anchors without a positive dropped; ``"triplets"``: one term per triplet.
    """
    lab = labels.tolist()
    link = (lambda x: max(0.0, x)) if slip == "softplus" else (lambda x: math.log1p(math.exp(-abs(x))) + max(0.0, x))
    terms = []
    for a in range(len(lab)):
        d_pos = [float(dist[a, p]) for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        d_neg = [float(dist[a, n]) for n in range(len(lab)) if lab[n] != lab[a]]
        if slip == "triplets":
            terms += [link(dp - dn) for dp in d_pos for dn in d_neg]
        elif d_pos or slip != "singleton":
            d_ap = (min(d_pos) if slip == "positive" else max(d_pos)) if d_pos else 0.0
            d_an = max(d_neg) if slip == "negative" else min(d_neg)
            terms.append(link(d_ap - d_an))
    return sum(terms) / max(len(terms), 1)


def check_batch_hard_soft_margin(fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """``fn(dist, labels)`` returns BatchHardSoftMargin's loss from a (B, B) distance matrix and (B,) labels.

    Mean over all anchors of ``softplus(d(a, farthest positive) - d(a, nearest negative))``; an anchor without a
    positive uses 0 as its positive distance and stays in the mean (sentence-transformers' convention). The batches
    have at least two labels.
    """
    hints = {
        "plain": "per anchor: the farthest positive, the nearest negative, softplus of the difference; then the "
                 "mean over anchors.",
        "positive": "the hardest positive is the *farthest* example with the anchor's label.",
        "negative": "the hardest negative is the *nearest* example with another label.",
        "softplus": "no hinge and no margin here: softplus(x) = log(1 + e^x), which is never 0.",
        "singleton": "an anchor without a positive keeps a positive distance of 0 and stays in the mean "
                     "(sentence-transformers' convention): its term still pushes its nearest negative away.",
        "triplets": "one term per anchor, with its hardest pair; not one per triplet (that would be a soft BatchAll).",
        "random": "one term per anchor (not per triplet), then the mean over all anchors.",
    }
    slip_keys = ("positive", "negative", "softplus", "singleton", "triplets")

    def case(dist: Tensor, labels: Tensor, what: str, hint_key: str) -> tuple:
        def run(f):
            value, miss = as_number(f(dist.clone(), labels.clone()), what)
            if miss:
                return miss
            want = float(batch_hard_soft_margin_from_distances(dist, labels))
            if math.isclose(float(value), want, rel_tol=1e-5, abs_tol=1e-6):
                return None
            keys = matching_slips(float(value), want, {k: _soft_margin_slip(dist, labels, k) for k in slip_keys})
            return Miss(f"for {what} it returned {float(value):.4f}.", either([hints[k] for k in keys or [hint_key]]))

        return what, run, hints[hint_key]

    def gradient(f):
        points = torch.randn(10, 4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
        return gradient_miss(
            f, batch_hard_soft_margin_from_distances, pairwise_distances(points), torch.arange(10) % 3,
            no_gradient="stay with torch operations on dist (no float() or .item() on the way).",
            wrong_gradient="only two entries per anchor may depend on dist: its hardest positive and negative.")

    random_points = torch.randn(15, 5, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    return run_checks("check_batch_hard_soft_margin", fn, [
        case(line_distances([0.0, 0.5, 1.0, 1.75]), torch.tensor([0, 0, 1, 1]), "four points on a line", "plain"),
        case(line_distances([0.0, 0.25, 2.0, 0.5, 1.0, 3.0]), torch.tensor([0, 0, 0, 1, 1, 1]),
             "a batch with near and far positives", "positive"),
        case(line_distances([0.0, 0.25, 0.75, 2.5, 1.0, 3.0]), torch.tensor([0, 0, 1, 1, 2, 2]),
             "a batch with near and far negatives", "negative"),
        case(line_distances([0.0, 0.25, 3.0, 3.25]), torch.tensor([0, 0, 1, 1]),
             "a batch where every anchor is already satisfied", "softplus"),
        case(line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]),
             "a batch with a label that appears once", "singleton"),
        case(pairwise_distances(random_points), torch.arange(15) % 3, "a random batch of 15 with 3 labels", "random"),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchHardSoftMarginTripletLoss, computed from its distance matrix.")
