"""The notebook tool: keep the notebooks in sync with their sources, executed, navigable and checked.

Usage (from the repository root)::

    python -m tools.notebooks build [NAME ...]   # sync, execute (full mode, offline, CPU), write .ipynb
    python -m tools.notebooks check              # CI: fail on stale notebooks, warn on library changes
    python -m tools.notebooks nav [--check]      # header, setup and navigation cells; README index table
    python -m tools.notebooks list               # what is there, when it ran, how long it took

Sources: ``notebooks/NN_name.py`` in jupytext's percent format are what gets reviewed and diffed. The paired
``notebooks/NN_name.ipynb`` is generated from the source by ``build``, committed with the outputs of a full run,
so that every plot shows on GitHub and in Colab before anything runs.

What ``build`` stores in each notebook's metadata (``triplet_mining``):

* ``code_hash``: a hash of the notebook's code cells. ``check`` recomputes it: a notebook whose code changed after
  it was executed FAILS (its outputs no longer belong to its code).
* ``lib_hash``: a hash of the sources of ``tutorial_lib`` (every ``.py`` file) and of the bundled
  data (``data/*.csv``). When it differs from the current one, ``check`` only WARNS and lists the notebooks to
  rebuild: a library change rarely changes a notebook's outputs, and rebuilding everything on every library
  commit would cost an hour of CPU.
* ``executed_seconds``, ``executed_on``, ``mode``: the measured full-run time (which ``nav`` copies into the
  README's table), the date, and ``"full"``.

``nav`` writes three generated cells into every source and its .ipynb, recognised by a marker, so that rerunning
it changes nothing: the first markdown cell (title and one-sentence promise, both kept from the source, plus the
"Open in Colab" badge), the setup cell (``# [setup-cell]``, identical in every notebook) and the last markdown cell
(previous | index | next). It also rewrites the README's notebook table between ``<!-- notebook-index:start -->``
and ``<!-- notebook-index:end -->``. The GitHub repository named in the badges and in the setup cell's install
comes from one setting in ``pyproject.toml``::

    [tool.tutorial_lib]
    github = "OWNER/REPO"

A maintainer tool, not part of the installed library: it imports jupytext, nbformat and nbclient (the ``notebooks``
and ``test`` extras) inside the functions.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.readme import replace_between
from tutorial_lib.env import checkout_root

__all__ = [
    "Finding",
    "build",
    "check",
    "code_hash",
    "colab_url",
    "discover",
    "execute",
    "github_slug",
    "lib_hash",
    "main",
    "nav",
    "setup_cell_source",
]

DEFAULT_SLUG = "triplet-mining-hands-on/triplet-mining-hands-on"
MAX_BYTES = 1_500_000
"""Largest committed .ipynb (bytes): GitHub renders it quickly, and git history stays small."""
CELL_TIMEOUT = 600
"""Seconds one cell may run during ``build`` (the whole notebook has a budget of 5 minutes on 2 CPU cores)."""
IOPUB_TIMEOUT = 60
"""Seconds nbclient waits for a cell's outputs after the kernel reported it finished (a lost message must end the
run with an error, never hang it)."""
STARTUP_TIMEOUT = 120
"""Seconds a fresh kernel may take to answer (importing torch on a busy 2-core runner takes a while)."""

SETUP_MARKER = "# [setup-cell]"
DISTRIBUTION = "triplet-mining-hands-on"  # pyproject's [project] name: what pip knows the library as
HEADER_MARKER = "<!-- [header-cell]"
NAV_MARKER = "<!-- [nav-cell]"
INDEX_START = "<!-- notebook-index:start -->"
INDEX_END = "<!-- notebook-index:end -->"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_FALLBACK = "[interactive widget: run the notebook to use it; the picture below shows its initial state]"

_NAME = re.compile(r"^\d{2}_[A-Za-z0-9_]+$")
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
_JUPYTEXT = {"formats": "ipynb,py:percent", "notebook_metadata_filter": "-jupytext.text_representation"}
_TIDY = {
    "accelerator": "GPU",  # Colab opens the notebook asking for a GPU runtime
    "colab": {"provenance": [], "gpuType": "T4"},
    "jupytext": _JUPYTEXT,
    "kernelspec": _KERNELSPEC,
    "language_info": {"name": "python"},
}


# ----------------------------------------------------------------------------------------------------------------
# Where things are
# ----------------------------------------------------------------------------------------------------------------


def default_root() -> Path:
    """The repository holding this package (editable install), else the current directory."""
    return checkout_root() or Path.cwd()


def discover(root: Path) -> list[str]:
    """Names (``NN_name``) of every notebook source ``notebooks/NN_name.py``, in order."""
    return sorted(p.stem for p in (root / "notebooks").glob("*.py") if _NAME.match(p.stem))


def github_slug(root: Path) -> str:
    """``OWNER/REPO`` from ``[tool.tutorial_lib] github`` in ``pyproject.toml`` (the placeholder if unset)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = root / "pyproject.toml"
    if not path.is_file():
        return DEFAULT_SLUG
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    slug = config.get("tool", {}).get("tutorial_lib", {}).get("github", DEFAULT_SLUG)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", slug):
        raise ValueError(f"[tool.tutorial_lib] github in {path} must look like 'OWNER/REPO'; got {slug!r}")
    return slug


def colab_url(slug: str, name: str) -> str:
    """The "Open in Colab" address of ``notebooks/NAME.ipynb`` on the main branch of ``slug``."""
    return f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name}.ipynb"


# ----------------------------------------------------------------------------------------------------------------
# Hashes
# ----------------------------------------------------------------------------------------------------------------


_SLUG_IN_URL = re.compile(r"github\.com/[\w.-]+/[\w.-]+\.git")


def code_hash(nb: Any) -> str:
    """Hash of a notebook's code cells (their sources, in order); markdown does not count.

    The repository slug in the setup cell's Colab install line is left out (it changes no output locally), so a
    fork that sets its own ``[tool.tutorial_lib] github`` needs ``nav``, not a rebuild.
    """
    sources = [_SLUG_IN_URL.sub("github.com/{slug}.git", _source(c)) for c in nb["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()[:16]


def lib_hash(root: Path) -> str:
    """Hash of what a notebook's outputs depend on besides its own code: ``tutorial_lib/**/*.py`` and
    ``data/*.csv``."""
    files = sorted((root / "tutorial_lib").rglob("*.py"))
    files += sorted((root / "data").glob("*.csv"))
    digest = hashlib.sha256()
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:16]


def _source(cell: Any) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


# ----------------------------------------------------------------------------------------------------------------
# Generated cells
# ----------------------------------------------------------------------------------------------------------------


def setup_cell_source(slug: str) -> str:
    """The first code cell of every notebook: at most 8 lines. On Colab it installs the library (whose dependencies
    bring sentence-transformers 6 and never replace Colab's torch or numpy), failing with one readable line; then
    :func:`tutorial_lib.setup.setup` prints versions, device and mode, and seeds."""
    return f'''{SETUP_MARKER} generated by `python -m tools.notebooks nav`; on Colab it first installs the library.
import subprocess
import sys
if "google.colab" in sys.modules and subprocess.call([sys.executable, "-m", "pip", "show", "-q", "{DISTRIBUTION}"]):
    if subprocess.call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/{slug}.git"]):
        raise SystemExit("Installing tutorial_lib failed (pip says why above): check the connection, rerun this cell.")
from tutorial_lib.setup import setup
ENV = setup(seed=0)'''


def _title_and_promise(cell_source: str, name: str) -> tuple[str, str]:
    """The title line (``# ...``) and the promise (the first plain paragraph after it) of a header cell."""
    lines = cell_source.splitlines()
    title_at = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title_at is None:
        raise ValueError(f"{name}: the first cell must be markdown starting with a '# Title' line")
    paragraph: list[str] = []
    for line in lines[title_at + 1:]:
        text = line.strip()
        if not text:
            if paragraph:
                break
            continue
        if text.startswith(("[![", "<!--")):
            if paragraph:
                break
            continue
        paragraph.append(text)
    if not paragraph:
        raise ValueError(f"{name}: the first cell needs a one-sentence promise under its title")
    return lines[title_at][2:].strip(), " ".join(paragraph)


def header_cell_source(title: str, promise: str, slug: str, name: str) -> str:
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(slug, name)})"
    return (
        f"{HEADER_MARKER} generated by `python -m tools.notebooks nav`: edit the title and the promise, "
        f"then run it -->\n# {title}\n\n{promise}\n\n{badge}"
    )


def nav_cell_source(slug: str, prev: tuple[str, str] | None, nxt: tuple[str, str] | None) -> str:
    """``prev``/``nxt``: (name, title) of the neighbours, or None."""
    parts = [f"[← {prev[1]}]({prev[0]}.ipynb)" if prev else "← (this is the first notebook)",
             "[index (README)](../README.md#notebooks)",
             f"[{nxt[1]} →]({nxt[0]}.ipynb)" if nxt else "(more notebooks are on the way) →"]
    lines = [f"{NAV_MARKER} generated by `python -m tools.notebooks nav` -->", "---", "", " | ".join(parts)]
    if nxt:
        lines += ["", f"Next on Colab: [{nxt[1]}]({colab_url(slug, nxt[0])})"]
    return "\n".join(lines)


@dataclass
class _Source:
    name: str
    title: str
    promise: str
    nb: Any


def _read_sources(root: Path) -> list[_Source]:
    import jupytext

    out = []
    for name in discover(root):
        nb = jupytext.read(root / "notebooks" / f"{name}.py")
        if not nb.cells or nb.cells[0].cell_type != "markdown":
            raise ValueError(f"{name}.py: the first cell must be the markdown title cell")
        title, promise = _title_and_promise(nb.cells[0].source, name)
        out.append(_Source(name, title, promise, nb))
    return out


def _with_generated_cells(src: _Source, slug: str, prev: _Source | None, nxt: _Source | None) -> Any:
    """A copy of the source notebook with its header, setup and navigation cells (re)generated."""
    import copy

    import nbformat

    nb = copy.deepcopy(src.nb)
    nb.cells[0].source = header_cell_source(src.title, src.promise, slug, src.name)
    setup_source = setup_cell_source(slug)
    at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and SETUP_MARKER in c.source), None)
    if at is None:
        nb.cells.insert(1, nbformat.v4.new_code_cell(setup_source))
    else:
        nb.cells[at].source = setup_source
    nav_source = nav_cell_source(slug, prev and (prev.name, prev.title), nxt and (nxt.name, nxt.title))
    if nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith(NAV_MARKER):
        nb.cells[-1].source = nav_source
    else:
        nb.cells.append(nbformat.v4.new_markdown_cell(nav_source))
    nb.metadata = {"jupytext": dict(_JUPYTEXT), "kernelspec": dict(_KERNELSPEC)}
    return nb


def _py_text(nb: Any) -> str:
    import jupytext

    return jupytext.writes(nb, fmt="py:percent")


def _inputs(nb: Any) -> list[tuple[str, str]]:
    return [(c["cell_type"], _source(c).rstrip()) for c in nb["cells"]]


def _sync_generated_cells(ipynb: Any, source: Any) -> bool:
    """Copy the generated cells of ``source`` into an executed notebook with the same cell layout; True if changed.

    Outputs stay; a changed setup cell changes the code hash, so ``check`` then asks for a rebuild.
    """
    if len(ipynb.cells) != len(source.cells):
        return False
    changed = False
    for mine, theirs in zip(ipynb.cells, source.cells):
        text = theirs.source
        generated = text.startswith((HEADER_MARKER, NAV_MARKER)) or (
            theirs.cell_type == "code" and SETUP_MARKER in text)
        if generated and mine.cell_type == theirs.cell_type and mine.source != text:
            mine.source = text
            changed = True
    return changed


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not run yet"
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def index_table(root: Path, sources: Sequence[_Source], slug: str) -> str:
    """The README's notebook table (between the index markers)."""
    rows = ["| notebook | objective | CPU, full run | GPU, full run |", "|---|---|---|---|"]
    for src in sources:
        meta = _stored_metadata(root, src.name)
        gpu = meta.get("gpu_seconds")
        rows.append(
            f"| [{src.title}](notebooks/{src.name}.ipynb) · [Colab]({colab_url(slug, src.name)}) | {src.promise} | "
            f"{_format_seconds(meta.get('executed_seconds'))} | {_format_seconds(gpu) if gpu else '—'} |"
        )
    return "\n".join(rows)


def _stored_metadata(root: Path, name: str) -> dict:
    path = root / "notebooks" / f"{name}.ipynb"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("triplet_mining", {})


def _readme_with_table(text: str, table: str) -> str:
    return replace_between(text, INDEX_START, INDEX_END, table, " around the notebook table")


def nav(root: Path, write: bool = True) -> list[str]:
    """(Re)generate the header, setup and navigation cells of every notebook and the README table.

    Args:
        write: False only reports what would change (``nav --check`` and ``check``).

    Returns:
        The paths (relative to ``root``) that changed, or would change.
    """
    import nbformat

    slug = github_slug(root)
    sources = _read_sources(root)
    changed = []
    for i, src in enumerate(sources):
        prev = sources[i - 1] if i > 0 else None
        nxt = sources[i + 1] if i + 1 < len(sources) else None
        nb = _with_generated_cells(src, slug, prev, nxt)
        py = root / "notebooks" / f"{src.name}.py"
        text = _py_text(nb)
        if py.read_text(encoding="utf-8") != text:
            changed.append(py.relative_to(root).as_posix())
            if write:
                py.write_text(text, encoding="utf-8")
        src.nb = nb
        ipynb_path = root / "notebooks" / f"{src.name}.ipynb"
        if ipynb_path.is_file():
            executed = nbformat.read(ipynb_path, as_version=4)
            if _sync_generated_cells(executed, nb):
                changed.append(ipynb_path.relative_to(root).as_posix())
                if write:
                    _write_notebook(executed, ipynb_path, check_size=False)
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        new = _readme_with_table(text, index_table(root, sources, slug))
        if new != text:
            changed.append("README.md")
            if write:
                readme.write_text(new, encoding="utf-8")
    return changed


# ----------------------------------------------------------------------------------------------------------------
# Executing and writing
# ----------------------------------------------------------------------------------------------------------------


def kernel_env(fast: bool, headless: bool = True) -> dict[str, str]:
    """The environment of a notebook kernel: offline, CPU only, fast mode on or off; ``headless`` (a build) adds
    headless widgets and no progress bars (a committed notebook cannot show a live bar); without it the kernel runs
    as a learner's does, live widgets and bars included."""
    env = dict(os.environ)
    switches = ("TRIPLET_FAST", "TRIPLET_HEADLESS", "TRIPLET_QUIET", "TQDM_DISABLE")
    for name in ("MPLBACKEND", *switches):  # MPLBACKEND: let ipykernel choose its inline backend (Agg hides figures)
        env.pop(name, None)
    if fast:
        env["TRIPLET_FAST"] = "1"
    if headless:
        env.update(TRIPLET_HEADLESS="1", TRIPLET_QUIET="1", TQDM_DISABLE="1")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    return env


def execute(nb: Any, cwd: Path, fast: bool = False, timeout: int = CELL_TIMEOUT) -> float:
    """Run every cell of ``nb`` in place in a fresh ``python3`` kernel started in ``cwd``; return the seconds.

    Offline and on the CPU (see :func:`kernel_env`); ``timeout`` is per cell and must be positive (``ValueError``
    otherwise: nothing may wait forever). Raises ``nbclient.exceptions.CellExecutionError`` (with the failing cell
    and traceback) if a cell fails, ``CellTimeoutError`` if one runs past ``timeout`` or its outputs do not all
    arrive within :data:`IOPUB_TIMEOUT`.
    """
    from nbclient import NotebookClient

    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds per cell, got {timeout!r}: a run may never "
                         "wait forever")
    client = NotebookClient(
        nb,
        timeout=timeout,
        iopub_timeout=IOPUB_TIMEOUT,
        raise_on_iopub_timeout=True,  # a cell whose outputs did not all arrive is an error, not a silent gap
        startup_timeout=STARTUP_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        # Kept during the run (nbclient 0.10/0.11 raises KeyError on captured Output widget output without it),
        # stripped by tidy(): megabytes of widget state must never reach a committed notebook.
        store_widget_state=True,
        record_timing=False,
    )
    client.widget_registry["@jupyter-widgets/output"]["OutputModel"] = _rearming_output_widget()
    start = time.perf_counter()
    client.execute(env=kernel_env(fast), cwd=str(cwd))
    return time.perf_counter() - start


def _rearming_output_widget() -> type:
    """nbclient's stand-in for a front end's ``Output`` widget, made safe against losing the cell's reply.

    When a cell captures output into an ``Output`` widget (``with out: display(...)``), nbclient's stand-in sends
    the widget's new state to the kernel on the shell channel while the cell is still running. jupyter_client sends
    it through a blocking shadow of the asyncio shell socket, behind pyzmq's back: if that send consumes the
    edge-triggered wake-up of the cell's reply arriving at the same moment, the pending wait for the reply never
    fires, and the run stalls until the cell's timeout (forever without one). Reading ``EVENTS`` through the
    asyncio socket right after the send makes pyzmq look again and deliver a reply that is already there.
    The widgets of :mod:`tutorial_lib.widgets` do not capture output; this guards any notebook code that does.
    """
    import zmq
    from nbclient.output_widget import OutputWidget

    class RearmingOutputWidget(OutputWidget):
        def send(self, data=None, metadata=None, buffers=None) -> None:
            super().send(data, metadata, buffers)
            self.kernel_client.shell_channel.socket.get(zmq.EVENTS)

    return RearmingOutputWidget


def _stable_ids(nb: Any) -> None:
    """Cell ids derived from the cell's content: rebuilding an unchanged notebook changes no id (no diff noise)."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        base = hashlib.sha1(f"{cell.cell_type}\0{_source(cell)}".encode()).hexdigest()[:8]
        seen[base] = seen.get(base, 0) + 1
        cell["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"


PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+\s*\[")
"""A tqdm bar's text form ("Batches: 100%|####| 3/3 [..."), in a notebook output or a command's stderr."""


def _is_progress_bar(output: Any) -> bool:
    """Whether ``output`` is a tqdm bar: a widget view whose text form is the bar ("Batches: 100%|####| 3/3 [...")."""
    data = output.get("data") or {}
    text = data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return WIDGET_VIEW in data and bool(PROGRESS_BAR.search(text))


def tidy(nb: Any, stamp: dict[str, Any] | None = None) -> None:
    """Strip widget state and per-run noise, keep a text fallback for widget outputs, set the metadata."""
    _stable_ids(nb)
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled", "widgets"):
            cell.metadata.pop(key, None)
        # A progress bar (tqdm's notebook widget; libraries that pass ``disable=False`` ignore TQDM_DISABLE) is a
        # live display: in a committed notebook it would only be a frozen, misleading picture of one moment.
        if cell.cell_type == "code":
            cell["outputs"] = [output for output in cell.outputs if not _is_progress_bar(output)]
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                data["text/plain"] = WIDGET_FALLBACK
            if data:
                data.pop(WIDGET_STATE, None)
    metadata = json.loads(json.dumps(_TIDY))  # a deep copy
    old = nb.metadata.get("triplet_mining")
    if stamp is not None or old:
        metadata["triplet_mining"] = stamp if stamp is not None else old
    nb.metadata = metadata


def _write_notebook(nb: Any, path: Path, check_size: bool = True) -> int:
    import nbformat

    nbformat.validate(nb)
    text = nbformat.writes(nb) + "\n"
    size = len(text.encode("utf-8"))
    if check_size and size > MAX_BYTES:
        raise RuntimeError(
            f"{path.name} would be {size / 1e6:.2f} MB (limit {MAX_BYTES / 1e6:.1f} MB); largest outputs: "
            + ", ".join(_largest_outputs(nb))
            + ". Lower the figure sizes or dpi, or show fewer images."
        )
    path.write_text(text, encoding="utf-8")
    return size


def _largest_outputs(nb: Any, top: int = 3) -> list[str]:
    sizes = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            sizes.append((len(json.dumps(output)), i))
    return [f"cell {i}: {n / 1e3:.0f} kB" for n, i in sorted(sizes, reverse=True)[:top]]


def build(root: Path, names: Sequence[str] | None = None, timeout: int = CELL_TIMEOUT) -> dict[str, float]:
    """Sync each source to its notebook, execute it in full mode, and write it with its stamp.

    Returns:
        name -> measured run time (seconds).
    """
    import jupytext

    nav(root, write=True)  # the generated cells first: they are part of the code that runs
    available = discover(root)
    names = list(names or available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"unknown notebook(s) {unknown}; available: {available}")
    folder = root / "notebooks"
    current_lib = lib_hash(root)
    times = {}
    for name in names:
        nb = jupytext.read(folder / f"{name}.py")
        print(f"executing {name} (full mode, offline, CPU) ...", flush=True)
        seconds = execute(nb, folder, fast=False, timeout=timeout)
        stamp = {
            "code_hash": code_hash(nb),
            "lib_hash": current_lib,
            "executed_seconds": round(seconds, 1),
            "executed_on": datetime.date.today().isoformat(),
            "mode": "full",
        }
        tidy(nb, stamp)
        size = _write_notebook(nb, folder / f"{name}.ipynb")
        times[name] = seconds
        print(f"  {name}: {_format_seconds(seconds)} ({seconds:.1f} s), {len(nb.cells)} cells, {size / 1e3:.0f} kB")
    nav(root, write=True)  # the README table shows the new times
    return times


# ----------------------------------------------------------------------------------------------------------------
# Checking
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Finding:
    level: str  # "FAIL" or "WARN"
    notebook: str
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.notebook}: {self.message}"


def check(root: Path) -> list[Finding]:
    """Every problem ``check`` reports (FAIL: CI fails; WARN: CI passes)."""
    import jupytext
    import nbformat

    findings: list[Finding] = []
    folder = root / "notebooks"
    names = discover(root)
    current_lib = lib_hash(root)
    for orphan in sorted(p.stem for p in folder.glob("*.ipynb") if p.stem not in names and _NAME.match(p.stem)):
        findings.append(Finding("FAIL", orphan, f"{orphan}.ipynb has no source {orphan}.py"))
    for name in names:
        path = folder / f"{name}.ipynb"
        if not path.is_file():
            findings.append(Finding("FAIL", name, "not built yet (no .ipynb)"))
            continue
        raw = path.read_bytes()
        executed = nbformat.reads(raw.decode("utf-8"), as_version=4)
        source = jupytext.read(folder / f"{name}.py")
        if _inputs(executed) != _inputs(source):
            findings.append(Finding("FAIL", name, f"its cells differ from {name}.py (the source changed after the "
                                                  "last build)"))
        stamp = executed.metadata.get("triplet_mining") or {}
        if not stamp.get("code_hash"):
            findings.append(Finding("FAIL", name, "no execution stamp: it was not written by the build command"))
        elif stamp["code_hash"] != code_hash(executed):
            findings.append(Finding("FAIL", name, "its outputs are stale: the code cells changed after it was run"))
        elif stamp.get("mode") != "full":
            findings.append(Finding("FAIL", name, f"executed in {stamp.get('mode')!r} mode; commit a full run"))
        if stamp.get("code_hash") and stamp.get("lib_hash") != current_lib:
            findings.append(Finding("WARN", name, "tutorial_lib or data/ changed since it was executed"))
        counts = [c.get("execution_count") for c in executed.cells if c.cell_type == "code"]
        if counts != list(range(1, len(counts) + 1)):
            findings.append(Finding("FAIL", name, "its outputs are not those of one full run from the top (cells "
                                                  "were run by hand, out of order, or cleared)"))
        if {k: executed.metadata.get(k) for k in _TIDY} != _TIDY:
            findings.append(Finding("FAIL", name, "its notebook metadata is not the tidy one the build writes (was it "
                                                  "saved from Jupyter or Colab?)"))
        if len(raw) > MAX_BYTES:
            findings.append(Finding("FAIL", name, f"{len(raw) / 1e6:.2f} MB, over the {MAX_BYTES / 1e6:.1f} MB limit"))
        if "widgets" in executed.metadata or WIDGET_STATE.encode() in raw or WIDGET_VIEW.encode() in raw:
            findings.append(Finding("FAIL", name, "contains widget state or widget views (rebuild it)"))
    try:
        stale_nav = nav(root, write=False)
    except ValueError as error:  # a source without its title cell, README without the table markers, ...
        return [*findings, Finding("FAIL", "nav", str(error))]
    for path in stale_nav:
        findings.append(Finding("FAIL", path, "generated cells or README table out of date (run: python -m "
                                              "tools.notebooks nav)"))
    return findings


def report(findings: Sequence[Finding]) -> int:
    """Print the findings with the commands that fix them; the exit status (1 if anything FAILED)."""
    fails = [f for f in findings if f.level == "FAIL"]
    warns = [f for f in findings if f.level == "WARN"]
    for finding in (*fails, *warns):
        print(finding)
    stale = sorted({f.notebook for f in fails if _NAME.match(f.notebook)})
    if stale:
        print(f"\nFAILED: rebuild with: python -m tools.notebooks build {' '.join(stale)}")
    if warns:
        names = " ".join(sorted({f.notebook for f in warns}))
        print(f"\nWARNING: the library changed since these notebooks ran; rebuild them when convenient:\n"
              f"  python -m tools.notebooks build {names}")
    if not fails:
        print("notebooks: OK" + (" (with warnings)" if warns else ""))
    return 1 if fails else 0


def list_notebooks(root: Path) -> None:
    current_lib = lib_hash(root)
    for name in discover(root):
        meta = _stored_metadata(root, name)
        if not meta:
            print(f"{name:32s} not built")
            continue
        lib = "library unchanged" if meta.get("lib_hash") == current_lib else "library changed since"
        print(f"{name:32s} {meta.get('mode')} run on {meta.get('executed_on')}: "
              f"{_format_seconds(meta.get('executed_seconds'))}; {lib}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.notebooks", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="sync, execute in full mode (offline, CPU) and write the notebooks")
    p_build.add_argument("names", nargs="*", help="notebooks to build (default: all), e.g. 01_triplet_loss")
    p_build.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    sub.add_parser("check", help="fail on stale or out-of-sync notebooks; warn on library changes")
    p_nav = sub.add_parser("nav", help="write header/setup/navigation cells and the README table")
    p_nav.add_argument("--check", action="store_true", help="only report what would change (exit 1 if anything)")
    sub.add_parser("list", help="list the notebooks and their last run")
    args = parser.parse_args(argv)
    root = (args.root or default_root()).resolve()
    if args.command == "build":
        build(root, args.names, args.timeout)
        return 0
    if args.command == "check":
        return report(check(root))
    if args.command == "nav":
        changed = nav(root, write=not args.check)
        for path in changed:
            print(("would change " if args.check else "wrote ") + path)
        if not changed:
            print("nav: nothing to change")
        return 1 if (args.check and changed) else 0
    list_notebooks(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
