"""The widgets, headless: build each one, set a control's ``.value``, assert what the picture and summary show.

The oracles are the plain loops of :mod:`tutorial_lib.reference` and the library functions the widgets claim to
show (``triplet_stats``, ``mine``, the losses).
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tutorial_lib import losses, reference, widgets
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.widgets import bundle as widget_bundle
from tutorial_lib.widgets import explorer as widget_explorer

pytestmark = pytest.mark.usefixtures("single_thread")


def naive_counts(dist: torch.Tensor, labels: list[int], anchor: int, margin: float) -> dict[str, int]:
    """hard / semi-hard / easy triplets of one anchor, from the definitions (ties: hard)."""
    counts = {"hard": 0, "semi-hard": 0, "easy": 0}
    for p in range(len(labels)):
        if p == anchor or labels[p] != labels[anchor]:
            continue
        for n in range(len(labels)):
            if labels[n] == labels[anchor]:
                continue
            d_ap, d_an = float(dist[anchor, p]), float(dist[anchor, n])
            key = "hard" if d_an <= d_ap else "semi-hard" if d_ap - d_an + margin > 0 else "easy"
            counts[key] += 1
    return counts


def clustered(seed: int = 0, per_label: int = 6, n_labels: int = 5, dim: int = 16, normalize: bool = True):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_labels).repeat_interleave(per_label)
    centres = torch.randn(n_labels, dim, generator=g) * 1.5
    x = centres[labels] + torch.randn(len(labels), dim, generator=g)
    return (torch.nn.functional.normalize(x, dim=1) if normalize else x), labels


# ----------------------------------------------------------------------------------------------------------------
# margin playground (notebook 01)
# ----------------------------------------------------------------------------------------------------------------


def test_playground_initial_state_matches_definitions():
    points, labels, names = widgets.toy_scene()
    bundle = widgets.margin_playground(margin=0.3, anchor=0)
    dist = pairwise_distances(points)
    assert bundle.state["anchor"] == 0 and bundle.state["margin"] == pytest.approx(0.3)
    assert bundle.state["counts"] == naive_counts(dist, labels.tolist(), 0, 0.3)
    # the positive starts at the anchor's hardest (farthest) positive
    assert bundle.state["positive"] == reference.hardest_positive(dist, labels.tolist(), 0)
    assert bundle.figure is not None and bundle.redraws == 1
    assert "anchor 0 (sport)" in bundle.text


def test_playground_margin_slider_changes_counts_and_losses():
    points, labels, _ = widgets.toy_scene()
    dist = pairwise_distances(points)
    bundle = widgets.margin_playground(margin=0.3)
    before = dict(bundle.state["counts"])
    bundle.controls["margin"].value = 1.0
    after = bundle.state["counts"]
    assert bundle.redraws == 2
    assert after == naive_counts(dist, labels.tolist(), 0, 1.0)
    assert after["semi-hard"] > before["semi-hard"] and after["hard"] == before["hard"]
    assert "margin 1.00" in bundle.text
    for name, value in bundle.state["losses"].items():
        expected = losses.loss_and_stats(name, points, labels, 1.0, with_stats=False)[0]
        assert value == pytest.approx(float(expected), abs=1e-6)
    # batch-level counts are triplet_stats', and they are the sum of the per-anchor counts
    total = {"hard": 0, "semi-hard": 0, "easy": 0}
    for a in range(len(labels)):
        for k, v in naive_counts(dist, labels.tolist(), a, 1.0).items():
            total[k] += v
    stats = bundle.state["batch_counts"]
    assert (stats["hard_triplets"], stats["semi_hard_triplets"], stats["easy_triplets"]) == (
        total["hard"], total["semi-hard"], total["easy"])


def test_playground_anchor_selector_updates_positives_and_picks_once():
    points, labels, _ = widgets.toy_scene()
    dist = pairwise_distances(points)
    lab = labels.tolist()
    bundle = widgets.margin_playground(margin=0.3)
    for anchor in (7, 10, 3):
        redraws = bundle.redraws
        bundle.controls["anchor"].value = anchor
        assert bundle.redraws == redraws + 1  # one redraw per anchor change, not one per control it updates
        options = [value for _, value in bundle.controls["positive"].options]
        assert sorted(options) == [p for p in range(len(lab)) if p != anchor and lab[p] == lab[anchor]]
        hp = reference.hardest_positive(dist, lab, anchor)
        hn = reference.hardest_negative(dist, lab, anchor)
        assert bundle.state["positive"] == hp
        assert bundle.state["picks"]["batch_hard"] == (hp, hn)
        for p, (n, fallback) in bundle.state["picks"]["batch_semi_hard"].items():
            assert (n, fallback) == reference.semi_hard_negative(dist, lab, anchor, p)
        assert f"anchor {anchor}" in bundle.text


def test_playground_positive_selector_redraws_for_that_pair():
    bundle = widgets.margin_playground(margin=0.3, anchor=0)
    other = [value for _, value in bundle.controls["positive"].options if value != bundle.state["positive"]][0]
    bundle.controls["positive"].value = other
    assert bundle.state["positive"] == other
    assert f"pair (0, {other})" in bundle.text


def test_playground_accepts_its_own_points():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [1.0, 0.2]])
    labels = torch.tensor([0, 0, 1, 1])
    bundle = widgets.margin_playground(points, labels, ["a", "b"], margin=0.5)
    assert bundle.state["counts"] == {"hard": 0, "semi-hard": 0, "easy": 2}
    bundle.controls["margin"].value = 1.0
    assert bundle.state["counts"] == {"hard": 0, "semi-hard": 2, "easy": 0}


def test_anchor_triplets_tie_counts_as_hard():
    dist = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 1.0], [0.5, 1.0, 0.0]])
    info = widgets.anchor_triplets(dist, torch.tensor([0, 0, 1]), anchor=0, margin=0.0)
    assert info["counts"] == {"hard": 1, "semi-hard": 0, "easy": 0}
    info = widgets.anchor_triplets(torch.tensor([[0.0, 0.25, 0.75], [0.25, 0, 1], [0.75, 1, 0]]),
                                   torch.tensor([0, 0, 1]), anchor=0, margin=0.5)
    assert info["counts"]["easy"] == 1  # d_an == d_ap + margin exactly: loss 0


# ----------------------------------------------------------------------------------------------------------------
# margin explorer on real-looking embeddings (notebooks 01, 03-06)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", losses.STRATEGIES)
def test_explorer_counts_loss_and_picks_follow_the_library(strategy):
    emb, labels = clustered()
    bundle = widgets.margin_explorer(emb, labels, [f"L{i}" for i in range(5)], strategy=strategy)
    assert bundle.state["range"] == (0.05, 1.0, 0.025)
    assert bundle.state["margin"] == pytest.approx(0.25)
    for margin in (0.1, 0.6):
        bundle.controls["margin"].value = margin
        stats = losses.triplet_stats(emb, labels, margin)
        counts = bundle.state["counts"]
        assert counts == {k: int(stats[f"{k}_triplets"]) for k in ("valid", "easy", "semi_hard", "hard", "active")}
        expected = losses.loss_and_stats(strategy, emb, labels, margin, with_stats=False)[0]
        assert bundle.state["loss"] == pytest.approx(float(expected), abs=1e-6)
        assert f"margin {margin:.3f}" in bundle.text
    mined = losses.mine(emb, labels, 0.5)
    bundle.controls["anchor"].value = 13
    hp, hn = int(mined.hardest_positive[13]), int(mined.hardest_negative[13])
    assert bundle.state["anchor"] == 13 and bundle.state["picks"]["batch_hard"] == (hp, hn)
    if strategy == "batch_semi_hard":
        n = int(mined.semi_hard_negative[13, hp])
        assert f"picks negative {n}" in bundle.text
    elif strategy in ("batch_hard", "batch_hard_soft_margin"):
        assert f"hardest positive {hp}" in bundle.text and f"hardest negative {hn}" in bundle.text


def test_explorer_active_count_grows_with_the_margin():
    emb, labels = clustered(seed=1)
    bundle = widgets.margin_explorer(emb, labels, strategy="batch_all")
    seen = []
    for margin in (0.05, 0.3, 0.6, 1.0):
        bundle.controls["margin"].value = margin
        seen.append(bundle.state["counts"]["active"])
    assert seen == sorted(seen) and seen[-1] > seen[0]


@pytest.mark.parametrize(("distance", "expected"), [
    ("euclidean", (0.05, 1.0, 0.025)),
    ("squared_euclidean", (0.1, 2.0, 0.05)),
    ("cosine", (0.05, 1.0, 0.025)),
])
def test_margin_range_follows_the_distance_for_unit_vectors(distance, expected):
    emb, _ = clustered()
    assert widgets.margin_range(emb, distance) == pytest.approx(expected)


def test_margin_range_of_unnormalized_embeddings_uses_the_largest_distance():
    emb, _ = clustered(normalize=False)
    biggest = float(pairwise_distances(emb).max())
    low, high, step = widgets.margin_range(emb, "euclidean")
    assert high == pytest.approx(0.5 * biggest, rel=1e-3) and low == pytest.approx(0.025 * biggest, rel=1e-3)
    assert widgets.margin_range(emb, "cosine") == pytest.approx((0.05, 1.0, 0.025))  # cosine is bounded anyway


def test_explorer_rejects_an_unknown_strategy():
    emb, labels = clustered()
    with pytest.raises(ValueError, match="strategy"):
        widgets.margin_explorer(emb, labels, strategy="batch_easy")


def test_explorer_histogram_covers_every_valid_triplet():
    emb, labels = clustered(seed=2)
    bins, counts = widget_explorer._valid_gaps(pairwise_distances(emb), labels)
    assert counts.sum() == int(losses.triplet_stats(emb, labels, 0.5)["valid_triplets"])
    assert bins[0] <= 0 <= bins[-1]


def real_batch(model, per_label: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_label`` training sentences of each bundled label, encoded by ``model``: (B, 384), (B,)."""
    from tutorial_lib.data import load_bundled

    train = load_bundled()["train"]
    rows = {}
    for i, label in enumerate(train["label"]):
        if len(rows.setdefault(label, [])) < per_label:
            rows[label].append(i)
    chosen = [i for label in sorted(rows) for i in rows[label]]
    texts = [train[i]["sentence"] for i in chosen]
    labels = torch.tensor([train[i]["label"] for i in chosen])
    return model.encode(texts, convert_to_tensor=True).cpu(), labels


def explorer_colours_seen(bundle, embeddings: torch.Tensor, labels: torch.Tensor) -> set[str]:
    """Assert that the explorer's figure colours as :func:`reference.triplet_category` does; return the categories
    it showed.

    Left axes: each negative of the anchor is drawn in the colour of its triplet with the anchor's hardest positive.
    Right axes: each bar's height is the number of valid triplets whose gap d_an - d_ap falls in its bin, and a bin
    whose triplets all share one category is drawn in that category's colour (a bin across 0 or the margin holds
    two categories and may take either colour).
    """
    import numpy as np
    from matplotlib.colors import to_rgba

    anchor, margin = bundle.state["anchor"], bundle.state["margin"]
    lab = labels.tolist()
    dist = pairwise_distances(embeddings.float())
    d = dist.double().numpy()
    left, right = bundle.figure.axes
    seen = set()

    hp = reference.hardest_positive(dist, lab, anchor)
    expected = {name: [] for name in widgets.CATEGORY_COLORS}
    for n in range(len(lab)):
        if lab[n] != lab[anchor]:
            expected[reference.triplet_category(d[anchor, hp], d[anchor, n], margin)].append(d[anchor, n])
    drawn = {collection.get_label(): collection for collection in left.collections}
    for name, color in widgets.CATEGORY_COLORS.items():
        points = drawn[f"{name} negatives"]
        assert sorted(points.get_offsets()[:, 0].tolist()) == sorted(expected[name]), name
        if expected[name]:
            assert tuple(points.get_facecolor()[0]) == to_rgba(color), name
            seen.add(name)

    bins, _ = widget_explorer._valid_gaps(dist, labels)
    per_bin = [[] for _ in range(len(bins) - 1)]
    for a in range(len(lab)):
        for p in range(len(lab)):
            if p == a or lab[p] != lab[a]:
                continue
            for n in range(len(lab)):
                if lab[n] != lab[a]:
                    i = min(int(np.searchsorted(bins, d[a, n] - d[a, p], side="right")) - 1, len(per_bin) - 1)
                    per_bin[i].append(reference.triplet_category(d[a, p], d[a, n], margin))
    bars = right.patches
    assert [bar.get_height() for bar in bars] == [len(names) for names in per_bin]
    for bar, names in zip(bars, per_bin):
        if len(set(names)) == 1:
            assert bar.get_facecolor() == to_rgba(widgets.CATEGORY_COLORS[names[0]]), names[0]
            seen.add(names[0])
    return seen


@pytest.mark.slow
def test_explorer_colours_a_real_batch_as_the_reference_categories(default_st_model):
    emb, labels = real_batch(default_st_model)
    bundle = widgets.margin_explorer(emb, labels, strategy="batch_semi_hard")
    low, high, _ = bundle.state["range"]
    seen = set()
    for anchor in (0, 9, 26):
        bundle.controls["anchor"].value = anchor
        for margin in (low, bundle.state["margin"], high):
            bundle.controls["margin"].value = margin
            seen |= explorer_colours_seen(bundle, emb, labels)
    assert seen == set(widgets.CATEGORY_COLORS)  # every colour was checked somewhere


def test_explorer_colours_follow_the_reference_categories():
    emb, labels = clustered(seed=3)
    bundle = widgets.margin_explorer(emb, labels, strategy="batch_hard", margin=0.6, anchor=4)
    assert explorer_colours_seen(bundle, emb, labels) == set(widgets.CATEGORY_COLORS)


# ----------------------------------------------------------------------------------------------------------------
# soft margin, unit circle, step-through
# ----------------------------------------------------------------------------------------------------------------


def test_soft_margin_explorer_values_and_gradients():
    bundle = widgets.soft_margin_explorer(margin=0.5, gap=0.0)
    assert bundle.state["softplus"] == pytest.approx(math.log(2))
    assert bundle.state["hinge"] == pytest.approx(0.5) and bundle.state["hinge_grad"] == 1.0
    bundle.controls["x"].value = -1.0
    assert bundle.state["softplus"] == pytest.approx(math.log1p(math.exp(-1.0)))
    assert bundle.state["softplus_grad"] == pytest.approx(1 / (1 + math.e))
    assert bundle.state["hinge"] == 0.0 and bundle.state["hinge_grad"] == 0.0  # -1 + 0.5 < 0: easy, no gradient
    bundle.controls["margin"].value = 1.5
    assert bundle.state["hinge"] == pytest.approx(0.5) and bundle.state["hinge_grad"] == 1.0
    assert "margin 1.50" in bundle.text


def test_unit_circle_explorer():
    bundle = widgets.unit_circle_explorer(angle=60)
    assert bundle.state["euclidean"] == pytest.approx(1.0)  # equilateral triangle
    bundle.controls["angle"].value = 90
    assert bundle.state["cosine"] == pytest.approx(1.0) and bundle.state["euclidean"] == pytest.approx(math.sqrt(2))
    bundle.controls["angle"].value = 180
    assert bundle.state["euclidean"] == pytest.approx(2.0) and bundle.state["squared_euclidean"] == pytest.approx(4.0)
    assert "angle 180 deg" in bundle.text


def test_descend_2d_and_step_through():
    points, labels, names = widgets.toy_scene()
    frames = widgets.descend_2d(points, labels, strategy="batch_all", margin=0.3, steps=10, record_every=5)
    assert [f["step"] for f in frames] == [0, 5, 10]
    assert frames[-1]["loss"] < frames[0]["loss"]
    assert torch.equal(torch.as_tensor(frames[0]["points"], dtype=torch.float32), points)  # input untouched
    bundle = widgets.step_through(frames, labels, names)
    assert bundle.state == {"frame": 0, "step": 0, "loss": frames[0]["loss"]}
    bundle.controls["frame"].value = 2
    assert bundle.state["step"] == 10 and "step 10 of 10" in bundle.text
    assert widgets.draw_frames(frames, labels, names) is not None


# ----------------------------------------------------------------------------------------------------------------
# the bundle's display logic
# ----------------------------------------------------------------------------------------------------------------


class _FakeHandle:
    def __init__(self):
        self.updates = []

    def update(self, obj):
        self.updates.append(obj)


@pytest.mark.parametrize("headless", [True, False])
def test_first_change_replaces_the_static_picture_unless_headless(monkeypatch, headless):
    monkeypatch.setattr(widget_bundle, "_in_kernel", lambda: True)
    if headless:
        monkeypatch.setenv("TRIPLET_HEADLESS", "1")
    else:
        monkeypatch.delenv("TRIPLET_HEADLESS", raising=False)
    bundle = widgets.unit_circle_explorer()
    handle = _FakeHandle()
    bundle._snapshot = handle
    bundle._out.layout.display = "none"
    bundle.controls["angle"].value = 90
    if headless:  # the committed notebook keeps its picture; the live plot stays hidden
        assert handle.updates == [] and bundle._out.layout.display == "none"
    else:  # a live session: the live plot takes the picture's place, once
        assert len(handle.updates) == 1 and bundle._out.layout.display is None
        bundle.controls["angle"].value = 120
        assert len(handle.updates) == 1


def test_bundle_widget_holds_controls_summary_and_output():
    import ipywidgets

    bundle = widgets.soft_margin_explorer()
    assert isinstance(bundle.widget, ipywidgets.VBox)
    row, summary, out = bundle.widget.children
    assert list(row.children) == list(bundle.controls.values())
    assert isinstance(summary, ipywidgets.HTML) and "softplus" in summary.value
    assert isinstance(out, ipywidgets.Output)


# ----------------------------------------------------------------------------------------------------------------
# the package itself
# ----------------------------------------------------------------------------------------------------------------

WIDGET_MODULES = sorted(Path(widgets.__file__).parent.glob("*.py"))


def test_no_widget_module_exceeds_400_lines():
    assert len(WIDGET_MODULES) > 1
    lengths = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in WIDGET_MODULES}
    assert {name: n for name, n in lengths.items() if n > 400} == {}


def test_widget_modules_import_no_private_name():
    private = []
    for path in WIDGET_MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tutorial_lib")):
                private += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert private == []


def test_importing_the_widgets_draws_nothing():
    code = ("import sys, tutorial_lib.widgets; "
            "print([m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]"
