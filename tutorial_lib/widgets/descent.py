"""2-D points moving under a triplet loss (notebooks 01, 06): gradient descent on the points themselves, no model.

:func:`descend_2d` records the frames, :func:`draw_frames` draws a few of them side by side and
:func:`step_through` puts a slider over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tutorial_lib import losses

from .bundle import WidgetBundle, new_figure
from .scene import SCENE_COLORS, SCENE_MARKERS

__all__ = ["descend_2d", "draw_frames", "step_through"]


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

    Args:
        points: (B, 2), left untouched (a float64 copy moves); labels: (B,) integer; strategy: one of
            :data:`tutorial_lib.losses.STRATEGIES` (the soft margin ignores ``margin``).

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
    """Small multiples of :func:`descend_2d` frames (default: first, two middle, last), trails from step 0.

    Args:
        frames: :func:`descend_2d`'s; labels: (B,) integer; label_names: one per label (None: the numbers);
            indices: which frames.

    Returns:
        A matplotlib ``Figure`` with one axes per frame.
    """
    indices = list(indices) if indices is not None else sorted({0, len(frames) // 3, 2 * len(frames) // 3,
                                                                 len(frames) - 1})
    fig = new_figure(2.8 * len(indices), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(indices), sharex=True, sharey=True))
    for ax, i in zip(axes, indices):
        _draw_frame(ax, frames, labels, label_names, i)
    return fig


def _draw_frame(ax, frames, labels, label_names, i):
    """Frame ``i`` on ``ax``, with grey trails from step 0; the limits fit every frame, so frames compare."""
    lab = labels.tolist()
    start, now = frames[0]["points"], frames[i]["points"]
    every = np.vstack([f["points"] for f in frames])
    for j in range(len(lab)):
        ax.plot([start[j, 0], now[j, 0]], [start[j, 1], now[j, 1]], color="lightgrey", lw=0.8, zorder=1)
    for label in sorted(set(lab)):
        chosen = np.array(lab) == label
        name = label_names[label] if label_names else str(label)
        ax.scatter(now[chosen, 0], now[chosen, 1], color=SCENE_COLORS[label % 6], marker=SCENE_MARKERS[label % 6],
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
        fig = new_figure(4.6, 4.2)
        ax = fig.subplots()
        _draw_frame(ax, frames, labels, label_names, i)
        ax.legend(fontsize=7, loc="best")
        state = {"frame": i, "step": frames[i]["step"], "loss": frames[i]["loss"]}
        return state, f"step {state['step']} of {frames[-1]['step']}: loss {state['loss']:.4f}", fig

    return WidgetBundle({"frame": frame_w}, compute)
