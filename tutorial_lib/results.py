"""The comparisons of notebooks 04, 07 and 10 as files: runs, per-question answers, summaries, bootstrap verdicts.

Notebook 07 trains every method under one budget (:mod:`tutorial_lib.experiments`) and writes, after a full run,
into ``notebooks/results/`` (committed, and shipped inside the wheel, so a pip install on Colab can read them):

* ``comparison.csv``: one row per run (:data:`RUN_COLUMNS`): ``kind`` (``untrained``, ``linear_probe``, ``online``,
  ``mnrl``, ``offline_random``, ``offline_mined``), ``loss`` (the strategy for ``online`` runs, else the kind),
  ``seed``, ``learning_rate``, ``steps``, ``batch_size``, ``train_seconds`` and the metrics of
  :func:`tutorial_lib.evaluation.evaluate_embeddings` on the test split, plus ``accuracy``: the test classification
  accuracy (``knn_accuracy`` for an embedding model, the probe's own predictions for the probe);
* ``comparison_answers.csv``: per run and test question, whether it was answered right (``accuracy``,
  ``recall_at_1``): what the paired bootstrap resamples;
* ``comparison_histories.csv``, ``comparison_projections.csv``: per-step histories; 2-D test embeddings;
* ``lr_selection.csv``: the learning-rate grid on a validation split (``chosen`` marks each method's rate);
* ``pairwise.csv``: every pair of methods, per metric: ``diff`` (a minus b) and a 95% paired bootstrap interval
  (:func:`pairwise`); a difference is called real when the interval excludes 0.

Other notebooks keep their summary tables beside them (``collapse_controls.csv`` from 04, ``open_set.csv`` and
``label_noise.csv`` from 10): :func:`save_table` / :func:`load_table`. Files are replaced atomically.

Imports pandas, numpy and the standard library only (no model, no torch).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .bootstrap import N_BOOT, paired_bootstrap
from .env import checkout_root
from .strategies import STRATEGIES, TITLES, st_class_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["BASELINES", "METHODS", "METHOD_TITLES", "METRICS", "Results", "append_run", "better", "choose_settings",
           "interval",
           "load_results", "load_table", "markdown_table", "pairwise", "publish", "results_dir", "save_projection",
           "save_table", "short_title", "summary"]

RUNS_FILE = "comparison.csv"
ANSWERS_FILE = "comparison_answers.csv"
HISTORIES_FILE = "comparison_histories.csv"
PROJECTIONS_FILE = "comparison_projections.csv"
LR_FILE = "lr_selection.csv"
PAIRWISE_FILE = "pairwise.csv"
FILES = (RUNS_FILE, ANSWERS_FILE, HISTORIES_FILE, PROJECTIONS_FILE, LR_FILE, PAIRWISE_FILE)

METRICS = ("accuracy", "knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1")
PER_QUESTION = ("accuracy", "recall_at_1")  # the metrics a paired bootstrap over questions can resample
RUN_COLUMNS = ("run", "kind", "loss", "seed", "learning_rate", "steps", "batch_size", "margin", "train_seconds",
               *METRICS, "mode")
BASELINES = ("untrained", "linear_probe", "offline_random", "offline_mined", "mnrl")
METHODS = (*BASELINES, *STRATEGIES)
"""Every method of the comparison, in the order of its tables: baselines first, then the four strategies."""
METHOD_TITLES = {
    "untrained": "untrained model",
    "linear_probe": "linear probe on the frozen model",
    "offline_random": "TripletLoss, random triplets",
    "offline_mined": "TripletLoss, mined hard negatives",
    "mnrl": "MultipleNegativesRankingLoss, same-label pairs",
    **{s: st_class_name(s) for s in STRATEGIES},
}
_SHORT = {"untrained": "untrained", "linear_probe": "linear probe", "offline_random": "random triplets",
          "offline_mined": "mined triplets", "mnrl": "MNRL", **TITLES}


def short_title(method: str) -> str:
    """A method's name in prose: ``"BatchAll"``, ``"linear probe"``, ``"MNRL"``..."""
    return _SHORT.get(method, method)


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


def results_dir() -> Path:
    """The committed results: ``notebooks/results`` of the checkout, else the copy inside the installed package."""
    root = checkout_root()
    if root is not None:
        return root / "notebooks" / "results"
    return Path(__file__).resolve().parent / "_notebook_results"


def _write_atomic(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` to ``path`` through a temporary file beside it: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        frame.to_csv(temporary, index=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; the result gets a normal file's permissions
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _append(path: Path, frame: pd.DataFrame) -> None:
    import pandas as pd

    if path.exists():  # runs of different kinds record different history columns: keep the union
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    _write_atomic(path, frame)


def append_run(folder: str | Path, row: dict[str, Any], history: pd.DataFrame | None = None,
               answers: dict[str, np.ndarray] | None = None) -> None:
    """Add one finished run to ``folder``: its row, its per-step history and its per-question answers.

    Written at once, so an interrupted experiment keeps the runs it finished.

    Args:
        row: every name of :data:`RUN_COLUMNS` (``seed``, ``learning_rate``, ``margin`` may be None).
        history: the per-step history; None or empty for a run without training.
        answers: ``{"accuracy": (N_test,), "recall_at_1": (N_test,)}`` 0/1 arrays.
    """
    import pandas as pd

    missing = [c for c in RUN_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"the run's row lacks {missing}")
    folder = Path(folder)
    runs_path = folder / RUNS_FILE
    if runs_path.exists() and row["run"] in set(pd.read_csv(runs_path)["run"]):
        raise ValueError(f"{runs_path} already holds a run named {row['run']!r}")
    _append(runs_path, pd.DataFrame([{c: row[c] for c in RUN_COLUMNS}]))
    if history is not None and len(history):
        _append(folder / HISTORIES_FILE, history.assign(run=row["run"])[["run", *history.columns]])
    if answers is not None:
        frame = pd.DataFrame({"run": row["run"], "question": range(len(answers["accuracy"])),
                              **{m: list(map(int, answers[m])) for m in PER_QUESTION}})
        _append(folder / ANSWERS_FILE, frame)


def save_projection(folder: str | Path, run: str, points: np.ndarray, labels: Sequence[int], method: str) -> None:
    """Add a run's (N, 2) projected test embeddings, with their (N,) labels, to ``comparison_projections.csv``."""
    import numpy as np
    import pandas as pd

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"points must be (N, 2) with N = len(labels); got {points.shape} and {len(labels)} labels")
    _append(Path(folder) / PROJECTIONS_FILE, pd.DataFrame({
        "run": run, "x": points[:, 0].round(4), "y": points[:, 1].round(4),
        "label": np.asarray(list(labels), dtype=int), "method": method}))


def save_table(name: str, frame: pd.DataFrame, folder: str | Path | None = None) -> Path:
    """Write a summary table (e.g. ``open_set.csv``) atomically into ``folder`` (default: :func:`results_dir`)."""
    path = Path(folder or results_dir()) / name
    _write_atomic(path, frame)
    return path


def load_table(name: str, folder: str | Path | None = None) -> pd.DataFrame:
    """Read a summary table written by :func:`save_table`; a clear error when it is missing."""
    import pandas as pd

    path = Path(folder or results_dir()) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes it in full mode")
    return pd.read_csv(path)


def publish(folder: str | Path, names: Sequence[str] = FILES) -> list[Path]:
    """Copy a finished experiment's files from ``folder`` to :func:`results_dir`, each replaced atomically.

    In a checkout, ``python -m tools.readme readme`` then rewrites the README's results section (a test fails while
    the two disagree).
    """
    import pandas as pd

    folder = Path(folder)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: the experiment did not finish")
    return [save_table(n, pd.read_csv(folder / n)) for n in names]


class Results(NamedTuple):
    """The tables of a comparison (see the module docstring)."""

    runs: pd.DataFrame
    answers: pd.DataFrame
    histories: pd.DataFrame
    projections: pd.DataFrame
    lr_selection: pd.DataFrame
    pairwise: pd.DataFrame


def load_results(folder: str | Path | None = None) -> Results:
    """Read a comparison's files (default: the committed ones, :func:`results_dir`).

    Raises:
        FileNotFoundError: a file is missing; the message says what to do.
    """
    return Results(*(load_table(name, folder) for name in FILES))


# ----------------------------------------------------------------------------------------------------------------
# Summaries and the paired bootstrap
# ----------------------------------------------------------------------------------------------------------------


def _ordered(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHODS if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def summary(runs: pd.DataFrame, metrics: Sequence[str] = (*METRICS, "train_seconds")) -> pd.DataFrame:
    """Mean and sample standard deviation (``ddof=1``; NaN for a single run) of each metric, per method.

    Returns:
        One row per method (``loss`` column; baselines first); columns ``(metric, "mean" | "std")`` and
        ``("n", "")``, the number of runs.
    """
    table = runs.groupby("loss")[list(metrics)].agg(["mean", "std"])
    table[("n", "")] = runs.groupby("loss").size()
    return table.loc[_ordered(table.index)]


def _answers_of(runs: pd.DataFrame, answers: pd.DataFrame, method: str, metric: str) -> np.ndarray:
    """(runs of ``method``, questions) 0/1 array, runs ordered by seed (so that equal seeds pair up)."""
    chosen = runs[runs["loss"] == method].sort_values("seed", na_position="first")["run"]
    table = answers[answers["run"].isin(chosen)].pivot(index="run", columns="question", values=metric)
    return table.loc[list(chosen)].to_numpy()


def pairwise(runs: pd.DataFrame, answers: pd.DataFrame, metrics: Sequence[str] = PER_QUESTION,
             n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Every pair of methods (a before b in :data:`METHODS` order), per metric: the difference of mean (a - b) and
    its 95% paired bootstrap interval over test questions and seeds (:func:`tutorial_lib.bootstrap.paired_bootstrap`).

    Returns:
        Columns ``a, b, metric, diff, ci_low, ci_high, n_boot, beyond_noise`` (the interval excludes 0).
    """
    import pandas as pd

    methods = _ordered(runs["loss"].unique())
    rows = []
    for metric in metrics:
        per_method = {m: _answers_of(runs, answers, m, metric) for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                found = paired_bootstrap(per_method[a], per_method[b], n_boot=n_boot, seed=seed)
                rows.append({"a": a, "b": b, "metric": metric, "diff": found.diff, "ci_low": found.low,
                             "ci_high": found.high, "n_boot": n_boot, "beyond_noise": found.excludes_zero})
    return pd.DataFrame(rows)


def interval(table: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> tuple[float, float, float]:
    """``(diff, low, high)`` of ``a - b`` from a :func:`pairwise` table, whichever order the pair is stored in."""
    row = table[(table["a"] == a) & (table["b"] == b) & (table["metric"] == metric)]
    if len(row):
        r = row.iloc[0]
        return float(r["diff"]), float(r["ci_low"]), float(r["ci_high"])
    row = table[(table["a"] == b) & (table["b"] == a) & (table["metric"] == metric)]
    if not len(row):
        raise ValueError(f"no pair {a!r} / {b!r} on {metric!r} in the table")
    r = row.iloc[0]
    return -float(r["diff"]), -float(r["ci_high"]), -float(r["ci_low"])


def better(table: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> bool:
    """True when ``a`` beats ``b`` beyond noise: the whole 95% interval of ``a - b`` lies above 0."""
    return interval(table, a, b, metric)[1] > 0


def choose_settings(grid: pd.DataFrame) -> pd.Series:
    """Each method's chosen setting from a validation grid: the learning rate (the probe: ``c``) with the highest
    mean ``validation_accuracy`` over its seeds; ties go to the higher mean ``validation_silhouette``, then to the
    smaller value.

    Args:
        grid: rows with ``loss``, ``learning_rate``, ``c``, ``seed``, ``validation_accuracy``,
            ``validation_silhouette``.

    Returns:
        A Series ``loss -> setting`` (the learning rate, or C for ``linear_probe``).
    """
    chosen = {}
    for method, rows in grid.groupby("loss"):
        column = "c" if method == "linear_probe" else "learning_rate"
        means = rows.groupby(column)[["validation_accuracy", "validation_silhouette"]].mean().reset_index()
        means = means.sort_values(["validation_accuracy", "validation_silhouette", column],
                                  ascending=[False, False, True])
        chosen[method] = float(means.iloc[0][column])
    import pandas as pd

    return pd.Series(chosen).loc[_ordered(chosen)]


def markdown_table(runs: pd.DataFrame, metrics: Sequence[str] = METRICS) -> str:
    """Mean ± standard deviation over the seeds of every method (one row per method, baselines first)."""
    table = summary(runs, (*metrics, "train_seconds"))
    titles = {"accuracy": "accuracy", "knn_accuracy": "kNN accuracy", "triplet_accuracy": "triplet accuracy",
              "silhouette": "silhouette", "recall_at_1": "Recall@1"}
    header = ["model", *(titles[m] for m in metrics), "training time (s)", "learning rate", "runs"]
    rates = runs.groupby("loss")["learning_rate"].first()
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, row in table.iterrows():
        cells = [METHOD_TITLES.get(method, method)]
        for metric in metrics:
            mean, std = row[(metric, "mean")], row[(metric, "std")]
            cells.append(f"{mean:.3f}" if std != std else f"{mean:.3f} ± {std:.3f}")  # NaN std: a single run
        seconds = row[("train_seconds", "mean")]
        cells.append("—" if seconds == 0 else f"{seconds:.0f}")
        rate = rates.get(method)
        cells.append("—" if rate != rate or rate is None else f"{rate:.0e}".replace("e-0", "e-"))
        cells.append(str(int(row[("n", "")])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
