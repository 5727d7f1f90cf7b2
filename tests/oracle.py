"""Shared helpers for the core-loss tests: batch generators, the sentence-transformers oracle, gradient checks.

Device and dtype come from the environment so the same suite runs on a GPU:

* ``TEST_DEVICE`` (default ``cpu``), e.g. ``TEST_DEVICE=cuda``;
* ``TEST_DTYPES`` (default ``float32,float64``), the dtypes the property tests draw from.
"""

from __future__ import annotations

import os

import sentence_transformers
import torch
from hypothesis import strategies as st

from tutorial_lib import losses, reference, vectorized
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.reference import value_and_grad  # noqa: F401 (re-exported: the tests' comparison helper)
from tutorial_lib.st_losses import sentence_transformers_loss

DEVICE = torch.device(os.environ.get("TEST_DEVICE", "cpu"))
DTYPES = [getattr(torch, name.strip()) for name in os.environ.get("TEST_DTYPES", "float32,float64").split(",")]
EXAMPLES = float(os.environ.get("TEST_EXAMPLES_SCALE", "1"))  # e.g. 20 for a long soak run


def examples(n: int) -> int:
    """Number of hypothesis examples, scaled by TEST_EXAMPLES_SCALE."""
    return max(1, int(n * EXAMPLES))


DISTANCES = ("euclidean", "squared_euclidean", "cosine")
STRATEGIES = losses.STRATEGIES
LAYOUTS = ("one_label", "singletons", "pk", "few_groups", "random")

OURS = {s: losses.loss_function(s) for s in STRATEGIES}  # the fast engine behind the public API
VECTORIZED = {s: losses.loss_function(s, vectorized) for s in STRATEGIES}  # the readable autograd versions
REFERENCE = {s: losses.loss_function(s, reference) for s in STRATEGIES}  # the loops, with loop distances

# The reference loops applied to the *same* distance matrix as the vectorized code: exact ties stay exact ties,
# so the tie rule itself is compared.
_FROM_DISTANCES = {
    "batch_all": reference.batch_all_from_distances,
    "batch_hard": reference.batch_hard_from_distances,
    "batch_semi_hard": reference.batch_semi_hard_from_distances,
    "batch_hard_soft_margin": lambda d, y, m: reference.batch_hard_soft_margin_from_distances(d, y),
}
REFERENCE_SAME_DISTANCES = {
    s: (lambda f: lambda e, y, m, d: f(pairwise_distances(e, d), y, m))(f) for s, f in _FROM_DISTANCES.items()
}

ST_VERSION = tuple(int(part) for part in sentence_transformers.__version__.split(".")[:2])
ST_CLAMPS_COSINE = ST_VERSION >= (6, 3)
"""sentence-transformers 6.3 clamps cosine distances at 0 and zeroes their diagonal; 6.2 does neither. The library
follows 6.3. On 6.2 the oracle applies 6.3's clamp to 6.2's distance (the one known difference, asserted as a
difference in test_losses_exact.py), and everything else is compared as it is."""


def _clamped_cosine(embeddings):
    from sentence_transformers.sentence_transformer.losses import BatchHardTripletLossDistanceFunction

    distances = BatchHardTripletLossDistanceFunction.cosine_distance(embeddings).clamp(min=0.0)
    distances.fill_diagonal_(0.0)
    return distances


def st_loss(strategy: str, embeddings, labels, margin, distance):
    """sentence-transformers' own loss module on embeddings (6.3's cosine distance on 6.2, see above)."""
    module = sentence_transformers_loss(strategy, None, margin=margin, distance=distance)
    if distance == "cosine" and not ST_CLAMPS_COSINE:
        module.distance_metric = _clamped_cosine
    return module.compute_loss_from_embeddings([embeddings], labels)


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
    """Random rows with norms kept in [1e-3, 1e3]; ``grid`` and ``duplicates`` create exact ties, ``near_duplicates``
    rows within a relative 1e-7 of another (where ``1 - cos`` rounds below 0 and the cosine clamp acts)."""
    if kind == "grid":
        e = torch.randint(-2, 3, (batch_size, dim), generator=rng).to(torch.float64)
        zero = e.abs().sum(dim=1) == 0
        e[zero, 0] = 1.0  # no zero vector (its norm is outside [1e-3, 1e3] and its cosine is undefined)
    else:
        e = torch.randn(batch_size, dim, generator=rng, dtype=torch.float64)
        if kind in ("duplicates", "near_duplicates"):
            source = torch.randint(0, batch_size, (batch_size,), generator=rng)
            copy = torch.rand(batch_size, generator=rng) < 0.4
            e[copy] = e[source[copy]]
            if kind == "near_duplicates":
                e[copy] *= 1 + 1e-7 * torch.randn(int(copy.sum()), 1, generator=rng, dtype=torch.float64)
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
        if distance in ("euclidean", "cosine"):  # sqrt's guard at 0, cosine's clamp at 0
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
