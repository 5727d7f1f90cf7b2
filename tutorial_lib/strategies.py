"""The four mining strategies by name: the one table every module, notebook and tool uses (no torch).

``STRATEGIES`` keys every table of the project; ``TITLES`` gives their display names, and sentence-transformers'
class names are ``TITLES[s] + "TripletLoss"``. :mod:`tutorial_lib.losses` re-exports all of it next to the losses.
"""

from __future__ import annotations

__all__ = ["STRATEGIES", "TITLES", "check_strategy", "st_class_name"]

STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")
"""The four strategies, in the order the series teaches them."""

TITLES = {
    "batch_all": "BatchAll",
    "batch_hard": "BatchHard",
    "batch_semi_hard": "BatchSemiHard",
    "batch_hard_soft_margin": "BatchHardSoftMargin",
}
"""Display names; sentence-transformers' class names are ``TITLES[s] + "TripletLoss"`` (:func:`st_class_name`)."""


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if it is one of :data:`STRATEGIES`, else raise a ``ValueError`` listing them."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    return strategy


def st_class_name(strategy: str) -> str:
    """sentence-transformers' class name of a strategy, e.g. ``"BatchHardTripletLoss"``."""
    return TITLES[check_strategy(strategy)] + "TripletLoss"
