"""pairwise_distances and the masks, against naive loops; the numerical guards."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import DEVICE, DISTANCES, examples

from tutorial_lib import masks, reference
from tutorial_lib.distances import pairwise_distances


@settings(max_examples=examples(60), deadline=None)
@given(batch_size=st.integers(2, 12), dim=st.integers(2, 8), seed=st.integers(0, 2**31 - 1),
       distance=st.sampled_from(DISTANCES))
def test_distances_equal_a_naive_double_loop(batch_size, dim, seed, distance):
    e = torch.randn(batch_size, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(DEVICE)
    d = pairwise_distances(e, distance)
    assert d.shape == (batch_size, batch_size)
    assert torch.allclose(d, reference.pairwise_distances(e, distance), atol=1e-9)
    assert torch.allclose(d, d.T)


@pytest.mark.parametrize("distance", DISTANCES)
def test_no_negative_distances_and_finite_gradient_at_duplicates(distance):
    # near-duplicates with a large common offset: the Gram trick rounds a - 2b + c below zero here
    base = torch.randn(1, 16, generator=torch.Generator().manual_seed(0)) * 100
    e = torch.cat([base, base, base + 1e-6, -base]).to(DEVICE).requires_grad_(True)
    d = pairwise_distances(e, distance)
    if distance != "cosine":  # cosine keeps sentence-transformers' exact values, which can be -1e-7
        assert (d >= 0).all()
    assert torch.isfinite(d).all()
    d.sum().backward()
    assert torch.isfinite(e.grad).all()


def test_negative_rounding_is_clamped():
    # two near-identical vectors of norm ~8000: the unguarded Gram formula rounds to -8 here
    base = torch.randn(1, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 1000
    e = torch.cat([base, base * (1 + 1e-7), base])  # on the CPU: the rounding shown is the CPU BLAS's
    dot = e @ e.T
    raw = dot.diagonal().unsqueeze(0) - 2 * dot + dot.diagonal().unsqueeze(1)
    assert raw.min() < 0  # the trap is real for this input
    assert (pairwise_distances(e, "squared_euclidean") >= 0).all()
    assert not torch.isnan(pairwise_distances(e, "euclidean")).any()


def test_diagonal_is_exactly_zero_for_euclidean():
    e = torch.randn(10, 5, generator=torch.Generator().manual_seed(2)).to(DEVICE) * 37
    for distance in ("euclidean", "squared_euclidean"):
        assert (pairwise_distances(e, distance).diagonal() == 0).all()


def test_half_precision_is_upcast():
    e = torch.randn(6, 4, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    for dtype in (torch.float16, torch.bfloat16):
        assert pairwise_distances(e.to(dtype)).dtype == torch.float32
    with torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16):
        assert pairwise_distances(e).dtype == torch.float32


def test_masks_against_loops():
    labels = torch.tensor([0, 1, 0, 2, 1, 0], device=DEVICE)
    pos, neg, trip = masks.anchor_positive_mask(labels), masks.anchor_negative_mask(labels), masks.triplet_mask(labels)
    values = labels.tolist()
    n = len(values)
    for a in range(n):
        for p in range(n):
            assert bool(pos[a, p]) == (a != p and values[a] == values[p])
            assert bool(neg[a, p]) == (values[a] != values[p])
            for k in range(n):
                valid = a != p and values[a] == values[p] and values[a] != values[k]
                assert bool(trip[a, p, k]) == valid


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.zeros(4), ValueError, "2-D"),
        (torch.zeros(1, 3), ValueError, "at least 2 rows"),
        (torch.zeros(4, 3, dtype=torch.long), TypeError, "floating dtype"),
        ([[0.0, 1.0], [1.0, 0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_embeddings_are_named(bad, error, words):
    with pytest.raises(error, match=words):
        pairwise_distances(bad)


def test_unknown_distance_is_named():
    with pytest.raises(ValueError, match="distance must be one of"):
        pairwise_distances(torch.zeros(3, 2), "manhattan")


@pytest.mark.parametrize(
    "labels, error, words",
    [
        (torch.zeros(4, 1, dtype=torch.long), ValueError, "1-D"),
        (torch.zeros(4), TypeError, "integer dtype"),
        (torch.zeros(4, dtype=torch.bool), TypeError, "integer dtype"),
        ([0, 1, 0, 1], TypeError, "torch.Tensor"),
    ],
)
def test_bad_labels_are_named(labels, error, words):
    with pytest.raises(error, match=words):
        masks.anchor_positive_mask(labels)
