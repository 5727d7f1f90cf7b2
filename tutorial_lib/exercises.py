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



# ----------------------------------------------------------------------------------------------------------------
# 05 and 06 (appended with notebooks 05_batch_semi_hard and 06_batch_hard_soft_margin)
#
#     05  check_semi_hard_negative(fn)     fn(dist_row, labels, anchor, positive) -> negative index
#         check_semi_hard_loss(fn)         fn(dist, labels, margin) -> 0-dim tensor
#     06  check_soft_margin(fn)            fn(d_ap, d_an) -> tensor, elementwise softplus(d_ap - d_an)
#         check_batch_hard_soft_margin(fn) fn(dist, labels) -> 0-dim tensor
#
# The oracles are the loops of tutorial_lib.reference (imported inside the checks).
# ----------------------------------------------------------------------------------------------------------------


def _line_distances(coordinates: Sequence[float]) -> Tensor:
    """(B, B) distances between points on a line: exact in floating point for dyadic coordinates."""
    x = torch.tensor(coordinates, dtype=torch.float64)
    return (x.reshape(-1, 1) - x.reshape(1, -1)).abs()


def _scalar_result(got: Any, what: str, one: str = "one number (a tensor)",
                   reduce: str = "average the per-pair (or per-anchor)") -> tuple[Tensor | None, Miss | None]:
    """The learner's batch loss as a 0-dim float64 tensor, or why it cannot be one (the hints name ``one`` and
    ``reduce``: how each notebook words "one number" and "combine the parts")."""
    try:
        value = _tensor(got)
    except (TypeError, ValueError, RuntimeError):
        return None, Miss(f"for {what} it returned {got!r}.", f"return the loss of the batch: {one}.")
    if value.numel() != 1:
        return None, Miss(f"for {what} it returned {value.numel()} numbers (shape {tuple(value.shape)}).",
                          f"the loss of a batch is one number: {reduce} losses.")
    return value.reshape(()), None


def check_semi_hard_negative(fn: Callable[[Tensor, Tensor, int, int], int]) -> bool:
    """05: ``fn(dist_row, labels, anchor, positive)`` returns the index of BatchSemiHard's negative for (a, p).

    ``dist_row`` (B,) holds the anchor's distances to every example (0 at the anchor itself). The rule: the
    nearest negative strictly farther than the positive; if there is none, the farthest negative. Where several
    negatives are equally far, any of them is accepted.
    """
    from .reference import semi_hard_negative

    hints = {
        "beyond": "the semi-hard negative is farther from the anchor than the positive; among those, take the "
                  "nearest one.",
        "nearest": "of the negatives farther than the positive, take the *nearest* (the hardest that is not hard).",
        "tie": "'farther' is strict: a negative at exactly the positive's distance is hard, not semi-hard.",
        "fallback": "when no negative is farther than the positive, the rule falls back to the *farthest* negative.",
        "negatives": "candidates are the negatives only: examples with another label than the anchor.",
        "random": "compare distances to the anchor (the row), and labels with the anchor's label.",
    }

    def case(dist_row: Tensor, labels: Tensor, anchor: int, positive: int, what: str, hint_key: str):
        def run(f):
            got = f(dist_row.clone(), labels.clone(), anchor, positive)
            if isinstance(got, float) or (isinstance(got, Tensor) and got.is_floating_point()):
                return Miss(f"for {what} it returned {_fmt(got)}, a float.",
                            "return the index (an integer position in the batch) of the negative, not its distance.")
            try:
                n = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {got!r}.", "return one index: the position of the negative.")
            want, _ = semi_hard_negative(dist_row.reshape(1, -1).expand(len(labels), -1), labels.tolist(), anchor,
                                         positive)
            if not 0 <= n < len(labels):
                return Miss(f"for {what} it returned {n}, which is not a position in the batch.", hints[hint_key])
            if bool(labels[n] == labels[anchor]):
                return Miss(f"for {what} it returned {n}, which has the anchor's label.", hints["negatives"])
            if float(dist_row[n]) != float(dist_row[want]):
                return Miss(f"for {what} it picked negative {n} (at distance {float(dist_row[n]):.4g}; the "
                            f"positive is at {float(dist_row[positive]):.4g}).", hints[hint_key])
            return None

        return what, run, hints[hint_key]

    g = torch.Generator().manual_seed(7)
    cases = [
        case(torch.tensor([0.0, 0.5, 0.25, 0.75, 1.0]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "a batch with negatives on both sides of the positive", "beyond"),
        case(torch.tensor([0.0, 0.5, 1.5, 0.25, 0.75]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "two negatives beyond the positive", "nearest"),
        case(torch.tensor([0.0, 0.5, 0.5, 0.625, 1.0]), torch.tensor([0, 0, 1, 1, 1]), 0, 1,
             "a negative at exactly the positive's distance", "tie"),
        case(torch.tensor([0.0, 1.5, 0.25, 1.0, 0.5]), torch.tensor([0, 0, 1, 1, 2]), 0, 1,
             "a positive farther than every negative", "fallback"),
        case(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]), torch.tensor([0, 0, 0, 1, 1]), 0, 1,
             "another positive just beyond the positive", "negatives"),
    ]
    for size, n_labels, anchor, positive in [(12, 3, 1, 4), (20, 4, 6, 10), (30, 5, 3, 13)]:
        labels = torch.arange(size) % n_labels
        row = pairwise_distances(torch.randn(size, 6, generator=g))[anchor]
        cases.append(case(row, labels, anchor, positive,
                          f"a random batch of {size} with {n_labels} labels (anchor {anchor}, positive {positive})",
                          "random"))
    return run_checks("check_semi_hard_negative", fn, cases,
                      "That is FaceNet's rule, and TensorFlow's and sentence-transformers': one negative per pair.")


def _semi_hard_variant(dist: Tensor, labels: Tensor, margin: float, strict: bool = True, fallback: bool = True,
                      per: str = "pair") -> float:
    """BatchSemiHard's loss from a distance matrix, or one of the usual slips (to name the learner's): a non-strict
    "farther", no fallback (such pairs skipped), or the mean over anchors / over active pairs."""
    lab = labels.tolist()
    terms = []
    for a in range(len(lab)):
        negatives = [n for n in range(len(lab)) if lab[n] != lab[a]]
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a] or not negatives:
                continue
            d_ap = float(dist[a, p])
            beyond = [float(dist[a, n]) for n in negatives if float(dist[a, n]) > d_ap or
                      (not strict and float(dist[a, n]) == d_ap)]
            if beyond:
                d_an = min(beyond)
            elif fallback:
                d_an = max(float(dist[a, n]) for n in negatives)
            else:
                continue
            terms.append(max(0.0, (d_ap - d_an) + margin))
    count = {"pair": len(terms), "anchor": len(lab), "active": sum(t > 0 for t in terms)}[per]
    return sum(terms) / max(count, 1)


def _diagnose(value: float, want: float, slips: dict[str, float], default: str) -> str:
    """The hint key of the first slip whose value the learner's answer matches, else ``default``."""
    for key, slip in slips.items():
        if not math.isclose(slip, want, rel_tol=1e-5, abs_tol=1e-6) and math.isclose(value, slip, rel_tol=1e-5,
                                                                                      abs_tol=1e-6):
            return key
    return default


def check_semi_hard_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """05: ``fn(dist, labels, margin)`` returns BatchSemiHard's loss of a batch from its (B, B) distance matrix.

    Mean over every anchor-positive pair (a, p) of ``max(0, d(a,p) - d(a,n*) + margin)``, n* the pair's semi-hard
    negative (with the fallback). The batches have at least two labels.
    """
    from .reference import batch_semi_hard_from_distances

    hints = {
        "plain": "for every anchor-positive pair: its semi-hard negative, the hinge with the margin, then the mean.",
        "fallback": "a pair whose positive is farther than every negative still counts: it uses the farthest "
                    "negative (the fallback), and its loss is at least the margin.",
        "singleton": "average over anchor-positive pairs, not over anchors: an anchor whose label appears once has "
                     "no pair and adds nothing, neither to the sum nor to the count.",
        "easy": "divide by the number of *all* anchor-positive pairs, including those whose loss is 0 (BatchAll "
                "divides by the active ones; this loss does not).",
        "tie": "a negative at exactly the positive's distance is not 'farther': it cannot be the semi-hard negative.",
        "random": "check each step on a small batch by hand: pairs, their negative, the hinge, the mean.",
    }

    def case(dist: Tensor, labels: Tensor, margin: float, what: str, hint_key: str):
        def run(f):
            value, miss = _scalar_result(f(dist.clone(), labels.clone(), margin), what)
            if miss:
                return miss
            want = float(batch_semi_hard_from_distances(dist, labels, margin))
            if math.isclose(float(value), want, rel_tol=1e-5, abs_tol=1e-6):
                return None
            slips = {"tie": _semi_hard_variant(dist, labels, margin, strict=False),
                     "fallback": _semi_hard_variant(dist, labels, margin, fallback=False),
                     "singleton": _semi_hard_variant(dist, labels, margin, per="anchor"),
                     "easy": _semi_hard_variant(dist, labels, margin, per="active")}
            key = _diagnose(float(value), want, slips, hint_key)
            return Miss(f"for {what} (margin {margin}) it returned {float(value):.4f}.", hints[key])

        return what, run, hints[hint_key]

    def gradient(f):
        points = torch.randn(10, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        labels = torch.arange(10) % 3
        dist = pairwise_distances(points).requires_grad_(True)
        out = f(dist, labels, 0.5)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient (it is not a tensor computed from dist).",
                        "stay with torch operations on dist (no float() or .item() on the way) so training can "
                        "backpropagate through the loss.")
        out.backward()
        mine = dist.grad.clone()
        dist.grad = None
        batch_semi_hard_from_distances(dist, labels, 0.5).backward()
        if not torch.allclose(mine, dist.grad, atol=1e-8):
            return Miss("its value is right but its gradient with respect to dist is not.",
                        "each active pair should pass +1/(number of pairs) to d(a, p) and the opposite to d(a, n*); "
                        "nothing else should depend on dist.")
        return None

    g = torch.Generator().manual_seed(8)
    random_points = torch.randn(16, 5, generator=g, dtype=torch.float64)
    return run_checks("check_semi_hard_loss", fn, [
        case(_line_distances([0.0, 0.25, 1.0, 1.5, 0.625, 2.25]), torch.tensor([0, 0, 1, 1, 2, 2]), 0.5,
             "six points on a line", "plain"),
        case(_line_distances([0.0, 3.0, 1.0, 1.5]), torch.tensor([0, 0, 1, 1]), 0.25,
             "a pair whose positive is farther than every negative", "fallback"),
        case(_line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]), 0.75,
             "a batch with a label that appears once", "singleton"),
        case(_line_distances([0.0, 0.25, 4.0, 4.5, 0.625]), torch.tensor([0, 0, 1, 1, 2]), 0.5,
             "a batch where some pairs are already easy", "easy"),
        case(_line_distances([0.0, 1.0, -1.0, 2.0]), torch.tensor([0, 0, 1, 1]), 0.5,
             "a negative at exactly the positive's distance", "tie"),
        case(pairwise_distances(random_points), torch.arange(16) % 4, 0.3, "a random batch of 16 with 4 labels",
             "random"),
        ("the gradient", gradient),
    ], "That is the loss sentence-transformers' BatchSemiHardTripletLoss computes from its distance matrix.")


def check_soft_margin(fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """06: ``fn(d_ap, d_an)`` returns ``softplus(d_ap - d_an) = log(1 + exp(d_ap - d_an))`` elementwise, as a tensor
    that gradients flow through, without overflow for large gaps (float32 inputs included)."""
    hints = {
        "tie": "softplus is never exactly 0: at d_ap == d_an it is log(1 + e^0) = ln 2 (about 0.693).",
        "far": "the argument is x = d_ap - d_an: the loss is small when the negative is far (x very negative).",
        "many": "it works on single numbers but not elementwise on tensors: use torch operations that act on every "
                "element.",
        "overflow": "e^x overflows float32 beyond x = 88 or so, and log(inf) is inf: for large x, log(1 + e^x) is x "
                    "plus a tiny correction. Find a form that never exponentiates a large positive number (or "
                    "torch's built-in for this very function).",
    }

    def case(d_ap, d_an, what: str, hint_key: str, dtype=torch.float64):
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
                return Miss(f"for {what} it returned {_fmt(got)}.", hints[hint_key])
            if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
                shown = f" (d_ap = {_fmt(d_ap)}, d_an = {_fmt(d_an)})" if d_ap.numel() == 1 else ""
                return Miss(f"for {what}{shown} it returned {_fmt(got)}.", hints[hint_key])
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
        want = torch.sigmoid(torch.tensor([-0.5, 0.75, 100.0]))
        if d_ap.grad is None or not torch.isfinite(d_ap.grad).all():
            return Miss(f"its gradient with respect to d_ap is {_fmt(d_ap.grad)}.", hints["overflow"])
        if not torch.allclose(d_ap.grad.double(), want.double(), atol=1e-5):
            return Miss(f"its gradient with respect to d_ap is {_fmt(d_ap.grad)}.",
                        "the slope of log(1 + e^x) is e^x / (1 + e^x): between 0 and 1, never exactly 0.")
        return None

    g = torch.Generator().manual_seed(10)
    many_ap, many_an = torch.rand(64, generator=g, dtype=torch.float64) * 2, torch.rand(64, generator=g,
                                                                                        dtype=torch.float64) * 2
    return run_checks("check_soft_margin", fn, [
        case(0.75, 0.75, "a negative as far as the positive", "tie"),
        case(0.25, 1.75, "a far negative", "far"),
        case(1.5, 0.5, "a near negative", "far"),
        case(many_ap, many_an, "64 random pairs at once", "many"),
        case([100.0, 0.0], [0.0, 100.0], "float32 distances 100 apart (unnormalized embeddings)", "overflow",
             dtype=torch.float32),
        ("the gradient", gradient),
    ], "No margin to choose, and a gradient for every anchor, however easy.")


def _soft_margin_variant(dist: Tensor, labels: Tensor, positive: str = "farthest", negative: str = "nearest",
                         hinge: bool = False, singletons: bool = True, per: str = "anchor") -> float:
    """BatchHardSoftMargin's loss from a distance matrix, or one of the usual slips (to name the learner's)."""
    lab = labels.tolist()
    link = (lambda x: max(0.0, x)) if hinge else (lambda x: math.log1p(math.exp(-abs(x))) + max(0.0, x))
    terms = []
    for a in range(len(lab)):
        d_pos = [float(dist[a, p]) for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        d_neg = [float(dist[a, n]) for n in range(len(lab)) if lab[n] != lab[a]]
        if per == "triplet":
            terms += [link(dp - dn) for dp in d_pos for dn in d_neg]
            continue
        if not d_pos and not singletons:
            continue
        d_ap = (max(d_pos) if positive == "farthest" else min(d_pos)) if d_pos else 0.0
        d_an = min(d_neg) if negative == "nearest" else max(d_neg)
        terms.append(link(d_ap - d_an))
    return sum(terms) / max(len(terms), 1)


def check_batch_hard_soft_margin(fn: Callable[[Tensor, Tensor], Tensor]) -> bool:
    """06: ``fn(dist, labels)`` returns BatchHardSoftMargin's loss of a batch from its (B, B) distance matrix.

    Mean over all anchors of ``softplus(d(a, farthest positive) - d(a, nearest negative))``; an anchor without a
    positive uses 0 as its positive distance and stays in the mean (sentence-transformers' convention). The batches
    have at least two labels.
    """
    from .reference import batch_hard_soft_margin_from_distances

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

    def case(dist: Tensor, labels: Tensor, what: str, hint_key: str):
        def run(f):
            value, miss = _scalar_result(f(dist.clone(), labels.clone()), what)
            if miss:
                return miss
            want = float(batch_hard_soft_margin_from_distances(dist, labels))
            if math.isclose(float(value), want, rel_tol=1e-5, abs_tol=1e-6):
                return None
            slips = {"positive": _soft_margin_variant(dist, labels, positive="nearest"),
                     "negative": _soft_margin_variant(dist, labels, negative="farthest"),
                     "softplus": _soft_margin_variant(dist, labels, hinge=True),
                     "singleton": _soft_margin_variant(dist, labels, singletons=False),
                     "triplets": _soft_margin_variant(dist, labels, per="triplet")}
            key = _diagnose(float(value), want, slips, hint_key)
            return Miss(f"for {what} it returned {float(value):.4f}.", hints[key])

        return what, run, hints[hint_key]

    def gradient(f):
        points = torch.randn(10, 4, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
        labels = torch.arange(10) % 3
        dist = pairwise_distances(points).requires_grad_(True)
        out = f(dist, labels)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient (it is not a tensor computed from dist).",
                        "stay with torch operations on dist (no float() or .item() on the way).")
        out.backward()
        mine = dist.grad.clone()
        dist.grad = None
        batch_hard_soft_margin_from_distances(dist, labels).backward()
        if not torch.allclose(mine, dist.grad, atol=1e-8):
            return Miss("its value is right but its gradient with respect to dist is not.",
                        "only two entries per anchor may depend on dist: its hardest positive and negative.")
        return None

    g = torch.Generator().manual_seed(12)
    random_points = torch.randn(15, 5, generator=g, dtype=torch.float64)
    return run_checks("check_batch_hard_soft_margin", fn, [
        case(_line_distances([0.0, 0.5, 1.0, 1.75]), torch.tensor([0, 0, 1, 1]), "four points on a line", "plain"),
        case(_line_distances([0.0, 0.25, 2.0, 0.5, 1.0, 3.0]), torch.tensor([0, 0, 0, 1, 1, 1]),
             "a batch with near and far positives", "positive"),
        case(_line_distances([0.0, 0.25, 0.75, 2.5, 1.0, 3.0]), torch.tensor([0, 0, 1, 1, 2, 2]),
             "a batch with near and far negatives", "negative"),
        case(_line_distances([0.0, 0.25, 3.0, 3.25]), torch.tensor([0, 0, 1, 1]),
             "a batch where every anchor is already satisfied", "softplus"),
        case(_line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]),
             "a batch with a label that appears once", "singleton"),
        case(pairwise_distances(random_points), torch.arange(15) % 3, "a random batch of 15 with 3 labels", "random"),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchHardSoftMarginTripletLoss, computed from its distance matrix.")


__all__ += ["check_batch_hard_soft_margin", "check_semi_hard_loss", "check_semi_hard_negative", "check_soft_margin"]


# ----------------------------------------------------------------------------------------------------------------
# 08 (appended with notebook 08_scaling)
#
#     08  check_st_batch_all_entries(fn)   fn(batch_size, per_label) -> int, entries of ST BatchAll's largest tensor
#         check_gather_local_grad(fn)      fn(slices, rank) -> (B, D) tensor; only slices[rank] carries gradient
#         check_process_gradients(fn)      fn(embeddings, labels, world_size, loss_fn) -> list of W (B, D) tensors
#
# The oracles: the formula B * (K - 1) * B, torch.cat, and autograd on the whole batch (tutorial_lib.losses).
# ----------------------------------------------------------------------------------------------------------------


def check_st_batch_all_entries(fn: Callable[[int, int], int]) -> bool:
    """08: ``fn(batch_size, per_label)`` returns the number of entries of sentence-transformers' BatchAll tensor.

    sentence-transformers 6.2 compares every anchor-positive pair with every position of the batch: one row per
    positive pair, B columns. The batch holds ``batch_size // per_label`` labels of ``per_label`` examples each.
    """
    generic = ("one row per anchor-positive pair (B anchors, each with K - 1 positives), and in each row one entry "
               "per position of the batch.")

    def case(batch_size: int, per_label: int, what: str) -> tuple[str, Case]:
        def run(f):
            got = f(batch_size, per_label)
            try:
                value = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {_fmt(got)}.", "return one whole number.")
            if value != float(_tensor(got)):
                return Miss(f"for {what} it returned {_fmt(got)}, which is not a whole number.", generic)
            b, k = batch_size, per_label
            if value == b * (k - 1) * b:
                return None
            known = {
                b**3: "that is the full cube of notebook 02; sentence-transformers keeps only the rows of valid "
                      "anchor-positive pairs.",
                b * k * b: "an anchor is not its own positive: K - 1 positives per anchor, not K.",
                b * (k - 1): "that counts the rows only; each row is compared with every position of the batch.",
                b * (k - 1) * (b - k): "that is the number of valid triplets. The tensor also holds the K columns of "
                                       "the anchor's own label (masked out afterwards, but allocated).",
            }
            hint = known.get(value, generic) if k > 1 else "with K = 1 no anchor has a positive: no row at all."
            return Miss(f"for {what} (B = {batch_size}, K = {per_label}) it returned {value}.", hint)

        return what, run

    return run_checks("check_st_batch_all_entries", fn, [
        case(8, 2, "a batch of 4 labels with 2 examples each"),
        case(256, 4, "a P x K batch of 256 with K = 4"),
        case(1024, 256, "4 labels of 256 examples each"),
        case(6, 6, "a batch with a single label"),
        case(10, 1, "every label once"),
    ], "With a few large labels (K = B / 4) that is about B^3 / 4 entries: the cube is back.")


def check_gather_local_grad(fn: Callable[[list, int], Tensor]) -> bool:
    """08: ``fn(slices, rank)`` concatenates every process's (b_r, D) slice in rank order; only ``slices[rank]``
    carries gradient (what :func:`tutorial_lib.distributed.gather_across_processes` returns, simulated in one process).
    """

    def case(sizes: Sequence[int], rank: int, what: str, seed: int) -> tuple[str, Case]:
        def run(f):
            g = torch.Generator().manual_seed(seed)
            values = [torch.randn(size, 4, generator=g) for size in sizes]
            slices = [v.clone().requires_grad_(True) for v in values]
            got = f(list(slices), rank)
            want = torch.cat(values)
            if not isinstance(got, Tensor):
                return Miss(f"for {what} it returned a {type(got).__name__}.", "return one torch tensor.")
            if tuple(got.shape) != tuple(want.shape):
                return Miss(f"for {what} it returned shape {tuple(got.shape)}; expected {tuple(want.shape)}.",
                            "every process's rows, one after the other: the global batch.")
            if not torch.allclose(got.detach(), want):
                return Miss(f"for {what}, the values are not the slices in rank order.",
                            "concatenate the slices in rank order (rank 0 first), whatever the local rank is.")
            if not got.requires_grad:
                return Miss(f"for {what}, the result carries no gradient at all.",
                            "the local slice must keep its autograd graph: only the others arrive as constants.")
            weights = torch.randn(want.shape, generator=g)
            (got * weights).sum().backward()
            start = sum(sizes[:rank])
            local = slices[rank].grad
            if local is None or not torch.allclose(local, weights[start:start + sizes[rank]]):
                return Miss(f"for {what}, the local slice (rank {rank}) does not receive its gradient unchanged.",
                            "use the local slice itself (not a copy or a detached version) at its own position.")
            for other, part in enumerate(slices):
                if other != rank and part.grad is not None and bool(part.grad.abs().sum() > 0):
                    return Miss(f"for {what}, the slice of rank {other} received a gradient.",
                                "the other processes' embeddings arrive through all_gather as plain numbers: "
                                "detach them, so that no gradient flows to them.")
            return None

        return what, run

    return run_checks("check_gather_local_grad", fn, [
        case([3, 3], 0, "2 processes, rank 0", seed=10),
        case([3, 3], 1, "2 processes, rank 1", seed=11),
        case([2, 3, 1], 1, "3 processes with slices of 2, 3 and 1 rows, rank 1", seed=12),
        case([2, 2, 2, 2], 3, "4 processes, rank 3", seed=13),
    ], "Every process now mines the global batch, and its backward pass reaches only its own encoder pass.")


def check_process_gradients(fn: Callable[[Tensor, Tensor, int, Callable], list]) -> bool:
    """08: ``fn(embeddings, labels, world_size, loss_fn)`` simulates ``world_size`` processes in one and returns the
    gradient each process computes with respect to the whole (B, D) batch, before DDP averages them.

    Process ``r`` holds the rows ``r * B / W`` to ``(r + 1) * B / W``. Each gathers the batch (only its own slice
    carrying gradient), computes the loss it would train with, and back-propagates. Right when each gradient is zero
    outside its own slice and their **average** (what DDP's all-reduce leaves) is the single-process gradient of
    ``loss_fn(embeddings, labels)``.
    """
    from .losses import batch_all_triplet_loss, batch_hard_triplet_loss

    def batch_hard(e, y):
        return batch_hard_triplet_loss(e, y, 0.5)

    def batch_all(e, y):
        return batch_all_triplet_loss(e, y, 0.5)

    def case(batch_size: int, world: int, loss_fn: Callable, what: str, seed: int) -> tuple[str, Case]:
        def run(f):
            g = torch.Generator().manual_seed(seed)
            embeddings = torch.nn.functional.normalize(torch.randn(batch_size, 6, generator=g), dim=1)
            labels = torch.randperm(batch_size, generator=g) % 3
            leaf = embeddings.clone().requires_grad_(True)
            loss_fn(leaf, labels).backward()
            want = leaf.grad.double()
            got = f(embeddings.clone(), labels.clone(), world, loss_fn)
            if isinstance(got, Tensor) or not isinstance(got, (list, tuple)):
                return Miss(f"for {what} it returned a {type(got).__name__}.",
                            "return a list with one (B, D) gradient per process, before any averaging.")
            if len(got) != world:
                return Miss(f"for {what} it returned {len(got)} gradients.", "one gradient per process (rank).")
            grads = []
            for rank, grad in enumerate(got):
                grad = _tensor(grad)
                if tuple(grad.shape) != tuple(embeddings.shape):
                    return Miss(f"for {what}, the gradient of rank {rank} has shape {tuple(grad.shape)}.",
                                "each process's gradient with respect to the whole batch: shape (B, D), zero outside "
                                "its own rows.")
                grads.append(grad)
            rows = batch_size // world
            for rank, grad in enumerate(grads):
                outside = torch.ones(batch_size, dtype=torch.bool)
                outside[rank * rows:(rank + 1) * rows] = False
                if bool(grad[outside].abs().sum() > 1e-12):
                    return Miss(f"for {what}, the gradient of rank {rank} is not zero outside its own rows.",
                                "a process back-propagates only into its own slice: the gathered slices of the other "
                                "processes are constants there.")
            mean = torch.stack(grads).mean(dim=0)
            scale = want.norm().clamp(min=1e-12)
            if bool((mean - want).norm() <= 1e-4 * scale):
                return None
            if bool((mean * world - want).norm() <= 1e-4 * scale):
                return Miss(f"for {what}, the average of the processes' gradients is 1/{world} of the single-process "
                            "gradient.",
                            "each process holds only its own share, and DDP *averages* the shares over the "
                            "processes: which factor on each process's loss turns that average into their sum?")
            return Miss(f"for {what}, the average of the processes' gradients differs from the single-process gradient.",
                        "every process computes the loss of the whole gathered batch (with its labels), "
                        "back-propagates into its own slice only, and returns that gradient.")

        return what, run

    return run_checks("check_process_gradients", fn, [
        case(8, 2, batch_hard, "8 embeddings on 2 processes, BatchHard", seed=20),
        case(12, 3, batch_all, "12 embeddings on 3 processes, BatchAll", seed=21),
        case(16, 4, batch_hard, "16 embeddings on 4 processes, BatchHard", seed=22),
        case(6, 1, batch_all, "a single process", seed=23),
    ], "That is the world-size factor of tutorial_lib.distributed: after DDP's averaging, the gradient of the whole "
       "batch, as if one process had mined it.")


__all__ += ["check_gather_local_grad", "check_process_gradients", "check_st_batch_all_entries"]


# ----------------------------------------------------------------------------------------------------------------
# 05, continued (appended with notebook 05_batch_semi_hard)
#
#     05  check_fallback_rate(fn)          fn(dist, labels) -> share of anchor-positive pairs that use the fallback
# ----------------------------------------------------------------------------------------------------------------


def _fallback_rate(dist: Tensor, labels: Tensor, strict: bool = True, per: str = "pair") -> float:
    """Share of anchor-positive pairs with no negative strictly farther than the positive, or one of the usual
    slips: a non-strict "farther", the share of anchors with a fallback pair, or the count instead of the share."""
    lab = labels.tolist()
    flags: dict[int, list[bool]] = {}
    for a in range(len(lab)):
        d_neg = [float(dist[a, n]) for n in range(len(lab)) if lab[n] != lab[a]]
        for p in range(len(lab)):
            if p != a and lab[p] == lab[a] and d_neg:
                d_ap = float(dist[a, p])
                beyond = [d for d in d_neg if d > d_ap or (not strict and d == d_ap)]
                flags.setdefault(a, []).append(not beyond)
    pairs = [f for row in flags.values() for f in row]
    if per == "count":
        return float(sum(pairs))
    if per == "anchor":
        return sum(any(row) for row in flags.values()) / max(len(flags), 1)
    return sum(pairs) / max(len(pairs), 1)


def check_fallback_rate(fn: Callable[[Tensor, Tensor], float]) -> bool:
    """05: ``fn(dist, labels)`` returns the share of anchor-positive pairs for which BatchSemiHard falls back, i.e.
    no negative is strictly farther from the anchor than the positive (a number in [0, 1]; a 0-dim tensor is fine).
    The batches have at least two labels."""
    hints = {
        "plain": "for each anchor-positive pair, ask: is any negative strictly farther from the anchor than the "
                 "positive? The rate is the share of pairs where none is.",
        "tie": "'farther' is strict: a negative at exactly the positive's distance does not prevent the fallback.",
        "anchor": "count anchor-positive pairs, not anchors: an anchor with three positives contributes three pairs.",
        "count": "return a share (between 0 and 1): divide by the number of anchor-positive pairs.",
        "singleton": "an anchor whose label appears once has no positive, hence no pair: it counts neither way.",
        "random": "one yes/no per anchor-positive pair, then the mean over pairs.",
    }

    def case(dist: Tensor, labels: Tensor, what: str, hint_key: str):
        def run(f):
            value, miss = _scalar_result(f(dist.clone(), labels.clone()), what)
            if miss:
                return miss
            want = _fallback_rate(dist, labels)
            if math.isclose(float(value), want, rel_tol=1e-6, abs_tol=1e-9):
                return None
            slips = {"count": _fallback_rate(dist, labels, per="count"),
                     "tie": _fallback_rate(dist, labels, strict=False),
                     "anchor": _fallback_rate(dist, labels, per="anchor")}
            key = _diagnose(float(value), want, slips, hint_key)
            return Miss(f"for {what} it returned {float(value):.4g}.", hints[key])

        return what, run, hints[hint_key]

    g = torch.Generator().manual_seed(13)
    return run_checks("check_fallback_rate", fn, [
        case(_line_distances([0.0, 3.0, 1.0, 1.5]), torch.tensor([0, 0, 1, 1]), "four points on a line", "plain"),
        case(_line_distances([0.0, 1.0, 2.0, -1.0, 1.5]), torch.tensor([0, 0, 0, 1, 1]),
             "an anchor with two positives", "anchor"),
        case(_line_distances([0.0, 1.0, -1.0, 0.25]), torch.tensor([0, 0, 1, 1]),
             "a negative at exactly the positive's distance", "tie"),
        case(_line_distances([0.0, 0.5, 2.0, 2.25, 1.0]), torch.tensor([0, 0, 1, 1, 2]),
             "a batch with a label that appears once", "singleton"),
        case(pairwise_distances(torch.randn(24, 3, generator=g)), torch.arange(24) % 4,
             "a random batch of 24 with 4 labels", "random"),
    ], "That is the semi_hard_fallback_rate that tutorial_lib logs at every training step.")


__all__ += ["check_fallback_rate"]


# ----------------------------------------------------------------------------------------------------------------
# 07 and 09 (appended with notebooks 07_comparison and 09_your_own_data)
#
#     07  check_beyond_noise(fn)          fn(a, b) -> bool: |mean(a) - mean(b)| > 2 * max(std(a), std(b))
#         check_offline_triplets(fn)      fn(labels, seed) -> (T, 3) rows (anchor, positive, negative)
#     09  check_group_by_label_usage(fn)  fn(counts, batch_size) -> examples GROUP_BY_LABEL uses per epoch
#         check_semantic_search(fn)       fn(queries, corpus, k) -> (Q, k) indices, most similar first
#
# Oracles: the noise rule of tutorial_lib.results, tutorial_lib.training.group_by_label_plan, cosine similarity.
# ----------------------------------------------------------------------------------------------------------------


def _as_bool(value: Any) -> bool | None:
    """The learner's yes/no answer as a bool (numpy and 0-dim tensor booleans included), else None."""
    if isinstance(value, Tensor) and value.numel() == 1 and value.dtype == torch.bool:
        return bool(value)
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    return None


def check_beyond_noise(fn: Callable[[Sequence[float], Sequence[float]], bool]) -> bool:
    """07: ``fn(a, b)`` says whether two groups of runs differ beyond seed-to-seed noise.

    ``a`` and ``b`` are lists of one metric's values (one per seed, at least 2 each). The rule of notebook 07:
    ``|mean(a) - mean(b)| > 2 * max(std(a), std(b))`` with sample standard deviations (``ddof=1``).
    """
    import statistics

    def rule(a: Sequence[float], b: Sequence[float]) -> bool:
        return abs(statistics.fmean(a) - statistics.fmean(b)) > 2 * max(statistics.stdev(a), statistics.stdev(b))

    def case(a: list[float], b: list[float], what: str, hint: str) -> tuple[str, Case]:
        def run(f):
            got = f(list(a), list(b))
            answer = _as_bool(got)
            if answer is None:
                return Miss(f"for {what} it returned {got!r}.", "return True or False.")
            if answer != rule(a, b):
                return Miss(f"for {what} (a = {a}, b = {b}) it returned {answer}.", hint)
            return None

        return what, run, hint

    return run_checks("check_beyond_noise", fn, [
        case([0.90, 0.91, 0.92], [0.70, 0.71, 0.72], "two well separated groups",
             "compare the difference of the two means with twice the larger standard deviation."),
        case([0.90, 0.95, 0.85], [0.91, 0.92, 0.90], "a difference smaller than the spread",
             "a small difference between means is noise when the runs of one group spread more than that."),
        case([0.70, 0.71, 0.72], [0.90, 0.91, 0.92], "a group whose mean is lower",
             "the order of a and b must not matter: use the size of the difference (its absolute value)."),
        case([0.90, 0.92, 0.94], [0.955, 0.955, 0.955], "a difference between 2 population and 2 sample "
             "standard deviations", "use the sample standard deviation (ddof=1), as pandas' .std() and "
             "statistics.stdev do; numpy's np.std uses ddof=0 unless told otherwise."),
        case([0.800, 0.801, 0.802], [0.84, 0.90, 0.96], "groups with very different spreads",
             "take the larger of the two standard deviations, whichever group it belongs to."),
    ], "That is the rule behind every 'beyond noise' and 'within noise' of the notebook.")


def check_offline_triplets(fn: Callable[[Sequence[int], int], Any]) -> bool:
    """07: ``fn(labels, seed)`` draws fixed random triplets: (T, 3) rows ``(anchor, positive, negative)``.

    One row per example that can be an anchor (its label has another example, and another label exists), each
    such example exactly once as the anchor; the positive shares its label (and is another example), the negative
    has another label; the same seed gives the same rows, other seeds give other rows.
    """
    import numpy as np

    def rows_of(f, labels: list[int], seed: int) -> tuple[np.ndarray | None, Miss | None]:
        got = f(list(labels), seed)
        try:
            rows = np.asarray(got.detach().cpu() if isinstance(got, Tensor) else got)
        except (TypeError, ValueError):
            return None, Miss(f"it returned {type(got).__name__}, not rows of indices.",
                              "return a (T, 3) array (or list of lists) of integer indices.")
        if rows.size == 0:  # no triplet at all: an empty list is as good as a (0, 3) array
            rows = rows.reshape(0, 3).astype(np.int64)
        if rows.ndim != 2 or rows.shape[1] != 3:
            return None, Miss(f"it returned shape {rows.shape}.", "one row per triplet, three columns: "
                              "anchor, positive, negative (shape (T, 3)).")
        if not np.issubdtype(rows.dtype, np.integer):
            return None, Miss(f"it returned values of dtype {rows.dtype}.", "return indices (integers), not texts "
                              "or distances.")
        return rows, None

    def valid(labels: list[int], what: str) -> tuple[str, Case]:
        def run(f):
            rows, miss = rows_of(f, labels, 0)
            if miss:
                return miss
            lab = np.asarray(labels)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(lab)):
                return Miss(f"for {what} some indices are out of range.", "indices go from 0 to len(labels) - 1.")
            counts = {label: int((lab == label).sum()) for label in set(labels)}
            eligible = sorted(i for i, label in enumerate(labels) if counts[label] >= 2 and len(counts) >= 2)
            a, p, n = rows.T
            if sorted(a.tolist()) != eligible:
                return Miss(f"for {what} it returned {len(rows)} rows whose anchors are not each usable example "
                            "exactly once.", "one triplet per anchor: every example whose label has at least one "
                            "other example (and when another label exists) is an anchor once.")
            if (p == a).any():
                return Miss(f"for {what} an anchor is its own positive.", "the positive is *another* example with "
                            "the anchor's label.")
            if (lab[p] != lab[a]).any():
                return Miss(f"for {what} a positive has another label than its anchor.",
                            "draw the positive among the other examples of the anchor's label.")
            if (lab[n] == lab[a]).any():
                return Miss(f"for {what} a negative has the anchor's label.",
                            "draw the negative among the examples of the other labels.")
            return None

        return what, run

    def seeded(f):
        labels = [i % 4 for i in range(40)]
        first, miss = rows_of(f, labels, 7)
        if miss:
            return miss
        again, _ = rows_of(f, labels, 7)
        other, _ = rows_of(f, labels, 8)
        if again is None or not np.array_equal(first, again):
            return Miss("two calls with the same seed gave different rows.", "create one random generator "
                        "from the seed (numpy.random.default_rng) and make every draw from it.")
        if other is not None and np.array_equal(first, other):
            return Miss("seeds 7 and 8 gave the same rows.", "the positives and negatives should be random draws "
                        "that depend on the seed, not a fixed choice such as the first candidate.")
        return None

    return run_checks("check_offline_triplets", fn, [
        valid([0, 0, 1, 1], "two labels with two examples each"),
        valid([2, 0, 1, 0, 2, 1, 0, 2], "three labels in mixed order"),
        valid([0, 0, 0, 1], "a label with a single example (it cannot be an anchor, only a negative)"),
        valid([5, 5, 5], "a single label (no negative exists)"),
        ("the seed", seeded),
    ], "These rows are fixed before training: as the model improves, most of them turn easy and stop teaching.")


def check_group_by_label_usage(fn: Callable[[Sequence[int], int], int]) -> bool:
    """09: ``fn(counts, batch_size)`` returns how many examples one epoch of ``GROUP_BY_LABEL`` batches uses.

    ``counts`` lists the number of examples of each label. The oracle is
    :func:`tutorial_lib.training.group_by_label_plan` (sentence-transformers 6.2's sampler, ``drop_last=False``).
    """
    from .training import group_by_label_plan

    hints = {
        "balanced": "labels enter the stream two examples at a time; the stream is cut into batches of batch_size.",
        "odd": "a label with an odd count can only give whole pairs: one example waits for the next epoch.",
        "single": "a label with a single example is never sampled: it cannot give a pair.",
        "dominant": "the stream stops when only one label has pairs left: the largest label gives no more pairs "
                    "than the second largest.",
        "remainder": "a last, partial batch is kept when it holds at least 4 examples; a smaller one is dropped.",
    }

    def case(counts: list[int], batch_size: int, what: str, key: str) -> tuple[str, Case]:
        labels = [label for label, n in enumerate(counts) for _ in range(n)]
        want = group_by_label_plan(labels, batch_size).used_per_epoch

        def run(f):
            got = f(list(counts), batch_size)
            try:
                value = int(got)
            except (TypeError, ValueError, RuntimeError):
                return Miss(f"for {what} it returned {got!r}.", "return one whole number of examples.")
            if value != want:
                return Miss(f"for counts {counts} and batch size {batch_size} it returned {value}.", hints[key])
            return None

        return what, run

    return run_checks("check_group_by_label_usage", fn, [
        case([120] * 7, 30, "7 balanced labels", "balanced"),
        case([5, 7, 7, 5], 4, "labels with odd counts", "odd"),
        case([1, 1, 6, 6, 6], 6, "two labels with a single example", "single"),
        case([100, 10, 10], 10, "one label much larger than the others", "dominant"),
        case([4, 4, 4], 10, "a stream that leaves 2 examples over", "remainder"),
        case([4, 4, 4, 4], 12, "a stream that leaves 4 examples over", "remainder"),
    ], "Check this before training on imbalanced data: what the sampler never draws, the model never learns from.")


def check_semantic_search(fn: Callable[[Any, Any, int], Any]) -> bool:
    """09: ``fn(queries, corpus, k)`` returns, for each query, the indices of the ``k`` corpus rows most similar to
    it by cosine similarity, most similar first: (Q, D) and (N, D) arrays in, (Q, k) integer indices out."""
    import numpy as np

    rng = np.random.default_rng(9)

    def want(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
        return np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]

    def case(queries: np.ndarray, corpus: np.ndarray, k: int, what: str, hint: str) -> tuple[str, Case]:
        def run(f):
            got = f(queries.copy(), corpus.copy(), k)
            try:
                top = np.asarray(got.detach().cpu() if isinstance(got, Tensor) else got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {type(got).__name__}.", "return a (Q, k) array of indices.")
            expected = want(queries, corpus, k)
            if top.shape != expected.shape:
                return Miss(f"for {what} ({len(queries)} queries, k = {k}) it returned shape {top.shape}.",
                            "one row per query, k indices per row.")
            if not np.issubdtype(top.dtype, np.integer):
                return Miss(f"for {what} it returned values of dtype {top.dtype}.",
                            "return the positions of the corpus rows (integers), not their similarities.")
            if not np.array_equal(np.sort(top, axis=1), np.sort(expected, axis=1)):
                return Miss(f"for {what} some rows hold other corpus sentences than the {k} most similar.", hint)
            if not np.array_equal(top, expected):
                return Miss(f"for {what} the right sentences come back in the wrong order.",
                            "sort by similarity, the highest first (a distance would sort the other way).")
            return None

        return what, run, hint

    unit = rng.normal(size=(40, 8))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scaled = unit * rng.uniform(0.2, 5.0, size=(40, 1))  # same directions, very different lengths
    return run_checks("check_semantic_search", fn, [
        case(rng.normal(size=(5, 8)), unit, 4, "five random queries, k = 4",
             "keep the k highest similarities of each row, not the lowest."),
        case(unit[:3] + 0.1 * rng.normal(size=(3, 8)), unit, 1, "three queries near corpus rows, k = 1",
             "score every corpus row against every query with the cosine similarity."),
        case(rng.normal(size=(4, 8)), scaled, 3, "a corpus whose vectors have very different lengths",
             "a plain dot product favours long vectors: divide each vector by its length first (cosine)."),
    ], "This is what sentence_transformers.util.semantic_search does, in batches, for large corpora.")


__all__ += ["check_beyond_noise", "check_group_by_label_usage", "check_offline_triplets", "check_semantic_search"]


# ----------------------------------------------------------------------------------------------------------------
# 03 and 04 (appended with notebooks 03_batch_all and 04_batch_hard)
#
#     03  check_batch_all_loss(fn)        fn(dist, labels, margin) -> 0-dim tensor
#         check_active_fraction(fn)       fn(dist, labels, margin) -> float
#     04  check_batch_hard_loss(fn)       fn(dist, labels, margin) -> 0-dim tensor
#         check_first_collapsed_step(fn)  fn(history, ratio) -> step number or None
#
# The oracles are computed here from the masks (small batches: the (B, B, B) cube is fine).
# ----------------------------------------------------------------------------------------------------------------


def _points_distances_0304(size: int, n_labels: int, seed: int, spread: float = 1.0) -> tuple[Tensor, Tensor]:
    """(dist, labels): float64 distances of ``size`` random points in 8-D, labels ``arange(size) % n_labels``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % n_labels
    centres = torch.randn(n_labels, 8, generator=g, dtype=torch.float64) * spread
    points = centres[labels] + torch.randn(size, 8, generator=g, dtype=torch.float64)
    return pairwise_distances(points), labels


def _one_number_0304(got: Any, what: str) -> tuple[Tensor | None, Miss | None]:
    """:func:`_scalar_result` worded for notebooks 03-04 (triplets are reduced, not averaged, there)."""
    return _scalar_result(got, what, one="one number", reduce="reduce the per-triplet (or per-anchor)")


def _batch_all_0304(dist: Tensor, labels: Tensor, margin: float, count: str = "active",
                    self_positive: bool = False) -> float:
    """BatchAll from a distance matrix (the oracle), or a usual slip: dividing by every valid triplet
    (``count="valid"``) or by ``count + 1e-16`` (``"epsilon"``, sentence-transformers' rule); ``self_positive``
    lets p == a."""
    same = labels[:, None] == labels[None, :]
    pos = same if self_positive else same & ~torch.eye(len(labels), dtype=torch.bool)
    valid = pos[:, :, None] & ~same[:, None, :]
    loss = torch.relu((dist[:, :, None] - dist[:, None, :]) + margin) * valid
    total = float(loss.sum())
    if count == "valid":
        return total / max(int(valid.sum()), 1)
    active = int((loss > 1e-16).sum())
    if count == "epsilon":
        return total / (active + 1e-16)
    return total / active if active else 0.0


def _matches_0304(value: float, slip: float, want: float) -> bool:
    """True when the learner's value equals the value of a slip that differs from the right one."""
    return (math.isclose(value, slip, rel_tol=1e-5, abs_tol=1e-7)
            and not math.isclose(slip, want, rel_tol=1e-5, abs_tol=1e-7))


def check_batch_all_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """03: ``fn(dist, labels, margin)`` returns BatchAll's loss from a (B, B) distance matrix.

    The sum of ``max(0, d(a,p) - d(a,n) + margin)`` over every valid triplet, divided by the number of triplets whose
    loss is above 1e-16; 0 when there is none. The result must carry a gradient back to ``dist``.
    """
    slips = {
        "valid": ("it divides by every valid triplet.", "divide by the number of *active* triplets (loss above "
                  "1e-16), not by all valid ones: easy triplets add 0 to the sum and must not count either."),
        "self": ("it lets an example be its own positive.", "a positive is *another* example with the anchor's "
                 "label: exclude p == a (the diagonal)."),
        "epsilon": ("it divides by (count + 1e-16) when nothing is active.", "that is sentence-transformers' "
                    "rule, and it turns a rounding-level loss into a large one: with no active triplet return 0."),
    }

    def case(dist: Tensor, labels: Tensor, margin: float, what: str, hint: str) -> tuple:
        def run(f):
            value, miss = _one_number_0304(f(dist.clone(), labels.clone(), margin), what)
            if miss:
                return miss
            got, want = float(value), _batch_all_0304(dist, labels, margin)
            if math.isnan(got):
                return Miss(f"for {what} it returned NaN.", "0 / 0 is NaN: when no triplet is active, return 0.")
            if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-7):
                return None
            for key, slip in (("valid", _batch_all_0304(dist, labels, margin, count="valid")),
                              ("self", _batch_all_0304(dist, labels, margin, self_positive=True)),
                              ("epsilon", _batch_all_0304(dist, labels, margin, count="epsilon"))):
                if _matches_0304(got, slip, want):
                    return Miss(f"for {what} it returned {got:.4g}: {slips[key][0]}", slips[key][1])
            return Miss(f"for {what} it returned {got:.4g}.", hint)

        return what, run, hint

    def gradient(f):
        dist, labels = _points_distances_0304(8, 2, seed=11)
        d = dist.clone().requires_grad_(True)
        out = f(d, labels.clone(), 0.5)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient back to dist.",
                        "stay with torch operations (no float(), .item() or Python loops that build numbers), so "
                        "training can backpropagate through the loss.")
        out.sum().backward()
        from .reference import batch_all_from_distances

        want = dist.clone().requires_grad_(True)
        batch_all_from_distances(want, labels, 0.5).backward()
        if d.grad is None or not torch.allclose(d.grad, want.grad, atol=1e-8):
            return Miss("the value is right, but its gradient with respect to dist is not.",
                        "count the active triplets without a gradient (a count is a plain number), and let the "
                        "gradient flow only through the summed losses.")
        return None

    general = "sum max(0, d(a,p) - d(a,n) + margin) over valid triplets: p != a with a's label, n with another label."
    tight = pairwise_distances(torch.randn(6, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
                               * 0.05)
    return run_checks("check_batch_all_loss", fn, [
        case(*_points_distances_0304(6, 2, seed=1), 0.5, "a batch of 6 with 2 labels", general),
        case(*_points_distances_0304(12, 3, seed=2, spread=2.0), 0.3, "a batch of 12 where many triplets are easy",
             slips["valid"][1]),
        case(_points_distances_0304(5, 3, seed=3)[0], torch.tensor([0, 1, 0, 0, 2]), 0.5,
             "labels 0, 1, 0, 0, 2 (two labels with a single example)",
             "a label with one example has no positive: it is never an anchor, but it is a negative for others."),
        case(_line_distances([0.0, 0.125, 10.0, 10.125]), torch.tensor([0, 0, 1, 1]), 0.5,
             "two clusters far apart (every triplet easy)", "with no active triplet the loss is 0, not NaN."),
        case(_line_distances([0.0, 0.1, -0.3]), torch.tensor([0, 0, 1]), 0.2,
             "a triplet whose loss is 2.8e-17, a rounding error", slips["epsilon"][1]),
        case(tight, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5, "points packed closely together", general),
        case(*_points_distances_0304(24, 4, seed=4), 0.5, "a batch of 24 with 4 labels", general),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchAllTripletLoss, minus its 1e-16 division.")


def check_active_fraction(fn: Callable[[Tensor, Tensor, float], float]) -> bool:
    """03: ``fn(dist, labels, margin)`` returns the share of valid triplets whose loss is above 0 (0.0 if there is
    no valid triplet)."""

    def want_of(dist: Tensor, labels: Tensor, margin: float, count: str = "valid") -> float:
        same = labels[:, None] == labels[None, :]
        pos = same if count == "self" else same & ~torch.eye(len(labels), dtype=torch.bool)
        valid = pos[:, :, None] & ~same[:, None, :]
        active = ((((dist[:, :, None] - dist[:, None, :]) + margin) > 0) & valid).sum()
        denominator = len(labels) ** 3 if count == "cube" else int(valid.sum())
        return float(active) / denominator if denominator else 0.0

    def case(dist: Tensor, labels: Tensor, margin: float, what: str, hint: str) -> tuple:
        def run(f):
            value, miss = _one_number_0304(f(dist.clone(), labels.clone(), margin), what)
            if miss:
                return miss
            got, want = float(value), want_of(dist, labels, margin)
            if math.isnan(got):
                return Miss(f"for {what} it returned NaN.", "a batch without valid triplets has nothing active: "
                            "return 0.0 instead of dividing 0 by 0.")
            if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
                return None
            if _matches_0304(got, want_of(dist, labels, margin, "cube"), want):
                return Miss(f"for {what} it returned {got:.4g}, the share of all B^3 index triples.",
                            "divide by the number of *valid* triplets (the masked ones), not by B^3.")
            if _matches_0304(got, want_of(dist, labels, margin, "self"), want):
                return Miss(f"for {what} it returned {got:.4g}: it lets an example be its own positive.",
                            "a positive is *another* example with the anchor's label: exclude p == a.")
            return Miss(f"for {what} it returned {got:.4g}.", hint)

        return what, run, hint

    return run_checks("check_active_fraction", fn, [
        case(*_points_distances_0304(9, 3, seed=5), 0.5, "a batch of 9 with 3 labels",
             "count triplets with d(a,p) - d(a,n) + margin > 0 among the valid ones, then divide."),
        case(*_points_distances_0304(12, 3, seed=6, spread=2.0), 0.2, "a batch where many triplets are easy",
             "easy triplets (loss exactly 0) are valid but not active."),
        case(_line_distances([0.0, 0.5, 0.75, 0.25]), torch.tensor([0, 0, 1, 1]), 0.25,
             "a negative exactly at d(a,p) + margin",
             "active means loss > 0: a negative exactly a margin beyond the positive gives loss 0 (easy)."),
        case(*_points_distances_0304(6, 2, seed=7), 0.0, "margin 0",
             "with margin 0 only the triplets whose negative is strictly nearer than the positive are active."),
        case(_points_distances_0304(5, 5, seed=8)[0], torch.arange(5), 0.5, "all labels different (no positive)",
             "no valid triplet at all: return 0.0."),
        case(_points_distances_0304(5, 1, seed=9)[0], torch.zeros(5, dtype=torch.long), 0.5,
             "a single label (no negative)", "no valid triplet at all: return 0.0."),
    ], "That is the active_fraction column of every training history in this series.")


def _batch_hard_0304(dist: Tensor, labels: Tensor, margin: float, slip: str | None = None) -> float:
    """BatchHard from a distance matrix (the oracle: ST's conventions, 0 for a single-label batch), or a usual slip:
    ``"nearest_positive"``, ``"farthest_negative"``, ``"diagonal"`` (the anchor's own 0 taken as its nearest
    negative), ``"skip_no_positive"`` (anchors without a positive dropped from the mean)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    if not neg.any():
        return 0.0
    has_pos = pos.any(dim=1)
    if slip == "nearest_positive":
        d_ap = torch.where(has_pos, dist.masked_fill(~pos, math.inf).min(dim=1).values, torch.zeros(len(labels)))
    else:
        d_ap = (dist * pos).max(dim=1).values
    if slip == "farthest_negative":
        d_an = dist.masked_fill(~neg, -math.inf).max(dim=1).values
    elif slip == "diagonal":
        d_an = dist.masked_fill(~(neg | eye), math.inf).min(dim=1).values
    else:
        d_an = dist.masked_fill(~neg, math.inf).min(dim=1).values
    per_anchor = torch.relu((d_ap - d_an) + margin)
    if slip == "skip_no_positive":
        return float(per_anchor[has_pos].mean()) if has_pos.any() else 0.0
    return float(per_anchor.mean())


def check_batch_hard_loss(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """04: ``fn(dist, labels, margin)`` returns BatchHard's loss from a (B, B) distance matrix.

    The mean over all B anchors of ``max(0, farthest-positive distance - nearest-negative distance + margin)``. An
    anchor without a positive uses 0 as its farthest-positive distance and stays in the mean (sentence-transformers'
    convention); a batch with a single label (no negative anywhere) returns 0. The result must carry a gradient.
    """
    slips = {
        "nearest_positive": "the hardest positive is the *farthest* one (largest d(a, p)).",
        "farthest_negative": "the hardest negative is the *nearest* one (smallest d(a, n)).",
        "diagonal": "the anchor itself (distance 0) is not a negative: mask it out before taking the minimum.",
        "skip_no_positive": "an anchor without a positive stays in the mean, with 0 as its positive distance "
                            "(sentence-transformers' convention): divide by B.",
    }

    def case(dist: Tensor, labels: Tensor, margin: float, what: str, hint: str) -> tuple:
        def run(f):
            value, miss = _one_number_0304(f(dist.clone(), labels.clone(), margin), what)
            if miss:
                return miss
            got, want = float(value), _batch_hard_0304(dist, labels, margin)
            if math.isnan(got) or math.isinf(got):
                return Miss(f"for {what} it returned {got}.", hint)
            if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-7):
                return None
            for key, slip_hint in slips.items():
                if _matches_0304(got, _batch_hard_0304(dist, labels, margin, key), want):
                    return Miss(f"for {what} it returned {got:.4g}.", slip_hint)
            return Miss(f"for {what} it returned {got:.4g}.", hint)

        return what, run, hint

    def gradient(f):
        dist, labels = _points_distances_0304(8, 2, seed=12)
        d = dist.clone().requires_grad_(True)
        out = f(d, labels.clone(), 0.5)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return Miss("its result carries no gradient back to dist.",
                        "stay with torch operations (no float(), .item() or Python max), so training can "
                        "backpropagate through the loss.")
        out.sum().backward()
        if d.grad is None or int((d.grad != 0).sum()) > 2 * len(labels):
            return Miss("its gradient reaches more than two distances per anchor.",
                        "BatchHard uses one positive and one negative per anchor: only those two distances of "
                        "each row should receive a gradient.")
        return None

    general = "per anchor: farthest positive, nearest negative, then max(0, d_ap - d_an + margin); mean over anchors."
    g = torch.Generator().manual_seed(13)
    tight = pairwise_distances(torch.randn(6, 8, generator=g, dtype=torch.float64) * 0.05)
    return run_checks("check_batch_hard_loss", fn, [
        case(*_points_distances_0304(6, 2, seed=21), 0.5, "a batch of 6 with 2 labels", general),
        case(*_points_distances_0304(12, 3, seed=22, spread=2.0), 0.3, "a batch of 12 with 3 labels", general),
        case(_points_distances_0304(5, 3, seed=23)[0], torch.tensor([0, 1, 0, 0, 2]), 0.5,
             "labels 0, 1, 0, 0, 2 (two anchors without a positive)", slips["skip_no_positive"]),
        case(tight, torch.tensor([0, 0, 1, 1, 2, 2]), 0.5, "points packed closely together", slips["diagonal"]),
        case(_points_distances_0304(5, 1, seed=24)[0], torch.zeros(5, dtype=torch.long), 0.5,
             "a single label (no negative anywhere)",
             "with no negative in the batch there is nothing to push away: return 0 (this series' convention)."),
        case(*_points_distances_0304(24, 4, seed=25), 0.5, "a batch of 24 with 4 labels", general),
        ("the gradient", gradient),
    ], "That is sentence-transformers' BatchHardTripletLoss (apart from single-label batches).")


def check_first_collapsed_step(fn: Callable[[Any, float], Any]) -> bool:
    """04: ``fn(history, ratio)`` returns the ``step`` of the first row of a training history whose
    ``mean_distance`` is below ``ratio`` times the first row's ``mean_distance``, or None if there is none.

    ``history`` is a ``pandas.DataFrame`` like ``TrainResult.history`` (columns ``step``, ``loss``,
    ``mean_distance``, ...). "Below" is strict.
    """
    import pandas as pd

    def history(distances: Sequence[float], first_step: int = 1) -> pd.DataFrame:
        steps = list(range(first_step, first_step + len(distances)))
        return pd.DataFrame({"step": steps, "loss": [0.5] * len(distances), "mean_distance": list(distances)})

    def want_of(frame: pd.DataFrame, ratio: float) -> int | None:
        below = frame["mean_distance"] < ratio * frame["mean_distance"].iloc[0]
        return int(frame["step"][below].iloc[0]) if below.any() else None

    def case(frame: pd.DataFrame, ratio: float, what: str, hint: str) -> tuple:
        def run(f):
            got = f(frame.copy(), ratio)
            want = want_of(frame, ratio)
            if want is None:
                if got is not None:
                    return Miss(f"for {what} it returned {got!r}.", hint)
                return None
            try:
                step = int(got)
            except (TypeError, ValueError):
                return Miss(f"for {what} it returned {got!r}.", hint)
            if step != want:
                return Miss(f"for {what} it returned {step}.", hint)
            return None

        return what, run, hint

    collapsing = [1.375, 1.375, 1.25, 0.625, 0.125, 0.125, 0.125, 0.125]
    return run_checks("check_first_collapsed_step", fn, [
        case(history(collapsing), 0.2, "a run that collapses",
             "find the rows whose mean_distance is below ratio times the *first* row's, and return the step of the "
             "first of them."),
        case(history([1.375, 1.25, 1.375, 1.25, 1.375]), 0.2, "a healthy run",
             "when no row is below the threshold, return None."),
        case(history(collapsing, first_step=101), 0.2, "a history whose steps start at 101",
             "return the value of the step column, not the row's position."),
        case(history([1.0, 0.75, 0.125, 0.75, 0.125]), 0.2, "a run that dips, recovers and dips again",
             "the *first* row below the threshold counts."),
        case(history([1.0, 0.75, 0.5, 0.25, 0.125]), 0.25, "a row exactly at the threshold",
             "'below' is strict: a row at exactly ratio times the first distance is not collapsed."),
        case(history(collapsing), 0.5, "ratio 0.5", "use the ratio argument, not a fixed number."),
    ], "train() applies this rule with collapse_distance_ratio and warns with a CollapseWarning.")


__all__ += ["check_active_fraction", "check_batch_all_loss", "check_batch_hard_loss", "check_first_collapsed_step"]
