"""Shared helpers for the core-loss tests: batch generators, the sentence-transformers oracle, gradient checks.

Device and dtype come from the environment so the same suite runs on a GPU:

* ``TEST_DEVICE`` (default ``cpu``), e.g. ``TEST_DEVICE=cuda``;
* ``TEST_DTYPES`` (default ``float32,float64``), the dtypes the property tests draw from.
"""

from __future__ import annotations

import functools
import os

import torch
from hypothesis import strategies as st

from tutorial_lib import losses, reference
from tutorial_lib.distances import pairwise_distances

DEVICE = torch.device(os.environ.get("TEST_DEVICE", "cpu"))
DTYPES = [getattr(torch, name.strip()) for name in os.environ.get("TEST_DTYPES", "float32,float64").split(",")]
EXAMPLES = float(os.environ.get("TEST_EXAMPLES_SCALE", "1"))  # e.g. 20 for a long soak run


def examples(n: int) -> int:
    """Number of hypothesis examples, scaled by TEST_EXAMPLES_SCALE."""
    return max(1, int(n * EXAMPLES))


DISTANCES = ("euclidean", "squared_euclidean", "cosine")
STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")
LAYOUTS = ("one_label", "singletons", "pk", "few_groups", "random")

OURS = {
    "batch_all": lambda e, y, m, d: losses.batch_all_triplet_loss(e, y, m, d),
    "batch_hard": lambda e, y, m, d: losses.batch_hard_triplet_loss(e, y, m, d),
    "batch_semi_hard": lambda e, y, m, d: losses.batch_semi_hard_triplet_loss(e, y, m, d),
    "batch_hard_soft_margin": lambda e, y, m, d: losses.batch_hard_soft_margin_triplet_loss(e, y, d),
}

REFERENCE = {
    "batch_all": lambda e, y, m, d: reference.batch_all_triplet_loss(e, y, m, d),
    "batch_hard": lambda e, y, m, d: reference.batch_hard_triplet_loss(e, y, m, d),
    "batch_semi_hard": lambda e, y, m, d: reference.batch_semi_hard_triplet_loss(e, y, m, d),
    "batch_hard_soft_margin": lambda e, y, m, d: reference.batch_hard_soft_margin_triplet_loss(e, y, d),
}

# The reference loops applied to the *same* distance matrix as the vectorized code: exact ties stay exact ties,
# so the tie rule itself is compared.
REFERENCE_SAME_DISTANCES = {
    "batch_all": lambda e, y, m, d: reference.batch_all_from_distances(pairwise_distances(e, d), y, m),
    "batch_hard": lambda e, y, m, d: reference.batch_hard_from_distances(pairwise_distances(e, d), y, m),
    "batch_semi_hard": lambda e, y, m, d: reference.batch_semi_hard_from_distances(pairwise_distances(e, d), y, m),
    "batch_hard_soft_margin": lambda e, y, m, d: reference.batch_hard_soft_margin_from_distances(
        pairwise_distances(e, d), y
    ),
}


@functools.lru_cache(maxsize=None)
def _st_modules():
    from sentence_transformers.sentence_transformer.losses import (
        BatchAllTripletLoss,
        BatchHardSoftMarginTripletLoss,
        BatchHardTripletLoss,
        BatchHardTripletLossDistanceFunction,
        BatchSemiHardTripletLoss,
    )

    fn = BatchHardTripletLossDistanceFunction
    distance_fns = {
        "euclidean": fn.euclidean_distance,
        "squared_euclidean": functools.partial(fn.euclidean_distance, squared=True),
        "cosine": fn.cosine_distance,
    }
    return BatchAllTripletLoss, BatchHardTripletLoss, BatchSemiHardTripletLoss, BatchHardSoftMarginTripletLoss, distance_fns


def st_loss(strategy: str, embeddings, labels, margin, distance):
    """sentence-transformers' own loss on embeddings (its loss methods take (labels, embeddings))."""
    all_, hard, semi, soft, distance_fns = _st_modules()
    f = distance_fns[distance]
    if strategy == "batch_all":
        return all_(None, f, margin).batch_all_triplet_loss(labels, embeddings)
    if strategy == "batch_hard":
        return hard(None, f, margin).batch_hard_triplet_loss(labels, embeddings)
    if strategy == "batch_semi_hard":
        return semi(None, f, margin).batch_semi_hard_triplet_loss(labels, embeddings)
    return soft(None, f).batch_hard_triplet_soft_margin_loss(labels, embeddings)


def value_and_grad(fn, embeddings):
    """(value, d value / d embeddings) of ``fn(embeddings)``; a zero gradient where the graph is disconnected."""
    e = embeddings.detach().clone().requires_grad_(True)
    value = fn(e)
    if value.requires_grad:
        (grad,) = torch.autograd.grad(value, e, allow_unused=True)
    else:
        grad = None
    return value.detach(), torch.zeros_like(e) if grad is None else grad


def grads_close(g, g_ref, rtol=1e-4, atol=1e-6) -> bool:
    """The issue's criterion: ||g - g_ref|| <= rtol * ||g_ref|| + atol."""
    return bool((g - g_ref).norm() <= rtol * g_ref.norm() + atol)


def make_labels(layout: str, batch_size: int, rng: torch.Generator) -> torch.Tensor:
    if layout == "one_label":
        labels = torch.zeros(batch_size, dtype=torch.long)
    elif layout == "singletons":
        labels = torch.arange(batch_size)
    elif layout == "pk":
        k = int(torch.randint(2, 5, (1,), generator=rng))
        labels = torch.arange(batch_size) // k
    elif layout == "few_groups":
        labels = torch.arange(batch_size) % int(torch.randint(2, 5, (1,), generator=rng))
    else:
        labels = torch.randint(0, max(2, batch_size // 3), (batch_size,), generator=rng)
    return labels[torch.randperm(batch_size, generator=rng)]


def make_embeddings(kind: str, batch_size: int, dim: int, scale: float, rng: torch.Generator, dtype) -> torch.Tensor:
    """Random rows with norms kept in [1e-3, 1e3]; ``grid`` and ``duplicates`` create exact ties."""
    if kind == "grid":
        e = torch.randint(-2, 3, (batch_size, dim), generator=rng).to(torch.float64)
        zero = e.abs().sum(dim=1) == 0
        e[zero, 0] = 1.0  # no zero vector (its norm is outside [1e-3, 1e3] and its cosine is undefined)
    else:
        e = torch.randn(batch_size, dim, generator=rng, dtype=torch.float64)
        if kind == "duplicates":
            source = torch.randint(0, batch_size, (batch_size,), generator=rng)
            copy = torch.rand(batch_size, generator=rng) < 0.4
            e[copy] = e[source[copy]]
    e = e * scale
    norms = e.norm(dim=1, keepdim=True)
    e = e * (norms.clamp(1e-3, 1e3) / norms)
    return e.to(dtype=dtype, device=DEVICE)


@st.composite
def batches(draw, min_batch=2, max_batch=64, max_dim=32, layouts=LAYOUTS, dtypes=None, distances=DISTANCES,
            kinds=("normal", "normal", "grid", "duplicates")):
    """A random batch: (embeddings, labels, margin, distance, description)."""
    batch_size = draw(st.integers(min_batch, max_batch))
    dim = draw(st.integers(1, max_dim))
    layout = draw(st.sampled_from(layouts))
    kind = draw(st.sampled_from(kinds))
    distance = draw(st.sampled_from(distances))
    if dim == 1 and distance == "cosine":
        distance = "euclidean"  # cosine in 1-D is +-1 everywhere: its gradient is rounding noise
    dtype = draw(st.sampled_from(dtypes or DTYPES))
    scale = 10.0 ** draw(st.floats(-3, 3))
    margin = draw(st.one_of(st.just(0.0), st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0]),
                            st.floats(0, 10)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = torch.Generator().manual_seed(seed)
    labels = make_labels(layout, batch_size, rng).to(DEVICE)
    embeddings = make_embeddings(kind, batch_size, dim, scale, rng, dtype)
    note = f"B={batch_size} D={dim} {layout} {kind} {distance} {dtype} scale={scale:.3g} margin={margin!r} seed={seed}"
    return embeddings, labels, margin, distance, note


def exactly_degenerate(strategy: str, embeddings, labels, margin, distance) -> bool:
    """True where the loss is not differentiable *in the floats actually used*.

    That is: an exact tie among the candidates a strategy chooses from, a hinge at exactly 0, or (euclidean) a
    selected pair at distance exactly 0. Only there may the gradient legitimately differ from
    sentence-transformers' (which then follows its own subgradient conventions).
    """
    with torch.no_grad():
        d = pairwise_distances(embeddings, distance)
        mined = losses.mine(embeddings, labels, margin, distance)
        pos, neg = mined.pos_mask, mined.neg_mask
        batch_size = d.shape[0]
        if distance == "euclidean":
            off = ~torch.eye(batch_size, dtype=torch.bool, device=d.device)
            if ((d == 0) & off & (pos | neg)).any():
                return True
        if strategy == "batch_all":
            # any valid triplet whose loss expression is exactly 0
            expr = (d.unsqueeze(2) - d.unsqueeze(1)) + margin  # [a, p, n]
            valid = pos.unsqueeze(2) & neg.unsqueeze(1)
            return bool(((expr == 0) & valid).any())
        if strategy in ("batch_hard", "batch_hard_soft_margin"):
            hp = d.masked_fill(~pos, -torch.inf).amax(dim=1, keepdim=True)
            hn = d.masked_fill(~neg, torch.inf).amin(dim=1, keepdim=True)
            tie_p = (((d == hp) & pos).sum(dim=1) > 1).any() | ((hp.squeeze(1) <= 0) & pos.any(dim=1)).any()
            tie_n = (((d == hn) & neg).sum(dim=1) > 1).any()
            # ST masks non-negatives by adding the row maximum; when the nearest negative *is* at the row maximum,
            # the anchor itself (0 + max) ties with it and ST may select the anchor (its documented quirk).
            self_tie = ((hn.squeeze(1) == d.amax(dim=1)) & neg.any(dim=1)).any()
            if tie_p or tie_n or self_tie:
                return True
            if strategy == "batch_hard":
                d_ap = torch.where(pos.any(dim=1), hp.squeeze(1).clamp_min(0), torch.zeros_like(hp.squeeze(1)))
                return bool((((d_ap - hn.squeeze(1)) + margin) == 0).any())
            return False
        # semi-hard: a negative at exactly d(a, p), equal candidates, or a hinge at 0
        valid = mined.semi_hard_negative >= 0
        n_idx = mined.semi_hard_negative.clamp(min=0)
        d_sn = d.gather(1, n_idx)
        equal_to_positive = ((d.unsqueeze(1) == d.unsqueeze(2)) & neg.unsqueeze(1)).any(dim=2)  # [a, p]
        ties = ((d.unsqueeze(1) == d_sn.unsqueeze(2)) & neg.unsqueeze(1)).sum(dim=2) > 1  # [a, p]
        zero_hinge = ((d - d_sn) + margin) == 0
        return bool(((equal_to_positive | ties | zero_hinge) & valid).any())


def gram_ill_conditioned(embeddings, distance, ratio=1e-3) -> bool:
    """True when two rows are so close, relative to their norms, that the Gram trick loses 3+ digits in float32:
    |e_i - e_j|^2 < ratio * (|e_i|^2 + |e_j|^2) (for cosine, on the normalised rows)."""
    e = embeddings.detach().double()
    if distance == "cosine":
        e = torch.nn.functional.normalize(e, dim=1)
    sq = (e * e).sum(dim=1)
    d2 = ((e.unsqueeze(1) - e.unsqueeze(0)) ** 2).sum(dim=2)
    off = ~torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return bool(((d2 < ratio * (sq.unsqueeze(0) + sq.unsqueeze(1))) & off).any())
