"""Interactive pictures of triplet mining: plain functions that compute and draw, and thin ipywidgets builders.

Builders, each returning a :class:`WidgetBundle` (notebook that introduces it)::

    unit_circle_explorer(angle=60.0)                                                      (00)  curves
    margin_playground(points=None, labels=None, label_names=None, margin=0.3, anchor=0)  (01)  scene
    margin_explorer(embeddings, labels, label_names=None, strategy="batch_all",
                    distance="euclidean", margin=None, anchor=0, texts=None)            (01, 03-06)  explorer
    step_through(frames, labels, label_names=None)                                        (01)  descent
    soft_margin_explorer(margin=0.5, gap=0.0)                                             (06)  curves

Plain functions (notebook)::

    toy_scene()                                   the 12-point 2-D batch                 (01-06)  scene
    draw_playground(points, labels, names, anchor, positive, margin)   -> Figure        (01, 05, 06)  scene
    anchor_triplets(dist, labels, anchor, margin) one anchor's triplets by category     (04)  triplets
    strategy_losses(embeddings, labels, margin)   the four losses of one batch          (01)  triplets
    descend_2d(points, labels, strategy, margin)  frames of gradient descent on points   (01, 06)  descent
    draw_frames(frames, labels, names)            -> Figure                              (01, 06)  descent
    margin_range(embeddings, distance)            (min, max, step) of a margin slider    (09)  explorer
    unit_distances(angle_degrees)                 the three distances of unit vectors    (00)  curves
    CATEGORY_COLORS                               hard / semi-hard / easy colours        (01, 04, 05)  triplets

Modules: :mod:`.bundle` (the bundle: controls, summary, live plot and the plain image that stands in for it),
:mod:`.triplets` (categories and picks of one anchor), :mod:`.scene`, :mod:`.explorer`, :mod:`.curves` and
:mod:`.descent`. Every figure is a matplotlib ``Figure``, never shown by nor registered with pyplot, so nothing piles
up and no figure needs closing.

Headless use (tests, and notebook cells that move a slider programmatically): set a control's ``.value`` and read
``bundle.state`` (the numbers shown), ``bundle.text`` (the summary, as plain text) or ``bundle.figure``.

Importing this package imports torch, numpy and the library's losses, distances and reference rules; matplotlib
and ipywidgets are imported inside the functions (importing it opens no widget and draws nothing).
"""

from __future__ import annotations

from .bundle import WidgetBundle
from .curves import soft_margin_explorer, unit_circle_explorer, unit_distances
from .descent import descend_2d, draw_frames, step_through
from .explorer import margin_explorer, margin_range
from .scene import draw_playground, margin_playground, toy_scene
from .triplets import CATEGORY_COLORS, anchor_triplets, strategy_losses

__all__ = [
    "CATEGORY_COLORS",
    "WidgetBundle",
    "anchor_triplets",
    "descend_2d",
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
    "unit_distances",
]
