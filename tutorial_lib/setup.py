"""What every notebook's setup cell calls: versions, device, mode, seeds, plotting (all notebooks).

The setup cell (written into every notebook by ``python -m tools.notebooks nav``) installs the library on Colab
when it is missing, then calls::

    from tutorial_lib.setup import setup
    ENV = setup(seed=0)

:func:`setup` prints one short block (versions, device, fast or full mode, seed; on Colab without a GPU, how to get
one) and returns an :class:`Env`. It is an explicit call, never an import-time side effect: it seeds Python, NumPy
and torch, turns on matplotlib's inline backend at a modest resolution (so committed notebooks stay small), and on
a CPU with at most 2 cores runs torch with one thread.

Why one thread on small CPUs: with 2 threads on a 2-core machine that is also doing anything else (a browser, a
second kernel, other users of a shared box), every small matrix product waits for the slower thread. Measured on
a shared 2-core machine (3 alternating runs each, ``tutorial_lib.training.train``, BatchHard, batch 32):
fine-tuning all-MiniLM-L6-v2 for 8 steps took 9.0-12.4 s with 1 thread and 33-53 s with 2 threads, and encoding 256
sentences 1.8-1.9 s vs 3.1-8.1 s. ``setup(threads=None)`` keeps torch's default.

This module imports the standard library and torch (numpy and matplotlib only inside :func:`setup`).
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass, field
from importlib import metadata

from .env import best_device, fast_mode, hub_offline

__all__ = ["Env", "setup", "versions"]

FIGURE_DPI = 80
"""Resolution of inline figures: sharp enough on screen, small enough to keep each committed notebook < 1.5 MB."""

_PACKAGES = ("torch", "sentence-transformers", "transformers", "ipywidgets")


@dataclass(frozen=True)
class Env:
    """What :func:`setup` found and did.

    Attributes:
        device: ``"cuda"``, ``"mps"`` or ``"cpu"``: where models train and embed.
        fast: True in fast mode (``TRIPLET_FAST=1``): smaller data, fewer steps, PCA instead of UMAP.
        seed: the seed given to Python, NumPy and torch.
        threads: torch's intra-op threads after setup.
        offline: True when ``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``) is set.
        colab: True when running in Google Colab.
        versions: package name -> version string.
    """

    device: str
    fast: bool
    seed: int
    threads: int
    offline: bool
    colab: bool = False
    versions: dict[str, str] = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Python's and the main packages' versions (``"missing"`` for one that is not installed)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    from . import __version__

    found["tutorial_lib"] = __version__
    return found


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (every device)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _configure_plots() -> None:
    """Inline figures at :data:`FIGURE_DPI` when running in IPython; nothing elsewhere."""
    import matplotlib

    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: leave matplotlib alone
        return
    shell = get_ipython()
    if shell is None:
        return
    if "ipykernel" in type(shell).__module__ or hasattr(shell, "kernel"):
        shell.run_line_magic("matplotlib", "inline")
    matplotlib.rcParams["figure.dpi"] = FIGURE_DPI  # after %matplotlib, which may reset it


def _choose_threads(device: str, threads: int | str | None) -> int:
    import torch

    if threads == "auto":
        # One thread when training happens on a small CPU (see the module docstring for the measurement).
        if device == "cpu" and (os.cpu_count() or 1) <= 2:
            torch.set_num_threads(1)
    elif threads is not None:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def setup(seed: int = 0, threads: int | str | None = "auto", verbose: bool = True) -> Env:
    """Seed, configure plots and threads, and print what this notebook runs on.

    Args:
        seed: seed for Python, NumPy and torch.
        threads: ``"auto"`` (1 on a CPU-only machine with <= 2 cores, else torch's default), a number, or None
            (leave torch alone).
        verbose: print the summary block.

    Returns:
        An :class:`Env` with the device, the mode, the seed and the versions.
    """
    device = best_device()
    env = Env(
        device=device,
        fast=fast_mode(),
        seed=seed,
        threads=_choose_threads(device, threads),
        offline=hub_offline(),
        colab="google.colab" in sys.modules,
        versions=versions(),
    )
    seed_everything(seed)
    _configure_plots()
    if verbose:
        print(describe(env))
    return env


def describe(env: Env) -> str:
    """The lines :func:`setup` prints."""
    v = env.versions
    packages = " | ".join(f"{name} {v[name]}" for name in ("python", *_PACKAGES, "tutorial_lib") if name in v)
    if env.device == "cuda":
        import torch

        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif env.device == "cpu":
        device = f"cpu ({os.cpu_count()} cores, torch threads: {env.threads})"
    else:
        device = env.device
    mode = (
        "FAST (TRIPLET_FAST=1: small data, few steps, PCA instead of UMAP; for CI)"
        if env.fast
        else "full (the numbers and pictures described in the text)"
    )
    lines = [
        packages,
        f"device: {device}",
        f"mode: {mode}",
        f"seed: {env.seed} | Hugging Face Hub: {'offline' if env.offline else 'online allowed'}",
    ]
    if env.colab and env.device != "cuda":
        lines.append("No GPU attached: notebooks 00-02 do not need one; for training, choose Runtime > Change runtime "
                     "type > T4 GPU (this restarts the runtime: run the setup cell again).")
    return "\n".join(lines)
