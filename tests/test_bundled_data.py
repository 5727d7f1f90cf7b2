"""Rules for the bundled question data set in data/ (see data/README.md). Reads the CSVs only; loads no model."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SPLITS = ("train", "test")
MIN_CLASSES = 6
MIN_PER_CLASS = {"train": 100, "test": 25}
MAX_BALANCE_RATIO = 1.2
MAX_SHARED_OPENING = 10


# --- helpers (pure functions on lists of (sentence, label) rows) -------------------------------------------------


def read_split(name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Header and (sentence, label) rows of data/<name>.csv."""
    with open(DATA_DIR / f"{name}.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [tuple(row) for row in reader]
    return header, rows


def normalize(sentence: str) -> str:
    """Lower-case, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", sentence.lower()).split())


def opening(sentence: str, n_words: int = 4) -> str:
    """The first ``n_words`` words of the normalized sentence."""
    return " ".join(normalize(sentence).split()[:n_words])


def class_counts(rows) -> Counter:
    return Counter(label for _, label in rows)


def balance_ratio(rows) -> float:
    counts = class_counts(rows)
    return max(counts.values()) / min(counts.values())


def overused_openings(rows, limit: int = MAX_SHARED_OPENING) -> dict[str, int]:
    counts = Counter(opening(sentence) for sentence, _ in rows)
    return {o: n for o, n in counts.items() if n > limit}


def duplicates(rows) -> list[str]:
    counts = Counter(normalize(sentence) for sentence, _ in rows)
    return sorted(s for s, n in counts.items() if n > 1)


def overlap(rows_a, rows_b) -> set[str]:
    return {normalize(s) for s, _ in rows_a} & {normalize(s) for s, _ in rows_b}


def blank_sentences(rows) -> list[tuple[str, str]]:
    return [row for row in rows if not row[0].strip() or not row[1].strip()]


# --- the bundled data ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[str, str]]]:
    return {name: read_split(name)[1] for name in SPLITS}


@pytest.mark.parametrize("name", SPLITS)
def test_header_and_columns(name):
    header, rows = read_split(name)
    assert header == ["sentence", "label"]
    assert rows, f"{name}.csv is empty"
    bad = [row for row in rows if len(row) != 2]
    assert not bad, f"rows without exactly two fields: {bad[:3]}"


@pytest.mark.parametrize("name", SPLITS)
def test_no_blank_sentences_or_labels(splits, name):
    assert not blank_sentences(splits[name])


def test_enough_classes(splits):
    assert len(class_counts(splits["train"])) >= MIN_CLASSES


def test_every_test_label_is_in_train(splits):
    assert set(class_counts(splits["test"])) <= set(class_counts(splits["train"]))


@pytest.mark.parametrize("name", SPLITS)
def test_enough_sentences_per_class(splits, name):
    counts = class_counts(splits[name])
    small = {label: n for label, n in counts.items() if n < MIN_PER_CLASS[name]}
    assert not small, f"{name}: classes below {MIN_PER_CLASS[name]}: {small}"


@pytest.mark.parametrize("name", SPLITS)
def test_balanced(splits, name):
    assert balance_ratio(splits[name]) <= MAX_BALANCE_RATIO, class_counts(splits[name])


def test_openings_are_varied(splits):
    assert not overused_openings(splits["train"] + splits["test"])


@pytest.mark.parametrize("name", SPLITS)
def test_no_duplicates_within_split(splits, name):
    assert not duplicates(splits[name])


def test_no_sentence_in_both_splits(splits):
    assert not overlap(splits["train"], splits["test"])


# --- the helpers catch bad data -----------------------------------------------------------------------------------

_OK = [("Who wrote Hamlet?", "person"), ("Where is Lima?", "place")]


@pytest.mark.parametrize(
    "check, rows",
    [
        (lambda r: not duplicates(r), _OK + [("who wrote  HAMLET", "person")]),
        (lambda r: not blank_sentences(r), _OK + [("   ", "person")]),
        (lambda r: not overused_openings(r, limit=2), [(f"Who wrote the book number {i}?", "person") for i in range(3)]),
        (lambda r: balance_ratio(r) <= MAX_BALANCE_RATIO, _OK + [("Who painted it?", "person")]),
        (lambda r: not overlap(r, [("Where is Lima!", "place")]), _OK),
    ],
    ids=["duplicate", "blank", "opening", "imbalance", "overlap"],
)
def test_helpers_reject_bad_examples(check, rows):
    assert not check(rows)


def test_helpers_accept_good_example():
    assert not duplicates(_OK) and not blank_sentences(_OK) and not overused_openings(_OK, limit=1)
    assert balance_ratio(_OK) == 1.0 and not overlap(_OK, [("Who painted it?", "person")])
    assert normalize("  Who's   THERE?! ") == "who s there" and opening("Quick question: who wrote it?") == "quick question who wrote"
