"""Interactive pictures of triplet mining: plain functions that compute and draw, and thin ipywidgets builders.

Each builder returns a :class:`WidgetBundle`. In a notebook cell, ``bundle.show()`` displays the controls and a
plain image of the initial figure; the first time a control changes, the live plot (an ``Output`` widget inside
the bundle) takes its place and every later change redraws it in place (``clear_output(wait=True)``). The plain
image is what GitHub, Colab's preview and any reader without a live kernel see: widget state is not committed.

Headless use (tests, and notebook cells that move a slider programmatically): set a control's ``.value`` and read
``bundle.state`` (the numbers shown), ``bundle.text`` (the summary, as plain text) or ``bundle.figure``. With the
environment variable ``TRIPLET_HEADLESS=1`` (set by ``python -m tutorial_lib.notebooks build`` and the notebook
tests) the plain image is never replaced, so the committed notebook keeps it.

Builders (notebook that introduces them)::

    unit_circle_explorer(angle=60.0)                                                      (00, 02)
    margin_playground(points=None, labels=None, label_names=None, margin=0.3, anchor=0)  (01)
    margin_explorer(embeddings, labels, label_names=None, strategy="batch_all",
                    distance="euclidean", margin=None, anchor=0, texts=None)            (01, 03-06)
    soft_margin_explorer(margin=0.5, gap=0.0)                                             (06)
    step_through(frames, labels, label_names=None)                                        (01)

Plain functions: :func:`toy_scene`, :func:`anchor_triplets`, :func:`strategy_losses`, :func:`margin_range`,
:func:`descend_2d` and the ``draw_*`` functions, which return a matplotlib ``Figure`` (never shown, never
registered with pyplot, so nothing piles up and no figure needs closing).

Only core ipywidgets (``FloatSlider``, ``IntSlider``, ``Dropdown``, ``HTML``, ``Output``, ``VBox``/``HBox``) and
``observe``: works with ipywidgets 7.7 (Colab) and 8 (JupyterLab). Imports torch, numpy, :mod:`tutorial_lib.losses`
and :mod:`tutorial_lib.distances` at module level; matplotlib and ipywidgets inside the functions (importing this
module opens no widget and draws nothing).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import losses
from .distances import pairwise_distances
from .env import headless

__all__ = [
    "CATEGORY_COLORS",
    "WidgetBundle",
    "anchor_triplets",
    "descend_2d",
    "display_initial",
    "draw_frames",
    "draw_playground",
    "margin_explorer",
    "margin_playground",
    "margin_range",
    "soft_margin_explorer",
    "step_through",
    "strategy_losses",
    "toy_scene",
    "unit_circle_explorer",
]

CATEGORY_COLORS = {"hard": "#d62728", "semi-hard": "#ff7f0e", "easy": "#2ca02c"}
"""Traffic-light colours of the triplet categories, the same in every picture of the series."""

# Label colours of the 2-D toy scene: no red, orange or green, which mean triplet categories here.
_SCENE_COLORS = ("#1f77b4", "#9467bd", "#17becf", "#7f7f7f", "#e377c2", "#bcbd22")
_SCENE_MARKERS = ("o", "s", "^", "D", "v", "P")
_STRATEGY_NAMES = {
    "batch_all": "BatchAll",
    "batch_hard": "BatchHard",
    "batch_semi_hard": "BatchSemiHard",
    "batch_hard_soft_margin": "BatchHardSoftMargin",
}


# ----------------------------------------------------------------------------------------------------------------
# The bundle: controls + summary + live plot, and a plain image for readers without a kernel
# ----------------------------------------------------------------------------------------------------------------


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class WidgetBundle:
    """Controls, a text summary and a figure that follow each other.

    Attributes:
        widget: the ``VBox`` to display (controls, summary, live plot).
        controls: name -> control widget (set ``.value`` to drive it from code).
        figure: the current matplotlib ``Figure``.
        state: the numbers behind the current picture (what the tests and checkpoints assert on).
        text: the summary as plain text.
        redraws: how many times the picture was recomputed (the initial draw is 1).
    """

    def __init__(self, controls: dict[str, Any], compute: Callable[[WidgetBundle], tuple[dict, str, Any]]):
        import ipywidgets as w

        self.controls = controls
        self._compute = compute
        self._summary = w.HTML()
        self._out = w.Output()
        self._snapshot = None  # display handle of the plain image shown by show()
        self._quiet = False  # True while a builder changes several controls at once (one redraw, not several)
        self.redraws = 0
        self.state: dict[str, Any] = {}
        self.text = ""
        self.figure = None
        row = w.HBox(list(controls.values()))
        self.widget = w.VBox([row, self._summary, self._out])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self._update(live=False)

    # -- drawing ---------------------------------------------------------------------------------------------
    def _update(self, live: bool) -> None:
        self.state, self.text, self.figure = self._compute(self)
        self.redraws += 1
        self._summary.value = "<div style='font-family:monospace;white-space:pre-wrap'>" + html.escape(
            self.text
        ) + "</div>"
        if not _in_kernel():
            return  # headless test: the numbers and the figure object are all there is
        self._out.clear_output(wait=True)  # wait: no flicker, and never two figures stacked
        with self._out:
            from IPython.display import display

            display(self.figure)
        if live and self._snapshot is not None and not headless():
            # The live plot now shows the same thing as the plain image below it: hide the image.
            from IPython.display import HTML

            self._snapshot.update(HTML(""))
            self._snapshot = None
            self._out.layout.display = None

    def _on_change(self, change: dict) -> None:
        if self._quiet:
            return
        self._update(live=True)

    def refresh(self) -> None:
        """Recompute and redraw (after changing the data behind the bundle)."""
        self._update(live=True)

    # -- display ---------------------------------------------------------------------------------------------
    def show(self) -> None:
        """Display the controls and, as a plain image output, the current figure.

        The plain image stands in for the live plot until a control changes (readers of the committed notebook
        on GitHub or Colab see it; widget state is not stored). The live plot is hidden until then, so a live
        session never shows the picture twice.
        """
        from IPython.display import display

        self._out.layout.display = "none"
        display(self.widget)
        self._snapshot = display(self.figure, display_id=True)

    def _ipython_display_(self) -> None:  # a bundle as the last line of a cell shows itself
        self.show()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.controls)}): {self.text.splitlines()[0] if self.text else ''}"


def display_initial(bundle: WidgetBundle) -> WidgetBundle:
    """Display a bundle (controls + the initial figure as a plain image) and return it."""
    bundle.show()
    return bundle


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ----------------------------------------------------------------------------------------------------------------
# Triplet categories and strategy picks for one anchor
# ----------------------------------------------------------------------------------------------------------------


def toy_scene() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A hand-placed 2-D batch: 12 points, 3 labels x 4, with overlapping groups (so every category occurs).

    Returns:
        ``(points, labels, label_names)``: (12, 2) float32, (12,) long, 3 names.
    """
    points = torch.tensor(
        [
            [-0.60, 0.35], [-0.35, 0.60], [-0.20, 0.05], [0.30, 0.45],  # sport
            [0.45, 0.15], [0.75, 0.50], [0.60, -0.25], [-0.30, -0.35],  # food
            [0.05, -0.55], [0.35, -0.75], [-0.05, -0.20], [-0.70, -0.60],  # tech
        ],
        dtype=torch.float32,
    )
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    return points, labels, ["sport", "food", "tech"]


def _category(d_ap, d_an, margin: float) -> np.ndarray:
    """"hard" / "semi-hard" / "easy" of each triplet, from broadcastable arrays of d(a, p) and d(a, n)."""
    active = (d_ap - d_an) + margin > 0  # the expression every loss of this package evaluates
    return np.where(d_an <= d_ap, "hard", np.where(active, "semi-hard", "easy"))


def anchor_triplets(dist: torch.Tensor, labels: torch.Tensor, anchor: int, margin: float) -> dict[str, Any]:
    """Every triplet of one anchor, sorted into hard / semi-hard / easy.

    Same rules as :func:`tutorial_lib.losses.triplet_stats`: hard ``d_an <= d_ap`` (ties count as hard);
    semi-hard ``d_ap < d_an`` and active, i.e. ``(d_ap - d_an) + margin > 0``; easy otherwise (loss 0).

    Args:
        dist: (B, B) distances; labels: (B,) integer labels; anchor: row index; margin >= 0.

    Returns:
        ``positives`` (P,) and ``negatives`` (N,) index lists (each sorted by distance to the anchor),
        ``category`` a (P, N) array of "hard"/"semi-hard"/"easy", ``loss`` the (P, N) per-triplet losses, and
        ``counts`` (hard, semi-hard, easy).
    """
    d = dist[anchor].detach().cpu().double().numpy() if isinstance(dist, torch.Tensor) else np.asarray(dist)[anchor]
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    same = lab == lab[anchor]
    positives = [int(i) for i in np.argsort(d, kind="stable") if same[i] and i != anchor]
    negatives = [int(i) for i in np.argsort(d, kind="stable") if not same[i]]
    d_ap = d[positives][:, None]
    d_an = d[negatives][None, :]
    category = _category(d_ap, d_an, margin)
    counts = {name: int((category == name).sum()) for name in CATEGORY_COLORS}
    return {
        "positives": positives,
        "negatives": negatives,
        "category": category,
        "loss": np.maximum((d_ap - d_an) + margin, 0.0),
        "counts": counts,
    }


def strategy_losses(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, distance: str = "euclidean"
) -> dict[str, float]:
    """The loss of each of the four strategies on one batch, as floats (``tutorial_lib.losses``)."""
    with torch.no_grad():
        return {
            "batch_all": float(losses.batch_all_triplet_loss(embeddings, labels, margin, distance)),
            "batch_hard": float(losses.batch_hard_triplet_loss(embeddings, labels, margin, distance)),
            "batch_semi_hard": float(losses.batch_semi_hard_triplet_loss(embeddings, labels, margin, distance)),
            "batch_hard_soft_margin": float(losses.batch_hard_soft_margin_triplet_loss(embeddings, labels, distance)),
        }


def _picks(mined: losses.Mined, anchor: int) -> dict[str, Any]:
    """What BatchHard (and soft margin) and BatchSemiHard select for ``anchor`` (indices; -1 = none)."""
    p = int(mined.hardest_positive[anchor])
    n = int(mined.hardest_negative[anchor])
    semi = {
        int(q): (int(mined.semi_hard_negative[anchor, q]), bool(mined.semi_hard_fallback[anchor, q]))
        for q in torch.nonzero(mined.pos_mask[anchor]).flatten().tolist()
    }
    return {"batch_hard": (p, n), "batch_hard_soft_margin": (p, n), "batch_semi_hard": semi}


# ----------------------------------------------------------------------------------------------------------------
# 01: the margin playground (2-D scene)
# ----------------------------------------------------------------------------------------------------------------


def draw_playground(
    points: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str],
    anchor: int,
    positive: int,
    margin: float,
):
    """The 2-D scene around one anchor, and the grid of its triplets coloured by category.

    Left: the disk of radius d(a, p) (hard negatives inside), the ring out to d(a, p) + margin (semi-hard) and
    the outside (easy), for the chosen positive p; each negative is ringed in its category's colour; lines show the
    pairs BatchHard picks (solid) and BatchSemiHard picks for (a, p) (dashed). Right: one cell per triplet
    (rows: positives, columns: negatives, both sorted by distance), coloured by category, with its loss.
    """
    from matplotlib.patches import Circle, Rectangle

    dist = pairwise_distances(points)
    info = anchor_triplets(dist, labels, anchor, margin)
    mined = losses.mine(points, labels, margin)
    picks = _picks(mined, anchor)
    xy = points.numpy()
    lab = labels.tolist()
    d_ap = float(dist[anchor, positive])
    fig = _figure(11.0, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.15])

    ax = left
    ax.add_patch(Circle(xy[anchor], d_ap + margin, color=CATEGORY_COLORS["semi-hard"], alpha=0.16, lw=0))
    ax.add_patch(Circle(xy[anchor], d_ap, color=CATEGORY_COLORS["hard"], alpha=0.18, lw=0))
    ax.add_patch(Circle(xy[anchor], d_ap, fill=False, ls=":", color=CATEGORY_COLORS["hard"]))
    ax.add_patch(Circle(xy[anchor], d_ap + margin, fill=False, ls=":", color=CATEGORY_COLORS["semi-hard"]))
    column = {n: j for j, n in enumerate(info["negatives"])}
    row = info["positives"].index(positive)
    for i, (x, y) in enumerate(xy):
        style = {"s": 70, "color": _SCENE_COLORS[lab[i] % 6], "marker": _SCENE_MARKERS[lab[i] % 6], "zorder": 3}
        if i in column:
            category = info["category"][row, column[i]]
            style.update(edgecolors=CATEGORY_COLORS[category], linewidths=2.5)
        ax.scatter([x], [y], **style)
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    ax.scatter([xy[anchor, 0]], [xy[anchor, 1]], s=330, marker="*", color="gold", edgecolors="black", zorder=4)
    ax.scatter([xy[positive, 0]], [xy[positive, 1]], s=260, facecolors="none", edgecolors="black", zorder=4)
    hp, hn = picks["batch_hard"]
    sn, _ = picks["batch_semi_hard"][positive]
    for target, ls, color in ((hp, "-", "black"), (hn, "-", CATEGORY_COLORS["hard"]), (sn, "--", "#555555")):
        ax.plot(*zip(xy[anchor], xy[target]), ls=ls, color=color, lw=1.3, zorder=2)
    for i in sorted(set(lab)):
        ax.scatter([], [], color=_SCENE_COLORS[i % 6], marker=_SCENE_MARKERS[i % 6], label=label_names[i])
    ax.plot([], [], "-", color="black", label="BatchHard: hardest positive")
    ax.plot([], [], "-", color=CATEGORY_COLORS["hard"], label="BatchHard: hardest negative")
    ax.plot([], [], "--", color="#555555", label=f"BatchSemiHard: negative for p={positive}")
    # Below the axes, where it hides no point.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(-0.02, -0.08), ncol=2, frameon=False)
    ax.set_aspect("equal")
    lim = np.abs(xy).max() + 0.25
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(f"anchor {anchor} (star), positive {positive} (ring), margin {margin:.2f}", fontsize=10)

    ax = right
    P, N = info["category"].shape
    for r in range(P):
        for c in range(N):
            category = info["category"][r, c]
            ax.add_patch(Rectangle((c, r), 1, 1, color=CATEGORY_COLORS[category], alpha=0.75))
            ax.text(c + 0.5, r + 0.5, f"{info['loss'][r, c]:.2f}", ha="center", va="center", fontsize=7.5)
    r_hp, c_hn = info["positives"].index(hp), column[hn]
    ax.add_patch(Rectangle((c_hn, r_hp), 1, 1, fill=False, lw=3, edgecolor="black"))
    for r, p in enumerate(info["positives"]):
        n, _ = picks["batch_semi_hard"][p]
        ax.plot(column[n] + 0.5, r + 0.18, marker="v", color="black", ms=6)
    ax.add_patch(Rectangle((0, row), N, 1, fill=False, lw=1.2, ls="--", edgecolor="black"))
    ax.set_xlim(0, N)
    ax.set_ylim(P, 0)
    ax.set_xticks(np.arange(N) + 0.5, [f"n={n}\n{dist[anchor, n]:.2f}" for n in info["negatives"]], fontsize=7)
    ax.set_yticks(np.arange(P) + 0.5, [f"p={p}  {dist[anchor, p]:.2f}" for p in info["positives"]], fontsize=8)
    ax.set_xlabel("negatives, nearest first (distance to the anchor)", fontsize=9)
    for name, color in CATEGORY_COLORS.items():
        ax.bar([0], [0], color=color, label=f"{name} ({info['counts'][name]})")
    ax.plot([], [], "s", mfc="none", mec="black", mew=2, label="BatchHard pick")
    ax.plot([], [], "v", color="black", label="BatchSemiHard pick per row")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("this anchor's triplets: loss max(0, d_ap - d_an + margin)", fontsize=10)
    return fig


def margin_playground(
    points: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    label_names: Sequence[str] | None = None,
    margin: float = 0.3,
    anchor: int = 0,
) -> WidgetBundle:
    """The margin playground of notebook 01: move the margin, pick an anchor and a positive, watch the triplets.

    Controls: ``margin`` (0-1.5), ``anchor``, ``positive`` (the anchor's positives; starts at the hardest one).
    ``state`` keys: ``anchor``, ``positive``, ``margin``, ``counts`` (this anchor's hard/semi-hard/easy),
    ``batch_counts`` (the whole batch's, from :func:`tutorial_lib.losses.triplet_stats`), ``picks``
    (from :func:`tutorial_lib.losses.mine`) and ``losses`` (the four strategies on the whole batch).

    Args:
        points, labels, label_names: a 2-D batch (B, 2), (B,), names; None uses :func:`toy_scene`.
    """
    import ipywidgets as w

    if points is None:
        points, labels, label_names = toy_scene()
    label_names = list(label_names or [str(i) for i in range(int(labels.max()) + 1)])
    lab = labels.tolist()

    def anchor_options():
        return [(f"{i} · {label_names[lab[i]]}", i) for i in range(len(lab))]

    dist = pairwise_distances(points)

    def positive_options(a):
        return [(f"{p} (d={float(dist[a, p]):.2f})", p) for p in anchor_triplets(dist, labels, a, 0.0)["positives"]]

    margin_w = w.FloatSlider(value=margin, min=0.0, max=1.5, step=0.05, description="margin",
                             continuous_update=False, readout_format=".2f")
    anchor_w = w.Dropdown(options=anchor_options(), value=anchor, description="anchor")
    mined = losses.mine(points, labels, 0.0)  # the selection does not depend on the margin: mine once
    positive_w = w.Dropdown(options=positive_options(anchor), value=int(mined.hardest_positive[anchor]),
                            description="positive")

    def compute(bundle):
        a, m = anchor_w.value, margin_w.value
        p = positive_w.value
        info = anchor_triplets(dist, labels, a, m)
        stats = {k: float(v) for k, v in losses.triplet_stats(points, labels, m).items()}
        picks = _picks(mined, a)
        loss = strategy_losses(points, labels, m)
        c = info["counts"]
        hp, hn = picks["batch_hard"]
        sn, fb = picks["batch_semi_hard"][p]
        text = "\n".join([
            f"anchor {a} ({label_names[lab[a]]}), margin {m:.2f}: {sum(c.values())} triplets -> "
            f"{c['hard']} hard, {c['semi-hard']} semi-hard, {c['easy']} easy",
            f"whole batch: {int(stats['valid_triplets'])} valid, {int(stats['hard_triplets'])} hard, "
            f"{int(stats['semi_hard_triplets'])} semi-hard, {int(stats['easy_triplets'])} easy",
            f"BatchAll      loss {loss['batch_all']:.3f}  (mean over the batch's "
            f"{int(stats['active_triplets'])} active triplets)",
            f"BatchHard     loss {loss['batch_hard']:.3f}  (anchor {a}: positive {hp}, negative {hn})",
            f"BatchSemiHard loss {loss['batch_semi_hard']:.3f}  (pair ({a}, {p}): negative {sn}"
            f"{', the farthest: none is farther than the positive' if fb else ''})",
            f"SoftMargin    loss {loss['batch_hard_soft_margin']:.3f}  (BatchHard's pair, softplus, "
            "no margin)",
        ])
        state = {"anchor": a, "positive": p, "margin": m, "counts": c, "batch_counts": stats, "picks": picks,
                 "losses": loss}
        return state, text, draw_playground(points, labels, label_names, a, p, m)

    bundle = WidgetBundle({"margin": margin_w, "anchor": anchor_w, "positive": positive_w}, compute)

    def on_anchor(change):
        # New anchor: its own positives, starting at the hardest; one redraw, not two.
        bundle._quiet = True
        try:
            positive_w.options = positive_options(change["new"])
            positive_w.value = int(mined.hardest_positive[change["new"]])
        finally:
            bundle._quiet = False
        bundle._update(live=True)

    anchor_w.unobserve(bundle._on_change, names="value")
    anchor_w.observe(on_anchor, names="value")
    return bundle


# ----------------------------------------------------------------------------------------------------------------
# 01, 03-06: the margin on real embeddings
# ----------------------------------------------------------------------------------------------------------------

_BOUND = {"euclidean": 2.0, "squared_euclidean": 4.0, "cosine": 2.0}


def margin_range(embeddings: torch.Tensor, distance: str = "euclidean") -> tuple[float, float, float]:
    """``(min, max, step)`` of a margin slider that suits these embeddings and this distance.

    The scale is the largest distance possible: 2 (euclidean), 4 (squared) or 2 (cosine) for unit vectors and for
    cosine, else the largest distance in the batch. The slider spans 2.5 % to 50 % of it: 0.05-1.0 for a
    normalized model with euclidean distance.
    """
    norms = embeddings.detach().float().norm(dim=1)
    unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3))
    if distance == "cosine" or unit:
        scale = _BOUND[distance]
    else:
        scale = float(pairwise_distances(embeddings.detach().float(), distance).max())
    scale = scale if scale > 0 else 1.0
    return round(0.025 * scale, 4), round(0.5 * scale, 4), round(0.0125 * scale, 4)


def _valid_gaps(dist: torch.Tensor, labels: torch.Tensor, n_bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``(bins, counts)``: a histogram of d_an - d_ap over every valid triplet, one anchor at a time (memory
    O(B^2), never the (B, B, B) cube). The bins span the gaps' range, 0 included."""
    d = dist.detach().double().cpu().numpy()
    lab = labels.cpu().numpy()
    per_anchor = []
    for a in range(len(lab)):
        same = lab == lab[a]
        same[a] = False
        d_ap, d_an = d[a, same], d[a, lab != lab[a]]
        if len(d_ap) and len(d_an):
            per_anchor.append((d_ap, d_an))
    if not per_anchor:
        return np.linspace(-1, 1, n_bins + 1), np.zeros(n_bins, dtype=np.int64)
    low = min(0.0, min(d_an.min() - d_ap.max() for d_ap, d_an in per_anchor))
    high = max(0.0, max(d_an.max() - d_ap.min() for d_ap, d_an in per_anchor))
    pad = 0.02 * (high - low) + 1e-9
    bins = np.linspace(low - pad, high + pad, n_bins + 1)
    counts = np.zeros(n_bins, dtype=np.int64)
    for d_ap, d_an in per_anchor:
        counts += np.histogram((d_an[None, :] - d_ap[:, None]).ravel(), bins=bins)[0]
    return bins, counts


def margin_explorer(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    label_names: Sequence[str] | None = None,
    strategy: str = "batch_all",
    distance: str = "euclidean",
    margin: float | None = None,
    anchor: int = 0,
    texts: Sequence[str] | None = None,
) -> WidgetBundle:
    """A margin slider and an anchor selector on real embeddings, for any of the four strategies.

    Left: the chosen anchor's positives and negatives on a distance axis, the strategy's picks ringed, the
    hard / semi-hard / easy zones of its hardest positive shaded. Right: the histogram of d_an - d_ap over every
    valid triplet of the batch, coloured by category. Summary: the counts (:func:`tutorial_lib.losses.triplet_stats`),
    the picks (:func:`tutorial_lib.losses.mine`) and the strategy's loss.

    ``state`` keys: ``margin``, ``anchor``, ``counts`` (valid / easy / semi_hard / hard / active, ints),
    ``active_fraction``, ``loss``, ``picks``, ``range`` (the slider's (min, max, step)).

    Args:
        embeddings: (B, D) embeddings of one batch; labels: (B,) integer labels; label_names: their names.
        strategy: one of ``tutorial_lib.losses.STRATEGIES`` (the soft margin's loss ignores the slider; the
            categories still follow it).
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.
        margin: the initial margin; None puts the slider at 1/4 of its range.
        texts: (B,) sentences, quoted in the summary.
    """
    import ipywidgets as w

    if strategy not in losses.STRATEGIES:
        raise ValueError(f"strategy must be one of {losses.STRATEGIES}; got {strategy!r}")
    embeddings = embeddings.detach().float().cpu()
    labels = labels.cpu()
    lab = labels.tolist()
    names = list(label_names or [str(i) for i in range(max(lab) + 1)])
    lo, hi, step = margin_range(embeddings, distance)
    dist = pairwise_distances(embeddings, distance)
    mined = losses.mine(embeddings, labels, 0.0, distance)  # selection does not depend on the margin
    bins, hist = _valid_gaps(dist, labels)  # the gaps do not depend on the margin: computed once

    def quote(i: int) -> str:
        return f" '{texts[i][:60]}'" if texts is not None else ""

    if margin is None:
        margin = max(lo, round(hi / 4 / step) * step)  # a quarter of the range, on the slider's grid
    margin_w = w.FloatSlider(value=margin, min=lo, max=hi, step=step,
                             description="margin", continuous_update=False, readout_format=".3f")
    anchor_w = w.Dropdown(options=[(f"{i} · {names[lab[i]]}", i) for i in range(len(lab))], value=anchor,
                          description="anchor")

    def compute(bundle):
        m, a = margin_w.value, anchor_w.value
        stats = losses.triplet_stats(embeddings, labels, m, distance)
        counts = {k: int(stats[f"{k}_triplets"]) for k in ("valid", "easy", "semi_hard", "hard", "active")}
        loss = float(losses.loss_and_stats(strategy, embeddings, labels, m, distance, with_stats=False)[0])
        picks = _picks(mined, a)
        hp, hn = picks["batch_hard"]
        lines = [
            f"margin {m:.3f} ({distance}): {counts['valid']} valid triplets = {counts['hard']} hard + "
            f"{counts['semi_hard']} semi-hard + {counts['easy']} easy; active {counts['active']} "
            f"({float(stats['active_fraction']):.0%})",
            f"{_STRATEGY_NAMES[strategy]} loss: {loss:.4f}"
            + (" (no margin: the slider changes only the categories)" if strategy == "batch_hard_soft_margin" else ""),
        ]
        if hp < 0 or hn < 0:
            lines.append(f"anchor {a} has no {'positive' if hp < 0 else 'negative'} in this batch")
        elif strategy == "batch_all":
            info = anchor_triplets(dist, labels, a, m)
            c = info["counts"]
            lines.append(f"anchor {a}: {sum(c.values())} triplets, {c['hard'] + c['semi-hard']} of them active "
                         f"({c['hard']} hard + {c['semi-hard']} semi-hard) and in the average; "
                         f"{c['easy']} easy (loss 0, left out)")
        elif strategy == "batch_semi_hard":
            n, fb = picks["batch_semi_hard"][hp]
            lines.append(f"anchor {a}{quote(a)}: for its farthest positive {hp}{quote(hp)} the semi-hard rule "
                         f"picks negative {n}{quote(n)}" + (" (fallback: the farthest negative)" if fb else ""))
        else:
            lines.append(f"anchor {a}{quote(a)}: hardest positive {hp}{quote(hp)} "
                         f"(d={float(dist[a, hp]):.3f}), hardest negative {hn}{quote(hn)} (d={float(dist[a, hn]):.3f})")
        state = {"margin": m, "anchor": a, "counts": counts, "active_fraction": float(stats["active_fraction"]),
                 "loss": loss, "picks": picks, "range": (lo, hi, step)}
        return state, "\n".join(lines), _draw_explorer(dist, labels, a, m, picks, strategy, bins, hist, distance)

    return WidgetBundle({"margin": margin_w, "anchor": anchor_w}, compute)


def _draw_explorer(dist, labels, anchor, margin, picks, strategy, bins, hist, distance):
    fig = _figure(11.0, 3.6)
    left, right = fig.subplots(1, 2, width_ratios=[1.25, 1.0])
    d = dist[anchor].double().numpy()
    lab = labels.numpy()
    same = lab == lab[anchor]
    same[anchor] = False
    other = lab != lab[anchor]
    hp, hn = picks["batch_hard"]
    rng = np.random.default_rng(anchor)  # fixed vertical jitter per anchor: points do not jump between redraws
    if hp >= 0:
        d_ap = d[hp]
        left.axvspan(0, d_ap, color=CATEGORY_COLORS["hard"], alpha=0.12)
        left.axvspan(d_ap, d_ap + margin, color=CATEGORY_COLORS["semi-hard"], alpha=0.15)
        left.axvspan(d_ap + margin, max(d.max(), d_ap + margin) * 1.05, color=CATEGORY_COLORS["easy"], alpha=0.08)
        kind = _category(d_ap, d, margin)
    else:
        kind = np.full(len(d), "easy")
    y_pos = 1 + rng.uniform(-0.15, 0.15, len(d))
    y_neg = rng.uniform(-0.15, 0.15, len(d))
    left.scatter(d[same], y_pos[same], color="#1f77b4", s=28, label="positives")
    for name, color in CATEGORY_COLORS.items():
        chosen = other & (kind == name)
        left.scatter(d[chosen], y_neg[chosen], color=color, marker="x", s=30, label=f"{name} negatives")
    marks = []
    if strategy in ("batch_hard", "batch_hard_soft_margin") and hp >= 0 and hn >= 0:
        marks = [(hp, y_pos[hp]), (hn, y_neg[hn])]
    elif strategy == "batch_semi_hard" and hp >= 0 and hn >= 0:
        marks = [(hp, y_pos[hp]), (picks["batch_semi_hard"][hp][0], y_neg[picks["batch_semi_hard"][hp][0]])]
    for i, y in marks:
        left.scatter([d[i]], [y], s=180, facecolors="none", edgecolors="black", linewidths=1.5)
    left.set_yticks([0, 1], ["negatives", "positives"])
    left.set_ylim(-0.5, 1.5)
    left.set_xlabel(f"{distance} distance to anchor {anchor}")
    left.legend(fontsize=7, loc="upper left", ncol=2)
    left.set_title(f"anchor {anchor}: zones of its farthest positive" + (" (picks ringed)" if marks else ""),
                   fontsize=10)
    centres = (bins[:-1] + bins[1:]) / 2
    colors = [CATEGORY_COLORS["hard"] if c <= 0 else CATEGORY_COLORS["semi-hard"] if c < margin
              else CATEGORY_COLORS["easy"] for c in centres]
    right.bar(centres, hist, width=bins[1] - bins[0], color=colors)
    right.axvline(0, color="black", lw=0.8)
    right.axvline(margin, color="black", lw=0.8, ls="--")
    right.set_xlabel("d_an - d_ap  (hard < 0 < semi-hard < margin < easy)")
    right.set_ylabel("valid triplets")
    right.set_title("every valid triplet of the batch", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 06: soft margin vs hinge
# ----------------------------------------------------------------------------------------------------------------


def soft_margin_explorer(margin: float = 0.5, gap: float = 0.0) -> WidgetBundle:
    """softplus(x) against the hinge max(0, x + margin), and their gradients, as functions of x = d_ap - d_an.

    Controls: ``margin`` (of the hinge, 0-2) and ``x`` (-3 to 3). ``state``: ``x``, ``margin``, ``softplus``,
    ``hinge``, ``softplus_grad`` (sigmoid(x)), ``hinge_grad`` (1 where x + margin > 0, else 0).
    """
    import ipywidgets as w

    margin_w = w.FloatSlider(value=margin, min=0.0, max=2.0, step=0.05, description="margin",
                             continuous_update=False, readout_format=".2f")
    x_w = w.FloatSlider(value=gap, min=-3.0, max=3.0, step=0.05, description="d_ap - d_an",
                        continuous_update=False, readout_format=".2f",
                        style={"description_width": "initial"})

    def compute(bundle):
        m, x = margin_w.value, x_w.value
        xt = torch.tensor(x, dtype=torch.float64)
        state = {"x": x, "margin": m, "softplus": float(torch.nn.functional.softplus(xt)),
                 "hinge": max(0.0, x + m), "softplus_grad": float(torch.sigmoid(xt)),
                 "hinge_grad": 1.0 if x + m > 0 else 0.0}
        text = (f"at d_ap - d_an = {x:+.2f}: softplus {state['softplus']:.3f} "
                f"(gradient {state['softplus_grad']:.3f}) | "
                f"hinge with margin {m:.2f}: {state['hinge']:.3f} (gradient {state['hinge_grad']:.0f})")
        return state, text, _draw_soft_margin(m, x)

    return WidgetBundle({"margin": margin_w, "x": x_w}, compute)


def _draw_soft_margin(margin: float, x: float):
    grid = torch.linspace(-3, 3, 301, dtype=torch.float64)
    fig = _figure(10.0, 3.4)
    left, right = fig.subplots(1, 2)
    left.plot(grid, torch.nn.functional.softplus(grid), label="softplus(x) = log(1 + e^x)")
    left.plot(grid, torch.relu(grid + margin), label=f"max(0, x + {margin:.2f})")
    left.axhline(math.log(2), color="grey", lw=0.6, ls=":")
    left.annotate("ln 2 at x = 0", (0, math.log(2)), xytext=(-2.9, 1.3), fontsize=8,
                  arrowprops={"arrowstyle": "->", "color": "grey"})
    right.plot(grid, torch.sigmoid(grid), label="softplus' = sigmoid(x)")
    right.plot(grid, (grid + margin > 0).double(), label="hinge' (0 or 1)")
    xt = torch.tensor(x, dtype=torch.float64)
    left.scatter([x, x], [float(torch.nn.functional.softplus(xt)), max(0.0, x + margin)], color="black", s=15,
                 zorder=3)
    right.scatter([x, x], [float(torch.sigmoid(xt)), float(x + margin > 0)], color="black", s=15, zorder=3)
    for ax, title in ((left, "loss"), (right, "gradient")):
        ax.axvline(x, color="black", lw=0.8, ls="--")
        ax.set_xlabel("x = d_ap - d_an  (x < 0: the negative is farther)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 00, 02: unit vectors and the three distances
# ----------------------------------------------------------------------------------------------------------------


def unit_distances(angle_degrees: float) -> dict[str, float]:
    """The three distances between two unit vectors at this angle: ``cosine`` 1 - cos, ``squared_euclidean``
    2 - 2 cos, ``euclidean`` its square root (at most 2, at 180 degrees)."""
    c = math.cos(math.radians(angle_degrees))
    return {"cos": c, "cosine": 1 - c, "squared_euclidean": 2 - 2 * c, "euclidean": math.sqrt(max(2 - 2 * c, 0.0))}


def unit_circle_explorer(angle: float = 60.0) -> WidgetBundle:
    """Two unit vectors at an adjustable angle, and their cosine, squared-euclidean and euclidean distances.

    Control: ``angle`` (0-180 degrees). ``state``: :func:`unit_distances` plus ``angle``.
    """
    import ipywidgets as w

    angle_w = w.FloatSlider(value=angle, min=0.0, max=180.0, step=5.0, description="angle (deg)",
                            continuous_update=False, readout_format=".0f", style={"description_width": "initial"})

    def compute(bundle):
        a = angle_w.value
        d = unit_distances(a)
        text = (f"angle {a:.0f} deg: cos = {d['cos']:+.3f} | cosine distance 1 - cos = {d['cosine']:.3f} | "
                f"squared euclidean 2 - 2 cos = {d['squared_euclidean']:.3f} | euclidean = {d['euclidean']:.3f}")
        return {"angle": a, **d}, text, _draw_unit_circle(a)

    return WidgetBundle({"angle": angle_w}, compute)


def _draw_unit_circle(angle: float):
    fig = _figure(9.5, 3.5)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.6])
    t = np.linspace(0, 2 * np.pi, 200)
    left.plot(np.cos(t), np.sin(t), color="lightgrey")
    r = math.radians(angle)
    for (x, y), name in (((1.0, 0.0), "a"), ((math.cos(r), math.sin(r)), "b")):
        left.annotate("", (x, y), (0, 0), arrowprops={"arrowstyle": "->", "lw": 1.8})
        left.text(x * 1.12, y * 1.12, name, ha="center", va="center")
    left.plot([1, math.cos(r)], [0, math.sin(r)], color=CATEGORY_COLORS["hard"], lw=1.5, ls="--")
    left.set_aspect("equal")
    left.set_xlim(-1.3, 1.3)
    left.set_ylim(-1.3, 1.3)
    left.set_title("unit vectors a, b; dashed: |a - b|", fontsize=10)
    grid = np.linspace(0, 180, 181)
    curves = [unit_distances(g) for g in grid]
    for key, label in (("euclidean", "euclidean |a - b|"), ("squared_euclidean", "squared |a - b|^2"),
                       ("cosine", "cosine 1 - cos")):
        right.plot(grid, [c[key] for c in curves], label=label)
    right.axvline(angle, color="black", lw=0.8, ls="--")
    now = unit_distances(angle)
    right.scatter([angle] * 3, [now["euclidean"], now["squared_euclidean"], now["cosine"]], color="black", s=15,
                  zorder=3)
    right.set_xlabel("angle between a and b (degrees)")
    right.set_title("at most 2 (euclidean, cosine) and 4 (squared)", fontsize=10)
    right.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 01: 2-D points moving under triplet loss
# ----------------------------------------------------------------------------------------------------------------


def descend_2d(
    points: torch.Tensor,
    labels: torch.Tensor,
    strategy: str = "batch_all",
    margin: float = 0.5,
    steps: int = 40,
    lr: float = 0.1,
    record_every: int = 5,
) -> list[dict[str, Any]]:
    """Gradient descent on the 2-D points themselves (no model): what a triplet loss asks of the embeddings.

    Returns:
        Frames ``{"step", "points" (B, 2) array, "loss"}`` for step 0 and every ``record_every`` steps (and the last).
    """
    x = points.detach().clone().double().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr)
    frames = []
    for step in range(steps + 1):
        loss, _ = losses.loss_and_stats(strategy, x, labels, margin, with_stats=False)
        if step % record_every == 0 or step == steps:
            frames.append({"step": step, "points": x.detach().numpy().copy(), "loss": float(loss.detach())})
        if step < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    return frames


def draw_frames(frames: Sequence[dict], labels: torch.Tensor, label_names: Sequence[str] | None = None,
                indices: Sequence[int] | None = None):
    """Small multiples of :func:`descend_2d` frames (default: first, two middle, last), trails from step 0."""
    indices = list(indices) if indices is not None else sorted({0, len(frames) // 3, 2 * len(frames) // 3,
                                                                 len(frames) - 1})
    fig = _figure(2.8 * len(indices), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(indices), sharex=True, sharey=True))
    for ax, i in zip(axes, indices):
        _draw_frame(ax, frames, labels, label_names, i)
    return fig


def _draw_frame(ax, frames, labels, label_names, i):
    lab = labels.tolist()
    start, now = frames[0]["points"], frames[i]["points"]
    every = np.vstack([f["points"] for f in frames])
    for j in range(len(lab)):
        ax.plot([start[j, 0], now[j, 0]], [start[j, 1], now[j, 1]], color="lightgrey", lw=0.8, zorder=1)
    for label in sorted(set(lab)):
        chosen = np.array(lab) == label
        name = label_names[label] if label_names else str(label)
        ax.scatter(now[chosen, 0], now[chosen, 1], color=_SCENE_COLORS[label % 6], marker=_SCENE_MARKERS[label % 6],
                   s=30, label=name, zorder=2)
    pad = 0.1
    ax.set_xlim(every[:, 0].min() - pad, every[:, 0].max() + pad)
    ax.set_ylim(every[:, 1].min() - pad, every[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_title(f"step {frames[i]['step']}: loss {frames[i]['loss']:.3f}", fontsize=9)


def step_through(frames: Sequence[dict], labels: torch.Tensor, label_names: Sequence[str] | None = None
                 ) -> WidgetBundle:
    """A slider over the frames of :func:`descend_2d`. ``state``: ``frame``, ``step``, ``loss``."""
    import ipywidgets as w

    frame_w = w.IntSlider(value=0, min=0, max=len(frames) - 1, step=1, description="frame",
                          continuous_update=False)

    def compute(bundle):
        i = frame_w.value
        fig = _figure(4.6, 4.2)
        ax = fig.subplots()
        _draw_frame(ax, frames, labels, label_names, i)
        ax.legend(fontsize=7, loc="best")
        state = {"frame": i, "step": frames[i]["step"], "loss": frames[i]["loss"]}
        return state, f"step {state['step']} of {frames[-1]['step']}: loss {state['loss']:.4f}", fig

    return WidgetBundle({"frame": frame_w}, compute)
