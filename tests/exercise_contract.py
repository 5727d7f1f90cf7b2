"""The contract every exercise self-check of ``tutorial_lib.exercises`` keeps, as tests any test file can adopt.

A check takes the learner's function and prints a verdict. It must:

* accept a right answer (``✅ ... correct``) and reject each typical wrong answer with the hint written for it;
* report an exception, a stub (``raise NotImplementedError``) or something that is not a function as a verdict,
  never raise;
* never print code a solution would contain (``solution_fragments``), nor a line of the teaching core's code, nor a
  value its oracle computed (the oracle is spied on while the wrong answers run);
* live in its notebook's module, be re-exported by ``tutorial_lib.exercises`` and give the same verdict twice.

Usage, in the test file of notebook NN, which defines CHECKS, RIGHT = [(check, fn)], WRONG = [(check, fn, hint)]
and ORACLES = [(module, name of the oracle it imports)]::

    (test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
     test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value) = contract_tests(
        nbNN, CHECKS, RIGHT, WRONG, SOLUTION_FRAGMENTS, ORACLES)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from types import ModuleType

import pytest
from torch import Tensor

from tutorial_lib import bootstrap, distances, exercises, masks, reference, vectorized


def crashes(*args):
    raise ValueError("shapes do not match")


def not_written(*args):
    raise NotImplementedError


def _code_lines(*modules: ModuleType) -> set[str]:
    """The teaching core's lines of code (not prose) long enough to be recognisable in a verdict."""
    lines = set()
    for module in modules:
        for line in inspect.getsource(module).splitlines():
            line = line.strip()
            if len(line) > 20 and not line.startswith(("#", '"', "'", "*", "Args", "Returns")) and (
                    "(" in line or "=" in line) and not re.match(r"^[A-Z][a-z]", line):
                lines.add(line)
    return lines


CORE_CODE = _code_lines(reference, vectorized, distances, masks, bootstrap)


def make_verdict(solution_fragments: Sequence[str]) -> Callable:
    """``verdict(check, fn, capsys) -> (passed, printed text)``, failing if the text shows a solution fragment or a
    line of the teaching core's code."""

    def verdict(check, fn, capsys) -> tuple[bool, str]:
        result = check(fn)
        out = capsys.readouterr().out
        assert isinstance(result, bool)
        for fragment in solution_fragments:
            assert fragment not in out, f"the verdict shows {fragment!r}: {out}"
        assert not [line for line in CORE_CODE if line in out], out
        return result, out

    return verdict


def _name(x) -> str:
    return getattr(x, "__name__", str(x)[:20])


def renderings(value) -> set[str]:
    """How a verdict could show a float the oracle returned (scalars with at least 3 significant digits only)."""
    if isinstance(value, Tensor):
        value = float(value.detach()) if value.numel() == 1 else None
    if isinstance(value, tuple):
        return set().union(*(renderings(v) for v in value)) if value else set()
    if not isinstance(value, float) or abs(value) < 1e-3:
        return set()
    shown = {f"{value:.4g}", f"{value:.4f}", f"{value:.3g}", f"{value:.3f}"}
    return {s for s in shown if len(re.sub(r"^-?0\.0*|[^0-9]", "", s)) >= 3}


def _floats(value) -> tuple:
    """The floats among what a learner's function returned (a sequence of numbers), for :func:`renderings`."""
    try:
        return tuple(float(v.detach() if isinstance(v, Tensor) else v) for v in value)
    except (TypeError, ValueError, RuntimeError):
        return ()


def contract_tests(module: ModuleType, checks: Sequence, right: Sequence, wrong: Sequence,
                   solution_fragments: Sequence[str], oracles: Sequence[tuple[ModuleType, str]] = ()) -> tuple:
    """The five test functions of the contract, parametrized over this notebook's checks and answers."""
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
        assert {c.__name__ for c in checks} == {name for name in module.__all__ if name.startswith("check_")}
        assert {c.__name__ for c, _ in right} >= {c.__name__ for c in checks}, "a right answer for every check"
        assert {c.__name__ for c, _, _ in wrong} >= {c.__name__ for c in checks}, "a wrong answer for every check"
        for check in checks:
            assert check.__module__ == module.__name__ and getattr(exercises, check.__name__) is check
        first = [check(fn) for check, fn, _ in wrong[:4]]
        out1 = capsys.readouterr().out
        second = [check(fn) for check, fn, _ in wrong[:4]]
        assert first == second and capsys.readouterr().out == out1

    @pytest.mark.parametrize(("check", "fn", "hint"), wrong, ids=_name)
    def test_a_verdict_never_shows_an_oracle_value(check, fn, hint, capsys, monkeypatch):
        """The oracles are spied on while a wrong answer runs: none of their values may appear in the verdict, unless
        the learner's function returned the same value itself (a verdict may quote the learner)."""
        seen: set[str] = set()
        quoted: set[str] = set()
        for owner, name in oracles:
            def spy(*args, _oracle=getattr(owner, name), **kwargs):
                value = _oracle(*args, **kwargs)
                seen.update(renderings(value))
                return value

            monkeypatch.setattr(owner, name, spy)

        def learner(*args):
            value = fn(*args)
            quoted.update(renderings(value if isinstance(value, (Tensor, float)) else _floats(value)))
            return value

        ok, out = verdict(check, learner, capsys)
        assert ok is False
        numbers = set(re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", out))
        assert not (seen - quoted) & numbers, (seen - quoted, out)

    return (test_a_right_answer_passes, test_a_wrong_answer_fails_with_its_hint, test_a_crash_a_stub_and_a_non_function,
            test_the_checks_are_exported_and_deterministic, test_a_verdict_never_shows_an_oracle_value)
