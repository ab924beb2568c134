"""What the three pipeline exercises share (3.7, 5.6 and 7.5): each asks for a whole
compressed model, built by the learner's function from a reference model, that meets a
stated budget and a stated accuracy.

Such a checker does not compare one answer with one expected value. It builds the
reference model afresh, calls the learner's function once, and then checks a list of
:class:`Requirement`: the reference model left unchanged, the structure asked for, the
budget, the accuracy on the shipped test images. It prints every requirement with its target
and the learner's value (so that a learner sees the margins, not only a ✓), then either
``✓ Exercise N.k: …`` or an AssertionError that names the first requirement not met and a
hint::

    Exercise 3.7: requirement             target     yours
                  parameters              ≤ 41,680   113,674   ✗
                  test accuracy           ≥ 84.0%    85.8%     ✓
    ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .core import call, passed

__all__ = ["Requirement", "check_requirements", "learner_model", "state_of", "unchanged",
           "unchanged_requirement", "predictions", "test_accuracy", "percent"]


@dataclass
class Requirement:
    """One thing a pipeline exercise asks for: its ``name``, the ``target`` as text
    ("≤ 41,680"), the learner's value as text, whether it is ``met``, and the ``hint`` shown
    when it is not."""

    name: str
    target: str
    yours: str
    met: bool
    hint: str = ""


def percent(fraction: float) -> str:
    """An accuracy with two decimals: 0.05% is one of the 2,000 shipped test images."""
    return f"{100 * fraction:.2f}%"


def state_of(model: nn.Module) -> dict:
    """A copy of every parameter and buffer of ``model``, to check later that it is unchanged."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict) -> bool:
    """Whether ``model`` holds exactly the tensors of ``before`` (from :func:`state_of`)."""
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], before[k]) for k in before)


def unchanged_requirement(what: str, model: nn.Module, before: dict, hint: str) -> Requirement:
    """The requirement every pipeline exercise starts with: ``what`` ("reference MLP") left
    exactly as :func:`state_of` recorded it."""
    kept = unchanged(model, before)
    return Requirement(f"{what} unchanged", "unchanged", "unchanged" if kept else "changed", kept, hint)


def learner_model(exercise: str, function, *args) -> nn.Module:
    """``function(*args)``, the learner's pipeline, which must return an ``nn.Module``."""
    model = call(exercise, function, "the reference model and the training images", *args)
    if not isinstance(model, nn.Module):
        raise AssertionError(
            f"Exercise {exercise}: your function must return the compressed model (an "
            f"nn.Module), got {type(model).__name__}")
    return model


@torch.no_grad()
def predictions(exercise: str, model: nn.Module, test_set, *, channels_last: bool = True) -> torch.Tensor:
    """The class ``model`` (in eval mode) predicts for every image of ``test_set``, in
    batches of 100; a model that cannot run on the images is an AssertionError that says so.
    Images go in as channels_last, which gives convolutional models the same numbers faster
    and is the same tensor for a model that flattens its input."""
    was_training = model.training
    model.eval()
    images = test_set.images
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    try:
        return torch.cat([model(images[i:i + 100]).argmax(dim=1) for i in range(0, len(images), 100)])
    except Exception as error:
        raise AssertionError(
            f"Exercise {exercise}: your model raised {type(error).__name__} on a batch of test "
            f"images of shape {tuple(images[:100].shape)}: {error}") from error
    finally:
        model.train(was_training)


def test_accuracy(exercise: str, model: nn.Module, test_set, **options) -> float:
    """Top-1 accuracy of ``model`` on every image of ``test_set`` (see :func:`predictions`)."""
    predicted = predictions(exercise, model, test_set, **options)
    return (predicted == test_set.labels).double().mean().item()


def check_requirements(exercise: str, requirements: list, verified: str) -> None:
    """Print the requirements as a table, then ``✓ Exercise N.k: <verified>`` when all are
    met, or raise an AssertionError naming the first one that is not, with its hint."""
    rows = [("requirement", "target", "yours", "")] + [
        (r.name, r.target, r.yours, "✓" if r.met else "✗") for r in requirements]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    missed = [r for r in requirements if not r.met]
    if not missed:
        passed(exercise, verified)
        return
    first = missed[0]
    more = (f"\n  ({len(missed) - 1} more not met: {', '.join(r.name for r in missed[1:])})"
            if len(missed) > 1 else "")
    raise AssertionError(
        f"Exercise {exercise}: the requirement '{first.name}' is not met\n"
        f"  expected: {first.target}\n"
        f"  got:      {first.yours}\n"
        f"  hint: {first.hint}{more}")
