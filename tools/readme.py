"""The README's generated results section, and its before/after picture (a maintainer tool, not installed).

Usage (from the repository root)::

    python -m tools.readme readme   # rewrite the README's results section from notebooks/results/
    python -m tools.readme figure   # docs/before_after.png from notebooks/03_batch_all.ipynb, then readme

The section is written from the committed results of notebook 07 (:mod:`tutorial_lib.results`), so the README and
the notebook never disagree; ``tests/test_results.py`` fails when they do.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tutorial_lib.env import checkout_root
from tutorial_lib.results import (
    METRIC_TITLES,
    STRATEGIES,
    load_results,
    markdown_table,
    separation,
    summary,
)

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
IMAGE_PATH = "docs/before_after.png"
SOURCE_NOTEBOOK = "notebooks/03_batch_all.ipynb"


def replace_between(text: str, start: str, end: str, block: str, what: str = "") -> str:
    """``text`` with everything between the markers ``start`` and ``end`` replaced by ``block`` (markers kept)."""
    if start not in text or end not in text:
        raise ValueError(f"README.md needs the markers {start} and {end}{what}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


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
              "`notebooks/results/comparison.csv` by `python -m tools.readme readme`."),
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
    parser = argparse.ArgumentParser(prog="python -m tools.readme",
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
