"""Curves of one variable: three distances between unit vectors (notebook 00) and softplus against the hinge (06)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .bundle import WidgetBundle, new_figure
from .triplets import CATEGORY_COLORS

__all__ = ["soft_margin_explorer", "unit_circle_explorer", "unit_distances"]


# ----------------------------------------------------------------------------------------------------------------
# 06: soft margin vs hinge
# ----------------------------------------------------------------------------------------------------------------


def soft_margin_explorer(margin: float = 0.5, gap: float = 0.0) -> WidgetBundle:
    """softplus(x) against the hinge max(0, x + margin), and their gradients, as functions of x = d_ap - d_an.

    Controls: ``margin`` (of the hinge, 0-2) and ``x`` (-3 to 3). ``state``: ``x``, ``margin``, ``softplus``,
    ``hinge``, ``softplus_grad`` (sigmoid(x)), ``hinge_grad`` (1 where x + margin > 0, else 0); all floats.
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
    fig = new_figure(10.0, 3.4)
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
# 00: unit vectors and the three distances
# ----------------------------------------------------------------------------------------------------------------


def unit_distances(angle_degrees: float) -> dict[str, float]:
    """The three distances between two unit vectors at this angle: ``cosine`` 1 - cos, ``squared_euclidean``
    2 - 2 cos, ``euclidean`` its square root (at most 2, at 180 degrees); and ``cos`` itself."""
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
    fig = new_figure(9.5, 3.5)
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
