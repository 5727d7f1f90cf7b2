"""Replaying the losses' forward and backward passes as CUDA graphs at small batch sizes.

Below B ~ 1000 a loss is *launch-bound*: each of its ~50-100 small kernels costs a few microseconds of host-side
launch overhead, far more than the GPU needs to run it (sentence-transformers' losses take ~2 ms at B = 64 for work
whose floor is a fraction of that). Because the losses never synchronise with the host and their shapes depend on
B only, the whole forward (and backward) can be captured once per batch size as a CUDA graph and replayed with a
single launch. Inputs are copied into the graph's static buffers and outputs cloned out of them, so a replay never
overwrites tensors an earlier call returned; the results are the same kernels' results, bit for bit.

Used automatically for CUDA inputs with B <= :data:`MAX_BATCH`; ``TRIPLET_CUDA_GRAPHS=0`` turns it off. Not used
while another graph is being captured or under ``torch.compile``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor

MAX_BATCH = 1024
"""Largest batch size replayed as a graph; above it kernels are long enough for launch overhead not to matter."""

_CACHE_SIZE = 16  # graphs kept (each holds its own memory pool: ~20 (B, B) buffers at most)
_cache: OrderedDict[tuple, _GraphedCall] = OrderedDict()


class _GraphedCall:
    """``fn(*inputs)`` captured once as a CUDA graph; ``__call__`` copies new inputs in and replays it."""

    def __init__(self, fn: Callable[..., tuple[Tensor, ...]], inputs: tuple):
        self.static_inputs = tuple(t.clone() if isinstance(t, Tensor) else t for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up off the main stream: lazy initialisation and Triton compilation
            for _ in range(2):
                fn(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_outputs = fn(*self.static_inputs)

    def __call__(self, *inputs) -> tuple[Tensor, ...]:
        for static, value in zip(self.static_inputs, inputs):
            if isinstance(static, Tensor):
                static.copy_(value)
        self.graph.replay()
        return tuple(out.clone() for out in self.static_outputs)


def _worth_it(inputs: tuple) -> bool:
    tensors = [t for t in inputs if isinstance(t, Tensor)]
    if not tensors[0].is_cuda or os.environ.get("TRIPLET_CUDA_GRAPHS", "1") == "0":
        return False
    batch_size = max((t.shape[0] for t in tensors if t.dim() == 2), default=0)  # embeddings (B, D), dist (B, B)
    if batch_size > MAX_BATCH:
        return False
    return not (torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling())


def call(fn: Callable[..., tuple[Tensor, ...]], *inputs) -> tuple[Tensor, ...]:
    """``fn(*inputs)``, replayed from a cached CUDA graph where that pays off (see the module docstring).

    ``fn`` must return a tuple of tensors, must not synchronise with the host, and its output shapes must depend
    only on the input shapes. Non-tensor inputs are constants of the graph (part of the cache key).
    """
    if not _worth_it(inputs):
        return fn(*inputs)
    key = (fn,) + tuple(
        (tuple(t.shape), t.dtype, t.device) if isinstance(t, Tensor) else t for t in inputs
    )
    graphed = _cache.get(key)
    if graphed is None:
        graphed = _GraphedCall(fn, inputs)
        _cache[key] = graphed
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return graphed(*inputs)


def clear() -> None:
    """Drop every cached graph (and the memory their pools hold)."""
    _cache.clear()
