"""Train on a CSV without a notebook: ``python -m tutorial_lib.train`` (or the ``triplet-train`` command).

Example::

    python -m tutorial_lib.train --data data/train.csv --test data/test.csv --loss batch_hard --margin 0.5 \\
        --epochs 1 --batch-size 32 --output runs/batch_hard

It evaluates the model before and after training (kNN accuracy, triplet accuracy, silhouette, recall@1; see
:mod:`tutorial_lib.evaluation`), prints both, and writes into ``--output``:

* ``metrics.json``: ``{"before": {...}, "after": {...}, "config": {...}, "files": [...]}`` (``files``: every file
  the run wrote, relative to the folder);
* ``umap_before_after.png``: the test sentences before/after (PCA instead of UMAP in fast mode, ``TRIPLET_FAST=1``);
* ``history.csv``: the per-step loss and mining statistics;
* ``model/``: the trained model (``SentenceTransformer("DIR/model")`` loads it).

Without ``--test``, a stratified 20% of ``--data`` is held out (``--seed``). Labels are names (see
:mod:`tutorial_lib.data`). ``--model tiny`` uses a tiny random model (:func:`tutorial_lib.models.tiny_model`): a
test/debug option, it learns little.

Before any model or data is loaded, every argument is checked (finite numbers in range, ``--batch-size`` even and
>= 4, the model name, the input files) and so is the output folder (:func:`tutorial_lib.outputs.check_output`): it
must be empty or absent unless ``--overwrite`` is given, must not be or hold a symbolic link where the results go,
and must not hold an input file the command would replace; a refused folder is left untouched. With ``--overwrite``
only the four entries above are replaced, and a ``model/`` holding files no earlier run wrote is refused.

Results are written into a temporary folder beside ``--output`` and moved into place at the end
(:class:`tutorial_lib.outputs.Staging`), so an interruption or an error leaves the previous results or the new
ones, never a mix, and no temporary folder. Exit status: 0 done; 2 bad input (one ``error:`` line naming the
argument); 1 the loss became NaN/inf; 130 on Ctrl-C and 143 on SIGTERM (one ``interrupted:`` line saying what the
output folder holds).

Test hook (for the interruption tests, not for users): with ``TRIPLET_TRAIN_PAUSE_AT=POINT`` in the environment,
the command prints ``paused at POINT`` and sleeps ``TRIPLET_TRAIN_PAUSE_SECONDS`` (default 60) there. Points:
``train`` (after the first optimizer step), ``write`` (half of the results staged), ``swap`` (old results moved
aside, new ones not yet in; signals are held off there, so an interruption takes effect once the swap is done).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from . import data, outputs
from .env import fast_mode
from .models import ModelIntegrityError, ModelSourceError, check_model_name

EXIT_BAD_INPUT = 2
EXIT_TRAINING_FAILED = 1
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal's number, as shells report it
STRATEGIES = ("batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin")  # st_losses.LOSSES' keys
PAUSE_ENV, PAUSE_SECONDS_ENV = "TRIPLET_TRAIN_PAUSE_AT", "TRIPLET_TRAIN_PAUSE_SECONDS"


class UsageError(ValueError):
    """A bad argument or input; the message names the argument."""


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


def _check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range numbers and unusable names before anything is loaded."""
    checks = [
        ("--epochs", args.epochs, math.isfinite(args.epochs) and args.epochs > 0, "must be a finite number > 0"),
        ("--max-steps", args.max_steps, args.max_steps is None or args.max_steps >= 1, "must be at least 1"),
        ("--batch-size", args.batch_size, args.batch_size >= 4 and args.batch_size % 2 == 0,
         "must be an even number >= 4 (GROUP_BY_LABEL batches take each label 2 examples at a time)"),
        ("--lr", args.lr, math.isfinite(args.lr) and args.lr > 0, "must be a finite number > 0"),
        ("--margin", args.margin, math.isfinite(args.margin) and args.margin >= 0, "must be a finite number >= 0"),
        ("--seed", args.seed, 0 <= args.seed < 2**32, "must be between 0 and 2**32 - 1"),
        ("--label-column", args.label_column, args.label_column != args.text_column, "is also --text-column"),
    ]
    for flag, value, ok, problem in checks:
        if not ok:
            raise UsageError(f"{flag} {value}: {problem}")


@contextlib.contextmanager
def _blame(flag: str, value: object = None) -> Iterator[None]:
    """Turn a bad-input error into one line that starts with the argument responsible (and its value)."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, ModelIntegrityError, OSError) as error:
        message = " ".join(str(error).split())
        if isinstance(error, data.SplitError):
            message += " with --test FILE"
        raise UsageError(f"{flag} {message}" if value is None else f"{flag} {value}: {message}") from None


def _check_inputs(args: argparse.Namespace) -> None:
    with _blame("--model"):
        if args.model != "tiny":
            check_model_name(args.model)
    for flag, path in (("--data", args.data), ("--test", args.test)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: {'not a file' if Path(path).exists() else 'no such file'}")


def _load_data(args: argparse.Namespace):
    if args.test is None:
        with _blame("--data"):
            split = data.load_csv(args.data, args.text_column, args.label_column, test_size=0.2, seed=args.seed)
        return split["train"], split["test"]
    with _blame("--data"):
        train = data.load_csv(args.data, args.text_column, args.label_column)
    with _blame("--test"):
        test = data.load_csv(
            args.test, args.text_column, args.label_column, label_names=data.label_names(train), min_per_class=1
        )
    return train, test


def _pause(point: str) -> None:
    """The test hook of the module docstring: announce ``point`` and sleep there."""
    if os.environ.get(PAUSE_ENV) == point:
        print(f"paused at {point}", flush=True)
        time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "60")))


def _pause_callbacks() -> list:
    """The ``train`` point of the test hook, as a trainer callback (none without the hook)."""
    if os.environ.get(PAUSE_ENV) != "train":
        return []
    from transformers import TrainerCallback

    class _PauseAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                _pause("train")

    return [_PauseAfterFirstStep()]


def _print_metrics(before: dict, after: dict) -> None:
    print(f"{'metric':<18}{'before':>10}{'after':>10}")
    for key in ("knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1"):
        print(f"{key:<18}{before[key]:>10.4f}{after[key]:>10.4f}")


def _json_safe(metrics: dict) -> dict:
    """NaN (an undefined metric) as null: strict JSON has no NaN."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def _work(args: argparse.Namespace, stage: outputs.Staging) -> int:
    """Load, evaluate, train, evaluate, write into ``stage`` and commit; returns the exit status."""
    from . import evaluation, models, training, viz
    from .st_losses import make_loss

    train_ds, test_ds = _load_data(args)
    names = data.label_names(train_ds)
    train_labels, test_labels = list(train_ds["label"]), list(test_ds["label"])
    with _blame("--data", args.data):  # e.g. fewer than 2 labels with 2 examples: before the slow part
        training.group_by_label_plan(train_labels, args.batch_size, names)
    if len(test_ds) < 3:
        flag, path = ("--test", args.test) if args.test else ("--data", args.data)
        raise UsageError(f"{flag} {path}: {len(test_ds)} test sentence(s); the picture and the metrics need 3")
    with _blame("--model", args.model or "(the bundled default)"):
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
                learning_rate=args.lr, seed=args.seed, progress=not args.no_progress, callbacks=_pause_callbacks(),
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

    folder = stage.path
    result.history.to_csv(folder / "history.csv", index=False)
    figure = viz.plot_before_after(emb_before, emb_after, test_labels, names, seed=args.seed)
    figure.savefig(folder / "umap_before_after.png", dpi=110)
    _pause("write")
    with models._quiet():  # no "Writing model shards" bar
        model.save(str(folder / "model"))
    config = dict(vars(args))
    config.update(
        model_info=models.model_info(model), label_names=names, n_train=len(train_ds), n_test=len(test_ds),
        steps=result.steps, train_seconds=round(result.train_seconds, 3), collapsed=result.collapsed,
        projection="pca" if fast_mode() else "umap",
    )
    files = sorted([*outputs.written_files(folder), outputs.MANIFEST_FILE])
    metrics = {"before": _json_safe(before), "after": _json_safe(after), "config": config, outputs.MANIFEST_KEY: files}
    (folder / outputs.MANIFEST_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    with _blame("--output"):
        stage.commit(midway=lambda: _pause("swap"))
    output = Path(args.output)
    print(f"wrote {output / 'metrics.json'}, {output / 'umap_before_after.png'}, {output / 'model'}")
    return 0


def run(args: argparse.Namespace) -> int:
    """The command's work once the arguments are parsed; returns the exit status.

    Raises:
        UsageError: a bad argument or input (before the slow work whenever it can be known then).
        KeyboardInterrupt: Ctrl-C (or SIGTERM, see :func:`main`); its message says what ``--output`` holds.
    """
    _check_args(args)
    inputs = {flag: path for flag, path in (("--data", args.data), ("--test", args.test)) if path is not None}
    with _blame("--output"):  # before any other work: a refused folder is never touched
        plan = outputs.check_output(args.output, args.overwrite, inputs)
    _check_inputs(args)
    stage = outputs.Staging(plan)
    with _blame("--output"):
        stage.open()  # now the place is known to be writable: the temporary folder exists
    with stage:
        try:
            return _work(args, stage)
        except KeyboardInterrupt as error:
            error.args = (stage.state(),)
            raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tutorial_lib.train`` and ``triplet-train``; returns the exit status.

    Bad input ends with one ``error:`` line naming the argument on stderr and status 2: an out-of-range number, an
    unusable output folder, a missing or malformed file, a missing column, a bad batch size, a model that cannot be
    found or fails its checksum. argparse's own usage errors also exit with status 2 (by raising
    ``SystemExit(2)``). A NaN/inf loss during training exits with status 1. Ctrl-C exits with 130 and SIGTERM with
    143, after one ``interrupted:`` line; the output folder then holds its previous results or the new ones.
    """
    args = build_parser().parse_args(argv)
    try:
        with outputs.sigterm_raises():
            return run(args)
    except KeyboardInterrupt as error:
        state = str(error) or f"nothing was written; {args.output} is unchanged"
        print(f"interrupted: {state}", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(error, outputs.Terminated) else EXIT_SIGINT
    except (ValueError, ModelIntegrityError, ModelSourceError, OSError) as error:  # DataError is a ValueError
        message = " ".join(str(error).split())  # one line, not a traceback
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
