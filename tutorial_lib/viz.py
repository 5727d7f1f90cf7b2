"""Pictures of embeddings and of training: 2-D projections, before/after panels, training curves.

Every function takes arrays (or a ``pandas.DataFrame`` history), never a model, and returns a matplotlib ``Figure``
without showing it (a notebook displays the returned figure; a script calls ``fig.savefig``). Figures are built with
``matplotlib.figure.Figure``, not pyplot: they need no GUI backend, do not pile up in pyplot's list of open figures
and are not displayed twice by Jupyter's inline backend. Nothing happens at import time: no backend or ``rcParams``
change, and UMAP (whose numba compilation takes 15-50 s on its first fit) is imported only when asked for.

Colours are fixed per label id (``tab10``, or ``tab20`` beyond 10 labels), so the same class has the same colour
in every panel and every notebook. A legend lists at most :data:`MAX_LEGEND_LABELS` labels: beyond that it would
be taller than the figure (and squeeze the plot to nothing), so it is left out and a note in the panel says so.

Public API::

    project_2d(embeddings, method=None, seed=0)                        -> (N, 2) array
    scatter_2d(points, labels, label_names=None, ax=None, title=None)  -> Figure
    plot_before_after(emb_before, emb_after, labels, label_names=None, method=None, seed=0) -> Figure
    plot_history(history, columns=None, window=None)                   -> Figure

``method`` is ``"umap"`` or ``"pca"``; None picks PCA in fast mode (``TRIPLET_FAST=1``) and UMAP otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .env import fast_mode

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_LEGEND_LABELS", "label_colors", "plot_before_after", "plot_history", "project_2d", "scatter_2d"]

MAX_LEGEND_LABELS = 20
"""The most labels a legend lists; with more, the legend is replaced by a one-line note in the panel."""

HISTORY_PANELS = (
    ("loss", "loss"),
    ("active_fraction", "active triplets (share)"),
    ("mean_distance", "mean pairwise distance"),
    (("hardest_positive_mean", "hardest_negative_mean"), "hardest positive / negative distance"),
    ("semi_hard_fallback_rate", "semi-hard fallback rate"),
    ("learning_rate", "learning rate"),
)
"""Default panels of :func:`plot_history`: a column (or a pair drawn together) and its title."""
SHARE_PANELS = ("active_fraction", "semi_hard_fallback_rate")
"""Panels that show a share: :func:`plot_history` draws them over their whole range, 0 to 1."""


def label_colors(n_labels: int) -> list:
    """One RGBA colour per label id 0..n_labels-1 (``tab10`` up to 10 labels, ``tab20`` up to 20, then cycled)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n_labels <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n_labels)]


def _resolve_method(method: str | None) -> str:
    method = method or ("pca" if fast_mode() else "umap")
    if method not in ("umap", "pca"):
        raise ValueError(f"method must be 'umap', 'pca' or None; got {method!r}")
    return method


def project_2d(embeddings: np.ndarray, method: str | None = None, seed: int = 0) -> np.ndarray:
    """Project (N, D) embeddings to (N, 2).

    ``"pca"``: the two leading principal components (an SVD of the centred data; deterministic up to sign).
    ``"umap"``: UMAP with cosine metric, ``n_neighbors = min(15, N - 1)``, ``random_state=seed`` (reproducible,
    single-threaded).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"embeddings must be (N, D) with N >= 3; got shape {x.shape}")
    if _resolve_method(method) == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = centred @ vt[:2].T
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # D == 1: a flat second axis
    import warnings

    import umap  # slow import (numba): only here

    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(15, x.shape[0] - 1), random_state=seed)
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": that is the intent
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def _align(moving: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate/reflect, scale and shift ``moving`` (N, 2) onto ``target`` (N, 2): orthogonal Procrustes.

    Projections have no preferred orientation (a UMAP or PCA of the trained embeddings may come out mirrored or
    rotated), so without this the same cluster could jump across the picture and the eye compares the wrong thing.
    """
    mu_m, mu_t = moving.mean(axis=0), target.mean(axis=0)
    m, t = moving - mu_m, target - mu_t
    u, s, vt = np.linalg.svd(m.T @ t)
    rotation = u @ vt
    norm = np.sum(m * m)
    scale = s.sum() / norm if norm > 0 else 1.0
    return scale * m @ rotation + mu_t


def scatter_2d(
    points: np.ndarray,
    labels: Sequence[int],
    label_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    legend: bool = True,
    point_size: float = 12.0,
) -> Figure:
    """Scatter (N, 2) points coloured by (N,) integer labels, with a legend of label names.

    Args:
        ax: draw into this axes (e.g. one panel of a bigger figure); None makes a new figure.
        legend: draw a legend of the label names; with more than :data:`MAX_LEGEND_LABELS` labels present, a note
            in the panel replaces it (colours repeat beyond 20 labels anyway).

    Returns:
        The figure holding the axes.
    """
    from matplotlib.figure import Figure

    points, labels = np.asarray(points), np.asarray(list(labels))
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with N = len(labels); got {points.shape} and {labels.shape}")
    n_labels = max(int(labels.max()) + 1 if len(labels) else 0, len(label_names or ()))
    colors = label_colors(n_labels)
    if ax is None:
        ax = Figure(figsize=(5, 4.5), layout="constrained").subplots()
    for label in np.unique(labels):
        chosen = labels == label
        name = label_names[label] if label_names is not None else str(label)
        ax.scatter(points[chosen, 0], points[chosen, 1], s=point_size, color=colors[label], label=name, alpha=0.8)
    if title:
        ax.set_title(title)
    shown = len(np.unique(labels))
    if legend and shown > MAX_LEGEND_LABELS:
        ax.text(0.01, 0.99, f"{shown} labels: no legend (over {MAX_LEGEND_LABELS}); colours repeat",
                transform=ax.transAxes, ha="left", va="top", fontsize="small", color="0.3")
    elif legend:
        ax.legend(fontsize="small", markerscale=1.5, loc="best")
    return ax.figure


def plot_before_after(
    emb_before: np.ndarray,
    emb_after: np.ndarray,
    labels: Sequence[int],
    label_names: Sequence[str] | None = None,
    method: str | None = None,
    seed: int = 0,
    titles: tuple[str, str] = ("before training", "after training"),
) -> Figure:
    """Two panels: the same sentences embedded before and after training, projected to 2-D.

    Both are projected separately with ``method``; the "after" projection is Procrustes-aligned to the "before" one
    and both panels share the same axis limits, so distances in the two pictures are comparable.

    Args:
        emb_before: (N, D) embeddings from the model before training.
        emb_after: (N, D') embeddings of the same N sentences after training.
        labels: (N,) integer labels; label_names: their names (legend).
    """
    from matplotlib.figure import Figure

    if len(emb_before) != len(emb_after) or len(emb_before) != len(labels):
        raise ValueError(f"need the same N sentences: {len(emb_before)}, {len(emb_after)}, {len(labels)} rows")
    method = _resolve_method(method)
    before = project_2d(emb_before, method, seed)
    after = _align(project_2d(emb_after, method, seed), before)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    scatter_2d(before, labels, label_names, ax=axes[0], title=f"{titles[0]} ({method.upper()})", legend=False)
    scatter_2d(after, labels, label_names, ax=axes[1], title=f"{titles[1]} ({method.upper()}, aligned)")
    both = np.vstack([before, after])
    pad = 0.05 * (both.max(axis=0) - both.min(axis=0) + 1e-12)
    axes[0].set_xlim(both[:, 0].min() - pad[0], both[:, 0].max() + pad[0])
    axes[0].set_ylim(both[:, 1].min() - pad[1], both[:, 1].max() + pad[1])
    for ax in axes:
        ax.set_aspect("equal", adjustable="box")  # one unit is as long on both axes
    return fig


def plot_history(history: pd.DataFrame, columns: Sequence[Any] | None = None, window: int | None = None) -> Figure:
    """Training curves: one small panel per statistic of a :func:`tutorial_lib.training.train` history.

    Args:
        history: a DataFrame with a ``step`` column and some of the columns of :data:`HISTORY_PANELS`.
        columns: the panels, as column names (or pairs of names drawn in one panel); None uses those of
            :data:`HISTORY_PANELS` present in ``history``.
        window: also draw a rolling mean over this many steps (batch statistics are noisy); None picks
            ``len(history) // 10`` when there are at least 30 steps.
    """
    from matplotlib.figure import Figure

    if "step" not in history.columns or len(history) == 0:
        raise ValueError("history must be a non-empty DataFrame with a 'step' column (TrainResult.history)")
    titles = dict(HISTORY_PANELS)
    if columns is None:
        wanted = [c for c, _ in HISTORY_PANELS]
    else:
        wanted = [tuple(c) if isinstance(c, (list, tuple)) else c for c in columns]
    present = [c for c in wanted if all(n in history.columns for n in (c if isinstance(c, tuple) else (c,)))]
    if not present:
        raise ValueError(f"none of the columns {wanted} is in the history; it has {list(history.columns)}")
    if window is None:
        window = len(history) // 10 if len(history) >= 30 else 0
    n_cols = min(3, len(present))
    n_rows = -(-len(present) // n_cols)
    fig = Figure(figsize=(4 * n_cols, 2.8 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax, panel in zip(axes.flat, present):
        for name in panel if isinstance(panel, tuple) else (panel,):
            smooth_it = window and name != "learning_rate"  # the schedule is not noisy
            line = ax.plot(history["step"], history[name], alpha=0.35 if smooth_it else 1.0, label=name)[0]
            if smooth_it:
                smooth = history[name].rolling(window, min_periods=1).mean()
                ax.plot(history["step"], smooth, color=line.get_color())
        ax.set_title(titles.get(panel, panel if isinstance(panel, str) else " / ".join(panel)), fontsize="medium")
        ax.set_xlabel("step")
        if panel in SHARE_PANELS:
            ax.set_ylim(0, 1.05)  # a share: its whole range, so that a fall from 1.0 to 0.9 does not look like a crash
        if isinstance(panel, tuple):
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    return fig
