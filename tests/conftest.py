"""Shared test setup: offline, headless, and a few small fixtures used by several test files."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub (it reads the variable at import): no test may contact the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Figures are rendered without a display.
os.environ.setdefault("MPLBACKEND", "Agg")

import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TOY_TOPICS = {
    "sport": ["the football match", "a tennis player", "the team won", "a late goal", "the basketball game"],
    "food": ["a tasty pizza", "fresh bread", "the spicy soup", "a sweet cake", "the chef cooked pasta"],
    "tech": ["a new laptop", "the software update", "the phone battery", "a fast computer", "python code"],
}


def _toy_rows(per_label: int = 8) -> list[tuple[str, str]]:
    """(sentence, label) rows: ``per_label`` distinct sentences for each of three topics, deterministic."""
    rows = []
    for label, phrases in TOY_TOPICS.items():
        for i in range(per_label):
            a, b = phrases[i % len(phrases)], phrases[(3 * i + 1) % len(phrases)]
            rows.append((f"{a} and {b}, day {i}", label))
    return rows


@pytest.fixture
def toy_rows() -> list[tuple[str, str]]:
    """24 (sentence, label) rows: 8 distinct sentences for each of the labels sport, food, tech."""
    return _toy_rows()


@pytest.fixture
def write_csv(tmp_path: Path):
    """``write_csv(rows, name="data.csv", header=("sentence", "label")) -> Path``: a CSV in the test's tmp folder."""

    def write(rows, name: str = "data.csv", header=("sentence", "label")) -> Path:
        path = tmp_path / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if header is not None:
                writer.writerow(header)
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def toy_dataset():
    """A ``datasets.Dataset`` of 24 toy sentences, 3 labels x 8 (columns sentence, label)."""
    from tutorial_lib.data import to_dataset

    rows = _toy_rows()
    return to_dataset([s for s, _ in rows], [label for _, label in rows])


@pytest.fixture
def single_thread():
    """Run the test with one torch thread (restored afterwards).

    Tiny models on a busy machine: with 2 threads, small ops spend most of their time waiting for the other thread
    (a 4-step tiny training run measured 7.5 s with 2 threads vs 0.9 s with 1 on a shared 2-core box).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_st_model():
    """A fresh tiny random BERT sentence-transformer (dim 32, seed 0); about 0.3 s to build."""
    from tutorial_lib.models import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def default_st_model():
    """The bundled all-MiniLM-L6-v2, loaded once per session. Do not train it: other tests share it."""
    from tutorial_lib.models import load_model

    return load_model(device="cpu", verbose=False)
