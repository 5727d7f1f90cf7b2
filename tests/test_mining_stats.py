"""mine() on geometry whose answers are known, triplet_stats() against brute force, input checks, and the
GPU-readiness rules (no B x B x B tensor, no host synchronisation) observed through a dispatch mode."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from oracle import DEVICE, OURS, STRATEGIES, batches, examples
from torch.utils._python_dispatch import TorchDispatchMode

from tutorial_lib import losses
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.masks import triplet_mask

# ---------------------------------------------------------------------------------------------------------------
# mine() on hand-built geometry
# ---------------------------------------------------------------------------------------------------------------

# Points on a line (1-D embeddings); labels A=0, B=1.
#   index:     0     1     2     3     4     5
#   position:  0.0   1.0   3.0   1.5   2.5   6.0
#   label:     A     A     A     B     B     B
LINE = [[0.0], [1.0], [3.0], [1.5], [2.5], [6.0]]
LINE_LABELS = [0, 0, 0, 1, 1, 1]


def _line():
    return (torch.tensor(LINE, dtype=torch.float64, device=DEVICE),
            torch.tensor(LINE_LABELS, device=DEVICE))


def test_hardest_positive_and_negative_on_a_line():
    e, y = _line()
    mined = losses.mine(e, y, margin=0.5)
    # anchor 0 (at 0): positives 1 (d=1), 2 (d=3) -> farthest is 2; negatives 3 (1.5), 4 (2.5), 5 (6) -> nearest 3
    # anchor 1 (at 1): positives 0 (1), 2 (2) -> 2; negatives 3 (0.5), 4 (1.5), 5 (5) -> 3
    # anchor 2 (at 3): positives 0 (3), 1 (2) -> 0; negatives 3 (1.5), 4 (0.5), 5 (3) -> 4
    # anchor 5 (at 6): positives 3 (4.5), 4 (3.5) -> 3; negatives 0 (6), 1 (5), 2 (3) -> 2
    assert mined.hardest_positive.tolist() == [2, 2, 0, 5, 5, 3]
    assert mined.hardest_negative.tolist() == [3, 3, 4, 1, 2, 2]


def test_semi_hard_negatives_and_fallback_on_a_line():
    e, y = _line()
    mined = losses.mine(e, y, margin=0.5)
    sh, fb = mined.semi_hard_negative, mined.semi_hard_fallback
    # (a=0, p=1): d_ap = 1; negatives beyond 1: 3 (1.5), 4 (2.5), 5 (6) -> nearest beyond is 3
    assert sh[0, 1].item() == 3 and not fb[0, 1]
    # (a=0, p=2): d_ap = 3; beyond 3: only 5 (6)
    assert sh[0, 2].item() == 5 and not fb[0, 2]
    # (a=2, p=0): d_ap = 3; negatives of 2: 3 (1.5), 4 (0.5), 5 (3.0): none strictly beyond 3 -> fallback to the
    # farthest negative, 5 (a tie at exactly d_ap does not count as "farther")
    assert sh[2, 0].item() == 5 and fb[2, 0]
    # (a=5, p=3): d_ap = 4.5; negatives of 5: 0 (6), 1 (5), 2 (3) -> nearest beyond 4.5 is 1
    assert sh[5, 3].item() == 1 and not fb[5, 3]
    # not a positive pair -> -1
    assert sh[0, 3].item() == -1 and sh[0, 0].item() == -1 and not fb[0, 3]


def test_ties_go_to_the_lowest_index():
    # anchor 0 has two positives at the same distance (1 and 2) and two negatives at the same distance (3 and 4)
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64, device=DEVICE)
    y = torch.tensor([0, 0, 0, 1, 1], device=DEVICE)
    mined = losses.mine(e, y, margin=0.1)
    assert mined.hardest_positive[0].item() == 1
    assert mined.hardest_negative[0].item() == 3
    assert mined.semi_hard_negative[0, 1].item() == 3


def test_anchor_without_positive_and_single_label_batch():
    e = torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64, device=DEVICE)
    mined = losses.mine(e, torch.tensor([0, 0, 1], device=DEVICE), margin=0.1)
    assert mined.hardest_positive.tolist() == [1, 0, -1]
    assert mined.semi_hard_negative[2].tolist() == [-1, -1, -1]
    mined = losses.mine(e, torch.tensor([7, 7, 7], device=DEVICE), margin=0.1)
    assert mined.hardest_negative.tolist() == [-1, -1, -1]
    assert (mined.semi_hard_negative == -1).all() and not mined.semi_hard_fallback.any()


# ---------------------------------------------------------------------------------------------------------------
# triplet_stats() against brute force over the 3-D mask
# ---------------------------------------------------------------------------------------------------------------


def brute_force_stats(e, y, margin, distance):
    d = pairwise_distances(e, distance)
    valid = triplet_mask(y)
    d_ap, d_an = d.unsqueeze(2), d.unsqueeze(1)
    loss = (d_ap - d_an) + margin  # [a, p, n]
    hard = valid & (d_an <= d_ap)
    active = valid & (loss > 0)
    return {
        "valid_triplets": int(valid.sum()),
        "hard_triplets": int(hard.sum()),
        "semi_hard_triplets": int((active & ~hard).sum()),
        "easy_triplets": int((valid & ~hard & ~active).sum()),
        "active_triplets": int(active.sum()),
    }


@settings(max_examples=examples(80), deadline=None)
@given(batch=batches(max_batch=24, max_dim=6))
def test_triplet_stats_equal_brute_force(batch):
    e, y, margin, distance, note = batch
    stats = losses.triplet_stats(e, y, margin, distance)
    expected = brute_force_stats(e, y, margin, distance)
    for key, value in expected.items():
        assert int(stats[key]) == value, f"{note}: {key} {int(stats[key])} != {value}"
    total = stats["hard_triplets"] + stats["semi_hard_triplets"] + stats["easy_triplets"]
    assert int(total) == expected["valid_triplets"]
    if expected["valid_triplets"]:
        assert stats["active_fraction"].item() == pytest.approx(expected["active_triplets"] / expected["valid_triplets"])


def test_triplet_stats_distances_on_a_line():
    e, y = _line()
    stats = losses.triplet_stats(e, y, margin=0.5)
    # hardest positive distances: 3, 2, 3, (anchor 3 at 1.5: positives 4 (1), 5 (4.5) -> 4.5), (4: 3.5), (5: 4.5)
    assert stats["hardest_positive_mean"].item() == pytest.approx((3 + 2 + 3 + 4.5 + 3.5 + 4.5) / 6)
    # hardest negative distances: 1.5, 0.5, 0.5, 0.5, 0.5, 3
    assert stats["hardest_negative_mean"].item() == pytest.approx((1.5 + 0.5 + 0.5 + 0.5 + 0.5 + 3) / 6)
    d = pairwise_distances(e)
    assert stats["mean_distance"].item() == pytest.approx(d.sum().item() / 30)
    fallback = losses.mine(e, y, 0.5).semi_hard_fallback
    assert stats["semi_hard_fallback_rate"].item() == pytest.approx(fallback.sum().item() / 12)
    assert all(v.requires_grad is False for v in stats.values())


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------

E = torch.zeros(4, 3)
Y = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: losses.batch_all_triplet_loss(E, Y, -0.1), ValueError, "margin must be >= 0"),
        (lambda: losses.batch_hard_triplet_loss(E, Y, float("nan")), ValueError, "margin must be finite"),
        (lambda: losses.batch_hard_triplet_loss(E, Y, "1"), TypeError, "margin must be a number"),
        (lambda: losses.batch_semi_hard_triplet_loss(E, Y[:3], 0.5), ValueError, "one entry per embedding"),
        (lambda: losses.batch_semi_hard_triplet_loss(E, Y.view(4, 1), 0.5), ValueError, "labels must be 1-D"),
        (lambda: losses.batch_all_triplet_loss(E, Y.float(), 0.5), TypeError, "labels must have an integer dtype"),
        (lambda: losses.batch_hard_soft_margin_triplet_loss(E[0], Y), ValueError, "embeddings must be 2-D"),
        (lambda: losses.batch_hard_soft_margin_triplet_loss(E[:1], Y[:1]), ValueError, "at least 2 rows"),
        (lambda: losses.batch_all_triplet_loss(E, Y, 0.5, "l1"), ValueError, "distance must be one of"),
        (lambda: losses.mine(E.long(), Y, 0.5), TypeError, "floating dtype"),
        (lambda: losses.triplet_stats(E, Y, -1), ValueError, "margin"),
    ],
)
def test_bad_input_names_the_problem(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ---------------------------------------------------------------------------------------------------------------
# GPU-readiness: what the loss path allocates and whether it ever needs the host
# ---------------------------------------------------------------------------------------------------------------

SYNCING_OPS = ("nonzero", "_local_scalar_dense", "masked_select", "unique", "item")


class Recorder(TorchDispatchMode):
    """Records every aten op and the largest tensor any op returns."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append(str(func))
        if func is torch.ops.aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or [])
        ):
            self.ops.append("boolean-index (nonzero)")
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_cubic_tensor_and_no_host_sync(strategy, monkeypatch):
    """The formulation used on GPUs. (On the CPU, BatchAll compacts the positive pairs with ``nonzero`` by default:
    there is no device to synchronise with; TRIPLET_DENSE=1 selects the GPU formulation to check it here.)"""
    monkeypatch.setenv("TRIPLET_DENSE", "1")
    batch_size = 48
    g = torch.Generator().manual_seed(5)
    e = torch.randn(batch_size, 16, generator=g).to(DEVICE).requires_grad_(True)
    y = (torch.arange(batch_size) % 4).to(DEVICE)  # 4 large groups: ST's BatchAll allocates B x B x K here
    with Recorder() as rec:
        loss = OURS[strategy](e, y, 0.5, "euclidean")
        loss.backward()
        losses.triplet_stats(e.detach(), y, 0.5)
        losses.mine(e.detach(), y, 0.5)
    bad = sorted({op for op in rec.ops if any(s in op for s in SYNCING_OPS)} | {op for op in rec.ops if "boolean" in op})
    assert not bad, f"host-synchronising ops in the loss path: {bad}"
    assert rec.largest <= 2 * batch_size * batch_size, f"largest tensor {rec.largest} > 2 B^2 = {2 * batch_size**2}"


def test_the_recorder_can_fail():
    """The two checks above would catch the patterns they forbid."""
    with Recorder() as rec:
        x = torch.arange(10)
        x[x > 3].sum().item()
        torch.zeros(8, 8, 8)
    assert any("nonzero" in op or "boolean" in op for op in rec.ops)
    assert any("_local_scalar_dense" in op for op in rec.ops)
    assert rec.largest == 512


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cpu_formulation_stays_within_b_squared(strategy):
    batch_size = 48
    g = torch.Generator().manual_seed(6)
    e = torch.randn(batch_size, 16, generator=g).requires_grad_(True)
    for y in (torch.arange(batch_size) % 4, torch.arange(batch_size) // 4):  # few large groups, and P x K
        with Recorder() as rec:
            OURS[strategy](e, y, 0.5, "euclidean").backward()
            losses.triplet_stats(e.detach(), y, 0.5)
        assert rec.largest <= 2 * batch_size * batch_size


def test_dense_and_compact_formulations_agree(monkeypatch):
    g = torch.Generator().manual_seed(8)
    for labels in (torch.arange(40) % 3, torch.arange(40) // 4, torch.randint(0, 6, (40,), generator=g)):
        e = torch.randn(40, 6, generator=g, dtype=torch.float64)
        values = {}
        for dense in ("0", "1"):
            monkeypatch.setenv("TRIPLET_DENSE", dense)
            values[dense] = (losses.batch_all_triplet_loss(e, labels, 0.7),
                             losses.triplet_stats(e, labels, 0.7)["active_triplets"])
        assert torch.allclose(values["0"][0], values["1"][0], rtol=1e-10)
        assert int(values["0"][1]) == int(values["1"][1])
