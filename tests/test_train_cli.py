"""``python -m tutorial_lib.train``: end to end on a tiny CSV with the tiny model, and every refusal path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib.train import main

pytestmark = pytest.mark.usefixtures("single_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("TRIPLET_FAST", "1")  # PCA instead of UMAP for the picture


def _args(data: Path, output: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--loss", "batch_hard", "--max-steps", "2", "--batch-size", "8", "--lr", "1e-3",
            "--model", "tiny", "--no-progress", "--output", str(output), *extra]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_end_to_end_with_a_held_out_split(fast, write_csv, toy_rows, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(_args(write_csv(toy_rows), output)) == 0
    printed = capsys.readouterr().out
    assert "knn_accuracy" in printed and "before" in printed and "after" in printed
    metrics = json.loads((output / "metrics.json").read_text())
    for phase in ("before", "after"):
        assert {"knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1"} <= set(metrics[phase])
        assert 0.0 <= metrics[phase]["knn_accuracy"] <= 1.0
    config = metrics["config"]
    assert config["loss"] == "batch_hard" and config["steps"] == 2 and config["n_test"] == 5  # 20% of 24, stratified
    assert config["label_names"] == ["food", "sport", "tech"]
    assert (output / "umap_before_after.png").stat().st_size > 1000
    from sentence_transformers import SentenceTransformer

    saved = SentenceTransformer(str(output / "model"), device="cpu")
    assert saved.encode(["a new laptop"]).shape == (1, 32)


def test_end_to_end_with_a_test_file_other_columns_and_overwrite(fast, write_csv, toy_rows, tmp_path):
    rows = [(label, text) for text, label in toy_rows]
    train = write_csv(rows, "train.csv", header=("topic", "text"))
    test = write_csv(rows[::4], "test.csv", header=("topic", "text"))
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    args = _args(train, output, "--test", str(test), "--text-column", "text", "--label-column", "topic",
                 "--overwrite")
    args[args.index("batch_hard")] = "batch_hard_soft_margin"
    assert main(args) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["config"]["n_test"] == 6 and metrics["config"]["loss"] == "batch_hard_soft_margin"
    assert (output / "notes.txt").read_text() == "mine"  # --overwrite replaces the results only


def test_a_non_empty_output_folder_is_refused_and_left_untouched(write_csv, toy_rows, tmp_path, capsys):
    output = tmp_path / "previous"
    (output / "model").mkdir(parents=True)
    (output / "metrics.json").write_text('{"old": true}')
    (output / "model" / "weights.bin").write_bytes(b"\x00\x01")
    before = _snapshot(output)
    # the data file does not even exist: the output folder is checked before any other work
    assert main(_args(tmp_path / "missing.csv", output)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not empty" in err and "--overwrite" in err
    assert _snapshot(output) == before


@pytest.mark.parametrize(
    "content, message",
    [
        ("sentence,label\na,x\nb,y,surplus\n", "malformed CSV: Expected 2 fields in line 3, saw 3"),
        ("text,label\na,x\nb,x\nc,y\nd,y\n", "missing column(s) ['sentence']; available columns: ['text', 'label']"),
        ("sentence,label\na,x\nb,x\nc,y\n", "'y' (1)"),
        ("sentence,label\na,x\n ,x\nc,y\nd,y\n", "empty text in 1 row(s): data rows 2"),
    ],
)
def test_bad_csv_gives_one_error_line_and_status_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(_args(path, tmp_path / "out")) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


def test_an_odd_batch_size_is_explained(write_csv, toy_rows, tmp_path, capsys):
    args = _args(write_csv(toy_rows), tmp_path / "out")
    args[args.index("--batch-size") + 1] = "7"
    assert main(args) == 2
    assert "even number >= 4" in capsys.readouterr().err


def test_argparse_usage_errors_exit_with_2():
    with pytest.raises(SystemExit) as info:
        main(["--data", "x.csv", "--loss", "nope", "--output", "o"])
    assert info.value.code == 2


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRIPLET_FAST": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "tutorial_lib.train", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_module_run_as_a_program(write_csv, toy_rows, tmp_path):
    data = write_csv(toy_rows)
    done = _run_module(*_args(data, tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "knn_accuracy" in done.stdout and (tmp_path / "out" / "metrics.json").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text('sentence,label\n"never closed,x\n')
    failed = _run_module(*_args(bad, tmp_path / "out2"), cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0 and "malformed CSV" in failed.stderr
    assert "Traceback" not in failed.stderr
