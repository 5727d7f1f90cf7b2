"""The notebooks: every source runs in fast mode (offline, fresh kernel), also as a learner's ``jupyter execute``
runs it (live widgets, no headless switch), the committed .ipynb files are in sync with their sources, and the
notebook tool's check, build, nav and execute logic does what it promises.

Executing the notebooks is marked ``notebooks`` (``python -m pytest -m notebooks`` runs only those); they are part of
the default run. New notebooks ``notebooks/NN_name.py`` are picked up automatically.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tools import notebooks as tool

ROOT = Path(__file__).resolve().parents[1]
NAMES = tool.discover(ROOT)
CELL_TIMEOUT = 300  # seconds per cell in fast mode (the slowest fast-mode cell takes a few seconds)


# ----------------------------------------------------------------------------------------------------------------
# Every notebook runs, in fast mode, offline, in a fresh kernel
# ----------------------------------------------------------------------------------------------------------------


def test_there_are_notebooks():
    assert NAMES[:3] == ["00_start_here", "01_triplet_loss", "02_batches_distances_masks"]


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_fast_mode(name):
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    start = time.perf_counter()
    tool.execute(nb, ROOT / "notebooks", fast=True, timeout=CELL_TIMEOUT)  # raises CellExecutionError on failure
    print(f"{name}: {time.perf_counter() - start:.1f} s in fast mode")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    setup_output = "".join(o.get("text", "") for o in code[0].outputs)
    assert "mode: FAST" in setup_output and "offline" in setup_output


# ----------------------------------------------------------------------------------------------------------------
# Run as a learner's `jupyter execute` runs them: no headless switch, widget state stored, nothing may wait forever
# ----------------------------------------------------------------------------------------------------------------

OUTPUT_MODEL = "OutputModel"


class CountingClient(NotebookClient):
    """nbclient as ``jupyter execute`` uses it, counting the output captures it had to route into Output widgets.

    Each capture makes nbclient's stand-in front end send on the kernel's shell channel in the middle of a cell,
    which can lose the cell's reply (the run then waits forever without a timeout) and raises KeyError without
    stored widget state: the widgets must never need it.
    """

    captures = 0

    def register_output_hook(self, msg_id, hook):
        self.captures += 1
        super().register_output_hook(msg_id, hook)


def learner_env() -> dict[str, str]:
    """The kernel environment of a learner's run in fast mode: live widgets and progress bars (no headless or
    quiet switch), offline, on the CPU."""
    return tool.kernel_env(fast=True, headless=False)


def live_figures(nb) -> list[dict]:
    """The display_data outputs held by the Output widgets in the notebook's stored widget state."""
    state = nb.metadata.get("widgets", {}).get(tool.WIDGET_STATE, {}).get("state", {})
    return [out for model in state.values() if model.get("model_name") == OUTPUT_MODEL
            for out in model["state"].get("outputs", []) if out.get("output_type") == "display_data"]


WIDGET_CELLS = [
    "from tutorial_lib.setup import setup\nENV = setup(seed=0)  # as every notebook starts: the inline backend\n"
    "from tutorial_lib import widgets\nbundle = widgets.unit_circle_explorer(angle=60)\nbundle.show()",
    "bundle.controls['angle'].value = 90  # a learner moving the slider: the live plot takes the picture's place\n"
    "live = bundle.widget.children[-1].outputs\n"
    "print('redraws', bundle.redraws)\n"
    "print('live', len(live), type(live[0]['data'].get('image/png')).__name__)",
]


@pytest.mark.parametrize("store_widget_state", [False, True])
def test_a_live_widget_redraws_under_nbclient_without_a_front_end(store_widget_state):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in WIDGET_CELLS])
    client = CountingClient(nb, timeout=120, iopub_timeout=30, raise_on_iopub_timeout=True, startup_timeout=120,
                            store_widget_state=store_widget_state, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute(env=learner_env(), cwd=str(ROOT / "notebooks"))  # a KeyError here: widget output was captured
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert "redraws 2" in printed
    assert "live 1 str" in printed, printed  # one figure, its PNG as base64 text (what front ends render)
    assert client.captures == 0, "a widget captured output: nbclient had to answer on the shell channel mid-cell"
    if store_widget_state:
        figures = live_figures(nb)
        assert figures and all(isinstance(f["data"]["image/png"], str) for f in figures)
    else:
        assert "widgets" not in nb.metadata


def test_the_runner_refuses_to_run_without_a_cell_timeout():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    for timeout in (None, 0, -1):
        with pytest.raises(ValueError, match="timeout"):  # before any kernel starts
            tool.execute(nb, ROOT / "notebooks", fast=True, timeout=timeout)


def test_the_runners_output_widget_rearms_the_shell_socket_after_each_send():
    import zmq

    calls = []

    class Socket:
        def get(self, option):
            calls.append(("get", option))

    class Channel:
        socket = Socket()

        def send(self, msg):
            calls.append(("send", msg["msg_type"]))

    class Session:
        def msg(self, msg_type, content=None, parent=None, metadata=None):
            return {"msg_type": msg_type, "content": content, "parent_header": parent}

    class KernelClient:
        session = Session()
        shell_channel = Channel()

    widget = tool._rearming_output_widget()("c0ffee", {"outputs": []}, KernelClient(), executor=None)
    widget.parent_header = {"msg_id": "cell"}
    widget.sync_state()  # what nbclient does after routing a captured output into the widget
    assert calls == [("send", "comm_msg"), ("get", zmq.EVENTS)]


CAPTURE_CELLS = 20


def test_the_runner_never_loses_a_reply_when_a_cell_captures_widget_output(tmp_path):
    # Every cell ends by capturing output into an Output widget, so nbclient's stand-in front end answers on the shell
    # channel just as the cell's reply arrives: without the re-arm, about half of such cells miss the reply and wait
    # out their whole timeout (about 150 s here); with it, the run takes seconds.
    cells = ["import ipywidgets as w\nfrom IPython.display import HTML, display\nout = w.Output()\ndisplay(out)"]
    cells += [f"with out:\n    display(HTML('<b>{i}</b>' + 'x' * 20000))" for i in range(CAPTURE_CELLS)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    seconds = tool.execute(nb, tmp_path, fast=True, timeout=15)
    assert all(c.execution_count for c in nb.cells)
    assert seconds < 60, f"{CAPTURE_CELLS} trivial cells took {seconds:.0f} s: replies were lost and waited out"


@pytest.mark.notebooks
def test_notebook_03_runs_as_jupyter_execute_runs_it():
    nb = jupytext.read(ROOT / "notebooks" / "03_batch_all.py")
    folder = ROOT / "notebooks"
    # jupyter execute's own configuration (widget state stored, no headless switch), plus the timeouts it lacks
    client = CountingClient(nb, timeout=CELL_TIMEOUT, iopub_timeout=tool.IOPUB_TIMEOUT, raise_on_iopub_timeout=True,
                            startup_timeout=tool.STARTUP_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute(env=learner_env(), cwd=str(folder))  # raises CellExecutionError or CellTimeoutError
    print(f"03_batch_all like jupyter execute: {time.perf_counter() - start:.1f} s")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert client.captures == 0, "a widget captured output: nbclient had to answer on the shell channel mid-cell"
    assert any("image/png" in f["data"] for f in live_figures(nb)), "the explorer's live plot was never drawn"


# ----------------------------------------------------------------------------------------------------------------
# The committed notebooks
# ----------------------------------------------------------------------------------------------------------------


def test_committed_notebooks_pass_the_check(capsys):
    findings = tool.check(ROOT)
    status = tool.report(findings)
    out = capsys.readouterr().out
    assert status == 0, out
    assert not [f for f in findings if f.level == "FAIL"], out


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_small_executed_and_tidy(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    raw = path.read_bytes()
    assert len(raw) <= tool.MAX_BYTES
    nb = nbformat.reads(raw.decode(), as_version=4)
    nbformat.validate(nb)
    meta = nb.metadata
    assert meta["kernelspec"]["name"] == "python3"
    assert meta["colab"] == {"provenance": [], "gpuType": "T4"} and meta["accelerator"] == "GPU"
    assert meta["jupytext"]["formats"] == "ipynb,py:percent"
    stamp = meta["triplet_mining"]
    assert stamp["mode"] == "full" and stamp["executed_seconds"] > 0 and stamp["code_hash"] == tool.code_hash(nb)
    assert "widgets" not in meta and b"widget-state" not in raw and b"widget-view" not in raw
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "committed notebooks hold a full run"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    for cell in code:  # a widget cell also shows its initial picture as a plain image
        texts = [o.get("data", {}).get("text/plain", "") for o in cell.outputs]
        if tool.WIDGET_FALLBACK in texts:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_follows_the_skeleton(name):
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    cells = nb.cells
    assert 30 <= len(cells) <= 70, f"{len(cells)} cells"
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(tool.HEADER_MARKER)
    assert "colab.research.google.com" in cells[0].source
    assert cells[1].cell_type == "code" and cells[1].source == tool.setup_cell_source(tool.github_slug(ROOT))
    assert "## Learning objectives" in cells[2].source and "Prerequisites" in cells[2].source
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "## 1. " in text and "## Summary" in text and "## Common pitfalls" in text and "## Further reading" in text
    assert cells[-1].source.startswith(tool.NAV_MARKER)
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert "sys.path" not in code
    assert code.count("assert ") >= 3, "checkpoints"
    if name >= "01":
        assert code.count("check_") >= 2 * 2, "at least two exercises with a self-check"


def test_setup_cell_installs_only_what_colab_lacks():
    source = tool.setup_cell_source("owner/repo")
    assert '"google.colab" in sys.modules' in source
    install = next(line for line in source.splitlines() if '"install"' in line)  # the pip command line
    assert "git+https://github.com/owner/repo.git" in install
    assert "torch" not in install and "numpy" not in install and "sentence" not in install
    # The library's dependencies bring sentence-transformers 6 (test_packaging checks pyproject's bounds).
    assert "setup(seed=0)" in source and len(source.splitlines()) <= 8


def test_setup_says_how_to_get_a_gpu_on_colab_only_when_there_is_none(monkeypatch):
    from dataclasses import replace

    import torch

    from tutorial_lib.setup import Env, describe

    env = Env(device="cpu", fast=False, seed=0, threads=1, offline=True, colab=True, versions={"python": "3.13"})
    assert "Change runtime type" in describe(env)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla T4")  # no GPU on this machine
    assert "Change runtime type" not in describe(replace(env, device="cuda"))
    assert "Change runtime type" not in describe(replace(env, colab=False))


# ----------------------------------------------------------------------------------------------------------------
# The tool's logic, on a temporary copy of the repository
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the tool reads: notebooks, tutorial_lib sources, data, README, pyproject."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "tutorial_lib", tmp_path / "tutorial_lib", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "data").mkdir()
    for csv in (ROOT / "data").glob("*.csv"):
        shutil.copy(csv, tmp_path / "data")
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    # Start from a clean state whatever the library's current hash: restamp with the copy's lib hash.
    for name in tool.discover(tmp_path):
        path = tmp_path / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.metadata["triplet_mining"]["lib_hash"] = tool.lib_hash(tmp_path)
        nbformat.write(nb, path)
    return tmp_path


def levels(findings):
    return sorted({(f.level, f.notebook) for f in findings})


def test_check_passes_on_a_clean_copy(repo):
    assert tool.check(repo) == []


def test_check_fails_when_code_changed_after_the_run(repo, capsys):
    name = "01_triplet_loss"
    py = repo / "notebooks" / f"{name}.py"
    py.write_text(py.read_text().replace("PER_LABEL = 4 if FAST else 8", "PER_LABEL = 4 if FAST else 9"))
    # the .ipynb's inputs are synced by hand (as an editor would), but it was not re-executed
    path = repo / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("PER_LABEL = 4 if FAST else 8", "PER_LABEL = 4 if FAST else 9")
    nbformat.write(nb, path)
    findings = tool.check(repo)
    assert ("FAIL", name) in levels(findings)
    assert any("stale" in f.message for f in findings)
    assert tool.report(findings) == 1
    assert f"build {name}" in capsys.readouterr().out


def test_check_fails_when_source_and_notebook_differ(repo):
    py = repo / "notebooks" / "02_batches_distances_masks.py"
    py.write_text(py.read_text().replace("## 9. What the cube costs", "## 9. What the cube really costs"))
    findings = tool.check(repo)
    assert ("FAIL", "02_batches_distances_masks") in levels(findings)
    assert any("differ" in f.message for f in findings)


def test_check_only_warns_when_the_library_changed(repo, capsys):
    with (repo / "tutorial_lib" / "losses.py").open("a") as f:
        f.write("\n# a comment\n")
    findings = tool.check(repo)
    assert {f.level for f in findings} == {"WARN"}
    assert {f.notebook for f in findings} == set(tool.discover(repo))
    assert tool.report(findings) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "build 00_start_here 01_triplet_loss" in out


def test_the_tool_itself_is_not_part_of_the_library_hash(repo):
    before = tool.lib_hash(repo)
    (repo / "tools").mkdir()
    shutil.copy(Path(tool.__file__), repo / "tools" / "notebooks.py")
    with (repo / "tools" / "notebooks.py").open("a") as f:
        f.write("\n# a comment\n")
    assert tool.lib_hash(repo) == before
    (repo / "data" / "train.csv").write_text("sentence,label\n")
    assert tool.lib_hash(repo) != before


def test_check_fails_on_widget_state_and_size(repo, monkeypatch):
    path = repo / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, path)
    assert any("widget" in f.message for f in tool.check(repo) if f.level == "FAIL")
    monkeypatch.setattr(tool, "MAX_BYTES", 10_000)
    assert any("limit" in f.message for f in tool.check(repo))


def test_check_fails_on_outputs_not_from_one_full_run_and_untidy_metadata(repo):
    path = repo / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[3].execution_count, code[3].outputs = None, []  # a cell cleared by hand
    nb.metadata["colab"]["name"] = "00_start_here.ipynb"  # what saving from Colab adds
    nbformat.write(nb, path)
    messages = [f.message for f in tool.check(repo) if f.level == "FAIL"]
    assert any("one full run" in m for m in messages) and any("metadata" in m for m in messages)


def test_check_reports_a_source_without_a_title_instead_of_crashing(repo):
    py = repo / "notebooks" / "02_batches_distances_masks.py"
    py.write_text(py.read_text().replace("# # 02 · Batches, distances and masks", "# 02 · Batches"))
    assert any(f.notebook == "nav" and "Title" in f.message for f in tool.check(repo))


def test_check_fails_on_a_missing_or_orphan_notebook(repo):
    (repo / "notebooks" / "01_triplet_loss.ipynb").unlink()
    shutil.copy(repo / "notebooks" / "00_start_here.ipynb", repo / "notebooks" / "99_gone.ipynb")
    found = levels(tool.check(repo))
    assert ("FAIL", "01_triplet_loss") in found and ("FAIL", "99_gone") in found


def test_nav_is_idempotent_and_follows_the_slug_setting(repo):
    assert tool.nav(repo) == []  # the committed state is what nav writes
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        'github = "triplet-mining-hands-on/triplet-mining-hands-on"', 'github = "someone/fork"'))
    changed = tool.nav(repo)
    assert "README.md" in changed and "notebooks/01_triplet_loss.py" in changed
    assert "notebooks/01_triplet_loss.ipynb" in changed
    assert tool.nav(repo) == []  # running it again changes nothing
    source = (repo / "notebooks" / "01_triplet_loss.py").read_text()
    assert "github/someone/fork/blob/main/notebooks/01_triplet_loss.ipynb" in source
    assert "git+https://github.com/someone/fork.git" in source
    assert "someone/fork" in (repo / "README.md").read_text()
    # the slug is not part of the code hash: a fork needs nav, not a rebuild
    assert [f for f in tool.check(repo) if f.level == "FAIL"] == []


def test_nav_regenerates_edited_generated_cells_and_keeps_title_and_promise(repo):
    py = repo / "notebooks" / "02_batches_distances_masks.py"
    text = py.read_text()
    text = text.replace("# 02 · Batches, distances and masks", "# 02 · Batches, distances, masks")
    text = text.replace("ENV = setup(seed=0)", "ENV = setup(seed=1)")
    py.write_text(text)
    assert "notebooks/02_batches_distances_masks.py" in tool.nav(repo)
    nb = jupytext.read(py)
    assert nb.cells[0].source.splitlines()[1] == "# 02 · Batches, distances, masks"  # kept: it is the source's
    assert "ENV = setup(seed=0)" in nb.cells[1].source  # restored: the setup cell is generated
    nav_01 = jupytext.read(repo / "notebooks" / "01_triplet_loss.py").cells[-1].source
    assert "[02 · Batches, distances, masks →](02_batches_distances_masks.ipynb)" in nav_01
    assert tool.nav(repo) == []


def test_readme_table_lists_every_notebook_with_its_measured_time(repo):
    readme = (repo / "README.md").read_text()
    table = readme.split(tool.INDEX_START)[1].split(tool.INDEX_END)[0]
    for name in tool.discover(repo):
        stamp = json.loads((repo / "notebooks" / f"{name}.ipynb").read_text())["metadata"]["triplet_mining"]
        row = next(line for line in table.splitlines() if f"notebooks/{name}.ipynb" in line)
        assert tool._format_seconds(stamp["executed_seconds"]) in row and row.endswith("| — |")


def test_tidy_strips_widget_state_and_keeps_a_text_fallback():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(children=(...))"})]
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    nb.cells = [cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    tool.tidy(nb, {"code_hash": "x"})
    assert "widgets" not in nb.metadata and "execution" not in cell.metadata
    assert cell.outputs[0].data == {"text/plain": tool.WIDGET_FALLBACK}
    assert nb.metadata["triplet_mining"] == {"code_hash": "x"}
    first_ids = [c.id for c in nb.cells]
    tool.tidy(nb)
    assert [c.id for c in nb.cells] == first_ids  # ids come from the content: stable across builds


def test_tidy_drops_progress_bars_but_keeps_other_widgets_and_markdown():
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": view,
        "text/plain": "Batches: 100%|##########| 27/27 [00:03<00:00,  8.1it/s]"})
    slider = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": view, "text/plain": "VBox(children=(FloatSlider(value=0.3),))"})
    printed = nbformat.v4.new_output("stream", name="stdout", text="loss 100%|done| 1/1 [printed by the cell]\n")
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [bar, printed, slider]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), cell]
    tool.tidy(nb)
    assert [o.output_type for o in cell.outputs] == ["stream", "display_data"]
    assert cell.outputs[1].data == {"text/plain": tool.WIDGET_FALLBACK}
    assert "outputs" not in nb.cells[0]
    nbformat.validate(nb)


def test_writing_refuses_an_oversized_notebook(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("x" * 5000)]
    monkeypatch.setattr(tool, "MAX_BYTES", 1000)
    with pytest.raises(RuntimeError, match="limit"):
        tool._write_notebook(nb, tmp_path / "big.ipynb")
    assert not (tmp_path / "big.ipynb").exists()


def test_code_hash_ignores_markdown_and_the_slug_but_not_code():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# hi"), nbformat.v4.new_code_cell(tool.setup_cell_source("a/b"))]
    base = tool.code_hash(nb)
    nb.cells[0].source = "# hello"
    nb.cells[1].source = tool.setup_cell_source("c/d")
    assert tool.code_hash(nb) == base
    nb.cells[1].source += "\nx = 1"
    assert tool.code_hash(nb) != base


def test_cli_check_and_list(capsys):
    assert tool.main(["--root", str(ROOT), "nav", "--check"]) == 0
    tool.main(["--root", str(ROOT), "list"])
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)
