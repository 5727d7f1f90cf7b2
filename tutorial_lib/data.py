"""Labelled sentence data sets: the bundled one, your own CSV, or one from the Hugging Face Hub (notebooks 00 and 09).

Every loader returns :mod:`datasets` objects with exactly two columns, the names the rest of the library uses:

* ``sentence`` -- ``Value("string")``, the text;
* ``label`` -- ``ClassLabel``, an integer class id 0..C-1 whose names are ``ds.features["label"].names``
  (or :func:`label_names`).

Labels are names, always: each is read as text (surrounding whitespace stripped) and the names are mapped to ids
0..C-1 in sorted string order (``"10"`` before ``"9"``). A label that looks like a number is a name too: ``"01"`` and
``"1"`` are two labels, ``"-1"`` is a fine one, and ``3, 7, 1000`` are 3 labels, never ids 0..1000. A test split is
mapped with its training split's names, and a test label absent from training is an error. Problems in the input
raise :class:`DataError` (a ``ValueError``) with a one-line message that names the file, the column or the rows
involved; :class:`SplitError` (a ``DataError``) when a stratified test split cannot be held out.

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
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env import hub_offline

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"
_MAX_LISTED = 5  # rows/classes quoted in an error message; the rest is counted

__all__ = [
    "first_n_per_label","DataError", "SplitError", "load_bundled", "load_csv", "load_hub", "to_dataset", "label_names"]


class DataError(ValueError):
    """A data file or data set cannot be used as it is; the message says what to fix."""


class SplitError(DataError):
    """A stratified test split cannot be held out (e.g. more classes than test examples); a separate test set can."""


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# ----------------------------------------------------------------------------------------------------------------
# Validation and conversion, shared by every loader
# ----------------------------------------------------------------------------------------------------------------


def _label_name(raw: Any) -> str | None:
    """A raw label as its name: text with surrounding whitespace stripped (an int 3 is the name "3"); None if empty."""
    if raw is None or (isinstance(raw, float) and raw != raw):  # None or NaN: a missing value
        return None
    name = str(raw).strip()
    return name or None


def _encode_labels(raw: Sequence[Any], names: Sequence[str] | None, where: str) -> tuple[list[int], list[str]]:
    """(ids, names) for raw labels, all read as names; ``names`` (or the sorted distinct names) fixes the id order."""
    labels = [_label_name(r) for r in raw]
    empty = [i for i, r in enumerate(labels) if r is None]
    if empty:
        raise DataError(f"{where}: empty label in {len(empty)} row(s): data rows {_listing([i + 1 for i in empty])}")
    names = sorted(set(labels)) if names is None else [str(n) for n in names]
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        rows = [i + 1 for i, r in enumerate(labels) if r not in index]
        raise DataError(
            f"{where}: label(s) {_listing([repr(u) for u in unknown])} not among the known labels "
            f"{_listing([repr(n) for n in names])} (data rows {_listing(rows)})"
        )
    return [index[r] for r in labels], names


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
        labels: N label names. Every label is a name, read as text with surrounding whitespace stripped: the int
            ``3`` and the string ``" 3"`` are both the label ``"3"``; ``"03"`` is another one. To pass class ids,
            map them to their names first (``names[i]``).
        label_names: the names in id order (e.g. the training split's, for its test split); every label must be
            one of them. None: the distinct labels sorted as strings (``"10"`` before ``"9"``).
        min_per_class: every class present must have at least this many examples (2: triplets need a positive).
        where: what the data is (a file name), for error messages.

    Raises:
        DataError: empty text, empty label, a label not in ``label_names``, fewer than 2 classes, or a class below
            ``min_per_class``.
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
        detail = " ".join(str(error).split())
        raise SplitError(
            f"{where}: cannot hold out a stratified test split of size {test_size}: {detail}. Use fewer, larger "
            "classes, or give a separate test file"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    """The file's text. Decoded here, in one piece, so a bad byte is reported at its real offset and line
    (pandas decodes in chunks and reports offsets within a chunk). A leading UTF-8 byte order mark is dropped."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}: not UTF-8 text ({error.reason}: byte 0x{raw[error.start]:02x} at byte offset {error.start}, "
            f"line {line}); save it as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _read_csv(path: str | Path, text_column: str, label_column: str):
    import io

    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if not path.is_file():
        raise DataError(f"not a file: {path}")
    text = _decode(path)
    try:  # everything as text; empty cells stay "" (not NaN) so they are reported as empty, not as "nan"
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header line: {text_column},{label_column})") from None
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
        label_names: force this id order (e.g. the training file's names when loading its test file); every
            label of the file must be one of them.
        min_per_class: minimum examples per class (use 1 for a test file whose classes may be small).

    Raises:
        DataError: missing or unreadable file (not UTF-8: the byte offset and line are named), malformed CSV,
            missing column (the message lists the available ones), empty text or label, a label not in
            ``label_names``, a class with fewer than ``min_per_class`` examples (named), fewer than 2 classes.
        SplitError: ``test_size`` cannot be held out with every class in both parts.
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
            and ``label``). A ``ClassLabel`` column keeps its names and their order; any other column (integers
            included) is read as label names, as in :func:`to_dataset`.
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
        labels = list(part[label_column])
        split_feature = part.features[label_column]
        if isinstance(split_feature, datasets.ClassLabel):  # ids of its own names: pass the names, not the ids
            labels = [None if i is None or i < 0 else split_feature.names[i] for i in labels]  # -1: no label
        return to_dataset(part[text_column], labels, names, min_per_class=min_per_class, where=f"{name}[{split}]")

    train = convert(train_split, names, 2)
    if test_split is None or test_split not in raw:
        return _split(train, test_size, seed, name)
    return datasets.DatasetDict({"train": train, "test": convert(test_split, label_names(train), 1)})


def first_n_per_label(dataset: Dataset, n: int) -> Dataset:
    """The first ``n`` rows of every label, in their original order (a small, balanced subset; fast mode uses it).

    Args:
        dataset: a ``Dataset`` with a ``label`` column.
        n: rows kept per label (all of a label's rows when it has fewer).
    """
    import numpy as np

    labels = np.asarray(dataset[LABEL_COLUMN])
    return dataset.select(sorted(int(i) for label in np.unique(labels) for i in np.flatnonzero(labels == label)[:n]))


def label_names(ds: Dataset | DatasetDict) -> list[str]:
    """The class names in id order, from the ``label`` column's ``ClassLabel`` (of any split of a ``DatasetDict``)."""
    dataset = next(iter(ds.values())) if hasattr(ds, "values") and not hasattr(ds, "features") else ds
    feature = dataset.features.get(LABEL_COLUMN)
    if feature is None:
        raise DataError(f"no {LABEL_COLUMN!r} column; columns: {dataset.column_names}")
    if not hasattr(feature, "names"):
        raise DataError(f"the {LABEL_COLUMN!r} column is not a ClassLabel; load the data with tutorial_lib.data")
    return list(feature.names)
