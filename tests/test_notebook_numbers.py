"""Numbers in the notebooks' prose are numbers a cell printed.

Every number with three or more decimals in a notebook's markdown must appear in that notebook's committed outputs
(text, tables, printed Markdown) or as a value of a summary CSV under notebooks/results/ (rounded to the decimals
the prose gives). A few exceptions per notebook are allowed for constants such as ln 2 ≈ 0.693. The committed
notebooks are the outputs of a full run, so a number typed from memory, or left over from an earlier run, fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tutorial_lib import results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d{3,}(?![\w.])")
ALLOWED_EXCEPTIONS = 3


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def prose_numbers(nb: dict) -> list[str]:
    """Numbers with >= 3 decimals in the markdown cells, outside code blocks and solution blocks."""
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"```.*?```", " ", _text(cell["source"]), flags=re.S)  # code in markdown is code
        text = re.sub(r"<details>.*?</details>", " ", text, flags=re.S)
        found += NUMBER.findall(text)
    return found


def output_text(nb: dict) -> str:
    chunks = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            chunks.append(_text(output.get("text", "")))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    chunks.append(_text(value))
    return "\n".join(chunks)


RAW_TABLES = {results.ANSWERS_FILE, results.HISTORIES_FILE, results.PROJECTIONS_FILE}
"""Per-question, per-step and per-point tables: not summaries (thousands of arbitrary values would match anything)."""


@pytest.fixture(scope="module")
def summary_values() -> dict[int, set[float]]:
    """Every number of the summary CSVs, rounded to 3..9 decimals (the prose's precision), NaN left out."""
    values = []
    for path in (ROOT / "notebooks" / "results").glob("*.csv"):
        if path.name not in RAW_TABLES:
            values += pd.read_csv(path).select_dtypes("number").to_numpy().ravel().tolist()
    return {decimals: {round(v, decimals) for v in values if v == v} for decimals in range(3, 10)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_numbers_come_from_outputs_or_results(path, summary_values):
    nb = json.loads(path.read_text(encoding="utf-8"))
    outputs = output_text(nb)
    missing = []
    for number in prose_numbers(nb):
        decimals = len(number.split(".")[1])
        if number in outputs or float(number) in summary_values.get(decimals, ()):
            continue
        missing.append(number)
    assert len(missing) <= ALLOWED_EXCEPTIONS, f"{path.name}: numbers in the prose that no output shows: {missing}"


def test_the_rule_can_fail():
    nb = {"cells": [{"cell_type": "markdown", "source": "accuracy 0.9473 and 0.123, ln 2 = 0.693"},
                    {"cell_type": "code", "source": "x", "outputs": [{"output_type": "stream", "text": "0.123\n"}]}]}
    assert prose_numbers(nb) == ["0.9473", "0.123", "0.693"]
    assert "0.9473" not in output_text(nb) and "0.123" in output_text(nb)
