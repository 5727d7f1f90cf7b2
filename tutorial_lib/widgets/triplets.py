"""What the pictures show about one anchor: the category of each of its triplets and what each strategy picks.

The rules live elsewhere, once: the category of a triplet is :func:`tutorial_lib.reference.triplet_category`, the
picks are :func:`tutorial_lib.losses.mine`'s and the losses :func:`tutorial_lib.losses.loss_function`'s. This
module only applies them to arrays and arranges the results for drawing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tutorial_lib import losses
from tutorial_lib.reference import triplet_category

__all__ = ["CATEGORY_COLORS", "anchor_triplets", "categories", "strategy_losses", "strategy_picks"]

CATEGORY_COLORS = {"hard": "#d62728", "semi-hard": "#ff7f0e", "easy": "#2ca02c"}
"""Traffic-light colours of the triplet categories, the same in every picture of the series."""


def categories(d_ap, d_an, margin: float) -> np.ndarray:
    """:func:`tutorial_lib.reference.triplet_category` of every triplet, elementwise.

    Args:
        d_ap, d_an: broadcastable arrays (or scalars) of d(a, p) and d(a, n), e.g. (P, 1) and (1, N).
        margin: >= 0.

    Returns:
        An array of "hard" / "semi-hard" / "easy" of the broadcast shape, e.g. (P, N).
    """
    d_ap, d_an = np.broadcast_arrays(d_ap, d_an)
    # Element by element as numpy scalars: the rule is evaluated in the inputs' dtype, as the losses next to it are.
    names = [triplet_category(p, n, margin) for p, n in zip(d_ap.flat, d_an.flat)]
    return np.array(names, dtype="<U9").reshape(d_ap.shape)  # U9 holds "semi-hard" even when there is no triplet


def anchor_triplets(dist, labels, anchor: int, margin: float) -> dict[str, Any]:
    """Every triplet of one anchor, sorted into hard / semi-hard / easy.

    Same rule as :func:`tutorial_lib.losses.triplet_stats` (:func:`tutorial_lib.reference.triplet_category`): hard
    ``d_an <= d_ap`` (ties count as hard); semi-hard ``d_ap < d_an`` and active, i.e. ``(d_ap - d_an) + margin > 0``;
    easy otherwise (loss 0).

    Args:
        dist: (B, B) distances (tensor or array); labels: (B,) integer labels; anchor: row index; margin >= 0.

    Returns:
        ``positives`` (P,) and ``negatives`` (N,) index lists (each sorted by distance to the anchor),
        ``category`` a (P, N) array of "hard"/"semi-hard"/"easy", ``loss`` the (P, N) per-triplet losses, and
        ``counts`` {category: int}.
    """
    d = dist[anchor].detach().cpu().double().numpy() if isinstance(dist, torch.Tensor) else np.asarray(dist)[anchor]
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    same = lab == lab[anchor]
    positives = [int(i) for i in np.argsort(d, kind="stable") if same[i] and i != anchor]
    negatives = [int(i) for i in np.argsort(d, kind="stable") if not same[i]]
    d_ap = d[positives][:, None]
    d_an = d[negatives][None, :]
    category = categories(d_ap, d_an, margin)
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
    """The loss of each of the four strategies on one batch, as floats, keyed and ordered as
    :data:`tutorial_lib.losses.STRATEGIES` (the soft margin ignores ``margin``).

    Args:
        embeddings: (B, D); labels: (B,) integer; margin >= 0; distance: see
            :func:`tutorial_lib.distances.pairwise_distances`.
    """
    with torch.no_grad():
        return {s: float(losses.loss_function(s)(embeddings, labels, margin, distance)) for s in losses.STRATEGIES}


def strategy_picks(mined: losses.Mined, anchor: int) -> dict[str, Any]:
    """What each strategy selects for ``anchor``, as indices (-1: none), from :func:`tutorial_lib.losses.mine`.

    Returns:
        ``batch_hard`` and ``batch_hard_soft_margin``: the pair ``(hardest positive, hardest negative)``;
        ``batch_semi_hard``: positive -> ``(negative, fallback)`` for each of the anchor's positives.
    """
    p = int(mined.hardest_positive[anchor])
    n = int(mined.hardest_negative[anchor])
    semi = {
        int(q): (int(mined.semi_hard_negative[anchor, q]), bool(mined.semi_hard_fallback[anchor, q]))
        for q in torch.nonzero(mined.pos_mask[anchor]).flatten().tolist()
    }
    return {"batch_hard": (p, n), "batch_hard_soft_margin": (p, n), "batch_semi_hard": semi}
