"""tutorial_lib.outputs: the output-folder checks, the manifest rule, staged writes and the all-or-nothing swap."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from tutorial_lib import outputs
from tutorial_lib.outputs import OutputError, Staging, check_output

MODEL_FILES = ["model/config.json", "model/modules.json", "model/model.safetensors", "model/1_Pooling/config.json"]


def _previous_run(folder: Path, manifest: bool = True) -> Path:
    """A folder as an earlier run left it (with its manifest in metrics.json, or as an older version wrote it)."""
    for relative in ["history.csv", "umap_before_after.png", *MODEL_FILES]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(f"old {relative}")
    (folder / "model" / "modules.json").write_text(json.dumps([{"path": ""}, {"path": "1_Pooling"}]))
    metrics = {"before": {}, "after": {}, "config": {}}
    if manifest:
        metrics["files"] = sorted(["metrics.json", "history.csv", "umap_before_after.png", *MODEL_FILES])
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stage_results(stage: Staging, tag: str = "new") -> None:
    for relative in ["metrics.json", "history.csv", "umap_before_after.png", "model/config.json"]:
        (stage.path / relative).parent.mkdir(parents=True, exist_ok=True)
        (stage.path / relative).write_text(f"{tag} {relative}")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ----------------------------------------------------------------------------------------------------------------
# check_output
# ----------------------------------------------------------------------------------------------------------------


def test_an_absent_or_empty_folder_is_fine(tmp_path):
    plan = check_output(tmp_path / "new" / "deeper")
    assert not plan.existed and plan.replaces == []
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty").existed


def test_a_non_empty_folder_needs_overwrite(tmp_path):
    _previous_run(tmp_path / "out")
    with pytest.raises(OutputError, match="out: the folder is not empty; pass --overwrite"):
        check_output(tmp_path / "out")
    plan = check_output(tmp_path / "out", overwrite=True)
    assert plan.replaces == ["metrics.json", "history.csv", "umap_before_after.png", "model"]


@pytest.mark.parametrize("where, message", [
    ("file.csv", "it exists and is not a folder"),
    ("file.csv/out", r"cannot create a folder there \(.*file.csv is a file, not a folder\)"),
    ("file.csv/out/deeper", r"cannot create a folder there \(.*file.csv is a file, not a folder\)"),
])
def test_a_file_in_the_way_is_refused(tmp_path, where, message):
    (tmp_path / "file.csv").write_text("sentence,label\n")
    with pytest.raises(OutputError, match=message):
        check_output(tmp_path / where)


def test_symbolic_links_are_refused_where_the_results_go(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="link: it is a symbolic link; give the folder it points to"):
        check_output(tmp_path / "link")
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    (out / "metrics.json").symlink_to(outside)
    with pytest.raises(OutputError, match="metrics.json is a symbolic link; refusing to write through it"):
        check_output(out, overwrite=True)
    (out / "metrics.json").unlink()
    (out / "model").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="model is a symbolic link"):
        check_output(out, overwrite=True)


def test_entries_of_the_wrong_kind_are_refused(tmp_path):
    out = tmp_path / "out"
    (out / "metrics.json").mkdir(parents=True)
    with pytest.raises(OutputError, match="metrics.json is not a file this command wrote"):
        check_output(out, overwrite=True)
    (out / "metrics.json").rmdir()
    (out / "model").write_text("not a folder")
    with pytest.raises(OutputError, match="model is a file, not a folder this command wrote"):
        check_output(out, overwrite=True)


def test_model_files_the_previous_run_did_not_write_are_refused_by_name(tmp_path):
    out = _previous_run(tmp_path / "out")
    check_output(out, overwrite=True)  # only recorded files: fine
    (out / "model" / "my_notes.txt").write_text("mine")
    (out / "model" / "1_Pooling" / "extra.bin").write_text("mine")
    with pytest.raises(OutputError, match=r"model/ holds file\(s\) this command did not write: "
                                          r"model/1_Pooling/extra.bin, model/my_notes.txt; move them away"):
        check_output(out, overwrite=True)


def test_without_a_manifest_a_saved_models_files_are_accepted_and_others_refused(tmp_path):
    out = _previous_run(tmp_path / "out", manifest=False)  # as the command's older version left it
    (out / "model" / "model-00001-of-00002.safetensors").write_text("shard")
    (out / "model" / "tokenizer.json").write_text("{}")
    check_output(out, overwrite=True)
    (out / "model" / "2_Dense").mkdir()
    (out / "model" / "2_Dense" / "config.json").write_text("{}")  # not a module listed in modules.json
    with pytest.raises(OutputError, match="model/2_Dense/config.json"):
        check_output(out, overwrite=True)


def test_a_symbolic_link_inside_model_is_refused_even_when_recorded(tmp_path):
    out = _previous_run(tmp_path / "out")
    (out / "model" / "config.json").unlink()
    (out / "model" / "config.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(OutputError, match=r"model/config.json \(a symbolic link\)"):
        check_output(out, overwrite=True)


def test_inputs_are_never_replaced(tmp_path):
    out = _previous_run(tmp_path / "out")
    with pytest.raises(OutputError, match="would replace the input file .*history.csv \\(--data\\)"):
        check_output(out, overwrite=True, inputs={"--data": out / "history.csv"})
    with pytest.raises(OutputError, match="replace the input file .*train.csv \\(--test\\)"):
        check_output(out, overwrite=True, inputs={"--test": out / "model" / "train.csv"})
    (out / "mine.csv").write_text("s,l\n")
    check_output(out, overwrite=True, inputs={"--data": out / "mine.csv"})  # not an entry the command writes
    with pytest.raises(OutputError, match="it is --data .* or inside it"):
        check_output(tmp_path / "data.csv" / "out", inputs={"--data": tmp_path / "data.csv"})


# ----------------------------------------------------------------------------------------------------------------
# Staging and commit
# ----------------------------------------------------------------------------------------------------------------


def test_a_new_folder_appears_complete_in_one_rename(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with Staging(check_output(out)) as stage:
        assert stage.path.parent == out.parent and stage.path.name.startswith(".out.tmp-")
        _stage_results(stage)
        assert not out.exists()
        stage.commit()
        assert stage.committed and stage.state() == f"{out} holds the complete new results"
    assert _snapshot(out)["model/config.json"] == b"new model/config.json"
    assert _leftovers(out.parent) == []
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o055 == 0o055 & ~_umask()  # the usual mode of a new folder, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_error_before_the_commit_leaves_nothing_behind(tmp_path):
    out = tmp_path / "made" / "for" / "out"
    with pytest.raises(RuntimeError), Staging(check_output(out)) as stage:
        _stage_results(stage)
        assert stage.state() == f"{out} was not created"
        raise RuntimeError("training failed")
    assert not (tmp_path / "made").exists()  # the parents it created are gone again
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_is_found_when_staging_opens(tmp_path):
    plan = check_output("/proc/x")
    with pytest.raises(OutputError, match=r"/proc/x: cannot create a folder there \(No such file or directory"):
        Staging(plan).open()


def test_overwrite_swaps_only_the_results_and_keeps_other_files(tmp_path):
    out = _previous_run(tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    with Staging(check_output(out, overwrite=True)) as stage:
        _stage_results(stage)
        stage.commit()
    after = _snapshot(out)
    assert after["notes.txt"] == b"mine" and after["metrics.json"] == b"new metrics.json"
    assert "model/modules.json" not in after  # the old model folder went as a whole: no stale files mixed in
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_failed_swap_puts_the_old_results_back(tmp_path, monkeypatch, failure):
    out = _previous_run(tmp_path / "out")
    before = _snapshot(out)
    real_rename = os.rename

    def rename(source, target):
        if Path(source).name == "model" and ".tmp-" in str(source):  # the last new entry to move in
            raise failure("disk trouble")
        real_rename(source, target)

    monkeypatch.setattr(outputs.os, "rename", rename)
    expected = KeyboardInterrupt if failure is KeyboardInterrupt else OutputError
    with pytest.raises(expected), Staging(check_output(out, overwrite=True)) as stage:
        _stage_results(stage)
        stage.commit()
    assert _snapshot(out) == before and _leftovers(tmp_path) == []
    assert not stage.committed


def test_a_folder_that_changed_during_the_run_is_not_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="changed while the command ran"), Staging(check_output(out)) as stage:
        _stage_results(stage)
        out.mkdir()
        (out / "metrics.json").write_text("someone else's")
        stage.commit()
    assert (out / "metrics.json").read_text() == "someone else's" and _leftovers(tmp_path) == []


def test_signals_are_held_off_until_the_block_ends():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with outputs.signals_deferred():
            signal.raise_signal(signal.SIGTERM)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupt_during_the_swap_lands_after_it(tmp_path):
    out = _previous_run(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt), Staging(check_output(out, overwrite=True)) as stage:
        _stage_results(stage)
        stage.commit(midway=lambda: signal.raise_signal(signal.SIGINT))
    assert stage.committed and _snapshot(out)["metrics.json"] == b"new metrics.json"
    assert _leftovers(tmp_path) == []


def test_written_files_is_the_manifest(tmp_path):
    (tmp_path / "model" / "1_Pooling").mkdir(parents=True)
    (tmp_path / "model" / "1_Pooling" / "config.json").write_text("{}")
    (tmp_path / "history.csv").write_text("")
    assert outputs.written_files(tmp_path) == ["history.csv", "model/1_Pooling/config.json"]


def test_sigterm_raises_a_keyboard_interrupt_inside_and_the_old_handler_comes_back():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(outputs.Terminated), outputs.sigterm_raises():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == previous
    assert issubclass(outputs.Terminated, KeyboardInterrupt)  # every cleanup written for Ctrl-C runs


def test_an_existing_folder_in_an_unwritable_parent_is_staged_inside_it(tmp_path, monkeypatch):
    out = _previous_run(tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    real_mkdtemp = outputs.tempfile.mkdtemp

    def mkdtemp(prefix, dir):
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(prefix=prefix, dir=dir)

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", mkdtemp)
    with Staging(check_output(out, overwrite=True)) as stage:
        assert stage.path.parent == out
        _stage_results(stage)
        stage.commit()
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "metrics.json", "model", "notes.txt",
                                                     "umap_before_after.png"]
    assert (out / "metrics.json").read_text() == "new metrics.json"
    monkeypatch.setattr(outputs.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(OutputError, match="new: cannot create a folder there \\(Permission denied"):
        Staging(check_output(tmp_path / "new")).open()  # an absent folder has nowhere else to go
