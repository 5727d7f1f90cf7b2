"""The contract every exercise self-check of ``tutorial_lib.exercises`` keeps, as tests any test file can adopt.

A check takes the learner's function and prints a verdict. It must:

* accept a right answer (``✅ ... correct``) and reject each typical wrong answer with the hint written for it;
* report an exception, a stub (``raise NotImplementedError``) or something that is not a function as a verdict,
  never raise;
* never print code a solution would contain (``solution_fragments``);
* be exported in ``exercises.__all__`` and give the same verdict twice.

Usage, in a test file that defines its CHECKS, RIGHT = [(check, fn)], WRONG = [(check, fn, hint)]::

    verdict = make_verdict(SOLUTION_FRAGMENTS)
    (test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
     test_the_checks_are_exported_and_deterministic) = contract_tests(CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from tutorial_lib import exercises


def crashes(*args):
    raise ValueError("shapes do not match")


def not_written(*args):
    raise NotImplementedError


def make_verdict(solution_fragments: Sequence[str]) -> Callable:
    """``verdict(check, fn, capsys) -> (passed, printed text)``, failing if the text shows a solution fragment."""

    def verdict(check, fn, capsys) -> tuple[bool, str]:
        result = check(fn)
        out = capsys.readouterr().out
        assert isinstance(result, bool)
        for fragment in solution_fragments:
            assert fragment not in out, f"the verdict shows {fragment!r}: {out}"
        return result, out

    return verdict


def _name(x) -> str:
    return getattr(x, "__name__", str(x)[:20])


def contract_tests(checks: Sequence, right: Sequence, wrong: Sequence, solution_fragments: Sequence[str]) -> tuple:
    """The four test functions of the contract, parametrized over these checks and answers."""
    verdict = make_verdict(solution_fragments)

    @pytest.mark.parametrize(("check", "fn"), right, ids=_name)
    def test_a_right_answer_passes(check, fn, capsys):
        ok, out = verdict(check, fn, capsys)
        assert ok, out
        assert out.startswith("✅") and "correct" in out

    @pytest.mark.parametrize(("check", "fn", "hint"), wrong, ids=_name)
    def test_a_wrong_answer_fails_with_its_hint(check, fn, hint, capsys):
        ok, out = verdict(check, fn, capsys)
        assert ok is False
        assert out.startswith("❌") and "Hint:" in out and hint in out, out

    @pytest.mark.parametrize("check", checks, ids=_name)
    def test_a_crash_a_stub_and_a_non_function(check, capsys):
        ok, out = verdict(check, crashes, capsys)
        assert ok is False and "ValueError: shapes do not match" in out and "Hint:" in out, out
        ok, out = verdict(check, not_written, capsys)
        assert ok is False and "not written yet" in out, out
        ok, out = verdict(check, None, capsys)
        assert ok is False and "pass your function itself" in out, out

    def test_the_checks_are_exported_and_deterministic(capsys):
        assert {check.__name__ for check in checks} <= set(exercises.__all__)
        first = [check(fn) for check, fn, _ in wrong[:4]]
        out1 = capsys.readouterr().out
        second = [check(fn) for check, fn, _ in wrong[:4]]
        assert first == second and capsys.readouterr().out == out1

    return (test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
            test_the_checks_are_exported_and_deterministic)
