"""The margin on real embeddings (notebooks 01, 03-06): a margin slider and an anchor selector on one batch.

:func:`margin_range` sizes the slider for the embeddings and the distance; :func:`margin_explorer` shows one
anchor's neighbours on a distance axis and every valid triplet of the batch as a histogram of ``d_an - d_ap``, both
coloured by :func:`tutorial_lib.reference.triplet_category`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tutorial_lib import losses
from tutorial_lib.distances import pairwise_distances
from tutorial_lib.reference import triplet_category

from .bundle import WidgetBundle, new_figure
from .triplets import CATEGORY_COLORS, anchor_triplets, categories, strategy_picks

__all__ = ["margin_explorer", "margin_range"]

_BOUND = {"euclidean": 2.0, "squared_euclidean": 4.0, "cosine": 2.0}  # the largest distance between unit vectors


def margin_range(embeddings: torch.Tensor, distance: str = "euclidean") -> tuple[float, float, float]:
    """``(min, max, step)`` of a margin slider that suits these (B, D) embeddings and this distance.

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
    """``(bins, counts)``, (n_bins + 1,) and (n_bins,): a histogram of d_an - d_ap over every valid triplet.

    One anchor at a time: memory O(B^2), never the (B, B, B) cube. The bins span the gaps' range, 0 included.
    """
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
            categories still follow it); another name raises ``ValueError``.
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"``.
        margin: the initial margin; None puts the slider at 1/4 of its range.
        texts: (B,) sentences, quoted in the summary.
    """
    import ipywidgets as w

    loss_fn = losses.loss_function(strategy)  # raises ValueError for an unknown strategy
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
        loss = float(loss_fn(embeddings, labels, m, distance))
        picks = strategy_picks(mined, a)
        hp, hn = picks["batch_hard"]
        lines = [
            f"margin {m:.3f} ({distance}): {counts['valid']} valid triplets = {counts['hard']} hard + "
            f"{counts['semi_hard']} semi-hard + {counts['easy']} easy; active {counts['active']} "
            f"({float(stats['active_fraction']):.0%})",
            f"{losses.TITLES[strategy]} loss: {loss:.4f}"
            + (" (no margin: the slider changes only the categories)" if strategy == "batch_hard_soft_margin" else ""),
        ]
        if hp < 0 or hn < 0:
            lines.append(f"anchor {a} has no {'positive' if hp < 0 else 'negative'} in this batch")
        elif strategy == "batch_all":
            c = anchor_triplets(dist, labels, a, m)["counts"]
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
    """The explorer's figure. dist: (B, B); labels: (B,); picks: :func:`strategy_picks` of the anchor; bins, hist:
    :func:`_valid_gaps`. Negatives are coloured by category against the anchor's hardest positive."""
    fig = new_figure(11.0, 3.6)
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
        kind = categories(d_ap, d, margin)
    else:
        kind = np.full(len(d), "easy")  # no positive: no triplet, nothing to learn from any negative
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
        sn = picks["batch_semi_hard"][hp][0]
        marks = [(hp, y_pos[hp]), (sn, y_neg[sn])]
    for i, y in marks:
        left.scatter([d[i]], [y], s=180, facecolors="none", edgecolors="black", linewidths=1.5)
    left.set_yticks([0, 1], ["negatives", "positives"])
    left.set_ylim(-0.5, 1.5)
    left.set_xlabel(f"{distance} distance to anchor {anchor}")
    left.legend(fontsize=7, loc="upper left", ncol=2)
    left.set_title(f"anchor {anchor}: zones of its farthest positive" + (" (picks ringed)" if marks else ""),
                   fontsize=10)
    centres = (bins[:-1] + bins[1:]) / 2
    # A bar at gap c = d_an - d_ap holds the triplets of d_ap = 0, d_an = c, as far as the category goes.
    colors = [CATEGORY_COLORS[triplet_category(0.0, c, margin)] for c in centres]
    right.bar(centres, hist, width=bins[1] - bins[0], color=colors)
    right.axvline(0, color="black", lw=0.8)
    right.axvline(margin, color="black", lw=0.8, ls="--")
    right.set_xlabel("d_an - d_ap  (hard < 0 < semi-hard < margin < easy)")
    right.set_ylabel("valid triplets")
    right.set_title("every valid triplet of the batch", fontsize=10)
    return fig
