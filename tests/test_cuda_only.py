"""Checks that only mean something on a GPU: no host synchronisation, float16 autocast. Skipped on a CPU machine;
the CUDA test run (benchmarks/gpu_check.sh, TEST_DEVICE=cuda) executes them."""

from __future__ import annotations

import pytest
import torch
from oracle import DEVICE, OURS, STRATEGIES

from tutorial_lib import losses

pytestmark = pytest.mark.skipif(DEVICE.type != "cuda", reason="needs TEST_DEVICE=cuda")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("batch_size", [64, 1024, 4096])  # 4096: eager (no graph), fused kernels
@pytest.mark.parametrize("layout", ["few", "pk"])
def test_no_host_synchronisation(strategy, batch_size, layout):
    e = torch.randn(batch_size, 32, device=DEVICE, requires_grad=True)
    y = torch.arange(batch_size, device=DEVICE) % 4 if layout == "few" else torch.arange(batch_size, device=DEVICE) // 4
    OURS[strategy](e, y, 0.5, "euclidean").backward()  # warm-up (lazy init may synchronise)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = OURS[strategy](e, y, 0.5, "euclidean")
        loss.backward()
        losses.triplet_stats(e.detach(), y, 0.5)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_float16_autocast_on_cuda():
    w = torch.randn(16, 16, device=DEVICE, requires_grad=True)
    x = torch.randn(64, 16, device=DEVICE) * 30
    y = torch.arange(64, device=DEVICE) % 8
    with torch.autocast("cuda", dtype=torch.float16):
        for strategy in STRATEGIES:
            loss = OURS[strategy](x @ w, y, 0.5, "euclidean")
            assert loss.dtype == torch.float32 and torch.isfinite(loss)
            loss.backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("groups", [8, 128], ids=["few", "pk"])
def test_cuda_graph_replay_equals_eager(strategy, distance, groups, monkeypatch):
    """Replayed graphs give the eager results, also on the second call with new inputs of the same shape."""
    from oracle import value_and_grad

    for seed in (0, 1):  # the second iteration replays the graph captured in the first
        g = torch.Generator().manual_seed(seed)
        e = torch.randn(512, 48, generator=g).to(DEVICE)
        y = (torch.randperm(512, generator=g) % (groups + seed)).to(DEVICE)
        monkeypatch.setenv("TRIPLET_CUDA_GRAPHS", "1")
        v1, g1 = value_and_grad(lambda x: OURS[strategy](x, y, 0.3, distance), e)
        monkeypatch.setenv("TRIPLET_CUDA_GRAPHS", "0")
        v2, g2 = value_and_grad(lambda x: OURS[strategy](x, y, 0.3, distance), e)
        assert torch.equal(v1, v2)
        assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-7)  # index_add_ (atomics) may sum in another order


def test_large_batch_all_eager_matches_sentence_transformers():
    """B = 3000 (above the graph threshold, chunked sorts): equal to ST within the usual tolerance."""
    from oracle import grads_close, st_loss, value_and_grad

    g = torch.Generator().manual_seed(5)
    e = torch.randn(3000, 64, generator=g).to(DEVICE)
    y = (torch.arange(3000) // 4).to(DEVICE)
    v, gr = value_and_grad(lambda x: OURS["batch_all"](x, y, 0.5, "euclidean"), e)
    v_st, g_st = value_and_grad(lambda x: st_loss("batch_all", x, y, 0.5, "euclidean"), e)
    assert torch.allclose(v, v_st, rtol=1e-4, atol=1e-5) and grads_close(gr, g_st)


def test_the_fused_kernels_serve_float32_cuda():
    from tutorial_lib.engine import counting

    assert counting.use_fused(torch.zeros(8, 8, device=DEVICE))
    assert not counting.use_fused(torch.zeros(8, 8, device=DEVICE, dtype=torch.float64))


@pytest.mark.parametrize("batch_size", [3000, 4096])
@pytest.mark.parametrize("layout", ["pk", "few", "mixed"])
def test_fused_kernels_equal_the_sorted_engine_at_large_batches(batch_size, layout):
    """Above the graph threshold, with several column steps and padded rows: exactly the sort-based engine's counts
    and semi-hard choices (``mixed``: half the batch in groups of 4, half in 3 large groups, so that both kernels
    serve anchors of the same batch)."""
    from test_triton_kernels import _engine_semi_hard

    from tutorial_lib.engine import counting, fused_kernels, fused_semi_hard, selection
    from tutorial_lib.engine.gradients import distances_for_backward

    g = torch.Generator().manual_seed(batch_size)
    e = torch.randn(batch_size, 64, generator=g)
    e[::7] = e[1::7][: e[::7].shape[0]]  # duplicated rows: exact ties
    half = batch_size // 2
    y = {"pk": torch.arange(batch_size) // 4, "few": torch.arange(batch_size) % 4,
         "mixed": torch.cat([torch.arange(half) // 4, batch_size + torch.arange(batch_size - half) % 3])}[layout]
    y = y[torch.randperm(batch_size, generator=g)].to(DEVICE)
    d = distances_for_backward(e.to(DEVICE), "euclidean")[1]
    masks = selection.batch_masks(y)
    for margin in (0.0, 0.5, 2.0):
        signed, counted, _ = fused_kernels.batch_all_terms(d, y, margin)
        counts = counting.batch_all_counts(d, masks.pos, masks.neg, margin)  # (B^3 brute force: too large here)
        assert torch.equal(signed, (counts.per_positive - counts.per_negative).float())
        assert int(counted) == int(counts.counted)
        signed, total, pairs = fused_semi_hard.semi_hard_terms(d, y, margin)
        ref_signed, ref_total, ref_pairs = _engine_semi_hard(d, y, margin)
        assert torch.equal(signed, ref_signed) and int(pairs) == ref_pairs
        assert abs(float(total) - float(ref_total)) <= 1e-4 * abs(float(ref_total)) + 1e-4


@pytest.mark.parametrize("strategy", ["batch_all", "batch_semi_hard"])
@pytest.mark.parametrize("layout", ["pk", "few"])
def test_fused_losses_at_large_batches_match_sentence_transformers(strategy, layout, monkeypatch):
    """B = 3000: the public loss (fused) equals the sort-based engine and sentence-transformers (values; gradients)."""
    from oracle import grads_close, st_loss, value_and_grad

    g = torch.Generator().manual_seed(11)
    e = torch.randn(3000, 64, generator=g).to(DEVICE)
    y = (torch.arange(3000) // 4 if layout == "pk" else torch.arange(3000) % 4).to(DEVICE)
    monkeypatch.setenv("TRIPLET_FUSED", "1")
    v, gr = value_and_grad(lambda x: OURS[strategy](x, y, 0.5, "euclidean"), e)
    monkeypatch.setenv("TRIPLET_FUSED", "0")
    v_engine, g_engine = value_and_grad(lambda x: OURS[strategy](x, y, 0.5, "euclidean"), e)
    assert torch.allclose(v, v_engine, rtol=1e-5, atol=1e-6) and grads_close(gr, g_engine, rtol=1e-5)
    if strategy == "batch_semi_hard" or layout == "pk":  # ST's BatchAll needs ~B^3 / 4 floats in the few layout
        v_st, g_st = value_and_grad(lambda x: st_loss(strategy, x, y, 0.5, "euclidean"), e)
        assert torch.allclose(v, v_st, rtol=1e-4, atol=1e-5) and grads_close(gr, g_st)
