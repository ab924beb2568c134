"""What every checker of ``lrlib.checks`` shares: calling the learner's function, the ✓ line,
the failure message, and the loop over a checker's cases.

Introduced in notebook ``00_welcome``. A checker is its cases and one function that names
the mistake in an answer::

    def mistake(got, expected, n_in, n_out, bias):   # the Case's ``given``
        if as_number(got) == expected:
            return None                              # right
        if got == n_in * n_out and bias:
            return "do not forget the bias: one per output feature"
        return "the weight matrix is out_features × in_features"

    run_cases("0.2", function, cases, mistake, "parameter counts match nn.Linear")

A failure reads::

    Exercise 0.2: for in_features=784, out_features=1024, bias=True
      expected: 803840
      got:      802816
      hint: do not forget the bias: one per output feature
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple

import torch

__all__ = ["Case", "Failure", "as_number", "call", "close", "failed", "outputs_differ", "passed",
           "run_cases"]


@dataclass
class Case:
    """One input of a checker.

    ``description`` follows "for" in a failure message; the learner's function is called
    as ``function(*args, **kwargs)`` (pass copies of anything the function could change);
    ``expected`` is the right answer, shown as ``expected:``; ``given`` is what the
    checker's ``mistake`` function needs to recognise a wrong answer (the case's
    parameters), never passed to the learner.
    """

    description: str
    args: tuple = ()
    expected: Any = None
    kwargs: dict = field(default_factory=dict)
    given: tuple = ()


class Failure(NamedTuple):
    """What a failing case shows, where that is not its ``expected`` value and the raw answer
    (e.g. "a matrix 0.3 away from it" instead of the matrix)."""

    expected: Any
    got: Any
    hint: str


def outputs_differ(what: str, output: torch.Tensor, expected: torch.Tensor, hint: str) -> Failure:
    """The Failure of an output tensor that differs from ``expected`` (same shape): it shows
    ``what`` was expected and the largest absolute difference."""
    difference = (output - expected).abs().max().item()
    return Failure(what, f"max abs difference {difference:.3g}", hint)


def passed(exercise: str, what: str) -> None:
    """Print the line a passing checker ends with: ``✓ Exercise N.k: <what>``."""
    print(f"✓ Exercise {exercise}: {what}")


def failed(exercise: str, case: str, expected, got, hint: str) -> AssertionError:
    """The AssertionError of a wrong answer: the case, expected, got (both as ``repr``) and
    a hint. Raise what it returns."""
    return AssertionError(
        f"Exercise {exercise}: for {case}\n"
        f"  expected: {expected!r}\n"
        f"  got:      {got!r}\n"
        f"  hint: {hint}"
    )


def call(exercise: str, function, case: str, *args, **kwargs):
    """``function(*args, **kwargs)``, the learner's code. ``NotImplementedError`` (an exercise
    not done yet) passes through unchanged; any other error becomes an AssertionError that
    names ``case``; a ``function`` that is not callable is a TypeError."""
    if not callable(function):
        raise TypeError(
            f"Exercise {exercise}: pass your function itself (without calling it), got "
            f"{type(function).__name__}"
        )
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:
        raise AssertionError(
            f"Exercise {exercise}: your function raised {type(error).__name__}: {error}\n"
            f"  for {case}"
        ) from error


def as_number(value):
    """A Python number from an int/float or a one-element tensor; None otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def close(got, value, *, rel_tol: float = 1e-9, abs_tol: float = 0.0) -> bool:
    """Whether ``got`` is a number (see :func:`as_number`) within ``math.isclose`` of
    ``value``; False for anything else."""
    number = as_number(got)
    return number is not None and math.isclose(number, value, rel_tol=rel_tol, abs_tol=abs_tol)


def run_cases(exercise: str, function, cases: Iterable[Case],
              mistake: Callable[..., "str | Failure | None"], verified: str) -> None:
    """Check ``function`` on every case in order, then print ``✓ Exercise N.k: <verified>``.

    For each case, ``got = function(*case.args, **case.kwargs)`` (through :func:`call`),
    then ``mistake(got, case.expected, *case.given)`` says what is wrong: ``None`` when
    ``got`` is right, else a hint, or a :class:`Failure` to show something other than
    ``case.expected`` and ``got``. The first wrong case raises :func:`failed`.

    ``cases`` may be a generator: each case is then built (and its expected value
    computed) just before the learner's function is called on it.
    """
    for case in cases:
        got = call(exercise, function, case.description, *case.args, **case.kwargs)
        wrong = mistake(got, case.expected, *case.given)
        if wrong is None:
            continue
        if isinstance(wrong, str):
            wrong = Failure(case.expected, got, wrong)
        raise failed(exercise, case.description, wrong.expected, wrong.got, wrong.hint)
    passed(exercise, verified)
