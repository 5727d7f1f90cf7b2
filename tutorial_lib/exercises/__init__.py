"""Self-checks for the notebooks' exercises: ``check_x(your_function)`` prints a verdict and a hint, never the answer.

Each check calls the learner's function on a few hidden cases (fixed seeds: the same verdict every run), compares
with an oracle imported from the teaching core (:mod:`tutorial_lib.reference`, :mod:`~tutorial_lib.vectorized`,
:mod:`~tutorial_lib.distances`, :mod:`~tutorial_lib.masks`, :mod:`~tutorial_lib.bootstrap`), and stops at the first
case that disagrees. It then says what went wrong in terms of *the learner's* output and gives a hint; it never
prints the expected values or the solution. Every check returns True or False and never raises: an exception inside
the learner's function is part of the verdict.

One module per notebook, in notebook order (each module's docstring gives the signatures)::

    00  nb00  check_euclidean_distance
    01  nb01  check_triplet_loss, check_triplet_category, check_hardest_pair
    02  nb02  check_pairwise_distances, check_positive_mask, check_negative_mask, check_triplet_mask,
              check_count_valid_triplets
    03  nb03  check_batch_all_loss, check_active_fraction
    04  nb04  check_batch_hard_loss, check_first_collapsed_step
    05  nb05  check_semi_hard_negative, check_fallback_rate, check_semi_hard_loss
    06  nb06  check_soft_margin, check_batch_hard_soft_margin
    07  nb07  check_bootstrap_interval, check_offline_triplets
    08  nb08  check_st_batch_all_entries, check_gather_local_grad, check_process_gradients
    09  nb09  check_group_by_label_usage, check_semantic_search
    10  nb10  check_recall_within, check_flip_labels

Adding an exercise: write a ``check_*`` function in its notebook's module that builds its cases and calls
:func:`~tutorial_lib.exercises.runner.run_checks`; each case returns None when the learner's answer is right, or a
:class:`~tutorial_lib.exercises.runner.Miss` saying what is wrong and what to think about. Re-export it here.
"""

from __future__ import annotations

from .nb00 import check_euclidean_distance
from .nb01 import check_hardest_pair, check_triplet_category, check_triplet_loss
from .nb02 import (
    check_count_valid_triplets,
    check_negative_mask,
    check_pairwise_distances,
    check_positive_mask,
    check_triplet_mask,
)
from .nb03 import check_active_fraction, check_batch_all_loss
from .nb04 import check_batch_hard_loss, check_first_collapsed_step
from .nb05 import check_fallback_rate, check_semi_hard_loss, check_semi_hard_negative
from .nb06 import check_batch_hard_soft_margin, check_soft_margin
from .nb07 import check_bootstrap_interval, check_offline_triplets
from .nb08 import check_gather_local_grad, check_process_gradients, check_st_batch_all_entries
from .nb09 import check_group_by_label_usage, check_semantic_search
from .nb10 import check_flip_labels, check_recall_within
from .runner import Miss, run_checks

__all__ = [
    "Miss",
    "check_flip_labels",
    "check_recall_within",
    "check_active_fraction",
    "check_batch_all_loss",
    "check_batch_hard_loss",
    "check_batch_hard_soft_margin",
    "check_bootstrap_interval",
    "check_count_valid_triplets",
    "check_euclidean_distance",
    "check_fallback_rate",
    "check_first_collapsed_step",
    "check_gather_local_grad",
    "check_group_by_label_usage",
    "check_hardest_pair",
    "check_negative_mask",
    "check_offline_triplets",
    "check_pairwise_distances",
    "check_positive_mask",
    "check_process_gradients",
    "check_semantic_search",
    "check_semi_hard_loss",
    "check_semi_hard_negative",
    "check_soft_margin",
    "check_st_batch_all_entries",
    "check_triplet_category",
    "check_triplet_loss",
    "check_triplet_mask",
    "run_checks",
]
