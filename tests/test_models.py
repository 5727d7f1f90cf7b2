"""tutorial_lib.models: checksum-verified offline default model, the tiny test model, model facts."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from tutorial_lib import env, models

SENTENCES = ["the team won the match", "a tasty pizza", "python code"]


def test_tiny_model_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = models.tiny_model(seed=0).encode(SENTENCES)
    assert torch.equal(torch.rand(3), expected_next)
    again = models.tiny_model(seed=0).encode(SENTENCES)
    other = models.tiny_model(seed=1).encode(SENTENCES)
    assert first.shape == (3, 32)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_tiny_model_options(tiny_st_model):
    info = models.model_info(tiny_st_model)
    assert info["dim"] == 32 and info["normalized"] is False and info["device"] == "cpu"
    assert info["parameters"] < 2_000_000
    small = models.tiny_model(dim=16, layers=1, heads=2, normalize=True)
    assert models.is_normalized(small)
    emb = small.encode(SENTENCES)
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def _corrupted_copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models.default_model_dir(), folder)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:  # flip one byte in the middle of the tensors
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    return folder


def test_a_corrupted_model_is_refused_with_a_clear_message(tmp_path):
    folder = _corrupted_copy(tmp_path)
    with pytest.raises(models.ModelIntegrityError, match="refusing to load .*model.safetensors: its SHA-256 is"):
        models._load_verified(folder, models.DEFAULT_MODEL_SHA256)


def test_missing_weights_are_refused(tmp_path):
    with pytest.raises(models.ModelIntegrityError, match="model weights not found"):
        models._load_verified(tmp_path, models.DEFAULT_MODEL_SHA256)


def test_the_installed_weights_match_the_published_checksum():
    assert models._sha256(models.default_model_dir() / "model.safetensors") == models.DEFAULT_MODEL_SHA256


@pytest.mark.slow
def test_default_model_loads_offline_normalized_and_prints_one_line(default_st_model, capsys, monkeypatch):
    info = models.model_info(default_st_model)
    assert info["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["dim"] == 384 and info["normalized"] is True
    emb = default_st_model.encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    # load_model itself: the one-line summary, and HF_HUB_OFFLINE restored afterwards
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = models.load_model(device="cpu")
    assert "HF_HUB_OFFLINE" not in os.environ
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "dim=384" in out[0] and "normalized=True" in out[0] and "on cpu" in out[0]
    np.testing.assert_allclose(model.encode(SENTENCES), emb, atol=1e-6)


class _FakeST:
    """Stands in for SentenceTransformer to record how load_model calls it."""

    calls: list = []

    def __init__(self, name, **kwargs):
        _FakeST.calls.append((name, kwargs))


def test_hub_models_are_loaded_without_remote_code_on_the_best_device(monkeypatch):
    import sentence_transformers

    _FakeST.calls = []
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _FakeST)
    model = models.load_model("microsoft/mpnet-base", verbose=False)
    assert isinstance(model, _FakeST)
    name, kwargs = _FakeST.calls[0]
    assert name == "microsoft/mpnet-base"
    assert kwargs["trust_remote_code"] is False
    assert kwargs["device"] == env.best_device()


def test_best_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert env.best_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert env.best_device() == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert env.best_device() == "cpu"


def test_describe_is_one_line(tiny_st_model):
    line = models.describe(tiny_st_model)
    assert "\n" not in line and "dim=32" in line and "normalized=False" in line


def test_importing_models_is_cheap():
    import subprocess
    import sys

    code = "import sys, tutorial_lib.models, tutorial_lib.data, tutorial_lib.training, tutorial_lib.evaluation; " \
           "print('sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
