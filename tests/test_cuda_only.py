"""Checks that only mean something on a GPU: no host synchronisation, float16 autocast. Skipped on a CPU machine;
the CUDA test run (benchmarks/gpu_check.sh, TEST_DEVICE=cuda) executes them."""

from __future__ import annotations

import pytest
import torch
from oracle import DEVICE, OURS, STRATEGIES

from tutorial_lib import losses

pytestmark = pytest.mark.skipif(DEVICE.type != "cuda", reason="needs TEST_DEVICE=cuda")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("batch_size", [64, 1024])
def test_no_host_synchronisation(strategy, batch_size):
    e = torch.randn(batch_size, 32, device=DEVICE, requires_grad=True)
    y = torch.arange(batch_size, device=DEVICE) % 4
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
def test_cuda_graph_replay_equals_eager(strategy, distance, monkeypatch):
    """Replayed graphs give the eager results, also on the second call with new inputs of the same shape."""
    from oracle import value_and_grad

    for seed in (0, 1):  # the second iteration replays the graph captured in the first
        g = torch.Generator().manual_seed(seed)
        e = torch.randn(512, 48, generator=g).to(DEVICE)
        y = (torch.randperm(512, generator=g) % (8 + seed)).to(DEVICE)
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
