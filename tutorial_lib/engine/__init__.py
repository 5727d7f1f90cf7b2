"""The fast exact engine behind :mod:`tutorial_lib.losses` (notebook 08 measures it).

The readable losses of :mod:`tutorial_lib.vectorized` are plain autograd code; this subpackage computes the same
values and gradients faster and in O(B^2) memory, for GPUs as well as CPUs:

* :mod:`.gradients` -- the distance matrix without an autograd graph, and its backward pass written out;
* :mod:`.selection` -- hardest and semi-hard indices, the statistics of a batch;
* :mod:`.counting` -- BatchAll's exact count of active triplets, by sorting and bisection;
* :mod:`.functions` -- the losses as one ``torch.autograd.Function``;
* :mod:`.cuda_graphs` -- forward and backward replayed as CUDA graphs at small batch sizes;
* :mod:`.triton_kernels` -- optional Triton kernels for BatchAll's counting on CUDA;
* :mod:`.fused_kernels`, :mod:`.fused_semi_hard` -- fused Triton kernels for BatchAll and BatchSemiHard on P x K
  batches, which never sort a row (opt-in with ``TRIPLET_FUSED=1`` until measured on a GPU).

A learner never needs to read it: the tests hold engine = vectorized = reference loops = sentence-transformers.
The teaching core (distances, masks, reference, vectorized) never imports it.
"""
