"""Colab readiness: every notebook's Colab metadata, badge and setup cell, then the setup cell run for real in a
virtual environment holding Colab's preinstalled packages.

    python .ci/colab_check.py            # static checks only (seconds)
    python .ci/colab_check.py --simulate # also build a Colab-like venv and run the setup cell in it (minutes)

Static checks, for every ``notebooks/NN_*.ipynb``: the metadata requests a GPU runtime (``accelerator: GPU``,
``colab.gpuType``); the first cell's badge opens this notebook of the configured repository in Colab; the setup
cell is the canonical one, and the only thing it installs is the library (from the repository), whose dependencies
bring sentence-transformers 6 -- never torch or numpy (lower bounds that Colab's versions satisfy).

The simulation: a fresh venv with what Colab preinstalls (versions below; Colab's Python is 3.13, but this machine
has torch only for Python 3.11, so the venv uses 3.11), then the setup cell's own code, executed with a stand-in
``google.colab`` module and the install pointed at this checkout instead of GitHub (no network to GitHub here).
It then checks that torch, numpy and ipywidgets were left as they were, that sentence-transformers is now 6.x and
the library imports, prints every package the cell added or changed, and drives the widgets on ipywidgets 7.7 and
runs notebook 01 in fast mode in that environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOK_RUN_TIMEOUT = 1800
"""Seconds the whole run of notebook 01 may take in the Colab-like venv (the tool also limits each cell)."""

# What Colab preinstalls that matters here (as documented for the series: its own torch and numpy,
# sentence-transformers 5.x, transformers 4.x, ipywidgets 7.7.1), pinned to versions available on this machine.
COLAB_PACKAGES = [
    "torch==2.13.0",  # the CPU build on this machine's disk stands in for Colab's CUDA build
    "numpy==2.0.2",
    "transformers==4.57.6",
    "sentence-transformers==5.7.0",
    "ipywidgets==7.7.1",
    "ipykernel",
    "nbclient",
    "nbformat",
    "pandas",
    "scikit-learn",
    "scipy",
    "matplotlib",
    "datasets",
    "accelerate",
    "umap-learn",
]
UNTOUCHABLE = ("torch", "numpy", "ipywidgets")  # must keep Colab's versions


def notebook_tool():
    """``tools/notebooks.py`` of this checkout: a maintainer tool, never installed, so imported from the root."""
    if str(ROOT) not in sys.path:  # run as a script, Python puts .ci/ on its path, not the repository root
        sys.path.append(str(ROOT))
    from tools import notebooks

    return notebooks


def static_checks() -> list[str]:
    import nbformat

    nbtool = notebook_tool()
    problems = []
    slug = nbtool.github_slug(ROOT)
    names = nbtool.discover(ROOT)
    if not names:
        problems.append("no notebooks found")
    for name in names:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{name}: no .ipynb")
            continue
        nb = nbformat.read(path, as_version=4)
        meta = nb.metadata
        if meta.get("accelerator") != "GPU" or not meta.get("colab", {}).get("gpuType"):
            problems.append(f"{name}: the Colab metadata does not request a GPU runtime ({meta.get('colab')})")
        header = nb.cells[0].source if nb.cells else ""
        badge = nbtool.colab_url(slug, name)
        if badge not in header or "colab-badge.svg" not in header:
            problems.append(f"{name}: the first cell has no Colab badge pointing to {badge}")
        setups = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(nbtool.SETUP_MARKER)]
        if len(setups) != 1 or setups[0].source != nbtool.setup_cell_source(slug):
            problems.append(f"{name}: the setup cell is missing or differs from the canonical one")
            continue
        installed = pip_targets(setups[0].source)
        expected = [f"git+https://github.com/{slug}.git"]  # the library; its dependencies bring sentence-transformers 6
        if installed != expected:
            problems.append(f"{name}: the setup cell installs {installed}, expected exactly {expected}")
        if any(re.match(r"(torch|numpy)\b", target) for target in installed):
            problems.append(f"{name}: the setup cell reinstalls torch or numpy")
    return problems


def pip_targets(setup_source: str) -> list[str]:
    """The package arguments of the setup cell's ``pip install`` call (the rest of its list literal after the
    options)."""
    match = re.search(r'"install",((?:\s*"-[^"]*",)*)\s*(.*?)\]', setup_source, flags=re.S)
    if not match:
        return []
    return re.findall(r'"([^"]+)"', match.group(2))


def _run(cmd, **kwargs):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], check=True, capture_output=True,
                         text=True).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


SMOKE = textwrap.dedent('''
    import ipywidgets, torch, sentence_transformers
    from tutorial_lib import widgets
    from tutorial_lib.setup import setup
    env = setup(seed=0)
    assert ipywidgets.__version__.startswith("7.7"), ipywidgets.__version__
    bundle = widgets.margin_playground(margin=0.3, anchor=0)
    before = (bundle.redraws, bundle.text)
    bundle.controls["margin"].value = 0.8
    assert bundle.redraws == before[0] + 1 and bundle.text != before[1], "the playground did not redraw"
    explorer = widgets.margin_explorer(torch.nn.functional.normalize(torch.randn(24, 8), dim=1),
                                       torch.arange(24) % 4, strategy="batch_hard")
    redraws = explorer.redraws
    explorer.controls["margin"].value = explorer.state["range"][1]
    assert explorer.redraws == redraws + 1
    widgets.soft_margin_explorer().controls
    print("widgets OK on ipywidgets", ipywidgets.__version__, "| sentence-transformers", sentence_transformers.__version__)
''')


def simulate(workdir: Path) -> list[str]:
    problems = []
    venv = workdir / "colab-venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}  # Colab has no constraints file
    _run([str(python), "-m", "pip", "install", "--quiet", *COLAB_PACKAGES], env=env)
    before = _freeze(python)
    print("Colab-like environment:", {k: before.get(k) for k in ("torch", "numpy", "transformers",
                                                                    "sentence-transformers", "ipywidgets")})

    # The setup cell, as committed, with the install pointed at this checkout and a stand-in google.colab module.
    nbtool = notebook_tool()
    slug = nbtool.github_slug(ROOT)
    cell = nbtool.setup_cell_source(slug).replace(f"git+https://github.com/{slug}.git", str(ROOT))
    fake = workdir / "fake_colab"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    script = workdir / "setup_cell.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(fake)!r})\nimport google.colab\n\n{cell}\n")
    cell_env = {**env, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([str(python), str(script)], cwd=workdir, env=cell_env, capture_output=True, text=True)
    print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
    if result.returncode != 0:
        return [f"the setup cell failed in the Colab-like environment (exit {result.returncode})"]
    if "switch" not in result.stdout and "GPU" not in result.stdout:
        problems.append("the setup cell did not tell the learner to choose a GPU runtime (no GPU here)")
    after = _freeze(python)
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    print("installed or changed by the setup cell:")
    for name, (old, new) in sorted(changed.items()):
        print(f"  {name}: {old or '—'} -> {new}")
    for name in UNTOUCHABLE:
        if before.get(name) != after.get(name):
            problems.append(f"the setup cell changed {name}: {before.get(name)} -> {after.get(name)}")
    if not after.get("sentence-transformers", "").startswith("6."):
        problems.append(f"sentence-transformers is {after.get('sentence-transformers')} after the setup cell, not 6.x")
    if "triplet-mining-hands-on" not in after:
        problems.append("the library was not installed by the setup cell")

    # The second run of the setup cell (every notebook has it) installs nothing.
    again = subprocess.run([str(python), str(script)], cwd=workdir, env=cell_env, capture_output=True, text=True)
    if again.returncode != 0 or "Installing" in again.stdout or _freeze(python) != after:
        problems.append("running the setup cell a second time installed something again")

    smoke = subprocess.run([str(python), "-c", SMOKE], cwd=workdir, env=cell_env, capture_output=True, text=True)
    print(smoke.stdout[-2000:], smoke.stderr[-2000:], sep="\n")
    if smoke.returncode != 0:
        problems.append("the widgets failed on ipywidgets 7.7 in the Colab-like environment")

    # The project's own runner (the one the notebook tool and the tests use), with the library the cell installed.
    # The tool is not installed (a maintainer tool): the runner starts at the repository root, which Python puts
    # first on its path for `-c`, so `tools` imports from the checkout. The kernel gets no such path: it imports
    # the installed library.
    run_nb = textwrap.dedent(f'''
        from pathlib import Path
        import jupytext
        from tools import notebooks
        nb = jupytext.read({str(ROOT / "notebooks" / "01_triplet_loss.py")!r})
        notebooks.execute(nb, Path({str(ROOT / "notebooks")!r}), fast=True, timeout=600)
        print("notebook 01 ran in the Colab-like environment")
    ''')
    _run([str(python), "-m", "pip", "install", "--quiet", "jupytext"], env=env)
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "python3"], env=env)
    nb_env = {**cell_env, "JUPYTER_PATH": str(venv / "share" / "jupyter"), "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    try:
        ran = subprocess.run([str(python), "-c", run_nb], cwd=ROOT, env=nb_env, capture_output=True, text=True,
                             timeout=NOTEBOOK_RUN_TIMEOUT)
    except subprocess.TimeoutExpired as stuck:
        print(stuck.stdout or "", stuck.stderr or "", sep="\n")
        return [*problems, f"notebook 01 did not finish in {NOTEBOOK_RUN_TIMEOUT} s in the Colab-like environment"]
    print(ran.stdout[-1000:], ran.stderr[-3000:], sep="\n")
    if ran.returncode != 0:
        problems.append("notebook 01 failed in the Colab-like environment")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulate", action="store_true", help="also run the setup cell in a Colab-like venv")
    parser.add_argument("--workdir", default=None, help="where to build the venv (default: a temporary folder)")
    args = parser.parse_args()
    problems = static_checks()
    print(f"static checks: {len(notebook_tool().discover(ROOT))} notebooks, {len(problems)} problem(s)")
    if args.simulate:
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            problems += simulate(Path(args.workdir))
        else:
            with tempfile.TemporaryDirectory(prefix="colab-check-") as tmp:
                problems += simulate(Path(tmp))
    for problem in problems:
        print("PROBLEM:", problem)
    print("Colab readiness:", "OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
