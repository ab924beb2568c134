"""Shared assertions for the checker tests (tests/test_checks_0N.py)."""

import pytest


def fails_with(checker, wrong, hint, exercise):
    """``checker(wrong)`` must fail the way a learner should see it: an AssertionError that
    names the exercise and the case, shows expected and got, and contains ``hint``."""
    with pytest.raises(AssertionError) as info:
        checker(wrong)
    message = str(info.value)
    assert message.startswith(f"Exercise {exercise}: for "), message
    assert "expected:" in message and "got:" in message
    assert hint in message, message


def stub(*args, **kwargs):
    """An exercise not done yet, as the student notebook ships it."""
    raise NotImplementedError("Exercise N.k: replace this line with your solution")
