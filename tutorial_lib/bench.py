"""Time and memory of the four losses against sentence-transformers' own (notebook 08; ``python -m tools.bench``).

For each label layout and batch size :func:`run` measures, side by side in one run, the forward + backward pass of the loss
alone on random embeddings (D = 768 by default):

* time: median of ``repeats`` runs after ``warmup`` runs; CUDA events on a GPU, ``perf_counter`` on CPU;
* peak extra memory: on CUDA ``max_memory_allocated`` above what was allocated before the call; on CPU the peak
  resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident set before the call;
* ``floor``: the forward + backward of the Gram matrix ``E @ E.T`` alone, the reference a distance-based loss is
  measured against (a loss whose backward is written out sparsely, like the engine's BatchHard, can beat it: it never
  forms the (B, B) x (B, D) products autograd does).

Layouts: ``pk`` = B/4 labels x 4 examples; ``few`` = 4 labels x B/4 examples (what ``GROUP_BY_LABEL`` gives on a data
set with few classes). A configuration whose predicted memory exceeds what is free is skipped ("skipped: needs ~N GB")
rather than letting the out-of-memory killer end the run. :func:`format_table` names the device, versions and date.

Also :func:`load_committed` (the measured tables in ``benchmarks/results``, shipped with the library) and
:func:`best_time` (the quick timer the notebooks use on a busy machine).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import losses
from .losses import STRATEGIES, TITLES

CPU_SIZES = (64, 256, 1024, 2048)
CUDA_SIZES = (64, 256, 1024, 4096, 8192)
MARGIN = 0.5


@dataclass
class Result:
    layout: str
    batch_size: int
    strategy: str  # one of STRATEGIES or "floor"
    impl: str  # "ours", "st" or "floor"
    ms: float | None = None
    peak_mib: float | None = None
    skipped: str | None = None


def make_labels(layout: str, batch_size: int, device) -> torch.Tensor:
    """(B,) labels: ``pk`` = groups of 4, ``few`` = 4 groups of B/4 (shuffled, as a sampler would not be)."""
    if layout == "pk":
        labels = torch.arange(batch_size) // 4
    elif layout == "few":
        labels = torch.arange(batch_size) % 4
    else:
        raise ValueError(f"layout must be 'pk' or 'few'; got {layout!r}")
    return labels[torch.randperm(batch_size, generator=torch.Generator().manual_seed(0))].to(device)


def _positive_pairs(layout: str, batch_size: int) -> int:
    k = 4 if layout == "pk" else batch_size // 4
    return batch_size * (k - 1)


def predicted_bytes(impl: str, strategy: str, layout: str, batch_size: int, dim: int) -> int:
    """A deliberately generous estimate of the peak extra memory, used only to skip configurations that cannot fit."""
    b2 = batch_size * batch_size
    if impl == "floor":
        return 3 * 4 * b2
    if impl == "st" and strategy == "batch_all":
        # ST builds several (number of positive pairs) x B tensors: 6 of them were measured at B = 1024 on a GPU.
        return 7 * 4 * _positive_pairs(layout, batch_size) * batch_size
    if impl == "st":
        return 16 * 4 * b2
    return 24 * 4 * b2 + 8 * batch_size * dim


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


# ------------------------------------------------------------------------------------------------------------------
# Memory probes
# ------------------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    """A memory field of /proc/self/status in KiB, or None where there is no /proc (macOS, Windows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_cpu_memory() -> None:
    try:  # give freed heap pages back to the OS so that the resident set starts low
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_cpu_peak() -> int | None:
    """Reset VmHWM to the current resident set; return that baseline in bytes (None without Linux's /proc)."""
    _release_cpu_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def _cpu_peak() -> int | None:
    peak = _status_kib("VmHWM")
    return None if peak is None else peak * 1024


# ------------------------------------------------------------------------------------------------------------------
# What is measured
# ------------------------------------------------------------------------------------------------------------------


def make_step(impl: str, strategy: str):
    """A function (embeddings, labels) -> None running one forward + backward."""
    if impl == "floor":

        def step(e, y):
            gram = e @ e.t()
            gram.backward(torch.ones_like(gram))

        return step
    if impl == "st":
        from .st_losses import sentence_transformers_loss

        module = sentence_transformers_loss(strategy, None, margin=MARGIN)

        def step(e, y):
            module.compute_loss_from_embeddings([e], y).backward()

        return step
    ours = losses.loss_function(strategy)

    def step(e, y):
        ours(e, y, MARGIN).backward()

    return step


def measure(step, embeddings, labels, device, warmup: int, repeats: int) -> tuple[float, float | None]:
    """(median milliseconds, peak extra MiB) of ``step``; the memory is None on a CPU without Linux's /proc."""
    e = embeddings.detach().clone().requires_grad_(True)
    for _ in range(warmup):
        step(e, labels)
        e.grad = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(e, labels)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
            e.grad = None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(e, labels)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(e, labels)
            times.append((time.perf_counter() - t0) * 1e3)
            e.grad = None
        base = _reset_cpu_peak()
        step(e, labels)
        after = _cpu_peak()
        peak = None if base is None or after is None else after - base  # no /proc: time only
    e.grad = None
    return statistics.median(times), None if peak is None else max(peak, 0) / 2**20


def run(device, sizes, layouts, strategies, dim, warmup, repeats, impls=("ours", "st", "floor"), log=print):
    results: list[Result] = []
    for layout in layouts:
        for batch_size in sizes:
            gen = torch.Generator().manual_seed(batch_size)
            embeddings = torch.randn(batch_size, dim, generator=gen).to(device)
            labels = make_labels(layout, batch_size, device)
            jobs = [("floor", "floor")] if "floor" in impls else []
            jobs += [(impl, s) for s in strategies for impl in impls if impl != "floor"]
            for impl, strategy in jobs:
                result = Result(layout, batch_size, strategy, impl)
                need = predicted_bytes(impl, strategy, layout, batch_size, dim)
                if need > 0.8 * free_bytes(device):
                    result.skipped = f"skipped: needs ~{need / 1e9:.0f} GB"
                else:
                    try:
                        result.ms, result.peak_mib = measure(
                            make_step(impl, strategy), embeddings, labels, device, warmup, repeats
                        )
                    except torch.OutOfMemoryError:
                        result.skipped = "out of memory"
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                results.append(result)
                log(_line(result))
    return results


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _line(r: Result) -> str:
    what = r.skipped or f"{r.ms:.2f} ms, {_mib(r.peak_mib)} MiB"
    return f"  {r.layout:>3} B={r.batch_size:<5} {r.impl:<5} {r.strategy:<22} {what}"


def load_committed(name: str) -> dict:
    """A committed benchmark result (``benchmarks/results/NAME.json``), e.g. ``load_committed("losses_h200")``.

    Found in the installed package (wheels, e.g. Colab, carry a copy) or in the repository checkout.
    """
    import importlib.resources
    from pathlib import Path

    filename = name if name.endswith(".json") else f"{name}.json"
    packaged = importlib.resources.files("tutorial_lib") / "_benchmark_results" / filename
    candidates = [packaged, Path(__file__).resolve().parents[1] / "benchmarks" / "results" / filename]
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise FileNotFoundError(f"no committed benchmark result named {filename!r} (looked in {', '.join(map(str, candidates))})")


def environment(device: torch.device) -> dict:
    import sentence_transformers

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "device": name,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        "date": _dt.date.today().isoformat(),
    }


def format_table(results: list[Result], env: dict) -> str:
    """Markdown tables (one per layout): ours vs ST per strategy, with ST's time / ours as the speed-up."""
    lines = [f"Device: {env['device']} · torch {env['torch']} · sentence-transformers {env['sentence_transformers']} "
             f"· {env['date']}", ""]
    by_key = {(r.layout, r.batch_size, r.strategy, r.impl): r for r in results}
    strategies = [s for s in STRATEGIES if any(r.strategy == s for r in results)]
    for layout in dict.fromkeys(r.layout for r in results):
        lines.append(f"Layout `{layout}` — time in ms / peak extra MiB; × = ST time / ours")
        header = "| B | " + " | ".join(f"{TITLES[s]} ours | ST | ×" for s in strategies) + " | floor |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for batch_size in sorted({r.batch_size for r in results if r.layout == layout}):
            cells = [str(batch_size)]
            for s in strategies:
                ours, st = by_key.get((layout, batch_size, s, "ours")), by_key.get((layout, batch_size, s, "st"))
                cells += [_cell(ours), _cell(st)]
                ok = ours and st and ours.ms and st.ms
                cells.append(f"{st.ms / ours.ms:.2f}" if ok else "—")
            cells.append(_cell(by_key.get((layout, batch_size, "floor", "floor"))))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(r: Result | None) -> str:
    if r is None:
        return "—"
    if r.skipped:
        return r.skipped
    return f"{r.ms:.2f} / {_mib(r.peak_mib)}"


def best_time(fn: Callable[[], object], repeat: int = 20) -> float:
    """The shortest of ``repeat`` wall-clock times of ``fn()``, in seconds.

    The minimum, not the mean: on a shared machine other work only ever adds time, so the fastest run is the best
    estimate of what ``fn`` itself costs. (``torch.utils.benchmark.Timer`` does the same with more care: warm-up,
    thread control, statistics; :func:`run` uses medians after warm-up.)
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
