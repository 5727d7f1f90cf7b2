"""BatchAll's exact counting: the boundary search agrees with evaluating ST's float expression on every triplet.

A plain threshold search (``d_an < d_ap + margin``) miscounts triplets whose loss is at rounding level; these tests
feed values built to sit on that boundary (sums like 0.1 + 0.2, repeated values, tiny margins, negative cosine
rounding) and compare with brute force.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import DEVICE, examples

from tutorial_lib import losses
from tutorial_lib.engine.counting import batch_all_counts as _batch_all_counts
from tutorial_lib.reference import COUNT_THRESHOLD


def brute(d, pos, neg, margin, threshold):
    expr = (d.unsqueeze(2) - d.unsqueeze(1)) + margin  # [a, p, n]: ST's expression, operation by operation
    valid = pos.unsqueeze(2) & neg.unsqueeze(1)
    return ((expr > threshold) & valid)


def random_distance_matrix(rng, batch_size, dtype, margin, kind):
    """A symmetric matrix of 'distances' whose values are chosen to create ties with d + margin."""
    base = torch.rand(batch_size, batch_size, generator=rng, dtype=torch.float64)
    if kind == "decimal":  # values like 0.1, 0.3: 0.1 + 0.2 != 0.3 in binary
        base = torch.round(base * 10) / 10
    elif kind == "boundary":  # many entries exactly at d + margin for some other d
        base = torch.round(base * 4) / 4
        shift = torch.rand(batch_size, batch_size, generator=rng) < 0.5
        base = torch.where(shift, base + margin, base)
    elif kind == "cosine_rounding":  # tiny negative and positive values, as 1 - cos produces for duplicates
        base = (torch.randint(-3, 4, (batch_size, batch_size), generator=rng).to(torch.float64)
                * (2.0**-24 if dtype == torch.float32 else 2.0**-53))
    d = (base + base.T) / 2
    d.fill_diagonal_(0)
    return d.to(dtype=dtype, device=DEVICE)


@settings(max_examples=examples(300), deadline=None)
@given(
    batch_size=st.integers(2, 24),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    margin=st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0**-23, 1e-7, 5e-5, 2.0**-52, 3e-16]),
                     st.floats(0, 10)),
    kind=st.sampled_from(["random", "decimal", "boundary", "cosine_rounding"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_counts_equal_brute_force(batch_size, dtype, margin, kind, seed):
    rng = torch.Generator().manual_seed(seed)
    d = random_distance_matrix(rng, batch_size, dtype, margin, kind)
    labels = torch.randint(0, 3, (batch_size,), generator=rng).to(DEVICE)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    pos = same & ~torch.eye(batch_size, dtype=torch.bool, device=DEVICE)
    neg = ~same
    counts = _batch_all_counts(d, pos, neg, margin)
    active = brute(d, pos, neg, margin, 0.0)
    counted = brute(d, pos, neg, margin, COUNT_THRESHOLD)
    assert torch.equal(counts.per_positive, active.sum(dim=2)), (margin, kind)
    assert torch.equal(counts.per_negative, active.sum(dim=1)), (margin, kind)
    assert int(counts.counted) == int(counted.sum()), (margin, kind)


def test_a_plain_threshold_search_would_miscount():
    """The rounding case exists: d_an <= d_ap + margin disagrees with (d_ap - d_an) + margin > 0 here."""
    d_ap, d_an, margin = torch.tensor(0.3), torch.tensor(0.4), 0.1  # float32: 0.3 + 0.1 == 0.4, yet the loss is 7e-9
    threshold_says_active = bool(d_an < d_ap + margin)
    expression_says_active = bool((d_ap - d_an) + margin > 0)
    assert threshold_says_active != expression_says_active


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_from_counts_keeps_precision_at_large_distances(dtype):
    """Distances ~1000 with hinges ~0.01: the per-anchor shift keeps the float32 sum accurate."""
    rng = torch.Generator().manual_seed(7)
    e = (torch.randn(40, 8, generator=rng, dtype=torch.float64) * 0.01 + 300).to(dtype=dtype, device=DEVICE)
    y = torch.arange(40, device=DEVICE) % 5
    from oracle import st_loss

    v = losses.batch_all_triplet_loss(e, y, 0.01, "euclidean")
    v_st = st_loss("batch_all", e, y, 0.01, "euclidean")
    v64 = losses.batch_all_triplet_loss(e.double(), y, 0.01, "euclidean")
    assert torch.allclose(v.double(), v_st.double(), rtol=1e-4, atol=1e-5)
    assert torch.allclose(v.double(), v64, rtol=1e-3) or dtype == torch.float32


def test_sorted_masked_rows_in_chunks_equal_one_sort():
    pytest.importorskip("triton", reason="sorted_masked_rows lives beside the Triton kernels")
    from tutorial_lib.engine.selection import batch_masks
    from tutorial_lib.engine.triton_kernels import sorted_masked_rows

    g = torch.Generator().manual_seed(4)
    d = torch.rand(37, 37, generator=g).to(DEVICE)
    labels = torch.randint(0, 4, (37,), generator=g).to(DEVICE)
    masks = batch_masks(labels)
    neg = d.masked_fill(~masks.neg, math.inf).sort(dim=1).values
    pos = d.masked_fill(~masks.pos, -math.inf).sort(dim=1).values
    for max_elements in (100, 37 * 5, 1 << 24):  # many chunks, a few, one
        assert torch.equal(sorted_masked_rows(d, labels, positives=False, max_elements=max_elements), neg)
        assert torch.equal(sorted_masked_rows(d, labels, positives=True, max_elements=max_elements), pos)
