"""Engine = readable vectorized = loop reference = sentence-transformers (values; gradients off ties).

The fast engine (``tutorial_lib.losses``) and the readable versions (``tutorial_lib.vectorized``) are both compared
with sentence-transformers' own modules (6.3; on 6.2 with 6.3's cosine clamp, see oracle.ST_CLAMPS_COSINE) and with
the loops of ``tutorial_lib.reference``.

Property-based: batch sizes, dimensions, label layouts, margins, distances, dtypes, ties and duplicates are drawn
by hypothesis (seeded through its database-free derandomized profile in CI, see conftest).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from oracle import (
    DEVICE,
    OURS,
    REFERENCE,
    REFERENCE_SAME_DISTANCES,
    ST_CLAMPS_COSINE,
    STRATEGIES,
    VECTORIZED,
    batches,
    exactly_degenerate,
    examples,
    grads_close,
    gram_ill_conditioned,
    st_loss,
    value_and_grad,
)

from tutorial_lib.distances import pairwise_distances
from tutorial_lib.st_losses import sentence_transformers_loss

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _two_labels(labels) -> bool:
    return labels.unique().numel() >= 2


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=examples(120), **FAST)
@given(batch=batches(max_batch=64))
def test_equals_sentence_transformers(strategy, batch):
    embeddings, labels, margin, distance, note = batch
    if not _two_labels(labels):
        return  # single-label batches are a documented exception, tested below
    v_st, g_st = value_and_grad(lambda e: st_loss(strategy, e, labels, margin, distance), embeddings)
    v, g = value_and_grad(lambda e: OURS[strategy](e, labels, margin, distance), embeddings)
    assert torch.isfinite(v) and torch.isfinite(g).all(), note
    assert torch.allclose(v, v_st.to(v.dtype), rtol=1e-4, atol=1e-5), f"{note}: ours {v.item()} vs ST {v_st.item()}"
    if exactly_degenerate(strategy, embeddings, labels, margin, distance) or grads_close(g, g_st):
        return
    # Where two points are close relative to their norms, the Gram trick loses digits: sentence-transformers'
    # float32 gradient then carries rounding error above the tolerance (e.g. |g_st| ~ 1e-4 at duplicates of norm 1e3,
    # whose exact gradient is 0). Only there, the same batch is compared in float64, where both are accurate.
    assert embeddings.dtype == torch.float32 and gram_ill_conditioned(embeddings, distance), (
        f"{note}: |g - g_st| = {(g - g_st).norm()}, |g_st| = {g_st.norm()}")
    e64 = embeddings.double()
    if not exactly_degenerate(strategy, e64, labels, margin, distance):
        _, g64_st = value_and_grad(lambda e: st_loss(strategy, e, labels, margin, distance), e64)
        _, g64 = value_and_grad(lambda e: OURS[strategy](e, labels, margin, distance), e64)
        assert grads_close(g64, g64_st), f"{note} (float64): |g - g_st| = {(g64 - g64_st).norm()}"


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=examples(60), **FAST)
@given(batch=batches(max_batch=32, distances=("cosine",), kinds=("duplicates", "near_duplicates")))
def test_cosine_at_duplicate_points_equals_sentence_transformers(strategy, batch):
    """Cosine distances of (near-)duplicate points round to about -1e-7 before the clamp: the values must still be
    sentence-transformers' exactly (to tolerance), and the gradients wherever the loss is differentiable."""
    embeddings, labels, margin, distance, note = batch
    if not _two_labels(labels):
        return
    v_st, g_st = value_and_grad(lambda e: st_loss(strategy, e, labels, margin, distance), embeddings)
    for name, impl in (("engine", OURS), ("vectorized", VECTORIZED)):
        v, g = value_and_grad(lambda e: impl[strategy](e, labels, margin, distance), embeddings)
        assert torch.allclose(v, v_st.to(v.dtype), rtol=1e-4, atol=1e-5), f"{name} {note}: {v.item()} vs {v_st.item()}"
        if not (exactly_degenerate(strategy, embeddings, labels, margin, distance)
                or gram_ill_conditioned(embeddings, distance)):
            assert grads_close(g, g_st), f"{name} {note}: |g - g_st| = {(g - g_st).norm()}"


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=examples(80), **FAST)
@given(batch=batches(max_batch=24, max_dim=16))
def test_vectorized_equals_engine_and_sentence_transformers(strategy, batch):
    """The readable losses of tutorial_lib.vectorized give the engine's values and, off ties, its gradients."""
    embeddings, labels, margin, distance, note = batch
    v, g = value_and_grad(lambda e: OURS[strategy](e, labels, margin, distance), embeddings)
    v_vec, g_vec = value_and_grad(lambda e: VECTORIZED[strategy](e, labels, margin, distance), embeddings)
    assert torch.allclose(v_vec, v, rtol=1e-4, atol=1e-5), f"{note}: vectorized {v_vec.item()} vs engine {v.item()}"
    if _two_labels(labels):
        v_st = st_loss(strategy, embeddings, labels, margin, distance)
        assert torch.allclose(v_vec, v_st.to(v_vec.dtype), rtol=1e-4, atol=1e-5), note
    if not (exactly_degenerate(strategy, embeddings, labels, margin, distance)
            or gram_ill_conditioned(embeddings, distance)):
        assert grads_close(g_vec, g), f"{note}: |g_vec - g| = {(g_vec - g).norm()}, |g| = {g.norm()}"


def _near_duplicate_batch(seed: int):
    """12 rows: 4 points, each also scaled by 1 + 1e-7 (another label) and by 3 (a third label). The cosine distances
    between copies round to about -1e-7 unless clamped, which changes the semi-hard negative of many pairs."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(4, 16, generator=g)
    e = torch.cat([base, base * 1.0000001, base * 3.0]).to(DEVICE)
    return e, _y([0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 3, 0])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cosine_clamp_decides_semi_hard_negatives_at_near_duplicates(strategy):
    """All implementations equal sentence-transformers 6.3 on 40 such batches (values; gradients off ties), and the
    clamp matters: without it (6.2's distance) the semi-hard loss of many of them differs."""
    from sentence_transformers.util import pytorch_cos_sim

    differs = 0
    for seed in range(40):
        e, y = _near_duplicate_batch(seed)
        v_st = st_loss(strategy, e, y, 0.5, "cosine")
        for impl in (OURS, VECTORIZED, REFERENCE_SAME_DISTANCES):
            assert torch.allclose(impl[strategy](e, y, 0.5, "cosine"), v_st, rtol=1e-5, atol=1e-6), seed
        unclamped = sentence_transformers_loss(strategy, None, margin=0.5, distance="cosine")
        unclamped.distance_metric = lambda x: 1 - pytorch_cos_sim(x, x)
        differs += bool(abs(unclamped.compute_loss_from_embeddings([e], y) - v_st) > 1e-4)
    if strategy == "batch_semi_hard":
        assert differs >= 5, differs  # this test can tell a clamped distance from an unclamped one


def test_cosine_distance_is_the_installed_releases():
    """sentence-transformers 6.3 clamps cosine distances at 0 and zeroes the diagonal, as pairwise_distances does;
    on 6.2 (the lowest supported release) the unclamped distances are the one known difference."""
    from sentence_transformers.sentence_transformer.losses import BatchHardTripletLossDistanceFunction

    rng = torch.Generator().manual_seed(0)
    e = torch.randn(6, 16, generator=rng).repeat(4, 1).to(DEVICE)  # every row 4 times: 1 - cos rounds below 0
    raw = BatchHardTripletLossDistanceFunction.cosine_distance(e)
    ours = pairwise_distances(e, "cosine")
    assert (ours >= 0).all() and (ours.diagonal() == 0).all()
    if ST_CLAMPS_COSINE:
        assert torch.equal(raw, ours)
    else:
        assert (raw < 0).any() or (raw.diagonal() != 0).any(), "6.2's cosine distance rounds below 0 here"
        clamped = raw.clamp(min=0.0)
        clamped.fill_diagonal_(0.0)
        assert torch.equal(clamped, ours)


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=examples(40), **FAST)
@given(batch=batches(max_batch=10, max_dim=6, dtypes=[torch.float64], kinds=("normal",)))
def test_equals_reference_loops(strategy, batch):
    """Against the naive loops, which also compute distances the naive way (float64: rounding far below tolerance).

    Only generic batches: with duplicates, the naive distance is exactly 0 where the Gram trick leaves ~1e-8, which
    legitimately flips triplets whose loss is at rounding level. Exact ties are covered by the next test."""
    embeddings, labels, margin, distance, note = batch
    v_ref, g_ref = value_and_grad(lambda e: REFERENCE[strategy](e, labels, margin, distance), embeddings)
    v, g = value_and_grad(lambda e: OURS[strategy](e, labels, margin, distance), embeddings)
    assert torch.allclose(v, v_ref, rtol=1e-4, atol=1e-5), f"{note}: ours {v.item()} vs reference {v_ref.item()}"
    if not exactly_degenerate(strategy, embeddings, labels, margin, distance):
        assert grads_close(g, g_ref), f"{note}: |g - g_ref| = {(g - g_ref).norm()}"


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=examples(40), **FAST)
@given(batch=batches(max_batch=10, max_dim=4, dtypes=[torch.float64]))
def test_tie_rule_equals_reference_on_same_distances(strategy, batch):
    """Fed the same distance matrix, loops and vectorized code agree everywhere, ties and zero losses included:
    the gradient there is the subgradient the reference's tie rule defines. (float64: the loops differentiate
    through the Gram trick, whose float32 rounding at duplicate points would swamp the comparison.)"""
    embeddings, labels, margin, distance, note = batch
    v_ref, g_ref = value_and_grad(lambda e: REFERENCE_SAME_DISTANCES[strategy](e, labels, margin, distance), embeddings)
    v, g = value_and_grad(lambda e: OURS[strategy](e, labels, margin, distance), embeddings)
    assert torch.isfinite(g).all(), note
    assert torch.allclose(v, v_ref, rtol=1e-4, atol=1e-5), f"{note}: ours {v.item()} vs reference {v_ref.item()}"
    assert grads_close(g, g_ref, rtol=1e-4, atol=1e-6 * (1 + g_ref.norm().item())), note


# ------------------------------------------------------------------------------------------------------------------
# Named edge cases
# ------------------------------------------------------------------------------------------------------------------


def _e(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype, device=DEVICE)


def _y(values):
    return torch.tensor(values, dtype=torch.long, device=DEVICE)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_label_batch_returns_zero_with_zero_gradient(strategy):
    e = _e([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.5, 0.1]])
    y = _y([3, 3, 3, 3])
    v, g = value_and_grad(lambda x: OURS[strategy](x, y, 1.0, "euclidean"), e)
    assert v.item() == 0.0 and g.abs().max().item() == 0.0
    st_value = st_loss(strategy, e, y, 1.0, "euclidean").item()
    if strategy == "batch_all":
        assert st_value == 0.0  # no valid triplet: sentence-transformers agrees
    else:
        assert st_value > 0  # it mines against the anchor itself / the farthest positive: the documented difference


def test_batch_all_without_counted_triplet_returns_zero():
    e = _e([[0.0, 0.0], [0.0, 0.1], [100.0, 0.0], [100.0, 0.1]])
    y = _y([0, 0, 1, 1])
    v, g = value_and_grad(lambda x: OURS["batch_all"](x, y, 0.5, "euclidean"), e)
    assert v.item() == 0.0 and g.abs().max().item() == 0.0


def test_batch_all_near_zero_triplet_is_in_sum_not_in_count():
    """A triplet with 0 < loss <= 1e-16 adds to the sum but not to the count (ST's rule); alone, it gives 0."""
    # d(a, p) = 0.1, d(a, n) = 0.3, margin 0.2: (0.1 - 0.3) + 0.2 = 2.8e-17 in float64, not 0
    e = _e([[0.0], [0.1], [-0.3]])  # n on the far side, so that anchor p has no active triplet
    y = _y([0, 0, 1])
    d = pairwise_distances(e)
    assert 0 < ((d[0, 1] - d[0, 2]) + 0.2).item() <= 1e-16
    assert OURS["batch_all"](e, y, 0.2, "euclidean").item() == 0.0
    # sentence-transformers divides 2.8e-17 by 1e-16 here and reports a loss of 0.28: the documented difference
    assert st_loss("batch_all", e, y, 0.2, "euclidean").item() > 0.2
    # with other, clearly active triplets the tiny one joins the sum but not the count, as in ST
    e2 = _e([[0.0], [0.1], [-0.3], [5.0], [5.3], [5.1]])
    y2 = _y([0, 0, 1, 2, 2, 3])
    v = OURS["batch_all"](e2, y2, 0.2, "euclidean")
    assert torch.allclose(v, st_loss("batch_all", e2, y2, 0.2, "euclidean"), rtol=1e-12, atol=0)


def test_batch_all_counts_rounding_level_ties_like_sentence_transformers():
    """Many negatives exactly at the margin boundary, where a threshold search on d_ap + margin miscounts."""
    rng = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for margin in (0.1, 0.2, 0.3, 0.7, 1.0):
            positions = torch.cat([torch.zeros(1), torch.full((6,), 0.1), torch.full((6,), 0.1 + margin),
                                   torch.rand(8, generator=rng)])
            e = torch.stack([positions, torch.zeros_like(positions)], dim=1).to(dtype=dtype, device=DEVICE)
            y = _y([0] * 7 + [1] * 6 + [2] * 8)
            v = OURS["batch_all"](e, y, margin, "euclidean")
            v_st = st_loss("batch_all", e, y, margin, "euclidean")
            assert torch.allclose(v, v_st.to(v.dtype), rtol=1e-6, atol=1e-7), (dtype, margin, v, v_st)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_all_singletons(strategy):
    e = _e([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.5, 0.1]])
    y = _y([0, 1, 2, 3])
    v, g = value_and_grad(lambda x: OURS[strategy](x, y, 0.5, "euclidean"), e)
    v_st, g_st = value_and_grad(lambda x: st_loss(strategy, x, y, 0.5, "euclidean"), e)
    assert torch.allclose(v, v_st) and grads_close(g, g_st)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_duplicate_points_give_finite_gradients(strategy, distance):
    e = _e([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [3.0, -1.0], [3.0, -1.0], [0.0, 1.0]])
    y = _y([0, 0, 1, 1, 0, 2])
    v, g = value_and_grad(lambda x: OURS[strategy](x, y, 0.5, distance), e)
    v_st = st_loss(strategy, e, y, 0.5, distance)
    assert torch.isfinite(g).all()
    assert torch.allclose(v, v_st, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(strategy, dtype):
    rng = torch.Generator().manual_seed(1)
    e32 = torch.randn(16, 8, generator=rng).to(DEVICE)
    y = _y([0, 1, 2, 3] * 4)
    v = OURS[strategy](e32.to(dtype), y, 0.5, "euclidean")
    assert v.dtype == torch.float32 and torch.isfinite(v)
    # the same numbers as float32 inputs rounded to half precision
    assert torch.allclose(v, OURS[strategy](e32.to(dtype).float(), y, 0.5, "euclidean"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_under_autocast_the_loss_stays_finite(strategy):
    device_type = DEVICE.type
    dtype = torch.bfloat16 if device_type == "cpu" else torch.float16
    rng = torch.Generator().manual_seed(2)
    w = torch.randn(8, 8, generator=rng).to(DEVICE).requires_grad_(True)
    x = torch.randn(32, 8, generator=rng).to(DEVICE) * 30  # large enough that float16 squared norms would overflow
    y = _y(list(range(8)) * 4)
    with torch.autocast(device_type=device_type, dtype=dtype):
        embeddings = x @ w  # a half-precision activation, as an encoder under autocast produces
        assert embeddings.dtype == dtype
        loss = OURS[strategy](embeddings, y, 0.5, "euclidean")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("margin", [0.0, 10.0])
@pytest.mark.parametrize("strategy", ["batch_all", "batch_hard", "batch_semi_hard"])
def test_extreme_margins(strategy, margin):
    rng = torch.Generator().manual_seed(3)
    e = torch.randn(12, 5, generator=rng, dtype=torch.float64).to(DEVICE)
    y = _y([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    v, g = value_and_grad(lambda x: OURS[strategy](x, y, margin, "euclidean"), e)
    v_st, g_st = value_and_grad(lambda x: st_loss(strategy, x, y, margin, "euclidean"), e)
    assert torch.allclose(v, v_st, rtol=1e-4, atol=1e-5) and grads_close(g, g_st)


def test_float64_stays_float64():
    e = _e([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.5, 0.1]])
    y = _y([0, 0, 1, 1])
    for strategy in STRATEGIES:
        assert OURS[strategy](e, y, 0.5, "euclidean").dtype == torch.float64
