"""Install files stay consistent: environment.yml <-> requirements.txt <-> pyproject, CI constraints, README."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


def test_environment_yml_pip_section_is_requirements_plus_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    assert "pip" in env["dependencies"]
    assert pip_sections[0] == requirement_lines(ROOT / "requirements.txt") + ["-e ."]


def test_pyproject_dependencies_are_the_requirements_without_jupyterlab():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = requirement_lines(ROOT / "requirements.txt")
    assert project["requires-python"] == ">=3.10"
    assert sorted(project["dependencies"]) == sorted(r for r in requirements if name_of(r) != "jupyterlab")
    # lower bounds only: Colab's torch and numpy must never be replaced
    for requirement in requirements:
        assert "==" not in requirement and "<" not in requirement, requirement
    assert "sentence-transformers[train]>=6.2" in requirements


def test_ci_constraints_pin_every_requirement_and_the_oracle():
    pins = {}
    for line in requirement_lines(ROOT / ".ci" / "constraints.txt"):
        name, version = line.split("==")
        pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_lines(ROOT / "requirements.txt") + project["optional-dependencies"]["test"]
    for requirement in wanted:
        if "python_version" in requirement:
            continue  # only installed on older Pythons than CI's
        assert name_of(requirement) in pins, f"{requirement} is not pinned in .ci/constraints.txt"
    assert pins["sentence-transformers"].startswith("6.2.")
    assert pins["torch"] == "2.13.0"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_quickstart_has_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "jupyter lab" in commands[0]
    assert "pytest" in commands[1] and "HF_HUB_OFFLINE=1" in commands[1]


def test_ci_runs_the_readme_test_command():
    """.ci/run extracts the command between the markers; run its extraction and compare."""
    script = (ROOT / ".ci" / "run").read_text()
    awk = re.search(r"command=\$\(awk '(.*?)' README.md\)", script).group(1)
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert extracted.stdout.strip() == readme_commands()[1]
    assert 'torch==2.13.0' in script and "PIP_CONSTRAINT" in script
