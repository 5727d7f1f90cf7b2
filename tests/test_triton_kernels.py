"""The optional Triton counting kernel equals the PyTorch bisection and brute force.

It runs where Triton can run: on CUDA (``TEST_DEVICE=cuda``, where the losses use it by default) or anywhere Triton
is installed with ``TRITON_INTERPRET=1``. The CPU CI machine has neither, so these tests are skipped there; the
CUDA test run exercises them (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import os

import pytest
import torch
from oracle import DEVICE

from tutorial_lib.engine import counting, selection

triton = pytest.importorskip("triton", reason="Triton is not installed (CPU-only machine)")
if DEVICE.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton kernels need CUDA or TRITON_INTERPRET=1", allow_module_level=True)


def _counts(d, labels, margin, mode, monkeypatch):
    monkeypatch.setenv("TRIPLET_TRITON", mode)
    masks = selection.batch_masks(labels)
    return counting.batch_all_counts(d, masks.pos, masks.neg, margin, labels=labels)


@pytest.mark.parametrize("seed", range(12))
def test_triton_counts_equal_pytorch_counts(seed, monkeypatch):
    g = torch.Generator().manual_seed(seed)
    batch_size = int(torch.randint(2, 300, (1,), generator=g))
    base = torch.rand(batch_size, batch_size, generator=g, dtype=torch.float64)
    if seed % 3 == 1:
        base = torch.round(base * 10) / 10  # decimal values: rounding-level ties with d + margin
    elif seed % 3 == 2:
        base = torch.round(base * 4) / 4
    d = ((base + base.T) / 2).float().to(DEVICE)
    d.fill_diagonal_(0)
    labels = torch.randint(0, 1 + seed % 5, (batch_size,), generator=g).to(DEVICE)
    margin = [0.0, 0.1, 0.2, 0.3, 0.25, 1.0][seed % 6]
    fast = _counts(d, labels, margin, "force", monkeypatch)
    slow = _counts(d, labels, margin, "0", monkeypatch)
    assert torch.equal(fast.per_positive, slow.per_positive)
    assert torch.equal(fast.per_negative, slow.per_negative)
    assert int(fast.counted) == int(slow.counted)


def test_the_losses_use_triton_on_cuda():
    if DEVICE.type != "cuda":
        pytest.skip("only meaningful on CUDA")
    d = torch.rand(8, 8, device=DEVICE)
    assert counting.use_triton(d)


@pytest.mark.parametrize("seed", range(4))
def test_batch_all_loss_with_triton_equals_pytorch_path(seed, monkeypatch):
    from oracle import grads_close, value_and_grad

    from tutorial_lib import losses

    g = torch.Generator().manual_seed(seed)
    e = torch.randn(40, 8, generator=g).to(DEVICE)
    y = (torch.arange(40) % (2 + seed)).to(DEVICE)
    monkeypatch.setenv("TRIPLET_TRITON", "force")
    v1, g1 = value_and_grad(lambda x: losses.batch_all_triplet_loss(x, y, 0.5), e)
    monkeypatch.setenv("TRIPLET_TRITON", "0")
    v2, g2 = value_and_grad(lambda x: losses.batch_all_triplet_loss(x, y, 0.5), e)
    assert torch.allclose(v1, v2, rtol=1e-5, atol=1e-6) and grads_close(g1, g2, rtol=1e-5)
