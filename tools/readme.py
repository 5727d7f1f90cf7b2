"""The README's generated results section, and its before/after picture (a maintainer tool, not installed).

Usage (from the repository root)::

    python -m tools.readme readme   # rewrite the README's results section and GUIDE.md's verdicts
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
    BASELINES,
    METHODS,
    interval,
    load_results,
    load_table,
    markdown_table,
    short_title,
)
from tutorial_lib.strategies import STRATEGIES

GUIDE_START = "<!-- guide-verdicts:start -->"
GUIDE_END = "<!-- guide-verdicts:end -->"
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


def _wrap(text: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, 116, break_on_hyphens=False))


def _verdict(pairs: pd.DataFrame, a: str, b: str, metric: str = "accuracy") -> str:
    diff, low, high = interval(pairs, a, b, metric)
    word = "ahead of" if low > 0 else "behind" if high < 0 else "not distinguishable from"
    return f"{short_title(a)} is {word} {short_title(b)} ({diff:+.3f}, 95% interval [{low:+.3f}, {high:+.3f}])"


def comparison_paragraph(runs: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """The sentences of the results section, each computed from ``pairwise.csv``."""
    means = runs.groupby("loss")["accuracy"].mean()
    ranked = means.loc[list(STRATEGIES)].sort_values(ascending=False).index.tolist()
    best = ranked[0]
    parts = [f"On test accuracy (paired bootstrap over the 210 questions and the seeds): {_verdict(pairs, best, ranked[1])}"]
    parts += [_verdict(pairs, best, other) for other in ranked[2:]]
    parts += [_verdict(pairs, best, baseline) for baseline in BASELINES]
    parts.append(_verdict(pairs, best, "linear_probe", "recall_at_1").replace("(", "on Recall@1 (", 1))
    return "; ".join(parts) + "."


def _probe_sentence(runs: pd.DataFrame) -> str:
    means = runs.groupby("loss")[["accuracy", "recall_at_1"]].mean()
    best = means.loc[list(STRATEGIES), "accuracy"].idxmax()
    return (f"A linear probe on the frozen model is a strong classifier on this closed-set test (accuracy "
            f"{means.loc['linear_probe', 'accuracy']:.3f}), but it leaves the embeddings as they are: Recall@1 "
            f"{means.loc['linear_probe', 'recall_at_1']:.3f} against {means.loc[best, 'recall_at_1']:.3f} after "
            f"training with {short_title(best)}. Fine-tuning changes the geometry: retrieval, clustering and kNN "
            "without a classifier, and labels never seen in training.")


def _settings(runs: pd.DataFrame) -> str:
    trained = runs[runs["train_seconds"] > 0]
    seeds = sorted(int(s) for s in trained["seed"].dropna().unique())
    rates = ", ".join(f"{short_title(m)} {r:.0e}".replace("e-0", "e-") for m, r in
                      trained.groupby("loss")["learning_rate"].first().loc[
                          [m for m in METHODS if m in set(trained["loss"])]].items())
    return (f"one pass over the 840 training questions for every method, each at the learning rate it chose on a "
            f"validation split ({rates}), seeds {', '.join(map(str, seeds))}")


def results_block(runs: pd.DataFrame, pairs: pd.DataFrame, image: str | None = None,
                  notebook_10: tuple[pd.DataFrame, ...] | None = None) -> str:
    """The README's results section (between :data:`RESULTS_START` and :data:`RESULTS_END`), from the results files."""
    if set(runs["mode"]) != {"full"}:
        raise ValueError("the README shows a full run only; these runs include fast-mode ones")
    lines = [
        "## Results",
        "",
        _wrap("Which loss to pick, and what training buys, measured in [notebook 07](notebooks/07_comparison.ipynb): "
              f"all-MiniLM-L6-v2 on the bundled data set, {_settings(runs)}; mean ± standard deviation over the "
              "seeds, on the 210 test questions (metrics: `tutorial_lib.evaluation`; training time on a shared "
              "2-core CPU). Generated from `notebooks/results/` by `python -m tools.readme readme`."),
        "",
        markdown_table(runs),
        "",
        _wrap(comparison_paragraph(runs, pairs) + " " + _probe_sentence(runs)),
    ]
    if notebook_10 is not None:  # open_set.csv, label_noise.csv, intervals_10.csv
        lines += ["", _wrap(where_it_wins(*notebook_10))]
    if image:
        lines += ["", "The test questions before and after training with BatchAllTripletLoss (notebook 03):", "",
                  f"![Test questions embedded before and after training, projected to 2-D]({image})"]
    return "\n".join(lines)


def where_it_wins(open_set: pd.DataFrame, noise: pd.DataFrame, intervals: pd.DataFrame) -> str:
    """Notebook 10's findings in one paragraph, from ``open_set.csv``, ``label_noise.csv`` and ``intervals_10.csv``."""
    held_out = open_set["held_out"].iloc[0]
    before = open_set["recall_at_1_before"].mean()
    after = open_set.groupby("loss")["recall_at_1_after"].agg(["mean", "std"]).loc[list(STRATEGIES)]
    gains = ", ".join(f"{short_title(s)} {row['mean']:.3f} ± {row['std']:.3f}" for s, row in after.iterrows())
    unseen = intervals[intervals["study"] == "unseen_labels"]
    every_gain = "every" if (unseen["ci_low"] > 0).all() and len(unseen) == len(STRATEGIES) else "not every"
    top = noise["noise"].max()
    changes = intervals[(intervals["study"] == "label_noise") & (intervals["noise"] == top)].set_index("loss")
    listed = "; ".join(f"{short_title(s)} {changes.loc[s, 'diff']:+.3f} [{changes.loc[s, 'ci_low']:+.3f}, "
                       f"{changes.loc[s, 'ci_high']:+.3f}]" for s in STRATEGIES if s in changes.index)
    lost = [short_title(s) for s in STRATEGIES if s in changes.index and changes.loc[s, "ci_high"] < 0]
    verdict = (f"beyond noise for {' and '.join(lost)}, indistinguishable from no change for the others"
               if lost else "no strategy's loss is distinguishable from no change")
    return (f"Where metric learning wins ([notebook 10](notebooks/10_unseen_labels_and_noise.ipynb)): on labels "
            f"never seen in training ({held_out}), Recall@1 among their test questions rises from {before:.3f} "
            f"(untrained) to {gains} (mean ± std over 3 seeds; {every_gain} gain's 95% paired bootstrap interval "
            f"lies above 0); a classifier cannot name these labels at all. With {top:.0%} of the training labels "
            f"flipped, the change in test accuracy from the clean runs (95% interval) is {listed}: a loss {verdict}.")


def _readme_image(root: Path) -> str | None:
    return IMAGE_PATH if (root / IMAGE_PATH).is_file() else None


def readme_with_results(text: str, block: str) -> str:
    """``text`` with the section between the results markers replaced by ``block``."""
    return replace_between(text, RESULTS_START, RESULTS_END, block)


def guide_verdicts(runs: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """GUIDE.md's "Which one?" bullets: every strategy against the best one and against the baselines."""
    means = runs.groupby("loss")["accuracy"].mean()
    ranked = means.loc[list(STRATEGIES)].sort_values(ascending=False).index.tolist()
    lines = ["- mean test accuracy: " + ", ".join(f"{short_title(m)} {means[m]:.3f}" for m in
                                                   [*ranked, *(b for b in BASELINES if b in means)]) + ";"]
    lines += [f"- {_verdict(pairs, ranked[0], other)};" for other in ranked[1:]]
    lines += [f"- {_verdict(pairs, strategy, 'linear_probe')};" for strategy in ranked]
    lines += [f"- {_verdict(pairs, ranked[0], baseline)};" for baseline in BASELINES if baseline != "linear_probe"]
    lines.append(f"- {_verdict(pairs, ranked[0], 'linear_probe', 'recall_at_1')} on Recall@1.")
    return "\n".join(lines)


NOTEBOOK_10_FILES = ("open_set.csv", "label_noise.csv", "intervals_10.csv")


def notebook_10_tables(folder: Path) -> tuple[pd.DataFrame, ...] | None:
    """Notebook 10's three tables, or None before its first full run."""
    if not all((folder / name).is_file() for name in NOTEBOOK_10_FILES):
        return None
    return tuple(load_table(name, folder) for name in NOTEBOOK_10_FILES)


def guide_block(root: str | Path) -> str:
    """GUIDE.md's verdicts (between :data:`GUIDE_START` and :data:`GUIDE_END`), from ``root/notebooks/results``."""
    folder = Path(root) / "notebooks" / "results"
    found = load_results(folder)
    block = guide_verdicts(found.runs, found.pairwise)
    tables = notebook_10_tables(folder)
    if tables is not None:
        block += "\n- " + where_it_wins(*tables)
    return block


def readme_block(root: str | Path) -> str:
    """The README's results section, from ``root/notebooks/results`` (and the picture, once extracted)."""
    root = Path(root)
    folder = root / "notebooks" / "results"
    found = load_results(folder)
    return results_block(found.runs, found.pairwise, _readme_image(root), notebook_10_tables(folder))


def update_guide(root: str | Path) -> bool:
    """Rewrite GUIDE.md's verdicts from ``root/notebooks/results``; True if it changed."""
    guide = Path(root) / "GUIDE.md"
    text = guide.read_text(encoding="utf-8")
    new = replace_between(text, GUIDE_START, GUIDE_END, guide_block(root), " around the verdicts (GUIDE.md)")
    if new != text:
        guide.write_text(new, encoding="utf-8")
    return new != text


def update_readme(root: str | Path) -> bool:
    """Rewrite the results section of ``root/README.md`` from ``root/notebooks/results``; True if it changed."""
    readme = Path(root) / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = readme_with_results(text, readme_block(root))
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
    changed = update_guide(root)
    print("GUIDE.md: verdicts " + ("rewritten" if changed else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
