"""Train on a CSV without a notebook: ``python -m tutorial_lib.train`` (or the ``triplet-train`` command).

Example::

    python -m tutorial_lib.train --data data/train.csv --test data/test.csv --loss batch_hard --margin 0.5 \\
        --epochs 1 --batch-size 32 --output runs/batch_hard

It evaluates the model before and after training (kNN accuracy, triplet accuracy, silhouette, recall@1; see
:mod:`tutorial_lib.evaluation`), prints both, and writes into ``--output``:

* ``metrics.json``: ``{"before": {...}, "after": {...}, "config": {...}}``;
* ``umap_before_after.png``: the test sentences before/after (PCA instead of UMAP in fast mode, ``TRIPLET_FAST=1``);
* ``history.csv``: the per-step loss and mining statistics;
* ``model/``: the trained model (``SentenceTransformer("DIR/model")`` loads it).

Without ``--test``, a stratified 20% of ``--data`` is held out (``--seed``). The output folder must be empty or
absent unless ``--overwrite`` is given; that is checked before anything else, and a refused folder is left untouched.
With ``--overwrite`` only the files above are replaced. ``--model tiny`` uses a tiny random model
(:func:`tutorial_lib.models.tiny_model`): a test/debug option, it learns little. Bad input (missing file, missing
column, malformed CSV, a class with one example) prints one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

from . import data
from .env import fast_mode
from .models import ModelIntegrityError

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1
STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")  # st_losses.LOSSES' keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_lib.train",
        description="Fine-tune a sentence-transformer with online triplet mining on a labelled CSV.",
    )
    parser.add_argument("--data", required=True, help="training CSV with a header line")
    parser.add_argument("--test", help="test CSV (default: hold out a stratified 20%% of --data)")
    parser.add_argument("--text-column", default="sentence", help="column holding the text (default: sentence)")
    parser.add_argument("--label-column", default="label", help="column holding the label (default: label)")
    parser.add_argument("--loss", required=True, choices=STRATEGIES, help="mining strategy")
    parser.add_argument("--margin", type=float, default=0.5, help="triplet margin (ignored by the soft margin)")
    parser.add_argument("--distance", default="euclidean", choices=("euclidean", "squared_euclidean", "cosine"))
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default: 1)")
    length.add_argument("--max-steps", type=int, help="optimizer steps (instead of --epochs)")
    parser.add_argument("--batch-size", type=int, default=32, help="even, >= 4 (default: 32)")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default: 2e-5)")
    parser.add_argument(
        "--model",
        help="Hub name or local folder (default: the bundled all-MiniLM-L6-v2; 'tiny' = a tiny random model "
        "for tests and debugging)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs in a non-empty --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise data.DataError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise data.DataError(f"--output {output} is not empty; pass --overwrite to replace its results")


def _load_data(args: argparse.Namespace):
    if args.test is None:
        split = data.load_csv(args.data, args.text_column, args.label_column, test_size=0.2, seed=args.seed)
        return split["train"], split["test"]
    train = data.load_csv(args.data, args.text_column, args.label_column)
    test = data.load_csv(
        args.test, args.text_column, args.label_column, label_names=data.label_names(train), min_per_class=1
    )
    return train, test


def _print_metrics(before: dict, after: dict) -> None:
    print(f"{'metric':<18}{'before':>10}{'after':>10}")
    for key in ("knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1"):
        print(f"{key:<18}{before[key]:>10.4f}{after[key]:>10.4f}")


def _json_safe(metrics: dict) -> dict:
    """NaN (an undefined metric) as null: strict JSON has no NaN."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def run(args: argparse.Namespace) -> int:
    """The command's work once the arguments are parsed; returns the exit status."""
    output = Path(args.output)
    _check_output(output, args.overwrite)  # before any work: a refused folder is never touched

    from . import evaluation, models, training, viz
    from .st_losses import make_loss

    train_ds, test_ds = _load_data(args)
    names = data.label_names(train_ds)
    train_labels, test_labels = list(train_ds["label"]), list(test_ds["label"])
    training.group_by_label_plan(train_labels, args.batch_size, names)  # batch-size errors before the slow part
    model = models.tiny_model(seed=args.seed) if args.model == "tiny" else models.load_model(args.model)
    print(f"data: {len(train_ds)} training / {len(test_ds)} test sentences, {len(names)} labels")

    emb_before = evaluation.encode(model, test_ds["sentence"])
    before = evaluation.evaluate_embeddings(
        evaluation.encode(model, train_ds["sentence"]), train_labels, emb_before, test_labels, seed=args.seed
    )
    loss = make_loss(args.loss, model, margin=args.margin, distance=args.distance)
    try:
        with warnings.catch_warnings(record=True) as caught:  # shown as plain "warning:" lines, not source lines
            warnings.simplefilter("always", UserWarning)
            result = training.train(
                model, train_ds, loss, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
                learning_rate=args.lr, seed=args.seed, progress=not args.no_progress,
            )
    except training.NonFiniteLossError as error:
        print(f"error: training stopped: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    emb_after = evaluation.encode(model, test_ds["sentence"])
    after = evaluation.evaluate_embeddings(
        evaluation.encode(model, train_ds["sentence"]), train_labels, emb_after, test_labels, seed=args.seed
    )
    _print_metrics(before, after)
    print(f"trained {result.steps} steps in {result.train_seconds:.1f} s")

    output.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items()}
    config.update(
        model_info=models.model_info(model), label_names=names, n_train=len(train_ds), n_test=len(test_ds),
        steps=result.steps, train_seconds=round(result.train_seconds, 3), collapsed=result.collapsed,
        projection="pca" if fast_mode() else "umap",
    )
    metrics = {"before": _json_safe(before), "after": _json_safe(after), "config": config}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    result.history.to_csv(output / "history.csv", index=False)
    figure = viz.plot_before_after(emb_before, emb_after, test_labels, names, seed=args.seed)
    figure.savefig(output / "umap_before_after.png", dpi=110)
    if (output / "model").exists():
        shutil.rmtree(output / "model")  # stale files of an older model would mix with the new ones
    model.save(str(output / "model"))
    print(f"wrote {output / 'metrics.json'}, {output / 'umap_before_after.png'}, {output / 'model'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tutorial_lib.train`` and ``triplet-train``; returns the exit status.

    Bad input ends with one ``error:`` line on stderr and status 2: a missing or malformed file, a missing column,
    a bad batch size, a model that cannot be loaded or fails its checksum. argparse's own usage errors also exit
    with status 2 (by raising ``SystemExit(2)``). A NaN/inf loss during training exits with status 1.
    """
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, ModelIntegrityError, OSError) as error:  # bad input (DataError is a ValueError)
        message = " ".join(str(error).split())  # one line, not a traceback
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
