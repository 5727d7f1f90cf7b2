"""A new sentence-transformers release is noticed the day it is installed.

The losses of tutorial_lib are exact copies of sentence-transformers' behaviour, checked against the installed
release. A release that changes one of the four batch triplet losses or their distance functions could change that
behaviour without failing a test that happens not to reach the change (6.3 changed the cosine distance only at
duplicate points). So the sources themselves are compared with those of the releases the suite has checked,
recorded in tests/st_sources.json.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest
import sentence_transformers
from sentence_transformers import util
from sentence_transformers.sentence_transformer import losses as st

RECORDED = json.loads((Path(__file__).with_name("st_sources.json")).read_text())
CHECKED = ["BatchAllTripletLoss", "BatchHardTripletLoss", "BatchSemiHardTripletLoss", "BatchHardSoftMarginTripletLoss",
           "BatchHardTripletLossDistanceFunction", "util.pytorch_cos_sim", "util.cos_sim", "util.normalize_embeddings"]


def source_hashes() -> dict[str, str]:
    """sha256 (16 hex digits) of the installed sources of everything in CHECKED."""
    def obj(name: str):
        return getattr(util, name.split(".", 1)[1]) if name.startswith("util.") else getattr(st, name)

    return {name: hashlib.sha256(inspect.getsource(obj(name)).encode()).hexdigest()[:16] for name in CHECKED}


def test_the_installed_release_is_one_the_suite_has_checked():
    version = sentence_transformers.__version__
    found = source_hashes()
    if version not in RECORDED:
        same = [v for v, hashes in RECORDED.items() if v[0].isdigit() and hashes == found]
        pytest.fail(
            f"sentence-transformers {version} is not among the releases the exactness tests were checked against "
            f"({', '.join(v for v in RECORDED if v[0].isdigit())}); its loss sources are "
            + (f"identical to {same[0]}'s" if same else "new")
            + ". Run tests/test_losses_exact.py and tests/test_st_losses.py, then record it in tests/st_sources.json "
            "(python -c 'import tests.test_st_sources as t; print(t.source_hashes())') and update README.md."
        )
    changed = [name for name in CHECKED if RECORDED[version][name] != found[name]]
    assert not changed, f"sentence-transformers {version}'s sources differ from the recorded ones: {changed}"


def test_the_recorded_releases_differ_only_in_the_cosine_distance():
    """What README.md says: 6.2 and 6.3 differ only in BatchHardTripletLossDistanceFunction (6.3 clamps cosine)."""
    differing = [name for name in CHECKED if RECORDED["6.2.0"][name] != RECORDED["6.3.0"][name]]
    assert differing == ["BatchHardTripletLossDistanceFunction"]
