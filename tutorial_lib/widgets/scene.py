"""The 2-D toy scene of notebook 01 and its margin playground: one anchor, its positives and negatives, the margin.

:func:`toy_scene` places 12 points by hand; :func:`draw_playground` draws the zones of one anchor-positive pair and
the grid of the anchor's triplets; :func:`margin_playground` puts sliders on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tutorial_lib import losses
from tutorial_lib.distances import pairwise_distances

from .bundle import WidgetBundle, new_figure
from .triplets import CATEGORY_COLORS, anchor_triplets, strategy_losses, strategy_picks

__all__ = ["SCENE_COLORS", "SCENE_MARKERS", "draw_playground", "margin_playground", "toy_scene"]

SCENE_COLORS = ("#1f77b4", "#9467bd", "#17becf", "#7f7f7f", "#e377c2", "#bcbd22")
"""Label colours of the 2-D scenes (label ``i`` gets ``SCENE_COLORS[i % 6]``): no red, orange or green, which mean
triplet categories (:data:`CATEGORY_COLORS`)."""
SCENE_MARKERS = ("o", "s", "^", "D", "v", "P")
"""Label markers of the 2-D scenes, paired with :data:`SCENE_COLORS`."""


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

    Args:
        points: (B, 2); labels: (B,) integer; label_names: one name per label; anchor, positive: indices (the
            positive shares the anchor's label); margin >= 0.

    Returns:
        A matplotlib ``Figure`` (two axes).
    """
    from matplotlib.patches import Circle, Rectangle

    dist = pairwise_distances(points)
    info = anchor_triplets(dist, labels, anchor, margin)
    picks = strategy_picks(losses.mine(points, labels, margin), anchor)
    xy = points.numpy()
    lab = labels.tolist()
    d_ap = float(dist[anchor, positive])
    fig = new_figure(11.0, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.15])

    ax = left
    ax.add_patch(Circle(xy[anchor], d_ap + margin, color=CATEGORY_COLORS["semi-hard"], alpha=0.16, lw=0))
    ax.add_patch(Circle(xy[anchor], d_ap, color=CATEGORY_COLORS["hard"], alpha=0.18, lw=0))
    ax.add_patch(Circle(xy[anchor], d_ap, fill=False, ls=":", color=CATEGORY_COLORS["hard"]))
    ax.add_patch(Circle(xy[anchor], d_ap + margin, fill=False, ls=":", color=CATEGORY_COLORS["semi-hard"]))
    column = {n: j for j, n in enumerate(info["negatives"])}
    row = info["positives"].index(positive)
    for i, (x, y) in enumerate(xy):
        style = {"s": 70, "color": SCENE_COLORS[lab[i] % 6], "marker": SCENE_MARKERS[lab[i] % 6], "zorder": 3}
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
        ax.scatter([], [], color=SCENE_COLORS[i % 6], marker=SCENE_MARKERS[i % 6], label=label_names[i])
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
    dist = pairwise_distances(points)
    mined = losses.mine(points, labels, 0.0)  # the selection does not depend on the margin: mine once

    def positive_options(a):
        return [(f"{p} (d={float(dist[a, p]):.2f})", p) for p in anchor_triplets(dist, labels, a, 0.0)["positives"]]

    margin_w = w.FloatSlider(value=margin, min=0.0, max=1.5, step=0.05, description="margin",
                             continuous_update=False, readout_format=".2f")
    anchor_w = w.Dropdown(options=[(f"{i} · {label_names[lab[i]]}", i) for i in range(len(lab))], value=anchor,
                          description="anchor")
    positive_w = w.Dropdown(options=positive_options(anchor), value=int(mined.hardest_positive[anchor]),
                            description="positive")

    def follow_anchor(a):
        # A new anchor brings its own positives, starting at the hardest.
        positive_w.options = positive_options(a)
        positive_w.value = int(mined.hardest_positive[a])

    def compute(bundle):
        a, m = anchor_w.value, margin_w.value
        p = positive_w.value
        info = anchor_triplets(dist, labels, a, m)
        stats = {k: float(v) for k, v in losses.triplet_stats(points, labels, m).items()}
        picks = strategy_picks(mined, a)
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

    return WidgetBundle({"margin": margin_w, "anchor": anchor_w, "positive": positive_w}, compute,
                        follow={"anchor": follow_anchor})
