"""lrlib.checks, notebook 06: each checker passes the reference answer and fails helpfully
on the typical wrong ones (the message names the case, the expected value and a hint)."""

import pytest
import torch
from torch import nn

from lrlib import blocks, checks
from checker_asserts import fails_with, stub


@pytest.mark.parametrize("checker", [checks.exercise_6_1, checks.exercise_6_2,
                                     checks.exercise_6_3])
def test_unfinished_exercises_raise_not_implemented_and_results_are_type_errors(checker):
    with pytest.raises(NotImplementedError):
        checker(stub)
    with pytest.raises(TypeError, match="pass your function itself"):
        checker(42)


# ------------------------------------------------------------------ Exercise 6.1
def test_exercise_6_1_passes_the_reference_and_einsum(capsys):
    checks.exercise_6_1(blocks.conv1x1_as_matmul)
    checks.exercise_6_1(lambda x, W, b: torch.einsum("oi,bihw->bohw", W, x) + b[:, None, None])
    out = capsys.readouterr().out
    assert out.count("✓ Exercise 6.1") == 2


def _channels_last(x, W, b):
    return x.movedim(1, -1) @ W.T + b


def _no_bias(x, W, b):
    return blocks.conv1x1_as_matmul(x, W)


def _plain_reshape(x, W, b):
    batch, c, h, w = x.shape
    return (x.reshape(batch, h * w, c) @ W.T + b).reshape(batch, -1, h, w)


def _transposed(x, W, b):
    return (x.movedim(1, -1) @ W + b).movedim(-1, 1)


@pytest.mark.parametrize("wrong, hint", [
    (_channels_last, "channels are last"),
    (_no_bias, "add the bias"),
    (_plain_reshape, "mixes pixels and channels"),
    (lambda x, W, b: (W @ x.flatten(2)).sum(), "shape (B, C_out, H, W)"),
    (lambda x, W, b: None, "return the output tensor"),
])
def test_exercise_6_1_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_6_1, wrong, hint, "6.1")


def test_exercise_6_1_names_a_transposed_weight():
    # shapes only allow weight instead of weight.T when C_in == C_out, as in the 2nd case
    with pytest.raises(AssertionError, match="multiply by weight.T|mixes pixels|shape"):
        checks.exercise_6_1(_transposed)


def test_exercise_6_1_reports_the_learners_exception():
    with pytest.raises(AssertionError, match="your function raised RuntimeError"):
        checks.exercise_6_1(lambda x, W, b: x @ W)


# ------------------------------------------------------------------ Exercise 6.2
def fire_params_reference(c, s, e1, e3):
    return (c * s + s) + (s * e1 + e1) + (9 * s * e3 + e3)


def test_exercise_6_2_passes_the_reference(capsys):
    checks.exercise_6_2(fire_params_reference)
    checks.exercise_6_2(blocks.fire_params)
    assert capsys.readouterr().out.count("✓ Exercise 6.2") == 2


@pytest.mark.parametrize("wrong, hint", [
    (lambda c, s, e1, e3: c * s + s * e1 + 9 * s * e3, "add s + e1 + e3"),
    (lambda c, s, e1, e3: s * (c + e1 + e3) + s + e1 + e3, "9·s weights"),
    (lambda c, s, e1, e3: c * s + s + c * e1 + e1 + 9 * c * e3 + e3, "not the input's"),
    (lambda c, s, e1, e3: c * s + s + s * e1 + e1 + 9 * c * e3 + e3, "not the input's"),
    (lambda c, s, e1, e3: 9 * c * (e1 + e3), "count each convolution"),
    (lambda c, s, e1, e3: float(fire_params_reference(c, s, e1, e3)), "return an int"),
])
def test_exercise_6_2_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_6_2, wrong, hint, "6.2")


# ------------------------------------------------------------------ Exercise 6.3
def depthwise_separable_reference(c, n, k, stride, padding):
    return nn.Sequential(nn.Conv2d(c, c, k, stride, padding, groups=c, bias=False),
                         nn.Conv2d(c, n, 1))


def test_exercise_6_3_passes_the_reference_and_lrlib(capsys):
    checks.exercise_6_3(depthwise_separable_reference)
    checks.exercise_6_3(lambda c, n, k, s, p: blocks.DepthwiseSeparableConv2d(c, n, k, s, p))
    assert capsys.readouterr().out.count("✓ Exercise 6.3") == 2


def test_exercise_6_3_leaves_the_learners_module_in_its_mode():
    made = []

    def build(*args):
        made.append(depthwise_separable_reference(*args).train())
        return made[-1]

    checks.exercise_6_3(build)
    assert all(module.training for module in made)


@pytest.mark.parametrize("wrong, hint", [
    (lambda c, n, k, s, p: nn.Conv2d(c, n, k, s, p), "groups=in_channels"),
    (lambda c, n, k, s, p: nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c),
                                         nn.Conv2d(c, n, 1)), "no bias here"),
    (lambda c, n, k, s, p: nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c, bias=False),
                                         nn.Conv2d(c, n, 1, bias=False)), "keeps its bias"),
    (lambda c, n, k, s, p: nn.Sequential(nn.Conv2d(c, c, k, groups=c, bias=False),
                                         nn.Conv2d(c, n, 1, s, p)), "takes kernel_size, stride"),
    (lambda c, n, k, s, p: nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c, bias=False),
                                         nn.ReLU(), nn.Conv2d(c, n, 1)), "nothing (no ReLU"),
    (lambda c, n, k, s, p: nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c, bias=False),
                                         nn.Conv2d(c, n, 1)).forward, "an nn.Module"),
])
def test_exercise_6_3_fails_helpfully(wrong, hint):
    fails_with(checks.exercise_6_3, wrong, hint, "6.3")
