"""Environment switches shared by the helpers: fast mode, offline mode, the compute device.

Everything here reads the environment when called (never at import time), so a notebook or a test can change a
variable and the next call sees it.

* ``TRIPLET_FAST=1`` -- fast mode: notebooks (and CI) use fewer steps and PCA instead of UMAP.
* ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` -- offline: nothing may contact the Hugging Face Hub.

Also two small helpers the notebook tool and the results module share: where the repository is, and how a
generated section of the README is replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when the environment variable ``TRIPLET_FAST`` is set to 1/true/yes/on."""
    return _flag("TRIPLET_FAST")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` asks for offline mode."""
    return _flag("HF_HUB_OFFLINE") or _flag("HF_DATASETS_OFFLINE")


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


def replace_between(text: str, start: str, end: str, block: str, what: str = "") -> str:
    """``text`` with everything between the markers ``start`` and ``end`` replaced by ``block`` (markers kept)."""
    if start not in text or end not in text:
        raise ValueError(f"README.md needs the markers {start} and {end}{what}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"
