"""Notebook 08's self-checks (scaling): right answers pass, each typical mistake fails with its own hint (never an
exception), and no verdict shows the solution (tests/exercise_contract.py)."""

from __future__ import annotations

import torch
from exercise_contract import contract_tests

from tutorial_lib.distributed import gather_across_processes
from tutorial_lib.exercises import check_gather_local_grad, check_process_gradients, check_st_batch_all_entries, nb08

# Code that a solution would contain and a verdict must never print.
SOLUTION_FRAGMENTS = ("(k - 1) * b", "(per_label - 1)", ".detach()", "torch.cat(", "* world", "world_size *",
                      "lambda", "def ", "autograd.grad", ".backward(")


# Right answers -------------------------------------------------------------------------------------------------

def st_entries(batch_size, per_label):
    return batch_size * (per_label - 1) * batch_size


def st_entries_tensor(batch_size, per_label):
    return torch.tensor(batch_size) * (per_label - 1) * batch_size  # a 0-dim tensor is fine


def gather_local(slices, rank):
    return torch.cat([s if r == rank else s.detach() for r, s in enumerate(slices)])


def process_gradients(embeddings, labels, world_size, loss_fn):
    slices = embeddings.chunk(world_size)
    grads = []
    for rank in range(world_size):
        parts = [s.detach().clone().requires_grad_(r == rank) for r, s in enumerate(slices)]
        (loss_fn(gather_local(parts, rank), labels) * world_size).backward()
        grad = torch.zeros_like(embeddings)
        rows = len(embeddings) // world_size
        grad[rank * rows:(rank + 1) * rows] = parts[rank].grad
        grads.append(grad)
    return grads


def test_the_library_gather_without_processes_is_the_identity():
    """Outside torch.distributed the library's gather returns its inputs (what the simulated world of 1 does)."""
    e, y = torch.randn(4, 3), torch.arange(4)
    assert gather_across_processes(e, y)[0] is e


RIGHT = [
    (check_st_batch_all_entries, st_entries),
    (check_st_batch_all_entries, st_entries_tensor),
    (check_gather_local_grad, gather_local),
    (check_process_gradients, process_gradients),
]


# Wrong answers, each with the hint it should get -----------------------------------------------------------------

def cube(batch_size, per_label):
    return batch_size**3


def with_the_anchor(batch_size, per_label):
    return batch_size * per_label * batch_size


def rows_only(batch_size, per_label):
    return batch_size * (per_label - 1)


def valid_triplets(batch_size, per_label):
    return batch_size * (per_label - 1) * (batch_size - per_label)


def float_entries(batch_size, per_label):
    return batch_size * (per_label - 1) * batch_size / 3


def gather_everything(slices, rank):
    return torch.cat(slices)


def gather_nothing(slices, rank):
    return torch.cat([s.detach() for s in slices])


def local_first(slices, rank):
    return torch.cat([slices[rank]] + [s.detach() for r, s in enumerate(slices) if r != rank])


def gather_a_list(slices, rank):
    return [s if r == rank else s.detach() for r, s in enumerate(slices)]


def without_the_factor(embeddings, labels, world_size, loss_fn):
    return [g / world_size for g in process_gradients(embeddings, labels, world_size, loss_fn)]


def every_slice_differentiable(embeddings, labels, world_size, loss_fn):
    grads = []
    for _ in range(world_size):
        leaf = embeddings.detach().clone().requires_grad_(True)
        loss_fn(leaf, labels).backward()
        grads.append(leaf.grad)
    return grads


def local_mining_only(embeddings, labels, world_size, loss_fn):
    grads = []
    rows = len(embeddings) // world_size
    for rank in range(world_size):
        leaf = embeddings[rank * rows:(rank + 1) * rows].detach().clone().requires_grad_(True)
        (loss_fn(leaf, labels[rank * rows:(rank + 1) * rows]) * world_size).backward()
        grad = torch.zeros_like(embeddings)
        grad[rank * rows:(rank + 1) * rows] = leaf.grad
        grads.append(grad)
    return grads


def already_averaged(embeddings, labels, world_size, loss_fn):
    return torch.stack(process_gradients(embeddings, labels, world_size, loss_fn)).mean(dim=0)


WRONG = [
    (check_st_batch_all_entries, cube, "full cube"),
    (check_st_batch_all_entries, with_the_anchor, "not its own positive"),
    (check_st_batch_all_entries, rows_only, "counts the rows only"),
    (check_st_batch_all_entries, valid_triplets, "number of valid triplets"),
    (check_st_batch_all_entries, float_entries, "whole number"),
    (check_gather_local_grad, gather_everything, "detach them"),
    (check_gather_local_grad, gather_nothing, "must keep its autograd graph"),
    (check_gather_local_grad, local_first, "rank order"),
    (check_gather_local_grad, gather_a_list, "one torch tensor"),
    (check_process_gradients, without_the_factor, "which factor"),
    (check_process_gradients, every_slice_differentiable, "only into its own slice"),
    (check_process_gradients, local_mining_only, "whole gathered batch"),
    (check_process_gradients, already_averaged, "before any averaging"),
]


CHECKS = [check_st_batch_all_entries, check_gather_local_grad, check_process_gradients]

(test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
 test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
    nb08, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
