"""``python -m tutorial_lib.train``: end to end on a tiny CSV with the tiny model, and every refusal path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.notebooks import PROGRESS_BAR
from tutorial_lib import data, models, outputs
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
    assert set(metrics["files"]) == set(outputs.written_files(output)) - {"notes.txt"}  # the manifest: what it wrote
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".")) == []  # no temporary folder


def test_a_non_empty_output_folder_is_refused_and_left_untouched(write_csv, toy_rows, tmp_path, capsys):
    output = tmp_path / "previous"
    (output / "model").mkdir(parents=True)
    (output / "metrics.json").write_text('{"old": true}')
    (output / "model" / "weights.bin").write_bytes(b"\x00\x01")
    before = _snapshot(output)
    # the data file does not even exist: the output folder is checked before any other work
    assert main(_args(tmp_path / "missing.csv", output)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not empty" in err and "--overwrite" in err and err.startswith("error: --output")
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


# ----------------------------------------------------------------------------------------------------------------
# Everything is checked before any model or data is loaded
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if a model or a data file gets loaded: the checks must come first."""

    def loaded(*args, **kwargs):
        raise AssertionError("something was loaded before the arguments were checked")

    for module, name in ((models, "tiny_model"), (models, "load_model"), (data, "load_csv")):
        monkeypatch.setattr(module, name, loaded)


def _with(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    if flag == "--epochs":  # --epochs and --max-steps exclude each other
        del args[args.index("--max-steps"):args.index("--max-steps") + 2]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("flag, value, message", [
    ("--max-steps", "0", "--max-steps 0: must be at least 1"),
    ("--max-steps", "-3", "--max-steps -3: must be at least 1"),
    ("--epochs", "-1", "--epochs -1.0: must be a finite number > 0"),
    ("--epochs", "0", "--epochs 0.0: must be a finite number > 0"),
    ("--epochs", "nan", "--epochs nan: must be a finite number > 0"),
    ("--epochs", "inf", "--epochs inf: must be a finite number > 0"),
    ("--lr", "0", "--lr 0.0: must be a finite number > 0"),
    ("--lr", "nan", "--lr nan: must be a finite number > 0"),
    ("--margin", "-0.5", "--margin -0.5: must be a finite number >= 0"),
    ("--margin", "inf", "--margin inf: must be a finite number >= 0"),
    ("--batch-size", "7", "--batch-size 7: must be an even number >= 4"),
    ("--batch-size", "2", "--batch-size 2: must be an even number >= 4"),
    ("--seed", "-1", "--seed -1: must be between 0 and 2**32 - 1"),
    ("--model", "", "--model '': the model name is empty"),
    ("--model", "./missing", "--model './missing': no such folder"),
])
def test_nonsense_arguments_are_refused_before_anything_is_loaded(
    no_loading, write_csv, toy_rows, tmp_path, capsys, monkeypatch, flag, value, message
):
    monkeypatch.chdir(tmp_path)
    assert main(_with(_args(write_csv(toy_rows), tmp_path / "out"), flag, value)) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_missing_data_file_is_named_before_anything_is_loaded(no_loading, tmp_path, capsys):
    assert main(_args(tmp_path / "nope.csv", tmp_path / "out")) == 2
    assert "--data " in _one_error_line(capsys) and not (tmp_path / "out").exists()


def _previous_run(folder: Path) -> Path:
    """An output folder as an earlier run left it: the four results and their manifest in metrics.json."""
    files = ["history.csv", "umap_before_after.png", "model/config.json", "model/modules.json",
             "model/model.safetensors", "model/1_Pooling/config.json"]
    for relative in files:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(f"old {relative}")
    metrics = {"before": {}, "after": {}, "config": {"old": True}, "files": sorted(["metrics.json", *files])}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.mark.parametrize("case, message", [
    ("/proc/x", "--output /proc/x: cannot create a folder there (No such file or directory"),
    ("data.csv/out", "data.csv/out: cannot create a folder there ("),
    ("model is a file", "model is a file, not a folder this command wrote"),
    ("model is a link", "model is a symbolic link; refusing to write through it"),
    ("metrics.json is a link", "metrics.json is a symbolic link; refusing to write through it"),
    ("output is a link", "it is a symbolic link; give the folder it points to"),
    ("a file of mine in model/", "model/ holds file(s) this command did not write: model/mine.txt"),
    ("the input is a result", "writing here would replace the input file"),
])
def test_an_unusable_output_is_refused_before_anything_is_loaded(
    no_loading, write_csv, toy_rows, tmp_path, capsys, case, message
):
    csv_path = write_csv(toy_rows)
    out = _previous_run(tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.json").write_text("precious")
    if case == "/proc/x" or case == "data.csv/out":
        out = Path(case) if case == "/proc/x" else csv_path / "out"
    elif case == "model is a file":
        out = tmp_path / "fresh"
        out.mkdir()
        (out / "model").write_text("a file")
    elif case == "model is a link":
        os.rename(out / "model", elsewhere / "model")
        (out / "model").symlink_to(elsewhere / "model")
    elif case == "metrics.json is a link":
        (out / "metrics.json").unlink()
        (out / "metrics.json").symlink_to(elsewhere / "precious.json")
    elif case == "output is a link":
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "out")
    elif case == "a file of mine in model/":
        (out / "model" / "mine.txt").write_text("mine")
    elif case == "the input is a result":
        csv_path = out / "history.csv"
        csv_path.write_bytes((write_csv(toy_rows)).read_bytes())
    before = {p: _snapshot(p) for p in (tmp_path / "out", elsewhere)}
    input_before = csv_path.read_bytes() if csv_path.is_file() else None
    assert main([*_args(csv_path, out), "--overwrite"]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("error: --output ") and message in err
    assert {p: _snapshot(p) for p in before} == before
    assert input_before is None or csv_path.read_bytes() == input_before
    assert not [p for p in tmp_path.rglob(".*") if ".tmp-" in p.name]


# ----------------------------------------------------------------------------------------------------------------
# Labels and data errors
# ----------------------------------------------------------------------------------------------------------------


def test_numeric_test_labels_unknown_to_training_are_refused(monkeypatch, write_csv, tmp_path, capsys):
    monkeypatch.setattr(models, "tiny_model", lambda *a, **k: pytest.fail("model loaded before the data check"))
    train = write_csv([(f"s{i}", str(i % 2 + 1)) for i in range(8)], "train.csv")
    test = write_csv([("t1", "1"), ("t2", "2"), ("t3", "5")], "test.csv")
    assert main(_args(train, tmp_path / "out", "--test", str(test))) == 2
    err = _one_error_line(capsys)
    assert err.startswith("error: --test ") and "label(s) '5' not among the known labels '1', '2'" in err


def test_a_split_that_cannot_be_stratified_suggests_test(write_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "tiny_model", lambda *a, **k: pytest.fail("model loaded before the data check"))
    rows = [(f"s{i}-{j}", f"class{i}") for i in range(30) for j in range(2)]
    assert main(_args(write_csv(rows), tmp_path / "out")) == 2
    err = _one_error_line(capsys)
    assert "cannot hold out a stratified test split" in err and err.endswith("with --test FILE")


def test_a_non_utf8_file_names_the_real_byte_and_line(write_csv, tmp_path, capsys):
    path = tmp_path / "big.csv"
    head = "sentence,label\n" + "".join(f"line {i:06d},{'xy'[i % 2]}\n" for i in range(3000))
    path.write_bytes(head.encode() + b"caf\xe9,x\n")
    assert main(_args(path, tmp_path / "out")) == 2
    assert f"byte offset {len(head.encode()) + 3}, line 3002" in _one_error_line(capsys)


# ----------------------------------------------------------------------------------------------------------------
# All or nothing
# ----------------------------------------------------------------------------------------------------------------


def test_a_failure_while_writing_leaves_the_previous_results_whole(fast, write_csv, toy_rows, tmp_path, capsys,
                                                                    monkeypatch):
    from tutorial_lib import viz

    out = _previous_run(tmp_path / "out")
    before = _snapshot(out)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(viz, "plot_before_after", disk_full)
    assert main([*_args(write_csv(toy_rows), out), "--overwrite"]) == 2
    captured = capsys.readouterr()
    assert "trained 2 steps" in captured.out and "No space left on device" in captured.err
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_of_a_folder_written_before_manifests_existed(fast, write_csv, toy_rows, tmp_path):
    out = tmp_path / "out"
    assert main(_args(write_csv(toy_rows), out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    del metrics["files"]  # as the command's earlier version wrote it
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert main([*_args(write_csv(toy_rows), out), "--overwrite"]) == 0
    assert "files" in json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------------------------------------------
# Interruptions: Ctrl-C and SIGTERM at chosen points (the TRIPLET_TRAIN_PAUSE_AT test hook)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_csv(write_csv) -> Path:
    """40 rows: 4 labels x 10 sentences."""
    words = ["red", "green", "blue", "black", "white", "pink", "grey", "gold", "brown", "cyan"]
    topics = ["sport", "food", "tech", "music"]
    return write_csv([(f"the {w} {t} item number {i}", t) for t in topics for i, w in enumerate(words)])


def _interrupt(args: list[str], point: str, signum: int, tmp: Path) -> tuple[subprocess.CompletedProcess, str]:
    """Run the command, wait until it pauses at ``point``, send ``signum``; return its result and its stdout."""
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRIPLET_FAST": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "TMPDIR": str(tmp), "TRIPLET_TRAIN_PAUSE_AT": point, "TRIPLET_TRAIN_PAUSE_SECONDS": "2" if point == "swap"
           else "60"}
    # a SIGINT ignored by whatever started pytest would be inherited: give the command Python's usual Ctrl-C
    process = subprocess.Popen([sys.executable, "-m", "tutorial_lib.train", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if not line or line.startswith(f"paused at {point}"):
            break
    assert lines[-1].startswith(f"paused at {point}"), "".join(lines) + process.stderr.read()
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(lines) + out, err), err


def _without_progress_bars(err: str) -> list[str]:
    """The lines of ``err`` that are not tqdm progress bars (a bar redrawn with carriage returns reads as several
    lines, one of them blank, once the pipe's text is decoded)."""
    return [line for line in err.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]


@pytest.mark.parametrize("point, signum, existing", [
    ("train", signal.SIGINT, True),
    ("train", signal.SIGTERM, False),
    ("write", signal.SIGTERM, True),
    ("swap", signal.SIGTERM, True),
])
def test_an_interrupted_run_leaves_the_old_results_or_the_new_ones(small_csv, tmp_path, point, signum, existing):
    out = _previous_run(tmp_path / "out") if existing else tmp_path / "out"
    before = _snapshot(out) if existing else None
    args = [*_args(small_csv, out), "--overwrite"]
    done, err = _interrupt(args, point, signum, tmp_path / "tmp")
    assert done.returncode == (130 if signum == signal.SIGINT else 143), err
    messages = _without_progress_bars(err)
    assert len(messages) == 1 and messages[0].startswith("interrupted: ") and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder
    assert [p.name for p in (tmp_path / "tmp").glob("triplet-train-*")] == []  # nor the trainer's
    if point == "swap":  # the swap had begun: it completes, and the signal takes effect afterwards
        assert messages == [f"interrupted: {out} holds the complete new results"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics["files"]) == set(outputs.written_files(out)) and "old" not in metrics["config"]
    elif existing:
        assert messages == [f"interrupted: nothing was written; {out} is unchanged"]
        assert _snapshot(out) == before
    else:
        assert messages == [f"interrupted: {out} was not created"] and not out.exists()
    if point in ("write", "swap"):
        assert "trained 2 steps" in done.stdout.split("paused at")[0]  # printed before anything is written
