"""The comparison of notebook 07 as files: one row per training run, summaries, the README's results section.

Notebook 07 trains the four strategies and two baselines under identical conditions and writes three CSV files
(committed, in ``notebooks/results/``, after a full run), so that its table, curves and pictures, and the README's
results section, can be rebuilt without training anything:

* ``comparison.csv``: one row per run (:data:`RUN_COLUMNS`): what was trained (``kind``, ``loss``, ``margin``,
  ``seed``, ``group``), how (``steps``, ``batch_size``, ``learning_rate``), ``train_seconds`` and the four metrics of
  :func:`tutorial_lib.evaluation.evaluate` on the test split;
* ``comparison_histories.csv``: the per-step history of every run (``run``, ``step``, ``loss`` and, for the online
  losses, the mining statistics that :func:`tutorial_lib.training.train` records);
* ``comparison_projections.csv``: the test sentences of a few runs projected to 2-D (``run``, ``x``, ``y``,
  ``label``, ``method``).

The rule for "is this difference real?" used by the notebook, the tests and the README: two groups of runs differ
beyond seed-to-seed noise when ``|mean_a - mean_b| > 2 * max(std_a, std_b)`` (sample standard deviations over the
seeds, ``ddof=1``), see :func:`separation`.

Public API::

    results_dir()                                -> Path (the checkout's notebooks/results, else ./comparison_results)
    append_run(folder, row, history=None)        -> None (adds a row to comparison.csv, the steps to the histories)
    save_projection(folder, run, points, labels, method) -> None
    publish(folder)                              -> list of paths (copies a finished run to results_dir(); README)
    load_results(folder=None)                    -> Results(runs, histories, projections)
    summary(runs, metrics=METRICS, group="seeds") -> DataFrame: mean, std and n per loss
    separation(runs, a, b, metric="knn_accuracy") -> Separation(delta, noise, exceeds)
    markdown_table(runs)                         -> str (the results table)
    results_block(runs, image=None)              -> str (the README section between the results markers)
    update_readme(root)                          -> bool (rewrites that section; True if it changed)
    extract_figure(notebook, out, tag="before-after", contains="plot_before_after(") -> Path

Imports pandas and the standard library only (no model, no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .env import checkout_root

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "LOSS_TITLES",
    "METRICS",
    "Results",
    "Separation",
    "append_run",
    "load_results",
    "markdown_table",
    "publish",
    "results_dir",
    "save_projection",
    "separation",
    "summary",
]

RUNS_FILE = "comparison.csv"
HISTORIES_FILE = "comparison_histories.csv"
PROJECTIONS_FILE = "comparison_projections.csv"
FILES = (RUNS_FILE, HISTORIES_FILE, PROJECTIONS_FILE)

METRICS = ("knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1")
RUN_COLUMNS = (
    "run", "kind", "loss", "margin", "seed", "group", "steps", "batch_size", "learning_rate", "train_seconds",
    *METRICS, "mode",
)
STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")
LOSS_TITLES = {
    "untrained": "untrained model",
    "offline_triplet": "TripletLoss, fixed random triplets (offline)",
    "batch_all": "BatchAllTripletLoss",
    "batch_hard": "BatchHardTripletLoss",
    "batch_semi_hard": "BatchSemiHardTripletLoss",
    "batch_hard_soft_margin": "BatchHardSoftMarginTripletLoss",
}
"""Row titles of the results table, in its order: the two baselines, then the four online strategies."""

METRIC_TITLES = {
    "knn_accuracy": "kNN accuracy",
    "triplet_accuracy": "triplet accuracy",
    "silhouette": "silhouette",
    "recall_at_1": "Recall@1",
    "train_seconds": "training time (s)",
}
N = ("n", "")
"""The column of :func:`summary` holding the number of runs per loss."""
NOISE_FACTOR = 2.0
"""A difference is beyond noise when it exceeds this many times the larger of the two standard deviations."""



# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------



def results_dir() -> Path:
    """Where the committed results live: ``notebooks/results`` of the checkout, else ``./comparison_results``."""
    root = checkout_root()
    return root / "notebooks" / "results" if root is not None else Path("comparison_results")


def _append_csv(path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def append_run(folder: str | Path, row: dict[str, Any], history: pd.DataFrame | None = None) -> None:
    """Add one run to ``folder``: its row to ``comparison.csv`` and its steps to ``comparison_histories.csv``.

    Written at once, so an interrupted experiment keeps the runs it finished.

    Args:
        row: the run's fields; every name of :data:`RUN_COLUMNS` must be present (``margin``/``seed`` may be None).
        history: the per-step history (``step``, ``loss``, ...); None or empty for a run without training.
    """
    import pandas as pd

    missing = [c for c in RUN_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"the run's row lacks {missing}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs_path = folder / RUNS_FILE
    if runs_path.exists() and row["run"] in set(pd.read_csv(runs_path)["run"]):
        raise ValueError(f"{runs_path} already holds a run named {row['run']!r}")
    _append_csv(runs_path, pd.DataFrame([{c: row[c] for c in RUN_COLUMNS}]))
    if history is not None and len(history):
        steps = history.copy()
        steps.insert(0, "run", row["run"])
        path = folder / HISTORIES_FILE
        if path.exists():  # online and offline runs record different columns: keep the union
            steps = pd.concat([pd.read_csv(path), steps], ignore_index=True)
            steps.to_csv(path, index=False)
        else:
            steps.to_csv(path, index=False)


def save_projection(folder: str | Path, run: str, points: np.ndarray, labels: Sequence[int], method: str) -> None:
    """Add a run's (N, 2) projected test embeddings, with their (N,) labels, to ``comparison_projections.csv``."""
    import numpy as np
    import pandas as pd

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with N = len(labels); got {points.shape} and {len(labels)} labels")
    frame = pd.DataFrame({"run": run, "x": points[:, 0].round(4), "y": points[:, 1].round(4),
                          "label": np.asarray(list(labels), dtype=int), "method": method})
    _append_csv(Path(folder) / PROJECTIONS_FILE, frame)


class Results(NamedTuple):
    """The three tables of a comparison (see the module docstring)."""

    runs: pd.DataFrame
    histories: pd.DataFrame
    projections: pd.DataFrame


def load_results(folder: str | Path | None = None) -> Results:
    """Read a comparison's three files.

    Args:
        folder: where they are; None is :func:`results_dir` (the committed full run). When that folder lacks them
            (a pip install, e.g. on Colab) and the Hub is not offline, they are downloaded from the repository.

    Raises:
        FileNotFoundError: the files are missing (and could not be downloaded); the message says what to do.
    """
    import pandas as pd

    folder = Path(folder) if folder is not None else results_dir()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {missing}: run notebook 07 in full mode to produce them (about 20 minutes on a CPU)"
        )
    return Results(*(pd.read_csv(folder / name) for name in FILES))


# ----------------------------------------------------------------------------------------------------------------
# Summaries and the noise rule
# ----------------------------------------------------------------------------------------------------------------


def _ordered_losses(losses: Sequence[str]) -> list[str]:
    known = [name for name in LOSS_TITLES if name in set(losses)]
    return known + sorted(set(losses) - set(known))


def summary(runs: pd.DataFrame, metrics: Sequence[str] = (*METRICS, "train_seconds"), group: str = "seeds"
            ) -> pd.DataFrame:
    """Mean and sample standard deviation (``ddof=1``; NaN for a single run) of each metric, per loss.

    Args:
        runs: the rows of ``comparison.csv``.
        group: keep the runs of this ``group`` (``"seeds"``: every loss at its default margin, several seeds).

    Returns:
        One row per loss (index: the loss names, baselines first); columns ``(metric, "mean" | "std")`` and
        :data:`N` (``("n", "")``, the number of runs).
    """
    chosen = runs[runs["group"] == group]
    if chosen.empty:
        raise ValueError(f"no runs in group {group!r}; groups: {sorted(runs['group'].unique())}")
    table = chosen.groupby("loss")[list(metrics)].agg(["mean", "std"])
    table[N] = chosen.groupby("loss").size()
    return table.loc[_ordered_losses(table.index)]


class Separation(NamedTuple):
    """How two groups of runs compare on one metric."""

    delta: float  # mean of a minus mean of b
    noise: float  # NOISE_FACTOR times the larger of their standard deviations
    exceeds: bool  # |delta| > noise: the difference is larger than seed-to-seed noise


def separation(runs: pd.DataFrame, a: str, b: str, metric: str = "knn_accuracy", group: str = "seeds"
               ) -> Separation:
    """Compare the runs of loss ``a`` with those of loss ``b``: ``|Δmean| > 2·max(std_a, std_b)``?

    A group with a single run (the untrained model) has no spread of its own: its standard deviation counts as 0,
    so the other group's spread decides. Two single runs cannot be separated from noise (``exceeds`` is False).
    """
    table = summary(runs, (metric,), group)
    for name in (a, b):
        if name not in table.index:
            raise ValueError(f"no runs of {name!r} in group {group!r}; losses: {list(table.index)}")
    stds = [table.loc[name, (metric, "std")] for name in (a, b)]
    stds = [0.0 if (isinstance(s, float) and math.isnan(s)) else float(s) for s in stds]
    delta = float(table.loc[a, (metric, "mean")] - table.loc[b, (metric, "mean")])
    noise = NOISE_FACTOR * max(stds)
    enough = int(table.loc[a, N]) > 1 or int(table.loc[b, N]) > 1
    return Separation(delta, noise, bool(enough and abs(delta) > noise))


# ----------------------------------------------------------------------------------------------------------------
# The results table and the README section
# ----------------------------------------------------------------------------------------------------------------


def _cell(mean: float, std: float, digits: int) -> str:
    if isinstance(std, float) and math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(runs: pd.DataFrame) -> str:
    """The results table: mean ± std over the seeds of every loss at its default margin (``group == "seeds"``)."""
    columns = (*METRICS, "train_seconds")
    table = summary(runs, columns)
    header = ["model", *(METRIC_TITLES[c] for c in columns), "runs"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for loss, row in table.iterrows():
        cells = [LOSS_TITLES.get(loss, loss)]
        for column in METRICS:
            cells.append(_cell(row[(column, "mean")], row[(column, "std")], 3))
        seconds = row[("train_seconds", "mean")]
        cells.append("—" if seconds == 0 else _cell(seconds, row[("train_seconds", "std")], 0))
        cells.append(str(int(row[N])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def publish(folder: str | Path) -> list[Path]:
    """Copy a finished comparison from ``folder`` to :func:`results_dir`, replacing the committed files.

    In a checkout, ``python -m tools.readme readme`` then rewrites the README's results section from them (a test
    fails while the two disagree).

    Returns:
        The paths written.
    """
    import shutil

    folder, target = Path(folder), results_dir()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: the comparison did not finish")
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(folder / name, target / name)) for name in FILES]
