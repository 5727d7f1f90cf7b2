"""Colab readiness, static part (.ci/colab_check.py): GPU metadata, badge, canonical setup cell installing only
the library (which brings sentence-transformers 6). (.ci/run also runs the full simulation in a Colab-like venv.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("colab_check", ROOT / ".ci" / "colab_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_ready_for_colab():
    problems = _tool().static_checks()
    assert not problems, "\n".join(problems)


def test_the_install_list_is_read_from_the_setup_cell_and_a_torch_install_is_caught():
    tool = _tool()
    from tools.notebooks import setup_cell_source

    cell = setup_cell_source("owner/repo")
    assert tool.pip_targets(cell) == ["git+https://github.com/owner/repo.git"]
    bad = cell.replace('"git+https://github.com/owner/repo.git"', '"torch", "git+https://github.com/owner/repo.git"')
    assert "torch" in tool.pip_targets(bad)
