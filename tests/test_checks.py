"""lrlib.checks: each checker passes the reference answer and fails helpfully on typical
wrong ones (the message names the input, the expected value, what came back and a hint)."""

import pytest
import torch

from lrlib import checks


# ------------------------------------------------------------------ Exercise 0.1
def accuracy_reference(logits, labels):
    return (logits.argmax(dim=1) == labels).float().mean().item()


def test_exercise_0_1_passes_the_reference(capsys):
    checks.exercise_0_1(accuracy_reference)
    assert capsys.readouterr().out.startswith("✓ Exercise 0.1:")


def test_exercise_0_1_accepts_a_one_element_tensor(capsys):
    checks.exercise_0_1(lambda logits, labels: (logits.argmax(1) == labels).float().mean())
    assert "✓ Exercise 0.1" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, expected_hint", [
    (lambda z, y: (z.argmax(1) == y).sum().item(), "number of correct predictions"),
    (lambda z, y: 100 * (z.argmax(1) == y).float().mean().item(), "not a percentage"),
    (lambda z, y: (z.argmin(1) == y).float().mean().item(), "largest logit"),
    (lambda z, y: z.argmax(1) == y, "one number"),
])
def test_exercise_0_1_fails_helpfully(wrong, expected_hint):
    with pytest.raises(AssertionError) as info:
        checks.exercise_0_1(wrong)
    message = str(info.value)
    assert message.startswith("Exercise 0.1: for ")
    assert "expected:" in message and "got:" in message
    assert expected_hint in message


def test_exercise_0_1_reports_the_learners_exception():
    with pytest.raises(AssertionError, match=r"your function raised RuntimeError.*\n  for 4 examples"):
        checks.exercise_0_1(lambda z, y: (z.argmax(0) == y).float().mean())


def test_unfinished_exercise_raises_not_implemented():
    def stub(logits, labels):
        raise NotImplementedError("Exercise 0.1: replace this line with your solution")

    with pytest.raises(NotImplementedError, match="Exercise 0.1"):
        checks.exercise_0_1(stub)


def test_passing_a_result_instead_of_a_function_is_a_type_error():
    with pytest.raises(TypeError, match="pass your function itself"):
        checks.exercise_0_1(0.75)


# ------------------------------------------------------------------ Exercise 0.2
def linear_parameter_count_reference(in_features, out_features, bias=True):
    return in_features * out_features + (out_features if bias else 0)


def test_exercise_0_2_passes_the_reference(capsys):
    checks.exercise_0_2(linear_parameter_count_reference)
    assert capsys.readouterr().out.startswith("✓ Exercise 0.2:")


@pytest.mark.parametrize("wrong, expected_hint", [
    (lambda i, o, bias=True: i * o, "do not forget the bias"),
    (lambda i, o, bias=True: i * o + i if bias else i * o, "per OUTPUT feature"),
    (lambda i, o, bias=True: i * o + o, "weights only"),
    (lambda i, o, bias=True: (i + 1) * (o + 1), "out_features × in_features"),
])
def test_exercise_0_2_fails_helpfully(wrong, expected_hint):
    with pytest.raises(AssertionError) as info:
        checks.exercise_0_2(wrong)
    message = str(info.value)
    assert message.startswith("Exercise 0.2: for in_features=")
    assert "expected:" in message and "got:" in message and expected_hint in message


def test_every_public_checker_is_tested_here():
    """A new checker must come with tests in this file."""
    source = open(__file__, encoding="utf-8").read()
    for name in checks.__all__:
        assert f"checks.{name}(" in source, f"{name} has no test"
