"""The exercises package as a whole: one module per notebook, every check re-exported, oracles imported from the
teaching core (never re-implemented), modules small, and importing it does nothing. The checks themselves are tested
notebook by notebook (tests/test_exercises_NN.py, on the contract of tests/exercise_contract.py)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tutorial_lib import bootstrap, distances, exercises, masks, monitor, reference, vectorized

PACKAGE = Path(exercises.__file__).parent
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
NOTEBOOK_MODULES = [name for name in MODULES if re.fullmatch(r"nb\d\d", name)]
TEACHING_CORE = {"reference", "vectorized", "distances", "masks", "bootstrap", "monitor"}  # monitor: the collapse rule, pure


def _source(name: str) -> str:
    return (PACKAGE / f"{name}.py").read_text()


def _checks_of(name: str) -> set[str]:
    return {n for n in importlib.import_module(f"tutorial_lib.exercises.{name}").__all__ if n.startswith("check_")}


def test_the_layout_is_a_runner_and_one_module_per_notebook():
    assert MODULES == [*NOTEBOOK_MODULES, "runner"]
    notebooks = {path.name[:2] for path in (PACKAGE.parents[1] / "notebooks").glob("[0-9][0-9]_*.py")}
    assert {name[2:] for name in NOTEBOOK_MODULES} <= notebooks


def test_every_check_is_re_exported_and_nothing_else_is_public():
    checks = set().union(*(_checks_of(name) for name in NOTEBOOK_MODULES))
    assert set(exercises.__all__) == checks | {"Miss", "run_checks"}
    for name in NOTEBOOK_MODULES:
        module = importlib.import_module(f"tutorial_lib.exercises.{name}")
        for check in _checks_of(name):
            assert getattr(exercises, check) is getattr(module, check)
    assert "check_beyond_noise" not in exercises.__all__  # replaced by check_bootstrap_interval


def test_the_index_lists_each_notebooks_checks():
    """The package docstring's index says which module holds which checks, and it is right."""
    index = exercises.__doc__.split("::")[1].split("\n\n")[1]
    listed: dict[str, set[str]] = {}
    module = None
    for line in index.splitlines():
        match = re.match(r"\s*(\d\d)\s+(nb\d\d)\s+(.*)", line)
        if match:
            assert match[2] == f"nb{match[1]}"
            module = match[2]
            listed[module] = set()
        listed[module] |= set(re.findall(r"check_\w+", line))
    assert listed == {name: _checks_of(name) for name in NOTEBOOK_MODULES}


@pytest.mark.parametrize("name", NOTEBOOK_MODULES)
def test_each_module_names_its_notebook_and_its_checks_with_signatures(name):
    doc = importlib.import_module(f"tutorial_lib.exercises.{name}").__doc__
    assert doc.startswith(f"Notebook {name[2:]} (")
    for check in _checks_of(name):
        assert re.search(rf"{check}\(fn\)\s+fn\(", doc), f"{check} and its signature in the docstring"


@pytest.mark.parametrize("name", ["__init__", *MODULES])
def test_every_module_is_small(name):
    lines = len(_source(name).splitlines())
    assert lines < 400, f"{name}.py has {lines} lines"


@pytest.mark.parametrize("name", MODULES)
def test_oracles_come_from_the_teaching_core(name):
    """Imports from tutorial_lib are the teaching core, the pure collapse rule and the runner: never training, losses
    or evaluation."""
    tree = ast.parse(_source(name))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 2:
            assert node.module in TEACHING_CORE, node.module
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            assert node.module == "runner", node.module
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(n and n.startswith("tutorial_lib") for n in names), names


_CORE_FUNCTIONS = {name for module in (reference, vectorized, distances, masks, bootstrap, monitor)
                   for name, value in vars(module).items() if callable(value) and not name.startswith("__")}
_ORACLE_WORDS = ("batch_all", "batch_hard", "semi_hard", "soft_margin", "fallback", "category", "hardest",
                 "bootstrap", "group_by_label", "active_fraction", "triplet_loss", "pairwise", "want", "expected",
                 "oracle")


@pytest.mark.parametrize("name", MODULES)
def test_no_private_oracle(name):
    """No function duplicates one of the teaching core's, and a function named like an oracle is either a
    deliberately wrong variant (``*_slip*``) or carries the TODO that moves it to reference.py."""
    source = _source(name)
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        bare = node.name.lstrip("_") if isinstance(node, ast.FunctionDef) else ""
        if not bare or bare.startswith("check_"):
            continue
        assert bare not in _CORE_FUNCTIONS, f"{name}.{node.name} duplicates the teaching core's {bare}"
        if any(word in bare for word in _ORACLE_WORDS) and "slip" not in bare:
            above = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 2  # the line above the def
            comment = []
            while above >= 0 and lines[above].lstrip().startswith("#"):
                comment.append(lines[above])
                above -= 1
            assert "TODO(move to reference)" in "".join(comment), f"{name}.{node.name} looks like a private oracle"


@pytest.mark.parametrize("name", ["__init__", *MODULES])
def test_no_comment_cites_an_issue_number(name):
    assert not re.search(r"issue\s*#?\d", _source(name), re.IGNORECASE)


def test_importing_the_exercises_does_nothing_visible():
    """No output and no heavy import (pandas, sentence-transformers) at import time: checks import what they need
    when they run."""
    code = ("import sys, tutorial_lib.exercises; "
            "print(sorted(m for m in ('pandas', 'sentence_transformers', 'tutorial_lib.training') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parents[1])
    assert result.stdout == "[]\n" and result.stderr == ""
