"""tutorial_lib.viz: projections, Procrustes alignment, figures returned (not shown), no import-time effects."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tutorial_lib import viz


def _blobs(seed=0, n=20, dim=12):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n)
    return np.eye(dim)[labels] * 4 + rng.normal(size=(3 * n, dim)), labels


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_pca_projection_is_deterministic_and_2d():
    emb, _ = _blobs()
    points = viz.project_2d(emb, method="pca")
    assert points.shape == (60, 2)
    np.testing.assert_array_equal(points, viz.project_2d(emb, method="pca"))
    assert viz.project_2d(emb[:, :1], method="pca").shape == (60, 2)  # one dimension still gives (N, 2)
    with pytest.raises(ValueError, match="method must be"):
        viz.project_2d(emb, method="tsne")


def test_fast_mode_picks_pca(monkeypatch):
    monkeypatch.setenv("TRIPLET_FAST", "1")
    emb, labels = _blobs()
    fig = viz.plot_before_after(emb, emb, labels)
    assert "PCA" in fig.axes[0].get_title()


def test_procrustes_undoes_rotation_reflection_scale_and_shift():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(30, 2))
    angle = 1.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1, -1])
    moving = 3.5 * target @ rotation + np.array([10.0, -4.0])
    np.testing.assert_allclose(viz._align(moving, target), target, atol=1e-10)


def test_before_after_panels_share_colours_names_and_axes():
    emb, labels = _blobs()
    names = ["sport", "food", "tech"]
    after = -2.0 * emb[:, ::-1] + 1.0  # a different geometry of the same sentences
    fig = viz.plot_before_after(emb, after, labels, names, method="pca")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    left, right = fig.axes
    assert _legend(right) == names
    assert left.get_xlim() == right.get_xlim() and left.get_ylim() == right.get_ylim()
    for a, b in zip(left.collections, right.collections):  # one scatter per label, same colour in both panels
        np.testing.assert_array_equal(a.get_facecolor(), b.get_facecolor())
    with pytest.raises(ValueError, match="same N sentences"):
        viz.plot_before_after(emb, after[:-1], labels, method="pca")


def test_identical_embeddings_give_identical_panels():
    emb, labels = _blobs()
    fig = viz.plot_before_after(emb, emb.copy(), labels, method="pca")
    left, right = fig.axes
    for a, b in zip(left.collections, right.collections):
        np.testing.assert_allclose(a.get_offsets(), b.get_offsets(), atol=1e-9)


def test_scatter_2d_draws_into_a_given_axes_and_names_labels():
    points = np.array([[0, 0], [1, 1], [2, 0], [3, 1.0]])
    fig = viz.scatter_2d(points, [0, 1, 1, 0], ["a", "b"], title="t")
    assert isinstance(fig, Figure) and _legend(fig.axes[0]) == ["a", "b"] and fig.axes[0].get_title() == "t"
    host = Figure()
    ax = host.subplots()
    assert viz.scatter_2d(points, [0, 1, 1, 0], ax=ax) is host
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.scatter_2d(np.zeros((4, 3)), [0, 1, 1, 0])


def test_plot_history_draws_the_present_statistics():
    steps = np.arange(1, 41)
    history = pd.DataFrame({
        "step": steps, "loss": 1 / steps, "learning_rate": np.linspace(0, 1e-4, 40), "active_fraction": 0.5 + 0 * steps,
        "hardest_positive_mean": 0.8 + 0 * steps, "hardest_negative_mean": 1.0 + 0 * steps,
    })
    fig = viz.plot_history(history)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["loss", "active triplets (share)", "hardest positive / negative distance", "learning rate"]
    assert fig.axes[1].get_ylim() == (0, 1.05) and fig.axes[0].get_ylim() != (0, 1.05)  # a share: its whole range
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders without a display
    assert len(viz.plot_history(history, columns=["loss"]).axes) == 1
    with pytest.raises(ValueError, match="none of the columns"):
        viz.plot_history(history, columns=["mean_distance"])
    with pytest.raises(ValueError, match="non-empty"):
        viz.plot_history(history.iloc[:0])


def test_importing_viz_has_no_side_effects():
    code = (
        "import sys, matplotlib; before = dict(matplotlib.rcParams); import tutorial_lib.viz; "
        "print(dict(matplotlib.rcParams) == before, 'umap' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]


@pytest.mark.slow
def test_umap_before_after_on_200_points(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    before = np.eye(16)[labels] + 0.8 * rng.normal(size=(200, 16))
    after = np.eye(16)[labels] + 0.2 * rng.normal(size=(200, 16))
    points = viz.project_2d(before, method="umap", seed=0)
    assert points.shape == (200, 2) and np.isfinite(points).all()
    fig = viz.plot_before_after(before, after, labels, ["a", "b", "c", "d"], method="umap")
    assert "UMAP" in fig.axes[0].get_title()
    fig.savefig(tmp_path / "umap.png")
    assert (tmp_path / "umap.png").stat().st_size > 10_000


def test_a_legend_of_hundreds_of_labels_is_replaced_by_a_note_without_warnings(recwarn):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(300), 2)
    emb = rng.normal(size=(600, 8))
    fig = viz.plot_before_after(emb, emb + 0.1, labels, [f"label {i}" for i in range(300)], method="pca")
    fig.savefig(__import__("io").BytesIO(), format="png")  # the old legend collapsed the layout here, with a warning
    assert [str(w.message) for w in recwarn] == []
    right = fig.axes[1]
    assert right.get_legend() is None
    assert [t.get_text() for t in right.texts] == ["300 labels: no legend (over 20); colours repeat"]


def test_up_to_twenty_labels_keep_their_legend():
    labels = np.repeat(np.arange(viz.MAX_LEGEND_LABELS), 2)
    points = np.random.default_rng(1).normal(size=(len(labels), 2))
    fig = viz.scatter_2d(points, labels, [f"n{i}" for i in range(viz.MAX_LEGEND_LABELS)])
    assert len(_legend(fig.axes[0])) == viz.MAX_LEGEND_LABELS and len(fig.axes[0].texts) == 0
