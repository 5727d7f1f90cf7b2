"""Self-checks for the notebooks' exercises: ``check_x(your_function)`` prints a verdict and a hint, never the answer.

Each check calls the learner's function on a few hidden cases (fixed seeds: the same verdict every run), compares
with :mod:`tutorial_lib` (the oracle), and stops at the first case that disagrees. It then says what went wrong in
terms of *the learner's* output and gives a hint; it never prints the expected values or the solution. Every check
returns True or False and never raises: an exception inside the learner's function is part of the verdict.

One function per exercise, named after what it checks, grouped by the notebook that asks for it::

    00  check_euclidean_distance(fn)    fn(u, v) -> 0-dim tensor
    01  check_triplet_loss(fn)          fn(d_ap, d_an, margin) -> tensor, elementwise max(0, ...)
        check_triplet_category(fn)      fn(d_ap, d_an, margin) -> "easy" | "semi-hard" | "hard"
        check_hardest_pair(fn)          fn(dist_row, labels, anchor) -> (positive index, negative index)
    02  check_pairwise_distances(fn)    fn(embeddings) -> (B, B) euclidean distances, safe to backpropagate
        check_positive_mask(fn)         fn(labels) -> (B, B) bool
        check_negative_mask(fn)         fn(labels) -> (B, B) bool
        check_triplet_mask(fn)          fn(labels) -> (B, B, B) bool
        check_count_valid_triplets(fn)  fn(labels) -> int

Adding an exercise: write a ``check_*`` function that builds its cases and calls :func:`run_checks`; each case
returns None when the learner's answer is right, or a :class:`Miss` saying what is wrong and what to think about.

Imports torch and the core modules :mod:`tutorial_lib.distances` and :mod:`tutorial_lib.masks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .distances import pairwise_distances
from .masks import anchor_negative_mask, anchor_positive_mask, triplet_mask

__all__ = [
    "Miss",
    "check_count_valid_triplets",
    "check_euclidean_distance",
    "check_hardest_pair",
    "check_negative_mask",
    "check_pairwise_distances",
    "check_positive_mask",
    "check_triplet_category",
    "check_triplet_loss",
    "check_triplet_mask",
    "run_checks",
]


class Miss(NamedTuple):
    """Why a case failed: ``problem`` (what the learner's function did) and ``hint`` (what to think about)."""

    problem: str
    hint: str


Case = Callable[[Callable], "Miss | None"]


_GENERIC_ERROR_HINT = "run it by hand on a tiny input and read the error; check the shapes and types it receives."


def run_checks(name: str, fn: Callable, cases: Sequence[tuple], success: str) -> bool:
    """Run ``cases`` against ``fn`` in order; print one verdict; True if all pass.

    Each case is ``(description, case)`` or ``(description, case, hint)``: ``case(fn)`` returns None or a
    :class:`Miss`. An exception raised by ``fn`` fails the case with its type and message (and the case's hint, if
    it has one), never the check itself.
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


def _tensor(value: Any) -> Tensor:
    """The learner's result as a float64 tensor (numbers, lists, numpy arrays and tensors are accepted)."""
    if isinstance(value, Tensor):
        return value.detach().to(torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)


def _fmt(x: Any) -> str:
    """A short rendering of a value the learner returned (never of an expected value)."""
    if isinstance(x, Tensor):
        x = x.detach()
        if x.numel() == 1:
            return f"{x.item():.4g}"
        if x.numel() <= 12:
            return str([round(v, 4) if isinstance(v, float) else v for v in x.flatten().tolist()])
        return f"a tensor of shape {tuple(x.shape)}"
    return repr(x)


def _bool_result(value: Any, shape: tuple[int, ...], what: str) -> tuple[Tensor | None, Miss | None]:
    """Accept bool (or 0/1) tensors of the right shape; explain anything else."""
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


# ----------------------------------------------------------------------------------------------------------------
# 00
# ----------------------------------------------------------------------------------------------------------------


def check_euclidean_distance(fn: Callable[[Tensor, Tensor], Any]) -> bool:
    """Warm-up (00): ``fn(u, v)`` returns the euclidean distance between two (D,) vectors."""

    def case(u: Tensor, v: Tensor, what: str, hint: str) -> Case:
        def run(f):
            got = _tensor(f(u.clone(), v.clone()))
            if got.numel() != 1:
                return Miss(f"for {what} it returned {got.numel()} numbers.", "a distance is one number.")
            if not math.isclose(got.item(), float(torch.dist(u.double(), v.double())), rel_tol=1e-4, abs_tol=1e-6):
                return Miss(f"for {what} it returned {_fmt(got)}.", hint)
            return None

        return what, run

    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(384, generator=g), torch.randn(384, generator=g)
    return run_checks("check_euclidean_distance", fn, [
        case(torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]), "u = (0, 0), v = (3, 4)",
             "square the differences, add them up, take the square root (Pythagoras)."),
        case(u, v, "two random 384-dimensional vectors", "use every coordinate, not only the first two."),
        case(u, u.clone(), "a vector and itself", "a point is at distance 0 from itself."),
    ], "This is the d(a, p) and d(a, n) of every triplet.")


# ----------------------------------------------------------------------------------------------------------------
# 01
# ----------------------------------------------------------------------------------------------------------------


def check_triplet_loss(fn: Callable[[Tensor, Tensor, float], Any]) -> bool:
    """01: ``fn(d_ap, d_an, margin)`` returns ``max(0, d_ap - d_an + margin)`` elementwise, as a tensor."""

    def case(d_ap, d_an, margin, what, hint) -> tuple[str, Case]:
        d_ap, d_an = torch.as_tensor(d_ap, dtype=torch.float64), torch.as_tensor(d_an, dtype=torch.float64)

        def run(f):
            got = _tensor(f(d_ap.clone(), d_an.clone(), margin))
            want = torch.relu((d_ap - d_an) + margin)
            if got.shape != want.shape:
                return Miss(f"for {what} it returned shape {tuple(got.shape)}.",
                            "compute one loss per triplet: same shape as d_ap; no sum or mean here.")
            if not torch.allclose(got, want, atol=1e-6):
                shown = f" (d_ap = {_fmt(d_ap)}, d_an = {_fmt(d_an)}, margin = {margin})" if d_ap.numel() == 1 else ""
                return Miss(f"for {what}{shown} it returned {_fmt(got)}.", hint)
            return None

        return what, run, hint

    def gradient(f):
        d_ap = torch.tensor([0.9, 0.2], dtype=torch.float64, requires_grad=True)
        d_an = torch.tensor([0.5, 0.9], dtype=torch.float64, requires_grad=True)
        out = f(d_ap, d_an, 0.3)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient (it is not a tensor computed from d_ap and d_an).",
                        "stay with torch operations (no float(), .item() or Python max) so training can "
                        "backpropagate through the loss.")
        out.sum().backward()
        if d_ap.grad is None or not torch.allclose(d_ap.grad, torch.tensor([1.0, 0.0], dtype=torch.float64)):
            return Miss(f"its gradient with respect to d_ap is {_fmt(d_ap.grad)} for one hard and one easy triplet.",
                        "an easy triplet should pass no gradient at all; an active one a slope of +1 to d_ap.")
        return None

    g = torch.Generator().manual_seed(1)
    many_ap, many_an = torch.rand(64, generator=g) * 2, torch.rand(64, generator=g) * 2
    return run_checks("check_triplet_loss", fn, [
        case(0.8, 0.5, 0.2, "a hard triplet",
             "the loss grows when the positive is far (large d_ap) and the negative is near (small d_an)."),
        case(0.5, 0.6, 0.3, "a semi-hard triplet",
             "the negative is farther than the positive, but by less than the margin: the loss is still positive."),
        case(0.2, 1.0, 0.3, "an easy triplet",
             "once the negative is farther than the positive by at least the margin, the loss is exactly 0, "
             "never negative: clip at zero."),
        case(0.7, 0.7, 0.0, "a tie with margin 0", "with d_ap == d_an and no margin there is nothing to correct."),
        case(many_ap, many_an, 0.25, "64 random triplets at once",
             "it works on single numbers but not elementwise on tensors: use torch operations that act on every "
             "element (Python's max() compares whole objects)."),
        ("the gradient", gradient),
    ], "That hinge is the building block of all four batch losses.")


_CATEGORIES = ("easy", "semi-hard", "hard")


def _category(d_ap: float, d_an: float, margin: float) -> str:
    if d_an <= d_ap:
        return "hard"
    return "semi-hard" if (d_ap - d_an) + margin > 0 else "easy"


def check_triplet_category(fn: Callable[[float, float, float], str]) -> bool:
    """01: ``fn(d_ap, d_an, margin)`` names the triplet's category: ``"easy"``, ``"semi-hard"`` or ``"hard"``.

    Spellings like ``"semi_hard"`` or ``"Semi hard"`` are accepted. Ties: ``d_an == d_ap`` is hard (this series'
    convention); ``d_an == d_ap + margin`` is easy (its loss is exactly 0).
    """
    hints = {
        "hard": "hard means the negative is no farther than the positive: d_an <= d_ap (a tie counts as hard).",
        "semi-hard": "semi-hard means farther than the positive, but inside the margin: d_ap < d_an < d_ap + margin.",
        "easy": "easy means the loss is already 0: d_an >= d_ap + margin.",
    }

    def case(d_ap, d_an, margin, what) -> tuple[str, Case]:
        def run(f):
            got = f(d_ap, d_an, margin)
            name = str(got).strip().lower().replace("_", "-").replace(" ", "-")
            name = "semi-hard" if name == "semihard" else name
            want = _category(d_ap, d_an, margin)
            if name not in _CATEGORIES:
                return Miss(f"for {what} it returned {got!r}.", "return one of 'easy', 'semi-hard', 'hard'.")
            if name != want:
                return Miss(f"for {what} (d_ap = {d_ap}, d_an = {d_an}, margin = {margin}) it returned {got!r}.",
                            hints[want])
            return None

        return what, run

    # Exactly representable numbers, so the boundary cases are exact in floating point.
    return run_checks("check_triplet_category", fn, [
        case(0.75, 0.5, 0.25, "a negative nearer than the positive"),
        case(0.5, 0.625, 0.25, "a negative just beyond the positive"),
        case(0.25, 1.0, 0.25, "a far negative"),
        case(0.5, 0.5, 0.25, "a tie, d_an == d_ap"),
        case(0.5, 0.75, 0.25, "a negative exactly at d_ap + margin"),
        case(0.5, 0.625, 0.0, "margin 0 and a farther negative"),
        case(1.5, 1.75, 0.5, "a semi-hard triplet at a larger scale"),
    ], "Every mining strategy is a rule about which of these categories to use.")


def check_hardest_pair(fn: Callable[[Tensor, Tensor, int], tuple[int, int]]) -> bool:
    """01: ``fn(dist_row, labels, anchor)`` returns BatchHard's ``(positive, negative)`` indices for one anchor.

    ``dist_row`` (B,) holds the anchor's distances to every example (0 at the anchor itself). Where two candidates
    are equally far, either index is accepted.
    """

    def case(dist_row: Tensor, labels: Tensor, anchor: int, what: str) -> tuple[str, Case]:
        def run(f):
            got = f(dist_row.clone(), labels.clone(), anchor)
            try:
                p, n = (int(v) for v in got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {got!r}.", "return two indices: (positive, negative).")
            same = labels == labels[anchor]
            if p == anchor:
                return Miss(f"for {what} it picked the anchor itself as its positive.",
                            "a positive is another example with the same label.")
            if not (0 <= p < len(labels)) or not bool(same[p]):
                return Miss(f"for {what} it picked {p} as the positive, which does not share the anchor's label.",
                            "positives share the anchor's label (and are not the anchor).")
            if not (0 <= n < len(labels)) or bool(same[n]):
                return Miss(f"for {what} it picked {n} as the negative, which has the anchor's label.",
                            "negatives are the examples with another label.")
            positives = same.clone()
            positives[anchor] = False
            if dist_row[p] < dist_row[positives].max():
                return Miss(f"for {what} it picked positive {p}, but a farther positive exists.",
                            "BatchHard takes the hardest positive: the *farthest* one.")
            if dist_row[n] > dist_row[~same].min():
                return Miss(f"for {what} it picked negative {n}, but a nearer negative exists.",
                            "BatchHard takes the hardest negative: the *nearest* one.")
            return None

        return what, run

    g = torch.Generator().manual_seed(2)
    cases = []
    for k, (size, n_labels) in enumerate([(6, 2), (12, 3), (30, 5), (9, 9 // 2)]):
        labels = torch.arange(size) % n_labels
        points = torch.randn(size, 4, generator=g)
        anchor = k % size
        cases.append(case(pairwise_distances(points)[anchor], labels, anchor,
                          f"a batch of {size} with {n_labels} labels (anchor {anchor})"))
    return run_checks("check_hardest_pair", fn, cases,
                      "That is exactly the pair BatchHard (and its soft-margin version) uses for each anchor.")


# ----------------------------------------------------------------------------------------------------------------
# 02
# ----------------------------------------------------------------------------------------------------------------


def check_pairwise_distances(fn: Callable[[Tensor], Tensor]) -> bool:
    """02: ``fn(embeddings)`` returns the (B, B) euclidean distances: right values, no NaN for duplicate points,
    and a finite gradient (also on the diagonal, where the distance is 0)."""

    def values(embeddings: Tensor, what: str, hint: str, atol: float = 1e-4) -> tuple[str, Case]:
        def run(f):
            got = f(embeddings.clone())
            if not isinstance(got, Tensor):
                return Miss(f"for {what} it returned a {type(got).__name__}.", "return a torch tensor.")
            b = embeddings.shape[0]
            if tuple(got.shape) != (b, b):
                return Miss(f"for {what} ({b} embeddings) it returned shape {tuple(got.shape)}.",
                            "one distance per pair of rows: shape (B, B).")
            if torch.isnan(got).any():
                return Miss(f"for {what} some distances are NaN.", hint)
            want = pairwise_distances(embeddings.double())
            if not torch.allclose(got.double(), want, atol=atol, rtol=1e-4):
                return Miss(f"for {what} some distances are off (largest error "
                            f"{(got.double() - want).abs().max().item():.3g}).", hint)
            return None

        return what, run, hint

    def gradient(f):
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
        d = f(x)
        if not d.requires_grad:
            return Miss("its result carries no gradient.", "build it from torch operations on the embeddings.")
        d.sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            return Miss("the values are right, but the gradient contains NaN or inf.",
                        "the derivative of sqrt at 0 is infinite, and every diagonal entry is 0: see the "
                        "section on the second numerical trap.")
        return None

    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=g) + 20  # far from the origin: large norms, tiny differences
    near_duplicates = torch.cat([base, base + 1e-3 * torch.randn(6, 8, generator=g)])  # the Gram trick rounds < 0
    return run_checks("check_pairwise_distances", fn, [
        values(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]), "three 2-D points",
               "||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, then a square root."),
        values(torch.randn(16, 32, generator=g), "16 random 32-dimensional embeddings",
               "check the broadcasting: row norms as a column plus row norms as a row."),
        values(near_duplicates, "a batch where every point has a near-duplicate",
               "rounding can make a squared distance slightly negative, and sqrt of a negative number is NaN: "
               "clamp at 0 first.", atol=5e-2),
        ("the gradient", gradient),
    ], "Every loss of the series starts from this matrix.")


def _mask_check(name: str, fn: Callable, reference: Callable[[Tensor], Tensor], hints: dict[str, str],
                success: str) -> bool:
    def case(labels: Tensor, what: str, hint_key: str) -> tuple[str, Case]:
        def run(f):
            want = reference(labels)
            got, miss = _bool_result(f(labels.clone()), tuple(want.shape), what)
            if miss:
                return miss
            if not torch.equal(got, want):
                wrong = torch.nonzero(got != want)[0].tolist()
                index = ", ".join(str(i) for i in wrong)
                value = bool(got[tuple(wrong)])
                return Miss(f"for labels {labels.tolist()} your mask[{index}] is {value}.", hints[hint_key])
            return None

        return what, run

    g = torch.Generator().manual_seed(5)
    return run_checks(name, fn, [
        case(torch.tensor([0, 0, 1]), "three examples, two labels", "small"),
        case(torch.tensor([2, 1, 2, 0, 1, 2]), "six examples in mixed order", "order"),
        case(torch.tensor([0, 1, 2, 3]), "all labels different", "singletons"),
        case(torch.tensor([1, 1, 1, 1]), "a single label", "one_label"),
        case(torch.randint(0, 4, (17,), generator=g), "17 random labels", "order"),
    ], success)


def check_positive_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """02: ``fn(labels)`` returns the (B, B) bool mask of anchor-positive pairs: same label, a != p."""
    hints = {
        "small": "mask[a, p] is True when a and p share a label and are different examples; "
                 "an example is never its own positive.",
        "order": "compare labels, not positions: examples of one label need not be next to each other.",
        "singletons": "an example whose label nobody else has has no positive at all.",
        "one_label": "with one label every pair of *different* examples is a positive pair.",
    }
    return _mask_check("check_positive_mask", fn, anchor_positive_mask, hints,
                       "This is the mask BatchAll and BatchHard use to find positives.")


def check_negative_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """02: ``fn(labels)`` returns the (B, B) bool mask of anchor-negative pairs: different labels."""
    hints = {
        "small": "mask[a, n] is True exactly when the labels of a and n differ.",
        "order": "compare labels, not positions: examples of one label need not be next to each other.",
        "singletons": "with all labels different, every pair of different examples is a negative pair.",
        "one_label": "with a single label there is no negative anywhere.",
    }
    return _mask_check("check_negative_mask", fn, anchor_negative_mask, hints,
                       "No need to exclude the diagonal: an example always shares its own label.")


def check_triplet_mask(fn: Callable[[Tensor], Tensor]) -> bool:
    """02: ``fn(labels)`` returns the (B, B, B) bool mask of valid triplets (a, p, n)."""
    hints = {
        "small": "mask[a, p, n] needs three things: a != p, labels[a] == labels[p], labels[n] != labels[a].",
        "order": "combine a (B, B, 1) positive mask with a (B, 1, B) negative mask by broadcasting.",
        "singletons": "with all labels different no anchor has a positive: no valid triplet.",
        "one_label": "with a single label there is no negative: no valid triplet.",
    }
    return _mask_check("check_triplet_mask", fn, triplet_mask, hints,
                       "Beware its size: B^3 booleans, 1 GB at B = 1024.")


def check_count_valid_triplets(fn: Callable[[Tensor], int]) -> bool:
    """02: ``fn(labels)`` returns the number of valid triplets of a batch (an int, or a 0-dim tensor)."""
    hint = ("for a label with n_c examples: n_c choices of anchor, n_c - 1 of positive, and B - n_c of negative; "
            "add this up over the labels.")

    def case(labels: Tensor, what: str) -> tuple[str, Case]:
        def run(f):
            got = f(labels.clone())
            try:
                value = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {_fmt(got)}.", "return one whole number.")
            if value != float(_tensor(got)):
                return Miss(f"for {what} it returned {_fmt(got)}, which is not a whole number.", hint)
            if value != int(triplet_mask(labels).sum()):
                return Miss(f"for labels {labels.tolist()} it returned {value}.", hint)
            return None

        return what, run

    g = torch.Generator().manual_seed(6)
    return run_checks("check_count_valid_triplets", fn, [
        case(torch.tensor([0, 0, 1, 1]), "two labels with two examples each"),
        case(torch.tensor([0, 0, 0, 1]), "an unbalanced batch"),
        case(torch.tensor([0, 1, 2, 3]), "all labels different"),
        case(torch.tensor([5, 5, 5]), "a single label"),
        case(torch.randint(0, 6, (40,), generator=g), "40 random labels"),
    ], "BatchAll averages over (the active part of) exactly these triplets.")

