"""Environment switches shared by the helpers: fast mode, offline mode, progress bars, the compute device.

Everything here reads the environment when called (never at import time), so a notebook or a test can change a
variable and the next call sees it.

* ``TRIPLET_FAST=1`` -- fast mode: notebooks (and CI) use fewer steps and PCA instead of UMAP.
* ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` -- offline: nothing may contact the Hugging Face Hub.
* ``TRIPLET_QUIET=1`` -- no progress bars (set while building the committed notebooks; learners see bars).
* ``TRIPLET_HEADLESS=1`` -- widgets keep their static picture (notebook builds and tests).

Also where the repository checkout is, when there is one (an editable install).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to 1/true/yes/on (any case)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when the environment variable ``TRIPLET_FAST`` is set to 1/true/yes/on."""
    return flag("TRIPLET_FAST")


def quiet() -> bool:
    """True when ``TRIPLET_QUIET`` asks for no progress bars (the notebook build sets it)."""
    return flag("TRIPLET_QUIET")


def headless() -> bool:
    """True when ``TRIPLET_HEADLESS`` asks widgets to keep their static picture."""
    return flag("TRIPLET_HEADLESS")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` asks for offline mode."""
    return flag("HF_HUB_OFFLINE") or flag("HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def offline_env() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` for the duration of the block, then restore the previous value."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def best_device() -> str:
    """``"cuda"`` if a CUDA GPU is usable, else ``"mps"`` (Apple silicon), else ``"cpu"``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def checkout_root() -> Path | None:
    """The repository holding this package (an editable install), or None (installed from a wheel, e.g. on Colab)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "notebooks").is_dir() else None
