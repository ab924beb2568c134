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

import numpy as np
import torch
from torch import nn

__all__ = [
    "exercise_0_1",
    "exercise_0_2",
    "exercise_1_1",
    "exercise_1_2",
    "exercise_1_3",
    "exercise_2_1",
    "exercise_2_2",
    "exercise_2_3",
    "exercise_2_4",
    "exercise_3_1",
    "exercise_3_2",
    "exercise_3_3",
    "exercise_3_4",
    "exercise_3_5",
    "exercise_4_1",
    "exercise_4_2",
    "exercise_4_3",
    "exercise_4_4",
    "exercise_5_1",
    "exercise_5_2",
    "exercise_5_3",
    "exercise_5_4",
    "exercise_5_5",
    "exercise_6_1",
    "exercise_6_2",
    "exercise_6_3",
    "exercise_7_1",
    "exercise_7_2",
    "exercise_7_3",
    "exercise_7_4",
]


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


# ------------------------------------------------------------------ notebook 01
def exercise_1_1(percentile) -> None:
    """Check ``percentile(samples, q)``: linear interpolation between sorted samples at
    position ``(n - 1) · q / 100`` (numpy's default method)."""
    exercise = "1.1"
    cases = [
        ([5.0, 1.0, 3.0], 50),           # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 50),      # between two samples
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90),
        ([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], 99),
        ([7.0], 95),                     # a single sample
        ([2.0, 8.0], 0),
        ([2.0, 8.0], 100),
    ]
    for samples, q in cases:
        case = f"samples={samples}, q={q}"
        expected = float(np.percentile(samples, q))
        got = _call(exercise, percentile, case, list(samples), q)
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        ordered = sorted(samples)
        nearest_rank = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
        if number is not None and samples != ordered and math.isclose(
                number, float(np.interp((len(samples) - 1) * q / 100,
                                        range(len(samples)), samples))):
            hint = "sort the samples first"
        elif number is not None and math.isclose(number, nearest_rank):
            hint = ("that is the nearest-rank percentile; interpolate linearly between the "
                    "two samples around position (n - 1) * q / 100")
        else:
            hint = ("sort, find the position h = (n - 1) * q / 100, and interpolate between "
                    "the samples at floor(h) and floor(h) + 1")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"percentiles match numpy.percentile on {len(cases)} cases, unsorted "
                      "input and q = 0 and 100 included")


def exercise_1_2(throughput) -> None:
    """Check ``throughput(batch_size, batch_latency_ms)``: items per second when a batch
    of ``batch_size`` items takes ``batch_latency_ms`` milliseconds."""
    exercise = "1.2"
    cases = [(1, 10.0, 100.0), (32, 8.0, 4000.0), (256, 64.0, 4000.0), (8, 0.5, 16000.0)]
    for batch, latency_ms, expected in cases:
        case = f"batch_size={batch}, batch_latency_ms={latency_ms}"
        got = _call(exercise, throughput, case, batch, latency_ms)
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, rel_tol=1e-9):
            continue
        if number is not None and math.isclose(number, expected / 1000):
            hint = "the latency is in milliseconds: 1 s = 1000 ms"
        elif number is not None and math.isclose(number, 1000 / latency_ms):
            hint = "each call processes a whole batch: multiply by batch_size"
        elif number is not None and math.isclose(number, latency_ms / batch):
            hint = "that is the latency per item; throughput is items per second"
        else:
            hint = "items per second = batch_size / (batch_latency_ms / 1000)"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"throughput matches on {len(cases)} batch sizes")


def exercise_1_3(choose_batch_size) -> None:
    """Check ``choose_batch_size(points, p95_budget_ms)``: the ``batch_size`` of the
    point with the highest ``items_per_second`` among those with ``p95_ms`` within the
    budget (equal counts as within), or ``None`` when none is."""
    from .bench import ThroughputPoint

    exercise = "1.3"

    def point(batch, median_ms, p95_ms):
        return ThroughputPoint(batch, median_ms, p95_ms, batch / (median_ms / 1e3))

    curve = [point(1, 1.0, 1.5), point(8, 3.0, 4.0), point(32, 8.0, 10.0),
             point(64, 20.0, 24.0), point(128, 60.0, 70.0)]
    # throughput: 1000, 2667, 4000, 3200, 2133 items/s -- it peaks at batch 32
    cases = [(10.0, 32), (100.0, 32), (9.9, 8), (3.0, 1), (1.0, None), (24.0, 32)]
    for budget, expected in cases:
        case = f"p95_budget_ms={budget} on batch sizes {[p.batch_size for p in curve]}"
        got = _call(exercise, choose_batch_size, case, list(curve), budget)
        if got == expected and (expected is None or not isinstance(got, bool)):
            continue
        allowed = [p.batch_size for p in curve if p.p95_ms <= budget]
        if allowed and got == max(allowed):
            hint = ("the largest allowed batch is not always the fastest: compare "
                    "items_per_second")
        elif got == 128:
            hint = "keep only the points whose p95_ms is within the budget"
        elif expected is None:
            hint = "return None when no batch size meets the budget"
        elif budget in (p.p95_ms for p in curve):
            hint = "a p95 exactly equal to the budget meets it (use <=)"
        else:
            hint = "filter by p95_ms <= budget, then take the point with most items_per_second"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"the right batch size for {len(cases)} budgets (throughput peaks "
                      "before the largest batch; no batch fits the smallest budget)")


# ------------------------------------------------------------------ notebook 02
def exercise_2_1(linear_flops) -> None:
    """Check ``linear_flops(batch, in_features, out_features)``: ``2·b·n·m``, what
    ``lrlib.profile.count_flops`` (PyTorch's FlopCounterMode) counts for nn.Linear."""
    from .profile import count_flops

    exercise = "2.1"
    cases = [(1, 784, 1024), (32, 1024, 512), (256, 512, 10), (3, 5, 7)]
    for batch, n_in, n_out in cases:
        case = f"batch={batch}, in_features={n_in}, out_features={n_out}"
        expected = count_flops(nn.Linear(n_in, n_out), torch.zeros(batch, n_in))
        got = _call(exercise, linear_flops, case, batch, n_in, n_out)
        if _as_number(got) == expected:
            continue
        if got == expected // 2:
            hint = "that counts multiply-adds; a multiply-add is 2 FLOPs"
        elif got == 2 * n_in * n_out:
            hint = "every example in the batch costs the same: multiply by batch"
        else:
            hint = "each of the b·m outputs is a dot product of length n: n multiplies and n adds"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"FLOPs match PyTorch's FLOP counter on {len(cases)} Linear layers")


def exercise_2_2(conv2d_flops) -> None:
    """Check ``conv2d_flops(batch, in_channels, out_channels, kernel_size, height, width,
    stride=1, padding=0, groups=1)`` against ``lrlib.profile.count_flops`` on real
    nn.Conv2d layers."""
    from .profile import count_flops

    exercise = "2.2"
    cases = [
        dict(batch=1, in_channels=3, out_channels=8, kernel_size=3, height=8, width=8),
        dict(batch=2, in_channels=64, out_channels=128, kernel_size=3, height=14, width=14,
             padding=1),
        dict(batch=1, in_channels=16, out_channels=32, kernel_size=3, height=15, width=9,
             stride=2, padding=1),
        dict(batch=4, in_channels=32, out_channels=32, kernel_size=1, height=7, width=7),
        dict(batch=1, in_channels=32, out_channels=64, kernel_size=3, height=10, width=10,
             padding=1, groups=4),
        dict(batch=1, in_channels=32, out_channels=32, kernel_size=5, height=12, width=12,
             stride=1, padding=2, groups=32),
    ]
    for kwargs in cases:
        case = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        conv = nn.Conv2d(kwargs["in_channels"], kwargs["out_channels"], kwargs["kernel_size"],
                         stride=kwargs.get("stride", 1), padding=kwargs.get("padding", 0),
                         groups=kwargs.get("groups", 1))
        x = torch.zeros(kwargs["batch"], kwargs["in_channels"], kwargs["height"], kwargs["width"])
        expected = count_flops(conv, x)
        got = _call(exercise, conv2d_flops, case, **kwargs)
        if _as_number(got) == expected:
            continue
        if kwargs.get("groups", 1) > 1 and got == expected * kwargs["groups"]:
            hint = "with groups, each output channel sees only in_channels / groups inputs"
        elif kwargs.get("stride", 1) > 1 or kwargs.get("padding", 0) > 0:
            hint = "H_out = (H + 2·padding - kernel_size) // stride + 1, and the same for W"
        elif got == expected // 2:
            hint = "that counts multiply-adds; a multiply-add is 2 FLOPs"
        else:
            hint = "2 · batch · C_out · H_out · W_out · (C_in / groups) · k · k"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"FLOPs match PyTorch's FLOP counter on {len(cases)} convolutions "
                      "(stride, padding, groups and depthwise included)")


def exercise_2_3(linear_intensity) -> None:
    """Check ``linear_intensity(batch, in_features, out_features)``: FLOPs per byte in
    float32, ``2·b·n·m / (4·(n·m + m + b·n + b·m))``."""
    from .profile import linear_intensity as reference

    exercise = "2.3"
    cases = [(1, 1024, 1024), (256, 1024, 1024), (1, 784, 1024), (64, 512, 10)]
    for batch, n_in, n_out in cases:
        case = f"batch={batch}, in_features={n_in}, out_features={n_out}"
        expected = reference(batch, n_in, n_out)
        got = _call(exercise, linear_intensity, case, batch, n_in, n_out)
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, rel_tol=1e-9):
            continue
        weights_only = 2 * batch * n_in * n_out / (4 * n_in * n_out)
        if number is not None and math.isclose(number, expected * 4):
            hint = "count bytes, not elements: a float32 is 4 bytes"
        elif number is not None and math.isclose(number, weights_only):
            hint = "the input, the output and the bias are moved too, not only the weights"
        else:
            hint = "FLOPs = 2·b·n·m; bytes = 4·(n·m + m + b·n + b·m)"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"arithmetic intensity matches on {len(cases)} layers, batch 1 and 256 "
                      "included")


def exercise_2_4(fold_batchnorm) -> None:
    """Check ``fold_batchnorm(conv, bn)``: a new nn.Conv2d equal to ``bn(conv(x))`` with
    ``bn`` in eval mode, leaving ``conv`` and ``bn`` unchanged."""
    exercise = "2.4"
    generator = torch.Generator().manual_seed(0)
    for has_bias, stride, padding in [(False, 1, 1), (True, 2, 0)]:
        case = f"Conv2d(4, 6, 3, stride={stride}, padding={padding}, bias={has_bias}) + BatchNorm2d(6)"
        conv = nn.Conv2d(4, 6, 3, stride=stride, padding=padding, bias=has_bias)
        bn = nn.BatchNorm2d(6, eps=1e-3)
        with torch.no_grad():
            for tensor in [conv.weight, bn.weight, bn.bias, bn.running_mean] + (
                    [conv.bias] if has_bias else []):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            bn.running_var.copy_(torch.rand(6, generator=generator) + 0.1)
        bn.eval()
        before = {k: v.clone() for k, v in list(conv.state_dict().items())
                  + [("bn." + k, v) for k, v in bn.state_dict().items()]}
        x = torch.randn(2, 4, 9, 9, generator=generator)
        with torch.no_grad():
            expected = bn(conv(x))
        folded = _call(exercise, fold_batchnorm, case, conv, bn)
        if not isinstance(folded, nn.Conv2d):
            raise _failed(exercise, case, "an nn.Conv2d", type(folded).__name__,
                          "return a new convolution (copy.deepcopy(conv), then set its "
                          "weight and bias)")
        after = {k: v for k, v in list(conv.state_dict().items())
                 + [("bn." + k, v) for k, v in bn.state_dict().items()]}
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            raise _failed(exercise, case, "conv and bn unchanged", f"changed: {changed}",
                          "work on a copy (copy.deepcopy(conv)); never change the caller's layers")
        with torch.no_grad():
            got = folded(x)
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            difference = (got - expected).abs().max().item() if got.shape == expected.shape else None
            if folded.bias is None:
                hint = "the folded convolution needs a bias: b' = s·(b − μ) + β"
            else:
                hint = ("s = γ / sqrt(running_var + eps) per output channel; W' = s·W "
                        "(reshape s to (C_out, 1, 1, 1)); b' = s·(b − μ) + β, with b = 0 "
                        "when the conv has no bias")
            raise _failed(exercise, case, "outputs equal to bn(conv(x)) within 1e-4",
                          f"max abs difference {difference}", hint)
    _passed(exercise, "the folded convolution equals conv followed by BatchNorm (with and "
                      "without conv bias, stride 1 and 2), and the originals are unchanged")


# ------------------------------------------------------------------ notebook 03
def _matrix(m, n, seed):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exercise_3_1(rank_k_approximation) -> None:
    """Check ``rank_k_approximation(W, k)``: the best rank-``k`` approximation
    ``U[:, :k] diag(S[:k]) Vh[:k]`` of ``W``, same shape as ``W``."""
    exercise = "3.1"
    for m, n, k in [(6, 4, 1), (5, 8, 3), (10, 10, 10), (7, 3, 2)]:
        W = _matrix(m, n, seed=m * n + k)
        case = f"a {m}×{n} matrix W (float64), k={k}"
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        expected = U[:, :k] @ torch.diag(S[:k]) @ Vh[:k]
        got = _call(exercise, rank_k_approximation, case, W.clone(), k)
        if not isinstance(got, torch.Tensor) or got.shape != W.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise _failed(exercise, case, f"a tensor of shape {tuple(W.shape)}", shape,
                          "return the approximation itself, U_k @ diag(S_k) @ Vh_k, not the factors")
        if torch.allclose(got.double(), expected, atol=1e-8):
            continue
        error = torch.linalg.matrix_norm(got.double() - expected).item()
        if torch.allclose(got.double(), U[:, :k] @ Vh[:k], atol=1e-8):
            hint = "the singular values are missing: U_k @ torch.diag(S_k) @ Vh_k"
        elif k < min(m, n) and torch.allclose(got.double(), U[:, :k + 1] @ torch.diag(S[:k + 1]) @ Vh[:k + 1], atol=1e-8):
            hint = "that keeps k + 1 terms; slicing [:k] keeps k"
        else:
            hint = ("U, S, Vh = torch.linalg.svd(W, full_matrices=False); keep the first k "
                    "columns of U, entries of S and rows of Vh")
        raise _failed(exercise, case, "the rank-k truncated SVD of W",
                      f"a matrix {error:.3g} away from it (Frobenius)", hint)
    _passed(exercise, "the best rank-k approximation on 4 matrices, wide, tall and full rank")


def exercise_3_2(error_from_singular_values) -> None:
    """Check ``error_from_singular_values(S, k)``: the Frobenius error of the best rank-k
    approximation, ``sqrt(S[k]² + S[k+1]² + …)`` (0-based), from the singular values
    alone (Eckart–Young)."""
    exercise = "3.2"
    cases = [([4.0, 3.0, 0.0], 1, 3.0), ([4.0, 3.0, 0.0], 0, 5.0), ([5.0, 2.0, 2.0, 1.0], 1, 3.0),
             ([5.0, 2.0, 2.0, 1.0], 4, 0.0), ([2.0, 1.0], 2, 0.0)]
    for values, k, expected in cases:
        S = torch.tensor(values, dtype=torch.float64)
        case = f"S={values}, k={k}"
        got = _call(exercise, error_from_singular_values, case, S.clone(), k)
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, abs_tol=1e-9):
            continue
        tail = values[k:]
        if number is not None and math.isclose(number, sum(v * v for v in tail)):
            hint = "take the square root of the sum of squares"
        elif number is not None and tail and math.isclose(number, tail[0]):
            hint = "that is the spectral-norm error S[k]; the Frobenius error uses every dropped value"
        elif number is not None and math.isclose(number, math.sqrt(sum(v * v for v in values[k + 1:]))):
            hint = "indices start at 0: the dropped values are S[k:], not S[k+1:]"
        else:
            hint = "sqrt of the sum of the squares of the dropped singular values S[k:]"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"the Eckart–Young error matches on {len(cases)} cases, k = 0 and full rank included")


def exercise_3_3(break_even_rank) -> None:
    """Check ``break_even_rank(m, n)``: the largest ``r`` with ``r·(m + n) < m·n``."""
    from .svd import break_even_rank as reference

    exercise = "3.3"
    cases = [(1024, 784), (1024, 1024), (512, 10), (2, 2), (100, 100), (7, 9)]
    for m, n in cases:
        case = f"m={m}, n={n}"
        expected = reference((m, n))
        got = _call(exercise, break_even_rank, case, m, n)
        if _as_number(got) == expected and not isinstance(got, float):
            continue
        if _as_number(got) == expected:
            hint = "return an int (use // for integer division)"
        elif got == m * n // (m + n):
            hint = ("at r = mn / (m + n) the factors hold exactly as many numbers as W: no "
                    "saving. The inequality is strict")
        elif got == min(m, n) // 2:
            hint = "the break-even rank depends on both sizes: solve r·(m + n) < m·n for r"
        else:
            hint = "the largest integer r with r·(m + n) < m·n is (m·n − 1) // (m + n)"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"the break-even rank matches on {len(cases)} shapes, exact ties included")


def exercise_3_4(split_linear) -> None:
    """Check ``split_linear(linear, rank)``: an ``nn.Sequential`` of two ``nn.Linear``
    layers (``in → rank`` without bias, then ``rank → out`` with the original bias) whose
    product is the rank-``rank`` truncated SVD of ``linear.weight``; ``linear`` unchanged."""
    from .layers import LowRankLinear

    exercise = "3.4"
    generator = torch.Generator().manual_seed(3)
    for n_in, n_out, rank in [(12, 8, 8), (20, 10, 3), (6, 9, 2)]:
        torch.manual_seed(n_in + n_out)
        linear = nn.Linear(n_in, n_out).double()
        before = {k: v.clone() for k, v in linear.state_dict().items()}
        case = f"nn.Linear({n_in}, {n_out}) in float64, rank={rank}"
        got = _call(exercise, split_linear, case, linear, rank)
        layers = list(got.children()) if isinstance(got, nn.Sequential) else []
        if len(layers) != 2 or not all(isinstance(layer, nn.Linear) for layer in layers):
            raise _failed(exercise, case, "nn.Sequential(nn.Linear, nn.Linear)", got,
                          "return nn.Sequential(first, second) with two nn.Linear layers")
        first, second = layers
        shapes = (tuple(first.weight.shape), tuple(second.weight.shape))
        if shapes != ((rank, n_in), (n_out, rank)):
            raise _failed(exercise, case, f"weights of shapes {((rank, n_in), (n_out, rank))}",
                          shapes, "first maps in_features → rank, second rank → out_features")
        if any(not torch.equal(before[k], v) for k, v in linear.state_dict().items()):
            raise _failed(exercise, case, "linear unchanged", "linear's weights changed",
                          "build new layers; never change the caller's layer")
        x = torch.randn(5, n_in, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            expected = LowRankLinear.from_linear(linear, rank)(x)
            output = got(x)
        if not torch.allclose(output, expected, atol=1e-8):
            if first.bias is not None:
                hint = "the bias is added once, at the end: first has bias=False"
            elif second.bias is None:
                hint = "second must carry the original bias"
            else:
                hint = ("first.weight = diag(S_r) @ Vh_r (or √S·Vh_r), second.weight = U_r (or "
                        "U_r·√S): their product must be the truncated SVD of linear.weight")
            error = (output - expected).abs().max().item()
            raise _failed(exercise, case, "outputs equal to the rank-r factorization",
                          f"max abs difference {error:.3g}", hint)
    _passed(exercise, "two Linear layers reproduce the truncated SVD (full rank equals the "
                      "dense layer), the original is unchanged")


def exercise_3_5(rank_for_energy) -> None:
    """Check ``rank_for_energy(S, energy)``: the smallest ``r`` with
    ``S[:r]² summed ≥ energy × (all S²) summed``."""
    exercise = "3.5"
    S = [3.0, 2.0, 1.0, 1.0, 1.0]  # squares 9, 4, 1, 1, 1 of 16
    cases = [(S, 0.5, 1), (S, 0.8, 2), (S, 0.8125, 2), (S, 0.9, 4), (S, 1.0, 5), ([1.0], 0.3, 1)]
    for values, energy, expected in cases:
        case = f"S={values}, energy={energy}"
        got = _call(exercise, rank_for_energy, case,
                    torch.tensor(values, dtype=torch.float64), energy)
        if _as_number(got) == expected and not isinstance(got, float):
            continue
        by_values = next((r for r in range(1, len(values) + 1)
                          if sum(values[:r]) >= energy * sum(values) - 1e-12), None)
        if got == by_values and by_values != expected:
            hint = "energy is measured by the squares of the singular values"
        elif got == expected - 1:
            hint = "return the number of values kept (a count), not the index of the last one"
        elif got == expected + 1:
            hint = "reaching the target exactly is enough (use >=)"
        else:
            hint = ("cumulative sums of S² divided by their total; the first position where "
                    "that reaches energy, counted from 1")
        if _as_number(got) == expected:
            hint = "return an int"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"the energy rank matches on {len(cases)} cases, exact ties included")


# ------------------------------------------------------------------ notebook 04
def _tensor(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exercise_4_1(unfold) -> None:
    """Check ``unfold(T, mode)``: the mode-n unfolding with Kolda & Bader's column order
    (the earliest remaining mode varies fastest)."""
    from . import tensor

    exercise = "4.1"
    example = torch.arange(1, 25, dtype=torch.float64).reshape(2, 4, 3).permute(2, 1, 0)
    cases = [(example, 0), (example, 1), (example, 2), (_tensor((2, 3, 4, 5), 1), 2),
             (_tensor((3, 4), 2), 1)]
    for T, mode in cases:
        case = f"a tensor of shape {tuple(T.shape)}, mode={mode}"
        expected = tensor.unfold(T, mode)
        got = _call(exercise, unfold, case, T.clone(), mode)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.equal(got, expected):
            continue
        c_order = T.movedim(mode, 0).reshape(T.shape[mode], -1)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.equal(got, c_order):
            hint = ("that is the C-order unfolding (the LAST remaining mode varies fastest); "
                    "Kolda & Bader let the earliest vary fastest: permute to (mode, *reversed(others)) "
                    "before reshaping")
        elif isinstance(got, torch.Tensor) and got.shape != expected.shape:
            hint = f"the unfolding has I_n = {T.shape[mode]} rows and the product of the other sizes as columns"
        else:
            hint = "row i_n holds every entry whose mode-n index is i_n"
        shown = got if not isinstance(got, torch.Tensor) or got.numel() <= 24 else f"a tensor of shape {tuple(got.shape)}"
        raise _failed(exercise, case, expected if expected.numel() <= 24 else "lrlib.tensor.unfold's result",
                      shown, hint)
    _passed(exercise, "unfoldings match Kolda & Bader's worked example and 4-way tensors")


def exercise_4_2(mode_dot) -> None:
    """Check ``mode_dot(T, M, mode)``: ``T ×_n M``, multiplying every mode-n fibre by ``M``
    (shape ``(J, I_n)``); the result has size ``J`` in mode n and the other modes in place."""
    from . import tensor

    exercise = "4.2"
    for shape, mode, rows in [((3, 4, 5), 0, 2), ((3, 4, 5), 1, 6), ((3, 4, 5), 2, 5),
                              ((2, 3, 4, 2), 3, 3)]:
        T, M = _tensor(shape, mode), _tensor((rows, shape[mode]), 10 + mode)
        case = f"T of shape {shape}, M of shape {(rows, shape[mode])}, mode={mode}"
        expected = tensor.mode_dot(T, M, mode)
        got = _call(exercise, mode_dot, case, T.clone(), M.clone(), mode)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got, expected):
            continue
        got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        if isinstance(got, torch.Tensor) and got.shape != expected.shape:
            if got.shape == torch.tensordot(M, T, dims=([1], [mode])).shape:
                hint = "the new mode must go back to position `mode` (torch.movedim)"
            else:
                hint = "the result has the shape of T with size J in mode n"
        else:
            hint = "unfold(result, n) must equal M @ unfold(T, n)"
        raise _failed(exercise, case, f"a tensor of shape {tuple(expected.shape)} equal to T ×_n M",
                      got_shape if got_shape != tuple(expected.shape) else "different values", hint)
    _passed(exercise, "mode-n products match on 3- and 4-way tensors in every mode")


def exercise_4_3(als_update) -> None:
    """Check ``als_update(T, factors, mode)``: the least-squares factor of ``mode`` with the
    others fixed, ``X_(n) (⊙_{k≠n} A^(k)) (∗_{k≠n} A^(k)ᵀA^(k))⁻¹`` (Khatri–Rao of the
    other factors in REVERSED mode order, Kolda & Bader's convention), not normalized."""
    from . import tensor

    exercise = "4.3"
    for shape, rank, mode in [((4, 5, 6), 3, 0), ((4, 5, 6), 2, 1), ((3, 4, 5), 4, 2),
                              ((3, 4, 2, 5), 2, 2)]:
        T = _tensor(shape, sum(shape) + mode)
        factors = [_tensor((size, rank), 20 + k) for k, size in enumerate(shape)]
        case = f"T of shape {shape}, rank {rank}, mode={mode}"
        others = [factors[k] for k in reversed(range(len(shape))) if k != mode]
        gram = torch.ones(rank, rank, dtype=torch.float64)
        for k, factor in enumerate(factors):
            if k != mode:
                gram = gram * (factor.T @ factor)
        mttkrp = tensor.unfold(T, mode) @ tensor.khatri_rao(others)
        expected = mttkrp @ torch.linalg.pinv(gram)
        got = _call(exercise, als_update, case, T.clone(), [f.clone() for f in factors], mode)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got, expected, atol=1e-8):
            continue
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got, mttkrp, atol=1e-8):
            hint = "multiply by the inverse (torch.linalg.pinv) of the Hadamard product of the Gram matrices"
        elif isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(
                got / got.norm(dim=0), expected / expected.norm(dim=0), atol=1e-8):
            hint = "return the factor before normalizing its columns"
        else:
            hint = ("with Kolda & Bader's unfolding the Khatri–Rao product takes the other factors "
                    "from the LAST mode to the first")
        raise _failed(exercise, case, f"a {tuple(expected.shape)} least-squares factor",
                      tuple(got.shape) if isinstance(got, torch.Tensor) else got, hint)
    _passed(exercise, "the ALS update matches the least-squares solution in every mode")


def exercise_4_4(hosvd) -> None:
    """Check ``hosvd(T, ranks)`` → ``(core, factors)``: factors with orthonormal columns
    spanning the leading left singular vectors of each unfolding, and
    ``core = T ×_1 U1ᵀ ×_2 U2ᵀ …``."""
    from . import tensor

    exercise = "4.4"
    for shape, ranks in [((5, 6, 7), (2, 3, 4)), ((4, 4, 3, 3), (2, 3, 3, 3)), ((6, 5), (2, 2))]:
        T = _tensor(shape, sum(ranks))
        case = f"T of shape {shape}, ranks={ranks}"
        got = _call(exercise, hosvd, case, T.clone(), ranks)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise _failed(exercise, case, "a pair (core, factors)", type(got).__name__,
                          "return core, factors")
        core, factors = got
        if tuple(core.shape) != tuple(ranks) or len(factors) != len(shape):
            raise _failed(exercise, case, f"a core of shape {ranks} and {len(shape)} factors",
                          (tuple(core.shape), len(factors)), "one factor per mode, U_n of shape (I_n, R_n)")
        for n, factor in enumerate(factors):
            if not torch.allclose(factor.T @ factor, torch.eye(ranks[n], dtype=factor.dtype), atol=1e-8):
                raise _failed(exercise, case, f"U_{n} with orthonormal columns", "U_nᵀU_n ≠ I",
                              "take left singular vectors (or eigenvectors of X_(n) X_(n)ᵀ)")
        reference = tensor.hosvd(T, ranks)
        got_error = torch.linalg.vector_norm(T - tensor.tucker_to_tensor(core, factors)).item()
        expected_error = torch.linalg.vector_norm(T - reference.to_tensor()).item()
        if not math.isclose(got_error, expected_error, rel_tol=1e-6, abs_tol=1e-10):
            hint = ("keep the LEADING singular vectors of each unfolding (largest singular "
                    "values), and project: core = T ×_n U_nᵀ for every n")
            raise _failed(exercise, case, f"reconstruction error {expected_error:.6f}",
                          f"{got_error:.6f}", hint)
    _passed(exercise, "HOSVD cores and factors reproduce the truncated HOSVD on 3 tensors")


# ------------------------------------------------------------------ notebook 05
def _cp_chain_output(weights4, x, padding):
    """Run the four convolutions of a separable CP chain on ``x``."""
    first, vertical, horizontal, last = weights4
    rank = first.shape[0]
    y = nn.functional.conv2d(x, first)
    y = nn.functional.conv2d(y, vertical, padding=(padding[0], 0), groups=rank)
    y = nn.functional.conv2d(y, horizontal, padding=(0, padding[1]), groups=rank)
    return nn.functional.conv2d(y, last)


def exercise_5_1(cp_chain_weights) -> None:
    """Check ``cp_chain_weights(weights, factors)`` → ``(first, vertical, horizontal,
    last)``: the kernels of the separable CP chain (Lebedev et al. 2015) for the CP kernel
    ``K = Σ_r λ_r a_r^out ∘ a_r^in ∘ a_r^h ∘ a_r^w``, with ``factors = [A_out, A_in, A_h,
    A_w]``: ``first`` ``(R, C_in, 1, 1)``, ``vertical`` ``(R, 1, k_h, 1)``, ``horizontal``
    ``(R, 1, 1, k_w)``, ``last`` ``(C_out, R, 1, 1)``, λ applied once (anywhere). The chain
    must compute the same as one convolution with ``K``."""
    from . import tensor

    exercise = "5.1"
    names = ("first", "vertical", "horizontal", "last")
    for seed, (c_out, c_in, k_h, k_w, rank) in enumerate(
            [(6, 4, 3, 3, 5), (8, 3, 3, 5, 4), (5, 7, 5, 3, 2), (4, 4, 1, 3, 3)]):
        generator = torch.Generator().manual_seed(50 + seed)
        weights = torch.rand(rank, generator=generator, dtype=torch.float64) + 0.5
        factors = [torch.randn(size, rank, generator=generator, dtype=torch.float64)
                   for size in (c_out, c_in, k_h, k_w)]
        x = torch.randn(2, c_in, 7, 6, generator=generator, dtype=torch.float64)
        padding = (k_h // 2, k_w // 2)
        case = (f"λ of shape ({rank},), factors of shapes {[(s, rank) for s in (c_out, c_in, k_h, k_w)]} "
                f"(C_out={c_out}, C_in={c_in}, k_h={k_h}, k_w={k_w}, R={rank})")
        got = _call(exercise, cp_chain_weights, case, weights.clone(), [f.clone() for f in factors])
        if not (isinstance(got, (tuple, list)) and len(got) == 4
                and all(isinstance(t, torch.Tensor) for t in got)):
            raise _failed(exercise, case, "a tuple of four tensors (first, vertical, horizontal, last)",
                          type(got).__name__, "return first, vertical, horizontal, last")
        shapes = [(rank, c_in, 1, 1), (rank, 1, k_h, 1), (rank, 1, 1, k_w), (c_out, rank, 1, 1)]
        for name, tensor_, shape, factor in zip(names, got, shapes, ("A_in", "A_h", "A_w", "A_out")):
            if tuple(tensor_.shape) != shape:
                if name == "last":
                    hint = ("the last 1×1 conv maps R → C_out: its weight is A_out (C_out × R), "
                            "with two trailing 1-sized dimensions: A_out[:, :, None, None]")
                elif name == "first":
                    hint = ("the first 1×1 conv maps C_in → R: its weight is A_inᵀ (R × C_in) with "
                            "two trailing 1-sized dimensions: A_in.T[:, :, None, None]")
                else:
                    hint = (f"a depthwise conv over R channels has weight (R, 1, kernel height, kernel "
                            f"width): {name} is built from {factor}ᵀ, e.g. "
                            + ("A_h.T[:, None, :, None]" if name == "vertical" else "A_w.T[:, None, None, :]"))
                raise _failed(exercise, case, f"{name} of shape {shape}", tuple(tensor_.shape), hint)
        expected = nn.functional.conv2d(x, tensor.cp_to_tensor(weights, factors), padding=padding)
        output = _cp_chain_output([t.double() for t in got], x, padding)
        if torch.allclose(output, expected, atol=1e-8):
            continue
        without = nn.functional.conv2d(x, tensor.cp_to_tensor(None, factors), padding=padding)
        swapped = nn.functional.conv2d(
            x, tensor.cp_to_tensor(weights, factors).transpose(2, 3), padding=padding) \
            if k_h == k_w else None
        if torch.allclose(output, without, atol=1e-8):
            hint = "the weights λ are missing: multiply one factor's columns by λ (e.g. A_out * λ)"
        elif any(torch.allclose(output, nn.functional.conv2d(
                x, tensor.cp_to_tensor(weights ** power, factors), padding=padding), atol=1e-8)
                for power in (2, 3, 4)):
            hint = "λ is applied more than once: put it into ONE factor only"
        elif swapped is not None and torch.allclose(output, swapped, atol=1e-8):
            hint = "vertical (k_h×1) holds A_h and horizontal (1×k_w) holds A_w; you swapped them"
        else:
            hint = ("first = A_inᵀ, vertical = A_hᵀ, horizontal = A_wᵀ, last = A_out·diag(λ), each "
                    "reshaped to a conv weight; column r of every factor belongs to channel r")
        difference = (output - expected).abs().max().item()
        raise _failed(exercise, case, "the chain equal to one conv with the CP kernel",
                      f"max abs difference {difference:.3g}", hint)
    _passed(exercise, "the four kernels reproduce the CP convolution on 4 cases (non-square and "
                      "1-row kernels included)")


def exercise_5_2(chain_flops) -> None:
    """Check ``chain_flops(method, c_in, c_out, kernel_size, rank, hw)``: FLOPs per example
    (multiply-add = 2) of the factorized chain at stride 1 with "same" padding on an
    ``hw = (H, W)`` input, for ``method`` ``"svd"``, ``"tucker2"`` (``rank = (R_in,
    R_out)``), ``"cp-separable"`` and ``"cp-fused"``; as ``lrlib.profile.count_flops``
    counts them on the lrlib layers."""
    from .layers import CPConv2d, SVDConv2d, Tucker2Conv2d

    exercise = "5.2"
    cases = [("svd", 64, 128, 3, 16, (14, 14)), ("tucker2", 64, 128, 3, (24, 49), (14, 14)),
             ("tucker2", 32, 64, 3, (12, 24), (28, 28)), ("cp-separable", 64, 128, 3, 93, (14, 14)),
             ("cp-fused", 128, 256, 3, 187, (7, 7)), ("cp-separable", 16, 8, 5, 7, (9, 11)),
             ("cp-fused", 8, 16, 5, 6, (10, 6)), ("svd", 3, 32, 5, 8, (12, 9))]

    def layer(method, c_in, c_out, k, rank):
        args = (c_in, c_out, k, rank)
        options = {"padding": k // 2, "device": "meta"}
        if method == "svd":
            return SVDConv2d(*args, **options)
        if method == "tucker2":
            return Tucker2Conv2d(*args, **options)
        return CPConv2d(*args, implementation=method[3:], **options)

    for method, c_in, c_out, k, rank, hw in cases:
        case = (f"method={method!r}, c_in={c_in}, c_out={c_out}, kernel_size={k}, rank={rank}, "
                f"hw={hw}")
        expected = layer(method, c_in, c_out, k, rank).flops(hw)
        got = _call(exercise, chain_flops, case, method, c_in, c_out, k, rank, hw)
        if _as_number(got) == expected:
            continue
        pixels = hw[0] * hw[1]
        if method == "tucker2":
            r_in, r_out = rank
            alternatives = {
                "swapped": layer(method, c_in, c_out, k, (r_out, r_in)).flops(hw)
                if r_out <= c_in and r_in <= c_out else None,
                "core only": 2 * pixels * r_in * r_out * k * k}
        elif method.startswith("cp"):
            other = "cp-fused" if method == "cp-separable" else "cp-separable"
            alternatives = {"other cp": layer(other, c_in, c_out, k, rank).flops(hw)}
        else:
            alternatives = {"no c_out": 2 * pixels * rank * c_in * k * k}
        if _as_number(got) == expected // 2:
            hint = "that counts multiply-adds; a multiply-add is 2 FLOPs"
        elif _as_number(got) == expected // pixels:
            hint = "that is per output pixel: multiply by the number of pixels H·W"
        elif got == alternatives.get("swapped"):
            hint = "rank = (R_in, R_out): the first 1×1 conv maps C_in → R_in, the last R_out → C_out"
        elif got == alternatives.get("core only"):
            hint = "count the two 1×1 convolutions too, not only the k×k core"
        elif got == alternatives.get("other cp") and method == "cp-separable":
            hint = ("separable: two depthwise convs, k×1 then 1×k: (k_h + k_w)·R multiply-adds per "
                    "pixel, not k_h·k_w·R")
        elif got == alternatives.get("other cp"):
            hint = "fused: ONE depthwise k×k conv, k_h·k_w·R multiply-adds per pixel, not (k_h + k_w)·R"
        elif got == alternatives.get("no c_out"):
            hint = "the chain has two convs: add the last 1×1 conv R → C_out"
        else:
            hint = {"svd": "2·H·W·R·(C_in·k² + C_out)",
                    "tucker2": "2·H·W·(C_in·R_in + R_in·R_out·k² + R_out·C_out)",
                    "cp-separable": "2·H·W·R·(C_in + 2k + C_out)",
                    "cp-fused": "2·H·W·R·(C_in + k² + C_out)"}[method]
            hint = f"for {method} at stride 1 with same padding: {hint}"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"FLOPs of the SVD, Tucker-2 and both CP chains match lrlib's layers on "
                      f"{len(cases)} cases")


def exercise_5_3(tucker_ranks_for_speedup) -> None:
    """Check ``tucker_ranks_for_speedup(conv, input_hw, speedup)`` → ``(R_in, R_out)``: of
    the pairs ``(max(1, round(t·C_in/m)), max(1, round(t·C_out/m)))``, ``m = max(C_in,
    C_out)``, ``t = 1, 2, …, m``, the last whose Tucker-2 chain needs at most ``1/speedup``
    of the dense convolution's FLOPs on an ``input_hw`` input; ``None`` when none does.
    Equal to ``lrlib.compress.choose_ranks(conv, FlopReduction(speedup),
    method="tucker2", input_hw=input_hw)``."""
    from .compress import FlopReduction, _candidates, choose_ranks
    from .layers import Tucker2Conv2d, conv_flops

    exercise = "5.3"
    cases = [((64, 128, 3, 1, 1), (14, 14), 4), ((32, 64, 3, 1, 1), (28, 28), 2),
             ((128, 256, 3, 1, 1), (7, 7), 8), ((48, 96, 3, 2, 1), (16, 16), 4),
             ((96, 40, 3, 1, 1), (10, 10), 3), ((16, 16, 3, 1, 1), (8, 8), 100)]
    for (c_in, c_out, k, stride, padding), hw, speedup in cases:
        torch.manual_seed(c_in + c_out)
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False)
        case = (f"Conv2d({c_in}, {c_out}, {k}, stride={stride}, padding={padding}) on a {hw} "
                f"input, speedup={speedup}")
        expected = choose_ranks(conv, FlopReduction(speedup), method="tucker2", input_hw=hw)
        got = _call(exercise, tucker_ranks_for_speedup, case, conv, hw, speedup)
        if got is None and expected is None:
            continue
        if isinstance(got, (tuple, list)) and len(got) == 2 and expected is not None \
                and all(isinstance(r, int) and not isinstance(r, bool) for r in got) \
                and tuple(got) == tuple(expected):
            continue
        dense = conv_flops(conv, hw)
        budget = dense / speedup

        def chain(ranks):
            return Tucker2Conv2d(c_in, c_out, k, ranks, stride=stride, padding=padding,
                                 device="meta").flops(hw)

        candidates = _candidates("tucker2", (c_out, c_in, k, k))
        if expected is None:
            hint = ("even ranks (1, 1) need more than 1/speedup of the dense FLOPs here: return "
                    "None when no pair is fast enough")
        elif got is None:
            hint = "some pair is fast enough here; return it"
        elif not (isinstance(got, (tuple, list)) and len(got) == 2):
            hint = "return a pair (R_in, R_out)"
        elif not all(isinstance(r, int) and not isinstance(r, bool) for r in got):
            hint = "return ints (round, then int(...))"
        elif tuple(got) == tuple(expected)[::-1]:
            hint = "the order is (R_in, R_out): R_in belongs to the C_in input channels"
        elif stride > 1:
            hint = ("with stride 2 the first 1×1 conv runs at the INPUT size H×W and the k×k core "
                    "and last 1×1 at the OUTPUT size; the dense conv runs at the output size")
        elif tuple(got) in candidates and candidates.index(tuple(got)) == candidates.index(tuple(expected)) + 1:
            hint = (f"the chain at your ranks needs {chain(tuple(got)):,} FLOPs, more than dense/"
                    f"speedup = {budget:,.0f}: keep the LAST pair within the budget")
        elif tuple(got) in candidates and candidates.index(tuple(got)) < candidates.index(tuple(expected)):
            hint = ("a larger pair still fits the budget: take the last candidate whose FLOPs are "
                    "<= dense FLOPs / speedup")
        elif tuple(got) in candidates and candidates.index(tuple(got)) > candidates.index(tuple(expected)):
            hint = ("your ranks are too large: count all three convolutions of the chain, "
                    "C_in·R_in·H·W + (R_in·R_out·k² + R_out·C_out)·H_out·W_out (times 2)")
        else:
            hint = ("scan t = 1 … max(C_in, C_out) with R_in = max(1, round(t·C_in/m)), R_out = "
                    "max(1, round(t·C_out/m)) and keep the last pair within the FLOP budget")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"Tucker-2 ranks match lrlib's FlopReduction rule on {len(cases)} layers "
                      "(stride 2 and an unreachable speedup included)")


def exercise_5_4(end_to_end_speedup) -> None:
    """Check ``end_to_end_speedup(times_ms, speedups)``: the whole model's speedup when each
    part ``name`` of ``times_ms`` (milliseconds per call, every part of the model) runs
    ``speedups.get(name, 1)`` times faster (Amdahl's law): ``Σ t / Σ t/s``; a speedup of
    ``inf`` makes a part free."""
    exercise = "5.4"
    inf = float("inf")
    cases = [
        ({"conv": 6.0, "bn": 2.0, "rest": 2.0}, {"conv": 3.0, "bn": 2.0}, 2.0),
        ({"conv": 6.0, "rest": 4.0}, {"conv": inf}, 2.5),
        ({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 2.0, "c": 3.0}, 6.0 / 3.5),
        ({"a": 5.0, "b": 5.0}, {}, 1.0),
        ({"conv2": 10.0, "conv3": 5.0, "bn": 3.0, "pool": 2.0}, {"conv2": 4.0, "conv3": 0.5}, 20.0 / 17.5),
    ]
    for times, speedups, expected in cases:
        case = f"times_ms={times}, speedups={speedups}"
        got = _call(exercise, end_to_end_speedup, case, dict(times), dict(speedups))
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, rel_tol=1e-9):
            continue
        mean_speedup = sum(speedups.values()) / len(speedups) if speedups else 1.0
        changed_only = (sum(times[n] for n in speedups) / sum(times[n] / speedups[n] for n in speedups)
                        if speedups else 1.0)
        if number is not None and math.isclose(number, mean_speedup):
            hint = ("averaging the speedups ignores how long each part takes: divide the total "
                    "time before by the total time after")
        elif number is not None and math.isclose(number, changed_only):
            hint = ("the parts that are not sped up still take their time: sum over ALL parts of "
                    "times_ms (speedup 1 where none is given)")
        elif number is not None and math.isclose(number, 1 / expected):
            hint = "speedup = time before / time after (greater than 1 when faster)"
        else:
            hint = "Σ t_i / Σ (t_i / s_i), with s_i = speedups.get(name, 1); t/inf is 0"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"Amdahl's law matches on {len(cases)} cases (a free part and a slower "
                      "part included)")


def exercise_5_5(sensitivity) -> None:
    """Check ``sensitivity(model, data, layer_names, rules)`` → ``{(name, rule): drop}``:
    for each layer alone and each rank rule, the accuracy drop ``baseline − accuracy`` when
    only that layer is factorized (``compress(model, rank={name: rule})``, method
    ``"auto"``), everything else dense; ``model`` unchanged. Compared with
    ``lrlib.compress.sensitivity_scan`` on the reference CNN and 200 test images."""
    from .compress import compress, sensitivity_scan
    from .data import fashion_mnist
    from .models import load_reference
    from .train import evaluate

    exercise = "5.5"
    model = load_reference("cnn")
    test = fashion_mnist("test")
    subset = (test.images[:200], test.labels[:200])
    layer_names, rules = ["conv2", "conv3"], [0.05, 0.1]
    case = f"the reference CNN, 200 test images, layer_names={layer_names}, rules={rules}"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = _call(exercise, sensitivity, case, model, subset, list(layer_names), list(rules))
    after = model.state_dict()
    if set(after) != set(before) or any(not torch.equal(before[k], after[k]) for k in before):
        raise _failed(exercise, case, "the model unchanged", "the model's weights or layers changed",
                      "compress works on a copy unless inplace=True: do not pass inplace=True, and "
                      "do not change the model yourself")
    scan = sensitivity_scan(model, subset, rules=rules, include=layer_names)
    expected = {(row["layer"], row["rule"]): row["drop"] for row in scan.rows}
    if not isinstance(got, dict) or set(got) != set(expected):
        keys = sorted(got, key=str) if isinstance(got, dict) else type(got).__name__
        raise _failed(exercise, case, f"a dict with keys {sorted(expected)}", keys,
                      "one entry per (layer name, rule) pair, e.g. result[('conv3', 0.05)]")
    tolerance = 1.5 / len(subset[1])  # one image, in case evaluation batches differ
    for key, drop in expected.items():
        value = _as_number(got[key])
        if value is not None and math.isclose(value, drop, abs_tol=tolerance):
            continue
        accuracy = scan.baseline - drop
        all_layers, _ = compress(model, rank=key[1], measure=False)
        everywhere = scan.baseline - evaluate(all_layers, subset).accuracy
        if value is not None and math.isclose(value, accuracy, abs_tol=tolerance):
            hint = "return the DROP, baseline accuracy − accuracy after compressing, not the accuracy"
        elif value is not None and math.isclose(value, -drop, abs_tol=tolerance) and drop != 0:
            hint = "the drop is baseline − compressed accuracy (positive when accuracy falls)"
        elif value is not None and math.isclose(value, everywhere, abs_tol=tolerance):
            hint = ("factorize ONE layer at a time: compress(model, rank={name: rule}) leaves every "
                    "other layer dense")
        else:
            hint = ("for each layer and rule: compressed, _ = compress(model, rank={name: rule}, "
                    "measure=False); drop = evaluate(model, data).accuracy − evaluate(compressed, "
                    "data).accuracy")
        raise _failed(exercise, case + f", entry {key}", drop, got[key], hint)
    _passed(exercise, f"accuracy drops match lrlib's sensitivity scan for {len(expected)} "
                      "(layer, rule) pairs, and the model is unchanged")


# ------------------------------------------------------------------ notebook 06
def exercise_6_1(conv1x1_as_matmul) -> None:
    """Check ``conv1x1_as_matmul(x, weight, bias)``: a 1×1 convolution computed as a matrix
    product at every pixel, for ``x`` of shape ``(B, C_in, H, W)``, ``weight`` of shape
    ``(C_out, C_in)`` and ``bias`` of shape ``(C_out,)``; the result, of shape
    ``(B, C_out, H, W)``, must equal ``F.conv2d(x, weight[:, :, None, None], bias)``."""
    exercise = "6.1"
    cases = [(2, 3, 5, 4, 6), (1, 8, 8, 7, 7), (3, 16, 4, 5, 2), (1, 1, 2, 1, 1)]
    for seed, (batch, c_in, c_out, h, w) in enumerate(cases):
        generator = torch.Generator().manual_seed(60 + seed)
        x = torch.randn(batch, c_in, h, w, generator=generator, dtype=torch.float64)
        weight = torch.randn(c_out, c_in, generator=generator, dtype=torch.float64)
        bias = torch.randn(c_out, generator=generator, dtype=torch.float64)
        case = f"x of shape {tuple(x.shape)}, weight of shape {tuple(weight.shape)}, with bias"
        expected = nn.functional.conv2d(x, weight[:, :, None, None], bias)
        got = _call(exercise, conv1x1_as_matmul, case, x.clone(), weight.clone(), bias.clone())
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(
                got.double(), expected, atol=1e-6):
            continue
        if not isinstance(got, torch.Tensor):
            raise _failed(exercise, case, f"a tensor of shape {tuple(expected.shape)}",
                          type(got).__name__, "return the output tensor")
        no_bias = expected - bias[:, None, None]
        per_pixel = expected.permute(0, 2, 3, 1)
        if got.shape == per_pixel.shape and torch.allclose(got.double(), per_pixel, atol=1e-6):
            hint = ("the values are right but the channels are last: move them back to "
                    "dimension 1 (movedim(-1, 1) or permute(0, 3, 1, 2))")
        elif got.shape != expected.shape:
            hint = (f"the output has shape (B, C_out, H, W) = {tuple(expected.shape)}; move the "
                    "channels last (x.movedim(1, -1)), multiply by weight.T, move them back")
        elif torch.allclose(got.double(), no_bias, atol=1e-6):
            hint = "add the bias: one number per output channel, the same at every pixel"
        elif c_in == c_out and torch.allclose(
                got.double(), nn.functional.conv2d(x, weight.T[:, :, None, None], bias), atol=1e-6):
            hint = ("output channel o is Σ_i weight[o, i]·x[:, i]: with the channels last, "
                    "multiply by weight.T, not by weight")
        else:
            hint = ("x.reshape(B, H·W, C_in) mixes pixels and channels, because the channels "
                    "are not the last axis: use movedim or permute first, or einsum")
        raise _failed(exercise, case, "a tensor equal to the 1×1 convolution",
                      "a tensor of the same shape with other values"
                      if got.shape == expected.shape else tuple(got.shape), hint)
    _passed(exercise, f"equal to nn.functional.conv2d with a 1×1 kernel on {len(cases)} cases")


def exercise_6_2(fire_params) -> None:
    """Check ``fire_params(in_channels, squeeze, expand1x1, expand3x3)``: the parameters of
    a Fire module (Iandola et al. 2016), biases included, as ``lrlib.profile.count_params``
    counts them on ``lrlib.blocks.Fire``."""
    from .blocks import Fire
    from .profile import count_params

    exercise = "6.2"
    cases = [(96, 16, 64, 64), (512, 64, 256, 256), (16, 4, 8, 24), (10, 3, 5, 2)]
    for c, s, e1, e3 in cases:
        case = f"in_channels={c}, squeeze={s}, expand1x1={e1}, expand3x3={e3}"
        expected = count_params(Fire(c, s, e1, e3))
        got = _call(exercise, fire_params, case, c, s, e1, e3)
        if _as_number(got) == expected and not isinstance(got, float):
            continue
        biases = s + e1 + e3
        if _as_number(got) == expected and isinstance(got, float):
            hint = "return an int (a count), e.g. with int(...) or integer arithmetic"
        elif got == expected - biases:
            hint = "each of the three convolutions has a bias: add s + e1 + e3"
        elif got in (s * (c + e1 + e3) + biases, s * (c + e1 + e3)):
            hint = "the expand3x3 filters are 3×3: each of the e3 filters has 9·s weights"
        elif got in (c * s + c * e1 + 9 * c * e3 + biases, c * s + s * e1 + 9 * c * e3 + biases,
                     c * s + c * e1 + 9 * c * e3, c * s + s * e1 + 9 * c * e3):
            hint = "both expand layers read the squeeze layer's s channels, not the input's"
        else:
            hint = ("count each convolution as (in · out · k² weights) + out biases: squeeze "
                    "C_in → s (1×1), expand1x1 s → e1 (1×1), expand3x3 s → e3 (3×3)")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"parameter counts match lrlib.blocks.Fire on {len(cases)} Fire modules, "
                      "SqueezeNet's fire2 and fire9 included")


def _find_convs(module: nn.Module) -> list:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def exercise_6_3(depthwise_separable) -> None:
    """Check ``depthwise_separable(in_channels, out_channels, kernel_size, stride,
    padding)``: an ``nn.Module`` made of a depthwise convolution (``groups=in_channels``,
    no bias, carrying the kernel size, stride and padding) followed by a pointwise 1×1
    convolution with bias, equal to ``lrlib.blocks.DepthwiseSeparableConv2d``."""
    from .blocks import DepthwiseSeparableConv2d, separable_params
    from .profile import count_params

    exercise = "6.3"
    cases = [(8, 16, 3, 1, 1), (6, 10, 3, 2, 1), (4, 12, 5, 1, 2), (16, 8, 3, 2, 0),
             (3, 5, 1, 1, 0)]
    for seed, (c, n, k, stride, padding) in enumerate(cases):
        case = f"in_channels={c}, out_channels={n}, kernel_size={k}, stride={stride}, padding={padding}"
        block = _call(exercise, depthwise_separable, case, c, n, k, stride, padding)
        if not isinstance(block, nn.Module):
            raise _failed(exercise, case, "an nn.Module", type(block).__name__,
                          "return the module, e.g. nn.Sequential(depthwise, pointwise)")
        x = torch.randn(2, c, 11, 9, generator=torch.Generator().manual_seed(63 + seed))
        reference = DepthwiseSeparableConv2d(c, n, k, stride=stride, padding=padding)
        with torch.no_grad():
            expected_shape = reference(x).shape
        was_training = block.training
        block.eval()
        try:
            with torch.no_grad():
                got = _call(exercise, block, f"{case}, calling your block on x of shape "
                            f"{tuple(x.shape)}", x)
        finally:
            block.train(was_training)
        if not isinstance(got, torch.Tensor) or got.shape != expected_shape:
            raise _failed(exercise, case, f"an output of shape {tuple(expected_shape)}",
                          tuple(got.shape) if isinstance(got, torch.Tensor) else got,
                          "the depthwise convolution takes kernel_size, stride and padding; "
                          "the pointwise one is 1×1 with stride 1 and no padding")
        expected_params = separable_params(c, n, k)
        got_params = count_params(block)
        if got_params != expected_params:
            if got_params == c * n * k * k + n:
                hint = ("that is a dense convolution's count: the depthwise convolution needs "
                        "groups=in_channels and out_channels=in_channels")
            elif got_params == expected_params + c:
                hint = "the depthwise convolution has no bias here (bias=False)"
            elif got_params == expected_params - n:
                hint = "the pointwise convolution keeps its bias"
            else:
                hint = ("depthwise: nn.Conv2d(C_in, C_in, k, stride, padding, groups=C_in, "
                        "bias=False); pointwise: nn.Conv2d(C_in, C_out, 1)")
            raise _failed(exercise, case, f"{expected_params:,} parameters", f"{got_params:,}", hint)
        convs = _find_convs(block)
        depthwise = [m for m in convs if m.groups == c and m.out_channels == c
                     and m.kernel_size == (k, k)]
        pointwise = [m for m in convs if m.kernel_size == (1, 1) and m.groups == 1
                     and m.out_channels == n]
        if len(convs) != 2 or not depthwise or not pointwise:
            raise _failed(exercise, case, "two nn.Conv2d: depthwise, then pointwise",
                          [f"Conv2d({m.in_channels}, {m.out_channels}, {m.kernel_size}, "
                           f"groups={m.groups})" for m in convs],
                          "build exactly two convolutions, the depthwise one first")
        placement = (depthwise[0].stride, depthwise[0].padding, pointwise[0].stride,
                     pointwise[0].padding)
        if placement != ((stride, stride), (padding, padding), (1, 1), (0, 0)):
            raise _failed(exercise, case,
                          f"depthwise stride {stride} and padding {padding}; pointwise 1 and 0",
                          f"depthwise stride {depthwise[0].stride[0]} and padding "
                          f"{depthwise[0].padding[0]}; pointwise {pointwise[0].stride[0]} and "
                          f"{pointwise[0].padding[0]}",
                          "the depthwise convolution takes kernel_size, stride and padding; "
                          "the pointwise one is 1×1 with stride 1 and no padding")
        with torch.no_grad():
            reference.depthwise.weight.copy_(depthwise[0].weight)
            reference.pointwise.weight.copy_(pointwise[0].weight)
            reference.pointwise.bias.copy_(pointwise[0].bias)
            expected = reference(x)
        if not torch.allclose(got, expected, atol=1e-5):
            raise _failed(exercise, case, "pointwise(depthwise(x))", "other values",
                          "apply the depthwise convolution first and the pointwise one to its "
                          "output, with nothing (no ReLU, no BatchNorm) in between")
    _passed(exercise, f"shapes, parameter counts and outputs match "
                      f"lrlib.blocks.DepthwiseSeparableConv2d on {len(cases)} cases")


# ---- notebook 07
def _agreement_cases():
    """(description, logits_a, logits_b) for Exercise 7.1. No shape is square, so that an
    argmax over the wrong dimension gives another answer; the first case separates every
    typical mistake from the right answer."""
    generator = torch.Generator().manual_seed(71)
    scaled = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    a = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    b = a + 0.01 * torch.randn(6, 4, generator=generator, dtype=torch.float64)
    for row in (1, 4):                                       # move two predictions elsewhere
        b[row, (int(a[row].argmax()) + 1) % 4] = a[row].max() + 1.0
    ties = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 1.0], [0.5, 0.5, 0.5]],
                        dtype=torch.float64)
    eye = torch.eye(7, dtype=torch.float64)
    return [
        ("5 images, 3 classes",
         torch.tensor([[0.1, 2.0, 0.3], [1.5, 0.2, 0.1], [0.0, 0.1, 0.9], [0.3, 0.2, 0.1],
                       [0.2, 0.9, 0.8]], dtype=torch.float64),
         torch.tensor([[0.0, 1.0, 0.2], [0.1, 0.3, 2.0], [0.2, 0.1, 3.0], [2.0, 0.1, 0.0],
                       [0.4, 0.1, 0.3]], dtype=torch.float64)),
        ("3 images, 5 classes, model B's logits = 10 × model A's", scaled, 10 * scaled),
        ("6 images, 4 classes, slightly different logits, 2 predictions changed", a, b),
        ("4 images, 3 classes, tied largest logits, tied the same way in both models",
         ties, 2 * ties + 1),
        ("2 images, 7 classes, no prediction agrees", eye[:2], eye[[3, 5]]),
    ]


def _close(a, b) -> bool:
    """Equal up to float32 rounding (learners often average in float32)."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def exercise_7_1(top1_agreement) -> None:
    """Check ``top1_agreement(logits_a, logits_b)``: the fraction, in ``[0, 1]``, of rows
    (images) on which two models predict the same class, i.e. whose ``argmax`` over the
    classes (dimension 1) is the same. Both tensors have shape ``(N, classes)``."""
    exercise = "7.1"
    for case, logits_a, logits_b in _agreement_cases():
        expected = (logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).double().mean().item()
        got = _call(exercise, top1_agreement, case, logits_a.clone(), logits_b.clone())
        number = _as_number(got)
        if number is not None and math.isclose(number, expected, abs_tol=1e-6):
            continue
        n = len(logits_a)
        entries = (logits_a == logits_b).double().mean().item()
        wrong_dim = (logits_a.argmax(dim=0) == logits_b.argmax(dim=0)).double().mean().item()
        if number is None:
            hint = "return one number, e.g. with .item() on a one-element tensor"
        elif _close(number, expected * n) and expected != 0:
            hint = "you returned the number of agreeing rows; divide by the number of rows"
        elif _close(number, 100 * expected) and expected != 0:
            hint = "return a fraction in [0, 1], not a percentage"
        elif _close(number, entries):
            hint = ("compare the predicted classes, logits_a.argmax(dim=1) == "
                    "logits_b.argmax(dim=1), not the logits themselves: two models agree when "
                    "their largest logits are at the same index, whatever their values")
        elif _close(number, wrong_dim):
            hint = ("take the argmax over the classes, dim=1 (one prediction per row), not over "
                    "the images, dim=0")
        elif _close(number, 1 - expected):
            hint = ("you returned the fraction of rows that DISAGREE: count the rows whose "
                    "predicted classes are equal")
        else:
            hint = ("predictions = logits.argmax(dim=1) for each model; the agreement is the "
                    "mean of (predictions_a == predictions_b) as a float")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, "top-1 agreement matches on 5 cases (rescaled logits, tied logits and no "
                      "agreement included)")


def _scan_rows(layer, entries):
    """SensitivityScan rows for one layer from (rule, rank, params_after, drop) tuples."""
    return [{"layer": layer, "rule": rule, "rank": rank, "params_after": params,
             "accuracy": 0.9 - drop, "drop": drop} for rule, rank, params, drop in entries]


def _scan_cases():
    """(description, rows, max_drop) for Exercise 7.2."""
    from .compress import Energy

    return [
        ("two layers, three rules each, max_drop=0.02",
         _scan_rows("conv2", [(0.1, (3, 6), 1_050, 0.08), (0.25, (8, 16), 2_560, 0.015),
                              (0.5, (16, 32), 5_120, 0.004)])
         + _scan_rows("conv3", [(0.5, (32, 64), 20_480, 0.001), (0.1, (6, 13), 3_972, 0.01),
                                (0.25, (16, 32), 8_192, -0.002)]), 0.02),
        ("a drop exactly equal to max_drop=0.02 (it is allowed: drop ≤ max_drop)",
         _scan_rows("conv4", [(0.1, (13, 26), 12_000, 0.02), (0.25, (32, 64), 30_000, 0.01),
                              (0.5, (64, 128), 60_000, 0.0)])
         + _scan_rows("conv2", [(0.1, (3, 6), 1_050, 0.0), (0.25, (8, 16), 2_560, 0.0)]), 0.02),
        ("conv2 has no rule within max_drop=0.01 (it stays dense, so it is left out)",
         _scan_rows("conv2", [(0.1, (3, 6), 1_050, 0.3), (0.25, (8, 16), 2_560, 0.05)])
         + _scan_rows("conv3", [(0.25, (16, 32), 8_192, 0.005), (0.5, (32, 64), 20_480, 0.0)]),
         0.01),
        ("fc: the rule 0.01 left it dense (rank None, drop 0), the rule 0.25 drops 0.05; "
         "max_drop=0.02",
         _scan_rows("fc", [(0.01, None, 2_570, 0.0), (0.25, 2, 554, 0.05)])
         + _scan_rows("conv4", [(0.1, (13, 26), 12_000, 0.01)]), 0.02),
        ("conv3: the rules 0.25 and Energy(0.8) give the same parameter count (the first "
         "row wins, as min() keeps the first of equals); max_drop=0.02",
         _scan_rows("conv3", [(0.5, (32, 64), 20_480, 0.0), (0.25, (16, 32), 8_192, 0.01),
                              (Energy(0.8), (16, 32), 8_192, 0.0), (0.1, (6, 13), 3_972, 0.04)]),
         0.02),
    ]


def exercise_7_2(choose_ranks_from_scan) -> None:
    """Check ``choose_ranks_from_scan(rows, max_drop)`` → ``{layer: rule}``: for each layer,
    the rule with the fewest ``params_after`` among its rows with ``rank`` not None and
    ``drop <= max_drop`` (the first such row when several have the same count); layers with
    no such row are left out. ``rows`` are the dicts of ``SensitivityScan.rows`` (keys
    ``layer``, ``rule``, ``rank``, ``params_after``, ``accuracy``, ``drop``). Compared with
    ``lrlib.compress.SensitivityScan.choose``."""
    import copy

    from .compress import SensitivityScan

    exercise = "7.2"
    for case, rows, max_drop in _scan_cases():
        expected = SensitivityScan(0.9, copy.deepcopy(rows)).choose(max_drop)
        got = _call(exercise, choose_ranks_from_scan, case, copy.deepcopy(rows), max_drop)
        if isinstance(got, dict) and got == expected:
            continue
        layers = list(dict.fromkeys(row["layer"] for row in rows))
        if not isinstance(got, dict):
            raise _failed(exercise, case, expected, got, "return a dict {layer name: rule}")

        def rows_of(layer, usable):
            return [row for row in rows if row["layer"] == layer
                    and (row["rank"] is not None or not usable)]

        def pick(rule_of, usable=True, compare=lambda d: d <= max_drop):
            choice = {}
            for layer in layers:
                good = [row for row in rows_of(layer, usable) if compare(row["drop"])]
                if good:
                    choice[layer] = rule_of(good)
            return choice

        def fewest(good):
            return min(good, key=lambda row: row["params_after"])["rule"]

        def last_of_fewest(good):
            return min(reversed(good), key=lambda row: row["params_after"])["rule"]

        ranks = {layer: next(row["rank"] for row in rows if row["layer"] == layer
                             and row["rule"] == rule) for layer, rule in expected.items()}
        if got == ranks:
            hint = "map each layer to its rule (row['rule']), not to the rank that rule gave"
        elif got == pick(lambda good: min(good, key=lambda row: row["drop"])["rule"]):
            hint = ("among the rules within max_drop, take the one with the FEWEST parameters "
                    "(params_after), not the one with the smallest drop")
        elif got == pick(lambda good: max(good, key=lambda row: row["params_after"])["rule"]):
            hint = ("you took the largest rank within max_drop; the point is to compress as much "
                    "as allowed: take the fewest params_after")
        elif got == pick(lambda good: good[0]["rule"]):
            hint = ("the rows are not sorted by size: of the rules within max_drop take the one "
                    "with the fewest params_after, not the first one listed")
        elif got == pick(fewest, compare=lambda d: d < max_drop):
            hint = "a drop equal to max_drop is allowed: keep rows with drop <= max_drop"
        elif got == pick(fewest, usable=False):
            hint = ("skip rows whose rank is None: compress could not apply that rule and left "
                    "the layer dense, so there is nothing to choose")
        elif got == pick(last_of_fewest):
            hint = ("two rules have the same params_after: keep the FIRST of them in the rows' "
                    "order, as min() does (a loop with <= keeps the last)")
        elif set(got) > set(expected):
            extra = sorted(set(got) - set(expected))
            hint = (f"no usable rule of {extra} has drop <= max_drop: leave such layers out of "
                    "the dict (they stay dense), do not map them to None or to another rule")
        else:
            hint = ("for each layer: keep its rows with rank not None and drop <= max_drop; if "
                    "any, take min(rows, key=lambda row: row['params_after'])['rule']")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, "choices match lrlib's SensitivityScan.choose on 5 scans (a drop equal to "
                      "max_drop, a layer left dense, a rule with rank None and equal parameter "
                      "counts included)")


def exercise_7_3(int8_linear_bytes) -> None:
    """Check ``int8_linear_bytes(in_features, out_features, bias=True)``: the bytes that the
    numbers of a dynamically quantized ``nn.Linear`` take, by the course's definition: one
    byte per int8 weight, 4 bytes per float32 bias (when ``bias``), and one float32 scale
    plus one int32 zero point for the whole weight tensor (per-tensor quantization), that
    is ``in·out + 4·out·bias + 8``, as an int."""
    exercise = "7.3"
    cases = [(784, 1024, True), (512, 10, True), (256, 10, False), (1, 1, True), (1024, 512, False)]
    for n_in, n_out, bias in cases:
        case = f"in_features={n_in}, out_features={n_out}, bias={bias}"
        weights, biases = n_in * n_out, (4 * n_out if bias else 0)
        expected = weights + biases + 8
        got = _call(exercise, int8_linear_bytes, case, n_in, n_out, bias=bias)
        number = _as_number(got)
        if number == expected and isinstance(number, int):
            continue
        if number == expected:
            hint = "return an int (a count of bytes), e.g. with int(...) or integer arithmetic"
        elif number in (weights + biases, weights + biases + 4):
            hint = ("add the quantization parameters: one float32 scale (4 bytes) and one int32 "
                    "zero point (4 bytes) for the whole weight tensor")
        elif number in (4 * weights + biases + 8, 4 * weights + biases,
                        4 * (weights + n_out * bias) + 8):
            hint = "an int8 weight takes 1 byte; 4 bytes per weight is float32, the model before"
        elif bias and number in (weights + n_out + 8, weights + n_out):
            hint = "the bias is not quantized: it stays float32, 4 bytes per output"
        elif bias and number == weights + 8:
            hint = "bias=True: add the float32 bias, 4 bytes per output feature"
        elif not bias and number == weights + 4 * n_out + 8:
            hint = "bias=False: the layer has no bias, so no bias bytes"
        elif number in (weights + biases + 8 * n_out, weights + biases + 4 * n_out):
            hint = ("dynamic quantization here is per tensor: ONE scale and ONE zero point for "
                    "the whole weight matrix, not one per output channel")
        elif number == 8 * expected:
            hint = "count bytes, not bits"
        else:
            hint = "in_features·out_features (1 byte each) + 4·out_features if bias + 8"
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, f"int8 byte counts match on {len(cases)} Linear layers (with and without "
                      "bias)")


def _pareto_cases():
    """(description, points, expected front) for Exercise 7.4; points map a name to
    ``(latency_ms, accuracy)``."""
    return [
        ("4 models, one dominated",
         {"dense": (10.0, 0.90), "tucker 4x": (5.0, 0.89), "cp 4x": (6.0, 0.85),
          "tucker 8x": (3.0, 0.80)},
         ["tucker 8x", "tucker 4x", "dense"]),
        ("equal latency: the less accurate of the two is dominated",
         {"a": (5.0, 0.88), "b": (5.0, 0.90), "c": (8.0, 0.91), "d": (2.0, 0.70)},
         ["d", "b", "c"]),
        ("equal accuracy: the slower of the two is dominated",
         {"slow": (6.0, 0.9), "fast": (4.0, 0.9), "tiny": (1.0, 0.5)},
         ["tiny", "fast"]),
        ("two identical points: neither is strictly better, so both stay",
         {"p": (3.0, 0.8), "q": (3.0, 0.8), "r": (4.0, 0.7), "s": (7.0, 0.95)},
         ["p", "q", "s"]),
        ("a single model", {"only": (1.0, 0.5)}, ["only"]),
    ]


def _pareto_variant(points, dominates) -> set:
    """Names that no other point dominates under the given relation."""
    return {name for name, p in points.items()
            if not any(dominates(q, p) for other, q in points.items() if other != name)}


def _pareto_sweep(points) -> set:
    """The usual sort-and-sweep (fastest first, keep a point whose accuracy beats every
    faster one); it drops the second of two identical points."""
    kept, best = set(), -math.inf
    for name, (_, accuracy) in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if accuracy > best:
            kept.add(name)
            best = accuracy
    return kept


def exercise_7_4(pareto_front) -> None:
    """Check ``pareto_front(points)``: ``points`` maps a model name to ``(latency_ms,
    accuracy)``; return the list of names on the Pareto front, fastest first (equal
    latencies in the order of ``points``). A point is on the front when no OTHER point is
    at least as fast and at least as accurate, with at least one of the two strictly
    better."""
    exercise = "7.4"
    for case, points, expected in _pareto_cases():
        got = _call(exercise, pareto_front, case, dict(points))
        if isinstance(got, (list, tuple)) and list(got) == expected:
            continue
        if not isinstance(got, (list, tuple)):
            raise _failed(exercise, case, expected, got,
                          "return a list of names, fastest first (e.g. sorted(front, key=...))")
        names = set(got)
        strict = _pareto_variant(points, lambda q, p: q[0] < p[0] and q[1] > p[1])
        both_loose = _pareto_variant(points, lambda q, p: q[0] <= p[0] and q[1] >= p[1])
        flipped = _pareto_variant(points, lambda q, p: (q[0] >= p[0] and q[1] >= p[1])
                                  and (q[0] > p[0] or q[1] > p[1]))
        if names == set(expected) and len(got) == len(expected):
            if list(got) == expected[::-1]:
                hint = "fastest first: sort the front by latency, smallest first"
            else:
                hint = ("the names are right but not in order: sort by latency (fastest first), "
                        "keeping the order of points for equal latencies")
        elif names == strict and names != set(expected):
            hint = ("a point is dominated when another is AT LEAST as fast and AT LEAST as "
                    "accurate, with one of the two strictly better (equal latency or equal "
                    "accuracy still counts)")
        elif names == both_loose and names != set(expected):
            hint = ("an identical point does not dominate: the other point must be strictly "
                    "better in at least one of latency and accuracy")
        elif names == flipped and names != set(expected):
            hint = "lower latency is better and higher accuracy is better"
        elif names == _pareto_sweep(points) and names != set(expected):
            hint = ("two identical points: neither is strictly better than the other, so both "
                    "stay on the front (a sweep that keeps a point only when its accuracy beats "
                    "the best so far drops the second one)")
        else:
            hint = ("keep a name when no other point q has q.latency <= p.latency and "
                    "q.accuracy >= p.accuracy with (q.latency < p.latency or q.accuracy > "
                    "p.accuracy); then sort by latency")
        raise _failed(exercise, case, expected, got, hint)
    _passed(exercise, "Pareto fronts match on 5 cases (equal latencies, equal accuracies and "
                      "identical points included)")
