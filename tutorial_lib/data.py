"""Labelled sentence data sets: the bundled one, your own CSV, or one from the Hugging Face Hub (notebook 01).

Every loader returns :mod:`datasets` objects with exactly two columns, the names the rest of the library uses:

* ``sentence`` -- ``Value("string")``, the text;
* ``label`` -- ``ClassLabel``, an integer class id 0..C-1 whose names are ``ds.features["label"].names``
  (or :func:`label_names`).

String labels are mapped to ids in sorted order of their names; integer labels are kept as they are (their names
are ``"0"``, ``"1"``, ...). Problems in the input raise :class:`DataError` (a ``ValueError``) with a message that
names the file, the column or the rows involved.

Public API::

    load_bundled(data_dir=None)                                              -> DatasetDict (train, test)
    load_csv(path, text_column="sentence", label_column="label", test_size=None, seed=0, ...)
                                                                             -> Dataset or DatasetDict
    load_hub(name, text_column, label_column, config=None, test_size=0.2, seed=0, ...) -> DatasetDict
    to_dataset(sentences, labels, label_names=None)                          -> Dataset
    label_names(ds)                                                          -> list[str]

This module imports pandas and datasets only (no model, no other module of this package besides ``env``).
"""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env import hub_offline

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"
_INT = re.compile(r"^[+-]?\d+$")
_MAX_LISTED = 5  # rows/classes quoted in an error message; the rest is counted

__all__ = ["DataError", "load_bundled", "load_csv", "load_hub", "to_dataset", "label_names"]


class DataError(ValueError):
    """A data file or data set cannot be used as it is; the message says what to fix."""


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# ----------------------------------------------------------------------------------------------------------------
# Validation and conversion, shared by every loader
# ----------------------------------------------------------------------------------------------------------------


def _encode_labels(raw: Sequence[Any], names: Sequence[str] | None, where: str) -> tuple[list[int], list[str]]:
    """(ids, names) for raw labels: Python ints are ids, strings are names (or integer strings without ``names``)."""
    raw = [r.strip() if isinstance(r, str) else r for r in raw]
    empty = [i for i, r in enumerate(raw) if r is None or r == ""]
    if empty:
        raise DataError(f"{where}: empty label in {len(empty)} row(s): data rows {_listing([i + 1 for i in empty])}")
    as_ints = all(isinstance(r, int) and not isinstance(r, bool) for r in raw)
    if names is None and not as_ints and all(isinstance(r, str) and _INT.match(r) for r in raw):
        raw, as_ints = [int(r) for r in raw], True
    if as_ints:
        if any(r < 0 for r in raw):
            raise DataError(f"{where}: integer labels must be >= 0; got {min(raw)}")
        names = [str(i) for i in range(max(raw) + 1)] if names is None else list(names)
        if max(raw) >= len(names):
            raise DataError(f"{where}: label id {max(raw)} is out of range for {len(names)} label names")
        return list(raw), names
    raw = [str(r) for r in raw]
    names = sorted(set(raw)) if names is None else list(names)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DataError(f"{where}: label(s) {_listing([repr(u) for u in unknown])} not among the known labels {names}")
    return [index[r] for r in raw], names


def to_dataset(
    sentences: Sequence[str],
    labels: Sequence[Any],
    label_names: Sequence[str] | None = None,
    *,
    min_per_class: int = 2,
    where: str = "data",
) -> Dataset:
    """Check sentences and labels and build a ``Dataset`` with columns ``sentence`` and ``label`` (``ClassLabel``).

    Args:
        sentences: N texts; none may be empty or whitespace only.
        labels: N labels: label names (str), or integer ids (int, or integer strings when ``label_names`` is None).
        label_names: the class names in id order; None derives them (sorted names, or ``"0".."max"`` for ints).
        min_per_class: every class present must have at least this many examples (2: triplets need a positive).
        where: what the data is (a file name), for error messages.

    Raises:
        DataError: empty text, empty or unknown label, fewer than 2 classes, or a class below ``min_per_class``.
    """
    from datasets import ClassLabel, Dataset, Features, Value

    sentences = ["" if s is None else str(s) for s in sentences]
    if len(sentences) != len(labels):
        raise DataError(f"{where}: {len(sentences)} sentences but {len(labels)} labels")
    if not sentences:
        raise DataError(f"{where}: no rows")
    empty = [i for i, s in enumerate(sentences) if not s.strip()]
    if empty:
        raise DataError(f"{where}: empty text in {len(empty)} row(s): data rows {_listing([i + 1 for i in empty])}")
    ids, names = _encode_labels(labels, label_names, where)
    counts = Counter(ids)
    if len(counts) < 2:
        raise DataError(f"{where}: needs at least 2 classes (a triplet needs a negative); found {len(counts)}")
    small = sorted((names[i], n) for i, n in counts.items() if n < min_per_class)
    if small:
        listed = _listing([f"{name!r} ({n})" for name, n in small])
        raise DataError(
            f"{where}: every class needs at least {min_per_class} examples (an anchor needs a positive); "
            f"too small: {listed}. Add examples or remove these rows."
        )
    features = Features({TEXT_COLUMN: Value("string"), LABEL_COLUMN: ClassLabel(names=names)})
    return Dataset.from_dict({TEXT_COLUMN: sentences, LABEL_COLUMN: ids}, features=features)


def _split(ds: Dataset, test_size: float | int, seed: int, where: str) -> DatasetDict:
    try:  # stratified, so every class keeps its share in both splits
        return ds.train_test_split(test_size=test_size, seed=seed, stratify_by_column=LABEL_COLUMN)
    except ValueError as error:  # sklearn's message, e.g. test_size smaller than the number of classes
        raise DataError(f"{where}: cannot hold out a stratified test split of size {test_size}: {error}") from None


# ----------------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------------


def _read_csv(path: str | Path, text_column: str, label_column: str):
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    try:  # everything as text; empty cells stay "" (not NaN) so they are reported as empty, not as "nan"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header line: {text_column},{label_column})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except pd.errors.ParserError as error:
        detail = " ".join(str(error).split()).replace("Error tokenizing data. C error: ", "")
        raise DataError(f"{path}: malformed CSV: {detail}") from None
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; available columns: {list(frame.columns)}")
    frame = frame.fillna("")  # short rows give NaN even with keep_default_na=False
    return frame[text_column].tolist(), frame[label_column].tolist()


def load_csv(
    path: str | Path,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    *,
    test_size: float | int | None = None,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
    min_per_class: int = 2,
) -> Dataset | DatasetDict:
    """Load your own labelled sentences from a CSV file with a header line (UTF-8).

    Args:
        path: the CSV file.
        text_column, label_column: the header names of the text and the label columns (renamed to ``sentence`` and
            ``label``; other columns are ignored).
        test_size: None returns one ``Dataset``; a fraction (0.2) or a count holds out a stratified test split and
            returns a ``DatasetDict`` with ``train`` and ``test``.
        seed: seed of the split.
        label_names: force this id order (e.g. the training file's names when loading its test file).
        min_per_class: minimum examples per class (use 1 for a test file whose classes may be small).

    Raises:
        DataError: missing or unreadable file, missing column (the message lists the available ones), empty text,
            a class with fewer than ``min_per_class`` examples (named), fewer than 2 classes.
    """
    sentences, labels = _read_csv(path, text_column, label_column)
    ds = to_dataset(sentences, labels, label_names, min_per_class=min_per_class, where=str(path))
    return ds if test_size is None else _split(ds, test_size, seed, str(path))


def _bundled_files(data_dir: str | Path | None) -> Path:
    """The folder holding ``train.csv`` and ``test.csv``: the package copy (wheels), else the checkout's ``data/``."""
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    else:
        resource = importlib.resources.files("tutorial_lib") / "_bundled_data"
        if isinstance(resource, Path):  # a regular (unzipped) install; zipped installs are not supported
            candidates.append(resource)
        candidates.append(Path(__file__).resolve().parent.parent / "data")  # editable install: the checkout
    for folder in candidates:
        if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
            return folder
    raise DataError(f"bundled data not found: no train.csv and test.csv in {', '.join(map(str, candidates))}")


def load_bundled(data_dir: str | Path | None = None) -> DatasetDict:
    """The data set shipped with the tutorial, offline: a ``DatasetDict`` with ``train`` and ``test``.

    Args:
        data_dir: a folder with ``train.csv`` and ``test.csv`` (columns ``sentence,label``) to use instead; None
            reads ``tutorial_lib/_bundled_data/`` (pip installs) or the repository's ``data/`` (editable install).

    Returns:
        ``DatasetDict`` whose splits share one label id order (the sorted names of the training labels).
    """
    from datasets import DatasetDict

    folder = _bundled_files(data_dir)
    train = load_csv(folder / "train.csv")
    test = load_csv(folder / "test.csv", label_names=label_names(train), min_per_class=1)
    return DatasetDict({"train": train, "test": test})


def load_hub(
    name: str,
    text_column: str = "text",
    label_column: str = "label",
    *,
    config: str | None = None,
    train_split: str = "train",
    test_split: str | None = "test",
    test_size: float | int = 0.2,
    seed: int = 0,
    revision: str | None = None,
) -> DatasetDict:
    """A labelled data set from the Hugging Face Hub (online only), e.g. TREC's six question types::

        load_hub("CogComp/trec", text_column="text", label_column="coarse_label")

    Args:
        name, config, revision: passed to ``datasets.load_dataset``.
        text_column, label_column: the data set's columns holding the text and the label (renamed to ``sentence``
            and ``label``). A ``ClassLabel`` column keeps its names.
        train_split, test_split: the splits to use; without ``test_split`` (or if the data set has none), a
            stratified ``test_size`` share of the training split is held out with ``seed``.

    Raises:
        DataError: at once, before any network access, when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set
            (use :func:`load_bundled`); a missing split or column (the message lists the available ones).
    """
    if hub_offline():
        raise DataError(
            f"load_hub({name!r}) needs the Hugging Face Hub, but offline mode is on (HF_HUB_OFFLINE or "
            "HF_DATASETS_OFFLINE is set). Use tutorial_lib.data.load_bundled() for the bundled data set, "
            "or load_csv(path) for your own file."
        )
    import datasets

    raw = datasets.load_dataset(name, config, revision=revision)
    if train_split not in raw:
        raise DataError(f"{name}: no split {train_split!r}; available splits: {list(raw)}")
    feature = raw[train_split].features.get(label_column)
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None

    def convert(split: str, names: Sequence[str] | None, min_per_class: int) -> Dataset:
        part = raw[split]
        missing = [c for c in (text_column, label_column) if c not in part.column_names]
        if missing:
            raise DataError(f"{name}[{split}]: missing column(s) {missing}; available columns: {part.column_names}")
        return to_dataset(part[text_column], list(part[label_column]), names, min_per_class=min_per_class,
                          where=f"{name}[{split}]")

    train = convert(train_split, names, 2)
    if test_split is None or test_split not in raw:
        return _split(train, test_size, seed, name)
    return datasets.DatasetDict({"train": train, "test": convert(test_split, label_names(train), 1)})


def label_names(ds: Dataset | DatasetDict) -> list[str]:
    """The class names in id order, from the ``label`` column's ``ClassLabel`` (of any split of a ``DatasetDict``)."""
    dataset = next(iter(ds.values())) if hasattr(ds, "values") and not hasattr(ds, "features") else ds
    feature = dataset.features.get(LABEL_COLUMN)
    if feature is None:
        raise DataError(f"no {LABEL_COLUMN!r} column; columns: {dataset.column_names}")
    if not hasattr(feature, "names"):
        raise DataError(f"the {LABEL_COLUMN!r} column is not a ClassLabel; load the data with tutorial_lib.data")
    return list(feature.names)
