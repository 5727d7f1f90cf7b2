"""Result folders written all at once: checked before the work starts, staged beside, swapped in at the end.

The train command (:mod:`tutorial_lib.train`) writes a fixed set of entries, :data:`RESULTS` (``metrics.json``,
``history.csv``, ``umap_before_after.png``, ``model/``), into its output folder. This module makes that safe:

* :func:`check_output`, before any long work: the folder is not a symbolic link, not a file, not inside a file,
  not an input file nor the parent of an input file the command would replace; none of the entries it would write
  is a symbolic link or of the wrong kind; without ``overwrite`` it is empty or absent; with ``overwrite``, a
  ``model/`` it would replace holds only files a previous run wrote (the rule below).
* :class:`Staging`: everything is written into a fresh temporary folder created beside the output folder
  (``.NAME.tmp-XXXX`` in the same parent, which also proves that the place is writable; inside an existing output
  folder when that is a mount point or its parent is not writable), then
  :meth:`Staging.commit` moves it into place. An absent output folder is created by one ``rename``. In an existing
  one, each entry of :data:`RESULTS` is renamed aside into ``.NAME.old-XXXX``, the new ones are renamed in, and the
  old ones are deleted; on a failure the old ones are put back. Ctrl-C and SIGTERM are held off while the entries
  are swapped and while a temporary folder is removed (:func:`signals_deferred`), so an interrupted run leaves
  either the previous complete result or the new complete one, never a mix, and no temporary folder. Only a hard
  kill (SIGKILL, power loss) in the middle of the swap can leave the old entries in ``.NAME.old-XXXX`` beside the
  folder. Other files in the output folder (your notes) are never touched.

The rule for replacing ``model/``: ``metrics.json`` records every file a run wrote, relative to the output folder,
under :data:`MANIFEST_KEY` (``"files"``). ``model/`` may be replaced when every file in it is one the previous
``metrics.json`` lists. Without such a list (a folder written by an older version), the files must be those a saved
sentence-transformers model holds: the names of :data:`SAVED_MODEL_FILES` (and weight shards) at the top, and in
the module folders named by ``model/modules.json`` (``1_Pooling``...) only ``config.json`` and weights. Symbolic
links are never accepted. Anything else is refused, naming the files, before any work starts.

Public API::

    check_output(output, overwrite=False, inputs=None, results=RESULTS)   -> OutputPlan
    Staging(plan)                  context manager: .open(), .path, .commit(midway=None), .committed, .state()
    written_files(folder)                                                 -> list[str] (the manifest)
    signals_deferred()             context manager: Ctrl-C/SIGTERM held off inside, raised again on exit
    sigterm_raises()               context manager: SIGTERM raises Terminated (a KeyboardInterrupt) inside

Errors are :class:`OutputError` (a ``ValueError``) with a one-line message starting with the output folder.
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = ("metrics.json", "history.csv", "umap_before_after.png", "model/")
"""What the train command writes; a trailing ``/`` marks a folder."""
MANIFEST_FILE = "metrics.json"
MANIFEST_KEY = "files"
SAVED_MODEL_FILES = frozenset({
    "README.md", "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "config.json",
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "chat_template.jinja",
    "generation_config.json",
})
"""Names a ``SentenceTransformer.save`` folder may hold at its top (weight shards are matched by pattern)."""
_SHARD = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")
_MODULE_FILES = frozenset({"config.json", "model.safetensors", "pytorch_model.bin"})
_MAX_LISTED = 5

__all__ = ["MANIFEST_KEY", "RESULTS", "OutputError", "OutputPlan", "Staging", "Terminated", "check_output",
           "signals_deferred", "sigterm_raises", "written_files"]


class OutputError(ValueError):
    """The output folder cannot be used (or replaced) safely; the message starts with the folder."""


@dataclass
class OutputPlan:
    """What :func:`check_output` found: where to write and what the commit will replace."""

    output: Path
    existed: bool  # the output folder exists (the commit swaps entries in; else it renames the whole folder)
    replaces: list[str] = field(default_factory=list)  # entries of RESULTS present now, to be swapped out
    results: tuple[str, ...] = RESULTS


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def written_files(folder: str | Path) -> list[str]:
    """Every file under ``folder``, as sorted ``/``-separated paths relative to it: the manifest of a run."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def _previous_manifest(output: Path) -> set[str] | None:
    """The files the previous run recorded in its ``metrics.json``; None if there is no such record."""
    path = output / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get(MANIFEST_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return {str(f) for f in files} if isinstance(files, list) else None


def _looks_saved(relative: str, module_dirs: set[str]) -> bool:
    """Whether ``model/...`` path ``relative`` is a file ``SentenceTransformer.save`` writes (no manifest case)."""
    parts = relative.split("/")[1:]  # without the leading "model"
    if len(parts) == 1:
        return parts[0] in SAVED_MODEL_FILES or bool(_SHARD.match(parts[0]))
    return len(parts) == 2 and parts[0] in module_dirs and parts[1] in _MODULE_FILES


def _module_dirs(model: Path) -> set[str]:
    try:
        modules = json.loads((model / "modules.json").read_text(encoding="utf-8"))
        return {str(m["path"]) for m in modules if m.get("path")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()


def _foreign_files(output: Path, entry: str) -> list[str]:
    """Paths under the folder ``output/entry`` this command did not write (see the module docstring's rule)."""
    root = output / entry
    manifest = _previous_manifest(output)
    module_dirs = _module_dirs(root) if manifest is None else set()
    foreign = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(output).as_posix()
        if path.is_symlink():
            foreign.append(relative + " (a symbolic link)")
        elif path.is_dir():
            continue
        elif not (relative in manifest if manifest is not None else _looks_saved(relative, module_dirs)):
            foreign.append(relative)
    return foreign


def _check_inputs(output: Path, inputs: Mapping[str, str | Path], results: Sequence[str]) -> None:
    resolved = output.resolve()
    for argument, given in inputs.items():
        source = Path(given).resolve()
        if resolved == source or source in resolved.parents:
            raise OutputError(f"{output}: it is {argument} {given} or inside it; choose another output folder")
        if resolved in source.parents and source.relative_to(resolved).parts[0] in {r.rstrip("/") for r in results}:
            raise OutputError(f"{output}: writing here would replace the input file {given} ({argument})")


def check_output(
    output: str | Path,
    overwrite: bool = False,
    inputs: Mapping[str, str | Path] | None = None,
    results: Sequence[str] = RESULTS,
) -> OutputPlan:
    """Check, before any long work, that ``results`` can be written into ``output`` (see the module docstring).

    Args:
        output: the output folder (absent, empty, or with ``overwrite`` holding an earlier run's results).
        overwrite: allow replacing the entries of ``results`` in a non-empty folder.
        inputs: argument name -> input file (e.g. ``{"--data": "train.csv"}``), which must stay untouched.
        results: the entries that will be written (a trailing ``/`` marks a folder).

    Raises:
        OutputError: with a one-line message starting with ``output``.
    """
    output = Path(output)
    if not output.absolute().name:
        raise OutputError(f"{output}: not a folder name the results can be moved to; name a subfolder")
    if output.is_symlink():
        raise OutputError(f"{output}: it is a symbolic link; give the folder it points to ({os.path.realpath(output)})")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: it exists and is not a folder")
    ancestor = output.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{output}: cannot create a folder there ({ancestor} is a file, not a folder)")
    _check_inputs(output, inputs or {}, results)
    plan = OutputPlan(output, output.is_dir(), results=tuple(results))
    if not plan.existed:
        return plan
    if any(output.iterdir()) and not overwrite:
        raise OutputError(f"{output}: the folder is not empty; pass --overwrite to replace its results")
    for entry in results:
        name, is_folder = entry.rstrip("/"), entry.endswith("/")
        path = output / name
        if path.is_symlink():
            raise OutputError(f"{output}: {name} is a symbolic link; refusing to write through it (remove it)")
        if not path.exists():
            continue
        if is_folder and not path.is_dir():
            raise OutputError(f"{output}: {name} is a file, not a folder this command wrote; move it away")
        if not is_folder and not path.is_file():
            raise OutputError(f"{output}: {name} is not a file this command wrote; move it away")
        if is_folder and (foreign := _foreign_files(output, name)):
            raise OutputError(
                f"{output}: {name}/ holds file(s) this command did not write: {_listing(foreign)}; move them "
                f"away (--overwrite replaces only {', '.join(results)})"
            )
        plan.replaces.append(name)
    return plan


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold off SIGINT and SIGTERM inside; one that arrives is raised again on exit: for steps not to be cut in two.

    Python-level, not ``pthread_sigmask``: a signal sent to the process may be taken by any thread (torch starts
    some), but Python runs its handlers in the main thread, so replacing them there holds off every delivery.
    Outside the main thread (where handlers cannot be changed) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = {s: handler for s, handler in previous.items() if handler is not None}  # None: not set from Python
    for number in previous:
        signal.signal(number, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(pending):
            signal.raise_signal(number)  # now handled as it would have been (e.g. KeyboardInterrupt)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (see :func:`sigterm_raises`)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated`, so every ``finally`` and ``with`` cleans up as for Ctrl-C.

    By default SIGTERM ends the process at once and leaves temporary folders behind. Outside the main thread
    (where handlers cannot be changed) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class Staging:
    """A temporary folder beside ``plan.output`` to write the results into; :meth:`commit` moves them in place.

    On leaving the ``with`` block the temporary folder is removed, whatever happened (an error, Ctrl-C, SIGTERM
    raised as an exception), and so are the parent folders it had to create if the results were not committed.

    Raises:
        OutputError: from :meth:`open` (or on entering), when the folder cannot be created there (the place is
            not writable).
    """

    def __init__(self, plan: OutputPlan):
        self.plan = plan
        self.path: Path | None = None
        self.committed = False
        self._created: list[Path] = []  # parent folders made for the output, removed again if nothing is committed

    def __enter__(self) -> Staging:
        if self.path is None and not self.committed:
            self.open()
        return self

    def open(self) -> None:
        """Create the temporary folder (and the output's missing parents); ``with`` calls it if not done yet."""
        output = self.plan.output
        parent = output.absolute().parent
        missing = [p for p in [parent, *parent.parents] if not p.exists()]
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._created.insert(0, folder)
            prefix = f".{output.absolute().name}.tmp-"
            # a mount point has its own device: stage inside it, or the final renames would cross devices
            inside = self.plan.existed and os.stat(output).st_dev != os.stat(parent).st_dev
            try:
                self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=output if inside else parent))
            except PermissionError:  # an existing folder in a parent we may not write to: stage inside it
                if not self.plan.existed or inside:
                    raise
                self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=output))
            umask = os.umask(0o022)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)  # mkdtemp's 0700 would become the output folder's mode
        except OSError as error:
            self.__exit__(None, None, None)
            where = f": {error.filename}" if Path(error.filename or "") in missing else ""
            reason = error.strerror or type(error).__name__
            raise OutputError(f"{output}: cannot create a folder there ({reason}{where})") from None

    def __exit__(self, *exc_info) -> None:
        with signals_deferred():
            if self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
            if not self.committed:
                self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def state(self) -> str:
        """Where things stand, for an interruption message."""
        output = self.plan.output
        if self.committed:
            return f"{output} holds the complete new results"
        return f"nothing was written; {output} is unchanged" if self.plan.existed else f"{output} was not created"

    def commit(self, midway: Callable[[], None] | None = None) -> None:
        """Move the staged results into the output folder, replacing the entries the plan found; all or nothing.

        Args:
            midway: called with the old entries moved aside and the new ones not yet in (a test hook).

        Raises:
            OutputError: a rename failed; the old entries are back in place and nothing new is left behind.
        """
        output, staged = self.plan.output, self.path
        appeared = [n.rstrip("/") for n in self.plan.results
                    if n.rstrip("/") not in self.plan.replaces and os.path.lexists(output / n.rstrip("/"))]
        if (output.exists() or output.is_symlink()) != self.plan.existed or (self.plan.existed and appeared):
            raise OutputError(f"{output}: it changed while the command ran ({_listing(appeared) or 'the folder'} "
                              "appeared); nothing was written")
        with signals_deferred():
            if not self.plan.existed:
                if midway is not None:
                    midway()
                try:
                    os.rename(staged, output)
                except OSError as error:
                    raise OutputError(f"{output}: cannot move the results into place ({error})") from None
                self.path, self.committed = None, True
                return
            self._swap(output, staged, midway)
            self.committed = True

    def _swap(self, output: Path, staged: Path, midway: Callable[[], None] | None) -> None:
        aside = Path(tempfile.mkdtemp(prefix=f".{output.absolute().name}.old-", dir=staged.parent))
        moved_old: list[str] = []
        moved_new: list[str] = []
        try:
            for name in self.plan.replaces:
                os.rename(output / name, aside / name)
                moved_old.append(name)
            if midway is not None:
                midway()
            for name in sorted(os.listdir(staged)):
                os.rename(staged / name, output / name)
                moved_new.append(name)
        except BaseException as error:
            for name in reversed(moved_new):  # best effort: the renames back are as cheap as the ones forth
                with contextlib.suppress(OSError):
                    os.rename(output / name, staged / name)
            for name in reversed(moved_old):
                with contextlib.suppress(OSError):
                    os.rename(aside / name, output / name)
            shutil.rmtree(aside, ignore_errors=True)
            if isinstance(error, OSError):
                raise OutputError(f"{output}: cannot move the results into place ({error}); it is unchanged") from None
            raise
        shutil.rmtree(aside, ignore_errors=True)
