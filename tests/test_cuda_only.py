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
