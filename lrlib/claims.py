"""Claims: the sentences a notebook says about its own measurements, checked as it runs.

A notebook that measures something and then interprets it ("the factorized layer is faster
at batch 256") states the interpretation as a claim next to the measurement::

    claims.claim(table.row("rank 32")["verdict"] == "faster",
                 "rank 32 is faster than the dense layer at batch 256")

It prints ``✓ <statement>`` when the claim holds and ``✗ claim does not hold: <statement>``
when it does not, so a learner sees at once whether the text next to it describes their
run. ``tools/execute_solutions.py`` looks for that second line in every output: it reruns a
notebook whose claims fail and refuses to store outputs that contradict the text.

Introduced with the stored outputs of every notebook (issue 14); used from 00 onwards.
"""

from __future__ import annotations

import numpy as np

from .validate import check_int, check_number, check_type

__all__ = ["FAILED", "claim", "failed_claims", "difference_is_clear"]

FAILED = "✗ claim does not hold: "
"""The mark a failed claim prints; ``tools/execute_solutions.py`` searches for it."""


def claim(holds, statement: str) -> None:
    """Print whether ``statement`` holds for this run.

    ``holds`` is the condition computed from the measurement (a bool, numpy's included);
    ``statement`` is the sentence of the text that depends on it.
    """
    check_type(holds, "holds", (bool, np.bool_), "a bool (the condition, computed)")
    check_type(statement, "statement", str)
    if not statement.strip():
        raise ValueError("statement must say what is claimed, got an empty string")
    print(("✓ " if holds else FAILED) + statement)


def failed_claims(text: str) -> list:
    """The statements of the failed claims printed in ``text`` (a cell's output)."""
    check_type(text, "text", str)
    return [line.split(FAILED, 1)[1] for line in text.splitlines() if FAILED in line]


def difference_is_clear(accuracy_a: float, accuracy_b: float, n: int, *, z: float = 2.0) -> bool:
    """Whether two accuracies on the same ``n`` test examples differ by more than ``z``
    standard errors.

    An accuracy ``p`` measured on ``n`` examples has standard error ``sqrt(p (1 − p) / n)``
    (a binomial proportion). For two models on the same examples this treats their errors
    as independent, which overstates the error of the difference when they fail on the
    same examples: the test is cautious. A difference below ``z`` standard errors is within
    noise: no conclusion should be drawn from it.
    """
    check_number(accuracy_a, "accuracy_a", low=0, high=1)
    check_number(accuracy_b, "accuracy_b", low=0, high=1)
    check_int(n, "n", minimum=1)
    check_number(z, "z", low=0, low_open=True)
    variance = (accuracy_a * (1 - accuracy_a) + accuracy_b * (1 - accuracy_b)) / n
    return bool(abs(accuracy_a - accuracy_b) > z * variance ** 0.5)
