"""Checkers of notebook ``00_welcome``: Exercises 0.1 and 0.2."""

from __future__ import annotations

import math

import torch
from torch import nn

from .core import Case, as_number, run_cases

__all__ = ["exercise_0_1", "exercise_0_2"]


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
    cases = [Case(case, (logits.clone(), labels.clone()), expected, given=(len(labels),))
             for case, logits, labels, expected in _accuracy_cases()]

    def mistake(got, expected, n):
        number = as_number(got)
        if number is None:
            return "return one number, e.g. with .item() on a one-element tensor"
        if math.isclose(number, expected, abs_tol=1e-6):
            return None
        if math.isclose(number, expected * n) and expected != 0.0:
            return "you returned the number of correct predictions; divide by len(labels)"
        if math.isclose(number, 100 * expected) and expected != 0.0:
            return "return a fraction in [0, 1], not a percentage"
        return ("the prediction is the index of the largest logit in each row: "
                "logits.argmax(dim=1); compare it with labels and average")

    run_cases("0.1", accuracy, cases, mistake,
              "accuracy matches on 4 cases (all, some and no predictions correct)")


def exercise_0_2(linear_parameter_count) -> None:
    """Check ``linear_parameter_count(in_features, out_features, bias=True)``: the number
    of trainable numbers in ``nn.Linear(in_features, out_features, bias=bias)``, that is
    ``in_features * out_features`` weights plus ``out_features`` biases when ``bias``."""
    shapes = [(784, 1024, True), (1024, 512, True), (512, 10, True), (3, 2, False), (1, 1, True)]
    cases = (Case(f"in_features={n_in}, out_features={n_out}, bias={bias}", (n_in, n_out),
                  sum(p.numel() for p in nn.Linear(n_in, n_out, bias=bias).parameters()),
                  kwargs={"bias": bias}, given=(n_in, n_out, bias))
             for n_in, n_out, bias in shapes)

    def mistake(got, expected, n_in, n_out, bias):
        if as_number(got) == expected:
            return None
        if got == n_in * n_out and bias:
            return "do not forget the bias: one per output feature"
        if bias and got == n_in * n_out + n_in:
            return "there is one bias per OUTPUT feature, not per input feature"
        if not bias and got == n_in * n_out + n_out:
            return "with bias=False the layer has weights only"
        return "the weight matrix is out_features × in_features"

    run_cases("0.2", linear_parameter_count, cases, mistake,
              f"parameter counts match nn.Linear on {len(shapes)} shapes, with and without bias")
