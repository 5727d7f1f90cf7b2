"""The library a learner can read: its layers, module sizes, imports (no cycle, no notebook tooling, the teaching core
apart from the engine), and what notebooks may import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tutorial_lib"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
TEACHING_CORE = ("distances", "masks", "reference", "vectorized")


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every tutorial_lib module ``path`` imports, at module level or inside functions (resolved to module names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # "from . import losses" imports a module
    names = {dotted(p) for p in MODULES}
    return {m for m in found if m in names and m != dotted(path)}


def test_no_module_is_over_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in MODULES}
    assert max(sizes.values()) <= 400, {k: v for k, v in sizes.items() if v > 400}
    assert sum(v <= 300 for v in sizes.values()) > 0.8 * len(sizes)  # most under 300


def test_the_package_imports_no_notebook_tooling():
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        for tool in ("jupytext", "nbclient", "nbformat"):
            assert not re.search(rf"^\s*(import|from)\s+{tool}\b", text, flags=re.M), (path, tool)


def test_no_import_cycle_inside_the_package():
    graph = {dotted(p): imported(p) for p in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt.startswith(node + "."):  # a package importing its own submodule is not a cycle
                continue
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join(trail + [node, nxt])}")
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("module", TEACHING_CORE)
def test_the_teaching_core_never_imports_the_engine_or_the_training_stack(module):
    deps = imported(PACKAGE / f"{module}.py")
    allowed = {f"tutorial_lib.{m}" for m in TEACHING_CORE} | {"tutorial_lib"}
    assert deps <= allowed, deps - allowed


def test_vectorized_is_plain_autograd_on_the_core():
    source = (PACKAGE / "vectorized.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300
    assert "from .distances import pairwise_distances" in source
    assert re.search(r"from \.masks import .*anchor_negative_mask.*anchor_positive_mask", source)
    assert "autograd.Function" not in source and ".apply(" not in source
    deps = imported(PACKAGE / "vectorized.py")
    assert not any(".engine" in m or m.endswith(".losses") for m in deps), deps


def test_the_engine_lives_in_its_own_subpackage():
    engine = {p.stem for p in (PACKAGE / "engine").glob("*.py")}
    assert {"functions", "counting", "selection", "gradients", "cuda_graphs", "triton_kernels"} <= engine
    losses = (PACKAGE / "losses.py").read_text(encoding="utf-8")
    assert "autograd.Function" not in losses and "from .engine" in losses


def test_maintainer_tools_are_outside_the_package():
    assert not (PACKAGE / "notebooks.py").exists()
    assert (ROOT / "tools" / "notebooks.py").is_file() and (ROOT / "tools" / "readme.py").is_file()


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem)
def test_notebooks_import_no_private_name(notebook):
    text = notebook.read_text(encoding="utf-8")
    assert not re.search(r"tutorial_lib(\.\w+)*\._\w", text), "a notebook imports a private tutorial_lib module"
    for match in re.finditer(r"^from tutorial_lib[\w.]* import (.+)$", text, flags=re.M):
        names = [n.strip(" ()") for n in match.group(1).split(",")]
        assert not any(n.startswith("_") for n in names), match.group(0)


def test_no_comment_cites_an_issue_number():
    for path in [*MODULES, *(ROOT / "tools").glob("*.py"), *(ROOT / "tests").glob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "#" in line:
                comment = line[line.index("#"):]
                assert not re.search(r"\bissue\s*#?\d+", comment, flags=re.I), f"{path.name}:{number}: {line}"
