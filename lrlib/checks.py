"""One checker per exercise of the course.

Introduced in notebook ``00_welcome``. A checker calls the learner's function on small
cases whose answers are known exactly. When every case is right it prints one line,
``✓ Exercise N.k: <what was verified>``; otherwise it raises ``AssertionError`` saying
which input failed, what was expected, what came back, and a hint.

Checkers are named after the exercise they check (``exercise_0_1`` checks Exercise 0.1).
A ``NotImplementedError`` from the learner's function (the stub of an exercise not yet
done) is passed through unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["exercise_0_1", "exercise_0_2"]


# --------------------------------------------------------------------------- helpers
def _passed(exercise: str, what: str) -> None:
    print(f"✓ Exercise {exercise}: {what}")


def _failed(exercise: str, case: str, expected, got, hint: str) -> AssertionError:
    return AssertionError(
        f"Exercise {exercise}: for {case}\n"
        f"  expected: {expected!r}\n"
        f"  got:      {got!r}\n"
        f"  hint: {hint}"
    )


def _call(exercise: str, function, case: str, *args, **kwargs):
    """Call the learner's ``function``; turn its errors (bar NotImplementedError) into a
    failure that names the case."""
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


def _as_number(value):
    """A Python number from an int/float or a one-element tensor; None otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


# ------------------------------------------------------------------ notebook 00
def _accuracy_cases():
    """(description, logits, labels, expected accuracy) for Exercise 0.1."""
    logits_a = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.1, 0.2], [0.0, 0.0, 1.0]])
    logits_b = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    return [
        ("4 examples, 3 classes, all correct", logits_a, torch.tensor([0, 1, 0, 2]), 1.0),
        ("4 examples, 3 classes, 3 correct", logits_a, torch.tensor([0, 1, 2, 2]), 0.75),
        ("5 examples, 2 classes, 2 correct", logits_b, torch.tensor([1, 0, 0, 1, 1]), 0.4),
        ("5 examples, 2 classes, none correct", logits_b, torch.tensor([0, 1, 0, 1, 1]), 0.0),
    ]


def exercise_0_1(accuracy) -> None:
    """Check ``accuracy(logits, labels)``: the fraction, in ``[0, 1]``, of rows of
    ``logits`` (shape ``(N, classes)``) whose largest entry is at the index ``labels``
    gives."""
    exercise = "0.1"
    for case, logits, labels, expected in _accuracy_cases():
        got = _call(exercise, accuracy, case, logits.clone(), labels.clone())
        number = _as_number(got)
        if number is None:
            raise _failed(exercise, case, expected, got,
                          "return one number, e.g. with .item() on a one-element tensor")
        if math.isclose(number, expected * len(labels)) and expected != 0.0:
            hint = "you returned the number of correct predictions; divide by len(labels)"
        elif math.isclose(number, 100 * expected) and expected != 0.0:
            hint = "return a fraction in [0, 1], not a percentage"
        else:
            hint = ("the prediction is the index of the largest logit in each row: "
                    "logits.argmax(dim=1); compare it with labels and average")
        if not math.isclose(number, expected, abs_tol=1e-6):
            raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, "accuracy matches on 4 cases (all, some and no predictions correct)")


def exercise_0_2(linear_parameter_count) -> None:
    """Check ``linear_parameter_count(in_features, out_features, bias=True)``: the number
    of trainable numbers in ``nn.Linear(in_features, out_features, bias=bias)``, that is
    ``in_features * out_features`` weights plus ``out_features`` biases when ``bias``."""
    exercise = "0.2"
    cases = [(784, 1024, True), (1024, 512, True), (512, 10, True), (3, 2, False), (1, 1, True)]
    for n_in, n_out, bias in cases:
        case = f"in_features={n_in}, out_features={n_out}, bias={bias}"
        expected = sum(p.numel() for p in nn.Linear(n_in, n_out, bias=bias).parameters())
        got = _call(exercise, linear_parameter_count, case, n_in, n_out, bias=bias)
        if _as_number(got) != expected:
            if got == n_in * n_out and bias:
                hint = "do not forget the bias: one per output feature"
            elif bias and got == n_in * n_out + n_in:
                hint = "there is one bias per OUTPUT feature, not per input feature"
            elif not bias and got == n_in * n_out + n_out:
                hint = "with bias=False the layer has weights only"
            else:
                hint = "the weight matrix is out_features × in_features"
            raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"parameter counts match nn.Linear on {len(cases)} shapes, with and "
                      "without bias")
