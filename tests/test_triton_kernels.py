"""The optional Triton kernels equal the PyTorch engine: the counting kernel (bisection, brute force) and the fused
BatchAll / BatchSemiHard kernels (exact counts and choices, and through the public losses sentence-transformers).

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


# ------------------------------------------------------------------------------------------------------------------
# The fused kernels (tutorial_lib.engine.fused_kernels, fused_semi_hard): exact against the sort-based engine
# ------------------------------------------------------------------------------------------------------------------

MARGINS = (0.0, 0.5, 2.0)
# Under the interpreter, small column steps cover the kernels' loops at small B; on CUDA the defaults are kept (each
# step size is another compiled variant) and test_cuda_only.py covers several steps with B in the thousands.
SMALL_STEPS = {"block": 16, "chunk": 16} if DEVICE.type == "cpu" else {}


def _fused_batch(seed: int, batch_size: int):
    """A (B, B) float32 distance matrix (engine distances: >= 0, symmetric, zero diagonal) and (B,) labels.

    Labels: P x K with K in 2, 3, 4, 5, 8 (one group may be smaller), or random groups of 1 to ~6 (singletons too).
    Distances: random; rounded to tenths (exact ties, and sums such as 0.1 + 0.2 at the hinge's boundary);
    a quarter grid shifted by the margin (many losses exactly 0); or from embeddings with duplicated rows.
    """
    g = torch.Generator().manual_seed(seed)
    margin = MARGINS[seed % 3]
    if seed % 2 == 0:
        k = (2, 3, 4, 5, 8)[seed // 2 % 5]
        labels = torch.arange(batch_size) // k
    else:
        labels = torch.randint(0, max(2, batch_size // 3), (batch_size,), generator=g)
    labels = labels[torch.randperm(batch_size, generator=g)]
    kind = seed // 3 % 4
    if kind == 3:
        from tutorial_lib.engine.gradients import distances_for_backward

        e = torch.randint(-2, 3, (batch_size, 6), generator=g).float()
        copy = torch.rand(batch_size, generator=g) < 0.4
        e[copy] = e[torch.randint(0, batch_size, (batch_size,), generator=g)][copy]
        d = distances_for_backward(e.to(DEVICE), ("euclidean", "squared_euclidean", "cosine")[seed % 3])[1]
        return d.contiguous(), labels.to(DEVICE), margin
    base = torch.rand(batch_size, batch_size, generator=g, dtype=torch.float64) * 3
    if kind == 1:
        base = torch.round(base * 10) / 10
    elif kind == 2:
        base = torch.round(base * 4) / 4
        base = torch.where(torch.rand(batch_size, batch_size, generator=g) < 0.5, base + margin, base)
    d = ((base + base.T) / 2).float()
    d.fill_diagonal_(0)
    return d.to(DEVICE), labels.to(DEVICE), margin


def _direct_max(mode: str, batch_size: int) -> int:
    return {"direct": batch_size, "sorted": -1, "mixed": 2}[mode]


def _engine_batch_all(d, labels, margin):
    """The sort-based engine's signed counts (per_positive - per_negative), counted, and a float64 brute-force sum."""
    from tutorial_lib.reference import COUNT_THRESHOLD

    masks = selection.batch_masks(labels)
    counts = counting.batch_all_counts(d, masks.pos, masks.neg, margin)
    loss = (d.unsqueeze(2) - d.unsqueeze(1)) + margin  # [a, p, n]: ST's expression, float32
    valid = masks.pos.unsqueeze(2) & masks.neg.unsqueeze(1)
    assert int(counts.counted) == int(((loss > COUNT_THRESHOLD) & valid).sum())
    total = torch.where(valid & (loss > 0), loss, 0.0).double().sum()
    return (counts.per_positive - counts.per_negative).float(), int(counts.counted), total


def _engine_semi_hard(d, labels, margin):
    """The engine's semi-hard gradient counts (times the number of pairs), hinge sum and number of pairs."""
    masks = selection.batch_masks(labels)
    chosen, _ = selection.semi_hard_indices(d, masks.pos, masks.neg, masks.has_neg)
    columns = chosen.clamp(min=0)
    z = (d - d.gather(1, columns)) + margin
    active = (chosen >= 0) & (z > 0)
    signed = active.float()
    signed.scatter_add_(1, columns, -signed)
    return signed, torch.where(active, z, 0.0).double().sum(), int(masks.pos.sum())


@pytest.mark.parametrize("mode", ["direct", "sorted", "mixed"])
@pytest.mark.parametrize("seed", range(8))
def test_fused_batch_all_equals_engine(seed, mode):
    """Counts exactly equal (per positive pair, per negative pair, above 1e-16), the loss sum to float tolerance,
    whichever kernel serves each anchor: all direct, all sorted (padded rows, several programs), or mixed."""
    from tutorial_lib.engine import fused_kernels

    batch_size = 8 + (seed * 7) % 17 if mode != "direct" else 8 + (seed * 13) % 41  # sorted rows are slow to
    d, labels, margin = _fused_batch(seed, batch_size)  # interpret: at most 24 there
    signed, counted, total = fused_kernels.batch_all_terms(
        d, labels, margin, direct_max=_direct_max(mode, batch_size), programs=1 + seed % 4, **SMALL_STEPS)
    ref_signed, ref_counted, ref_total = _engine_batch_all(d, labels, margin)
    assert torch.equal(signed, ref_signed)
    assert int(counted) == ref_counted
    assert abs(float(total) - float(ref_total)) <= 1e-5 * abs(float(ref_total)) + 1e-4


@pytest.mark.parametrize("mode", ["direct", "sorted", "mixed"])
@pytest.mark.parametrize("seed", range(8))
def test_fused_semi_hard_equals_engine(seed, mode):
    """The same semi-hard negative for every pair (ties: lowest index; none farther: the farthest negative), hence
    exactly the engine's gradient counts; the hinge sum to float tolerance."""
    from tutorial_lib.engine import fused_semi_hard

    batch_size = 8 + (seed * 7) % 17 if mode != "direct" else 8 + (seed * 13) % 41
    d, labels, margin = _fused_batch(seed + 100, batch_size)
    signed, total, pairs = fused_semi_hard.semi_hard_terms(
        d, labels, margin, direct_max=_direct_max(mode, batch_size), programs=1 + seed % 4, **SMALL_STEPS)
    ref_signed, ref_total, ref_pairs = _engine_semi_hard(d, labels, margin)
    assert torch.equal(signed, ref_signed)
    assert int(pairs) == ref_pairs
    assert abs(float(total) - float(ref_total)) <= 1e-5 * abs(float(ref_total)) + 1e-5


@pytest.mark.parametrize("mode", ["direct", "sorted"])
@pytest.mark.parametrize("labels", [[0] * 6, list(range(6)), [0, 1, 0, 1, 1, 1]], ids=["one", "singletons", "two"])
def test_fused_kernels_on_degenerate_batches(labels, mode):
    """One label (no negative), no positive at all, a singleton beside a large group: the engine's results."""
    from tutorial_lib.engine import fused_kernels, fused_semi_hard

    d, _, _ = _fused_batch(3, 6)
    y = torch.tensor(labels, device=DEVICE)
    signed, counted, total = fused_kernels.batch_all_terms(d, y, 0.5, direct_max=_direct_max(mode, 6))
    ref_signed, ref_counted, ref_total = _engine_batch_all(d, y, 0.5)
    assert torch.equal(signed, ref_signed) and int(counted) == ref_counted
    assert abs(float(total) - float(ref_total)) <= 1e-5
    signed, total, pairs = fused_semi_hard.semi_hard_terms(d, y, 0.5, direct_max=_direct_max(mode, 6))
    ref_signed, ref_total, ref_pairs = _engine_semi_hard(d, y, 0.5)
    assert torch.equal(signed, ref_signed) and int(pairs) == ref_pairs
    assert abs(float(total) - float(ref_total)) <= 1e-5


@pytest.mark.parametrize("strategy", ["batch_all", "batch_semi_hard"])
@pytest.mark.parametrize("seed", range(6))
def test_fused_losses_equal_engine_and_sentence_transformers(strategy, seed, monkeypatch):
    """Through the public loss (the fused path under TRIPLET_TRITON=force): the value equals the sort-based engine
    and sentence-transformers; the gradient too, off ties (the project's criterion)."""
    from oracle import exactly_degenerate, grads_close, make_embeddings, st_loss, value_and_grad

    from tutorial_lib import losses

    g = torch.Generator().manual_seed(seed)
    k = (2, 4, 8)[seed % 3]
    batch_size = k * (3 + seed % 4)
    labels = (torch.arange(batch_size) // k)[torch.randperm(batch_size, generator=g)].to(DEVICE)
    e = make_embeddings(("normal", "duplicates", "grid")[seed % 3], batch_size, 12, 1.0, g, torch.float32)
    margin, distance = MARGINS[seed % 3], ("euclidean", "cosine", "squared_euclidean")[seed // 2 % 3]
    loss = losses.loss_function(strategy)
    monkeypatch.setenv("TRIPLET_TRITON", "force")
    monkeypatch.setenv("TRIPLET_FUSED", "1")
    assert counting.use_fused(torch.zeros(2, 2, device=DEVICE))
    v, grad = value_and_grad(lambda x: loss(x, labels, margin, distance), e)
    monkeypatch.setenv("TRIPLET_FUSED", "0")
    v_engine, g_engine = value_and_grad(lambda x: loss(x, labels, margin, distance), e)
    v_st, g_st = value_and_grad(lambda x: st_loss(strategy, x, labels, margin, distance), e)
    assert torch.allclose(v, v_engine, rtol=1e-5, atol=1e-6) and torch.allclose(v, v_st, rtol=1e-4, atol=1e-5)
    if not exactly_degenerate(strategy, e, labels, margin, distance):
        assert grads_close(grad, g_engine) and grads_close(grad, g_st)


def test_fused_dispatch(monkeypatch):
    """Opt-in (TRIPLET_FUSED=1) until measured on a GPU; then float32 only, B <= FUSED_MAX_BATCH, and off with
    TRIPLET_TRITON=0 (shapes only: no data)."""
    monkeypatch.setenv("TRIPLET_TRITON", "force")
    monkeypatch.delenv("TRIPLET_FUSED", raising=False)
    assert not counting.use_fused(torch.zeros(3, 3, device=DEVICE))  # the default: off
    monkeypatch.setenv("TRIPLET_FUSED", "1")
    assert counting.use_fused(torch.zeros(3, 3, device=DEVICE))
    assert not counting.use_fused(torch.zeros(3, 3, dtype=torch.float64, device=DEVICE))
    too_large = counting.FUSED_MAX_BATCH + 1
    assert not counting.use_fused(torch.empty(too_large, too_large, device="meta"))
    monkeypatch.setenv("TRIPLET_FUSED", "0")
    assert not counting.use_fused(torch.zeros(3, 3, device=DEVICE))
    monkeypatch.setenv("TRIPLET_FUSED", "1")
    monkeypatch.setenv("TRIPLET_TRITON", "0")
    assert not counting.use_fused(torch.zeros(3, 3, device=DEVICE))
