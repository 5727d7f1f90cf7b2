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

Command line (from the repository root)::

    python -m tutorial_lib.results readme   # rewrite the README's results section from notebooks/results/
    python -m tutorial_lib.results figure   # docs/before_after.png from notebooks/03_batch_all.ipynb, then readme

Imports pandas and the standard library only (no model, no torch).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._env import checkout_root, hub_offline, replace_between

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "LOSS_TITLES",
    "METRICS",
    "Results",
    "Separation",
    "append_run",
    "extract_figure",
    "load_results",
    "markdown_table",
    "publish",
    "results_block",
    "results_dir",
    "save_projection",
    "separation",
    "summary",
    "update_readme",
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

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
IMAGE_PATH = "docs/before_after.png"
SOURCE_NOTEBOOK = "notebooks/03_batch_all.ipynb"


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


def _download(folder: Path) -> None:
    """Fetch the committed files from the repository on GitHub (a pip install has no checkout)."""
    from . import notebooks

    slug = notebooks.DEFAULT_SLUG
    base = f"https://raw.githubusercontent.com/{slug}/main/notebooks/results"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        with urllib.request.urlopen(f"{base}/{name}", timeout=30) as response:  # noqa: S310 (a fixed https URL)
            (folder / name).write_bytes(response.read())


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
    if not all((folder / name).is_file() for name in FILES) and Path(folder) == results_dir() and not hub_offline():
        try:
            _download(folder)
        except OSError as error:
            raise FileNotFoundError(f"no results in {folder}, and downloading them failed ({error})") from None
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


def _settings(runs: pd.DataFrame) -> str:
    trained = runs[(runs["group"] == "seeds") & (runs["kind"] != "untrained")]
    steps, batch, lr = (sorted(trained[c].unique()) for c in ("steps", "batch_size", "learning_rate"))
    margins = sorted(trained["margin"].dropna().unique())
    seeds = sorted(int(s) for s in trained["seed"].unique())
    if len(steps) != 1 or len(batch) != 1 or len(lr) != 1 or len(margins) != 1:
        raise ValueError("the seed runs do not share one setting of steps, batch size, learning rate and margin")
    rate = f"{lr[0]:.0e}".replace("e-0", "e-")
    return (f"{int(steps[0])} steps × batch {int(batch[0])} sentences, learning rate {rate}, margin "
            f"{margins[0]:g} (euclidean), seeds {', '.join(map(str, seeds))}")


SHORT_TITLES = {"untrained": "untrained", "offline_triplet": "offline triplets", "batch_all": "BatchAll",
                "batch_hard": "BatchHard", "batch_semi_hard": "BatchSemiHard",
                "batch_hard_soft_margin": "BatchHardSoftMargin"}


def _knn_verdicts(runs: pd.DataFrame, metric: str = "knn_accuracy") -> str:
    """One sentence: which losses differ beyond noise on ``metric``, and which do not."""
    losses = list(summary(runs, (metric,)).index)
    online = [loss for loss in losses if loss in STRATEGIES]
    beyond, within = [], []
    if {"offline_triplet", "untrained"} <= set(losses) and all(separation(runs, loss, "offline_triplet", metric).exceeds
           and separation(runs, loss, "offline_triplet", metric).delta > 0 for loss in online) and (
            separation(runs, "offline_triplet", "untrained", metric).delta > 0
            and separation(runs, "offline_triplet", "untrained", metric).exceeds):
        beyond.append("every online strategy > offline triplets > untrained")
        pairs = [(a, b) for i, a in enumerate(online) for b in online[i + 1:]]
    else:
        pairs = [(a, b) for i, a in enumerate(losses) for b in losses[i + 1:]]
    for a, b in pairs:
        sep = separation(runs, a, b, metric)
        high, low = (a, b) if sep.delta > 0 else (b, a)
        if sep.exceeds:
            beyond.append(f"{SHORT_TITLES.get(high, high)} > {SHORT_TITLES.get(low, low)}")
        else:
            within.append(f"{SHORT_TITLES.get(a, a)} and {SHORT_TITLES.get(b, b)}")
    text = f"On {METRIC_TITLES[metric]}, beyond noise: {'; '.join(beyond) or 'none'}."
    return text + (f" Within noise: {'; '.join(within)}." if within else "")


def _wrap(text: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, 116, break_on_hyphens=False))


def results_block(runs: pd.DataFrame, image: str | None = None) -> str:
    """The README's results section (between :data:`RESULTS_START` and :data:`RESULTS_END`), from the runs.

    Args:
        runs: the rows of ``comparison.csv``.
        image: the path (relative to the README) of the before/after picture to show; None shows none.
    """
    if set(runs["mode"]) != {"full"}:
        raise ValueError("the README shows a full run only; these runs include fast-mode ones")
    lines = [
        "## Results",
        "",
        _wrap("The four strategies and two baselines, trained under identical conditions in "
              "[notebook 07](notebooks/07_comparison.ipynb): all-MiniLM-L6-v2 on the bundled data set, "
              f"{_settings(runs)}; mean ± standard deviation over the seeds, on the 210 test questions (metrics: "
              "`tutorial_lib.evaluation`; training time on a shared 2-core CPU). Generated from "
              "`notebooks/results/comparison.csv` by `python -m tutorial_lib.results readme`."),
        "",
        markdown_table(runs),
        "",
        _wrap("A difference counts as real when the means differ by more than twice the larger standard deviation. "
              + _knn_verdicts(runs) + " Notebook 07 goes through every metric, the training curves and a margin "
              "sweep."),
    ]
    if image:
        lines += ["", "The test questions before and after training with BatchAllTripletLoss (notebook 03):", "",
                  f"![Test questions embedded before and after training, projected to 2-D]({image})"]
    return "\n".join(lines)


def _readme_image(root: Path) -> str | None:
    return IMAGE_PATH if (root / IMAGE_PATH).is_file() else None


def readme_with_results(text: str, block: str) -> str:
    """``text`` with the section between the results markers replaced by ``block``."""
    return replace_between(text, RESULTS_START, RESULTS_END, block)


def publish(folder: str | Path) -> list[Path]:
    """Copy a finished comparison from ``folder`` to :func:`results_dir`, replacing the committed files.

    In a checkout of the repository, the README's results section is rewritten from them too
    (:func:`update_readme`), so the two never disagree.

    Returns:
        The paths written.
    """
    import shutil

    folder, target = Path(folder), results_dir()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: the comparison did not finish")
    target.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copy(folder / name, target / name)) for name in FILES]
    root = checkout_root()
    if root is not None and (root / "README.md").is_file() and update_readme(root):
        written.append(root / "README.md")
    return written


def update_readme(root: str | Path) -> bool:
    """Rewrite the results section of ``root/README.md`` from ``root/notebooks/results``; True if it changed."""
    root = Path(root)
    runs = load_results(root / "notebooks" / "results").runs
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = readme_with_results(text, results_block(runs, _readme_image(root)))
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


# ----------------------------------------------------------------------------------------------------------------
# A figure from a committed notebook
# ----------------------------------------------------------------------------------------------------------------


def extract_figure(notebook: str | Path, out: str | Path, tag: str = "before-after",
                   contains: str = "plot_before_after(") -> Path:
    """Save the image output of one code cell of an executed notebook as a PNG file.

    The cell is the first one tagged ``tag`` (``# %% tags=["before-after"]`` in a jupytext source); without such a
    cell, the first code cell whose source contains ``contains`` and that has an image output. Its last image is
    written (a cell that draws twice shows the final picture).

    Raises:
        ValueError: no such cell with an image output (was the notebook built?).
    """
    cells = [c for c in json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]

    def source(cell: dict) -> str:
        return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

    def images(cell: dict) -> list[str]:
        return [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]

    tagged = [c for c in cells if tag in c.get("metadata", {}).get("tags", [])]
    candidates = tagged or [c for c in cells if contains in source(c)]
    found = next((images(c) for c in candidates if images(c)), None)
    if not found:
        raise ValueError(f"{notebook}: no code cell tagged {tag!r} or calling {contains!r} has an image output")
    data = found[-1]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode("".join(data) if isinstance(data, list) else data))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.results",
                                     description="The README's results section from notebook 07's results.")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("readme", help="rewrite the README's results section from notebooks/results/")
    p_figure = sub.add_parser("figure", help=f"extract {IMAGE_PATH} from a notebook, then rewrite the section")
    p_figure.add_argument("--notebook", default=SOURCE_NOTEBOOK, help=f"default: {SOURCE_NOTEBOOK}")
    args = parser.parse_args(argv)
    root = (args.root or checkout_root() or Path.cwd()).resolve()
    if args.command == "figure":
        path = extract_figure(root / args.notebook, root / IMAGE_PATH)
        print(f"wrote {path.relative_to(root)} ({os.path.getsize(path) / 1e3:.0f} kB)")
    changed = update_readme(root)
    print("README.md: results section " + ("rewritten" if changed else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
