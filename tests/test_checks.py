"""lrlib.checks: each checker passes the reference answer and fails helpfully on typical
wrong ones (the message names the input, the expected value, what came back and a hint)."""

from pathlib import Path

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
    """A new checker must come with tests in this file or in a tests/test_checks_NN.py."""
    here = Path(__file__).resolve()
    source = "\n".join(path.read_text(encoding="utf-8")
                       for path in sorted(here.parent.glob("test_checks*.py")))
    for name in checks.__all__:
        assert f"checks.{name}(" in source, f"{name} has no test"


# ------------------------------------------------------------------ notebook 01
import math  # noqa: E402

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from lrlib import bench, optimize  # noqa: E402


def percentile_reference(samples, q):
    values = sorted(samples)
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (position - low) * (values[high] - values[low])


def test_exercise_1_1_passes_the_reference_and_lrlib(capsys):
    checks.exercise_1_1(percentile_reference)
    checks.exercise_1_1(bench.percentile)
    assert capsys.readouterr().out.count("✓ Exercise 1.1:") == 2


@pytest.mark.parametrize("wrong, expected_hint", [
    (lambda s, q: sorted(s)[max(0, math.ceil(q / 100 * len(s)) - 1)], "nearest-rank"),
    (lambda s, q: float(np.interp((len(s) - 1) * q / 100, range(len(s)), s)), "sort the samples"),
    (lambda s, q: percentile_reference(s, q / 100), "interpolate between"),
    (lambda s, q: sum(s) / len(s), "interpolate between"),
])
def test_exercise_1_1_fails_helpfully(wrong, expected_hint):
    with pytest.raises(AssertionError) as info:
        checks.exercise_1_1(wrong)
    message = str(info.value)
    assert message.startswith("Exercise 1.1: for samples=")
    assert "expected:" in message and "got:" in message and expected_hint in message


def test_exercise_1_2(capsys):
    checks.exercise_1_2(lambda batch, ms: batch / (ms / 1000))
    assert "✓ Exercise 1.2" in capsys.readouterr().out
    for wrong, hint in [(lambda b, ms: b / ms, "milliseconds"),
                        (lambda b, ms: 1000 / ms, "multiply by batch_size"),
                        (lambda b, ms: ms / b, "latency per item")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_1_2(wrong)


def choose_batch_size_reference(points, budget):
    allowed = [p for p in points if p.p95_ms <= budget]
    return max(allowed, key=lambda p: p.items_per_second).batch_size if allowed else None


def test_exercise_1_3(capsys):
    checks.exercise_1_3(choose_batch_size_reference)
    assert "✓ Exercise 1.3" in capsys.readouterr().out

    def largest_allowed(points, budget):
        allowed = [p.batch_size for p in points if p.p95_ms <= budget]
        return max(allowed) if allowed else None

    def ignores_budget(points, budget):
        return max(points, key=lambda p: p.batch_size).batch_size

    def strict(points, budget):
        allowed = [p for p in points if p.p95_ms < budget]
        return max(allowed, key=lambda p: p.items_per_second).batch_size if allowed else None

    def never_none(points, budget):
        allowed = [p for p in points if p.p95_ms <= budget] or points[:1]
        return max(allowed, key=lambda p: p.items_per_second).batch_size

    for wrong, hint in [(largest_allowed, "not always the fastest"),
                        (ignores_budget, "within the budget"),
                        (strict, "use <="), (never_none, "return None")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_1_3(wrong)


# ------------------------------------------------------------------ notebook 02
def conv2d_flops_reference(batch, in_channels, out_channels, kernel_size, height, width,
                           stride=1, padding=0, groups=1):
    h_out = (height + 2 * padding - kernel_size) // stride + 1
    w_out = (width + 2 * padding - kernel_size) // stride + 1
    return 2 * batch * out_channels * h_out * w_out * (in_channels // groups) * kernel_size ** 2


def test_exercise_2_1(capsys):
    checks.exercise_2_1(lambda b, n, m: 2 * b * n * m)
    assert "✓ Exercise 2.1" in capsys.readouterr().out
    for wrong, hint in [(lambda b, n, m: b * n * m, "multiply-adds"),
                        (lambda b, n, m: 2 * n * m, "multiply by batch"),
                        (lambda b, n, m: 2 * b * n * m + b * m, "dot product")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_2_1(wrong)


def test_exercise_2_2(capsys):
    checks.exercise_2_2(conv2d_flops_reference)
    assert "✓ Exercise 2.2" in capsys.readouterr().out

    def no_stride(batch, in_channels, out_channels, kernel_size, height, width,
                  stride=1, padding=0, groups=1):
        return conv2d_flops_reference(batch, in_channels, out_channels, kernel_size,
                                      height, width, 1, padding, groups)

    def no_groups(batch, in_channels, out_channels, kernel_size, height, width,
                  stride=1, padding=0, groups=1):
        return conv2d_flops_reference(batch, in_channels, out_channels, kernel_size,
                                      height, width, stride, padding, 1)

    def macs(*args, **kwargs):
        return conv2d_flops_reference(*args, **kwargs) // 2

    for wrong, hint in [(no_stride, "H_out"), (no_groups, "groups"), (macs, "multiply-adds")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_2_2(wrong)


def test_exercise_2_3(capsys):
    checks.exercise_2_3(lambda b, n, m: 2 * b * n * m / (4 * (n * m + m + b * n + b * m)))
    assert "✓ Exercise 2.3" in capsys.readouterr().out
    for wrong, hint in [(lambda b, n, m: 2 * b * n * m / (n * m + m + b * n + b * m), "bytes"),
                        (lambda b, n, m: 2 * b * n * m / (4 * n * m), "not only the weights")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_2_3(wrong)


def test_exercise_2_4(capsys):
    checks.exercise_2_4(optimize.fold_batchnorm)
    assert "✓ Exercise 2.4" in capsys.readouterr().out

    def in_place(conv, bn):
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        with torch.no_grad():
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        return conv

    def forgets_mean(conv, bn):
        import copy
        folded = copy.deepcopy(conv)
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        with torch.no_grad():
            folded.weight.mul_(scale.reshape(-1, 1, 1, 1))
            folded.bias = nn.Parameter(bn.bias.clone())
        return folded

    def returns_sequential(conv, bn):
        return nn.Sequential(conv, bn)

    for wrong, hint in [(in_place, "never change the caller"), (forgets_mean, r"b' = s·\(b − μ\)"),
                        (returns_sequential, "return a new convolution")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_2_4(wrong)


# ------------------------------------------------------------------ notebook 03
from lrlib import svd  # noqa: E402
from lrlib.layers import LowRankLinear  # noqa: E402


def rank_k_reference(W, k):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :k] @ torch.diag(S[:k]) @ Vh[:k]


def test_exercise_3_1(capsys):
    checks.exercise_3_1(rank_k_reference)
    assert "✓ Exercise 3.1" in capsys.readouterr().out

    def no_singular_values(W, k):
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        return U[:, :k] @ Vh[:k]

    def returns_factors(W, k):
        return torch.linalg.svd(W, full_matrices=False)

    for wrong, hint in [(no_singular_values, "singular values are missing"),
                        (lambda W, k: rank_k_reference(W, min(k + 1, min(W.shape))), "k \\+ 1 terms"),
                        (returns_factors, "not the factors")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_3_1(wrong)


def test_exercise_3_2(capsys):
    checks.exercise_3_2(lambda S, k: S[k:].pow(2).sum().sqrt().item())
    assert "✓ Exercise 3.2" in capsys.readouterr().out
    for wrong, hint in [(lambda S, k: S[k:].pow(2).sum().item(), "square root"),
                        (lambda S, k: S[k].item() if k < len(S) else 0.0, "spectral-norm"),
                        (lambda S, k: S[k + 1:].pow(2).sum().sqrt().item(), "indices start at 0")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_3_2(wrong)


def test_exercise_3_3(capsys):
    checks.exercise_3_3(lambda m, n: (m * n - 1) // (m + n))
    assert "✓ Exercise 3.3" in capsys.readouterr().out
    for wrong, hint in [(lambda m, n: m * n // (m + n), "inequality is strict"),
                        (lambda m, n: min(m, n) // 2, "depends on both sizes"),
                        (lambda m, n: (m * n - 1) / (m + n), "largest integer")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_3_3(wrong)


def split_reference(linear, rank):
    layer = LowRankLinear.from_linear(linear, rank)
    return nn.Sequential(layer.first, layer.last)


def test_exercise_3_4(capsys):
    checks.exercise_3_4(split_reference)
    assert "✓ Exercise 3.4" in capsys.readouterr().out

    def bias_on_both(linear, rank):
        first, second = split_reference(linear, rank)
        new_first = nn.Linear(first.in_features, first.out_features, dtype=linear.weight.dtype)
        with torch.no_grad():
            new_first.weight.copy_(first.weight)
        return nn.Sequential(new_first, second)

    def no_singular_values(linear, rank):
        U, S, Vh = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
        first = nn.Linear(linear.in_features, rank, bias=False, dtype=linear.weight.dtype)
        second = nn.Linear(rank, linear.out_features, dtype=linear.weight.dtype)
        with torch.no_grad():
            first.weight.copy_(Vh[:rank])
            second.weight.copy_(U[:, :rank])
            second.bias.copy_(linear.bias)
        return nn.Sequential(first, second)

    def in_place(linear, rank):
        result = split_reference(linear, rank)
        with torch.no_grad():
            linear.weight.zero_()
        return result

    for wrong, hint in [(bias_on_both, "bias is added once"), (no_singular_values, "product"),
                        (in_place, "never change the caller"),
                        (lambda linear, rank: LowRankLinear.from_linear(linear, rank), "nn.Sequential"),
                        (lambda linear, rank: nn.Sequential(split_reference(linear, rank)[0].double(),
                                                            split_reference(linear, rank)[1].float()),
                         "build both layers in linear's dtype")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_3_4(wrong)


def test_exercise_3_5(capsys):
    checks.exercise_3_5(svd.rank_for_energy)
    assert "✓ Exercise 3.5" in capsys.readouterr().out

    def by_values(S, energy):
        kept = torch.cumsum(S, 0) / S.sum()
        return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=S.dtype))) + 1

    def index_not_count(S, energy):
        return svd.rank_for_energy(S, energy) - 1

    for wrong, hint in [(by_values, "squares"), (index_not_count, "a count"),
                        (lambda S, e: float(svd.rank_for_energy(S, e)), "return an int")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_3_5(wrong)


# ------------------------------------------------------------------ notebook 04
from lrlib import tensor  # noqa: E402


def als_update_reference(T, factors, mode):
    rank = factors[0].shape[1]
    gram = torch.ones(rank, rank, dtype=T.dtype)
    for k, factor in enumerate(factors):
        if k != mode:
            gram = gram * (factor.T @ factor)
    others = [factors[k] for k in reversed(range(T.ndim)) if k != mode]
    return tensor.unfold(T, mode) @ tensor.khatri_rao(others) @ torch.linalg.pinv(gram)


def test_exercise_4_1(capsys):
    checks.exercise_4_1(tensor.unfold)
    assert "✓ Exercise 4.1" in capsys.readouterr().out
    for wrong, hint in [(lambda T, m: T.movedim(m, 0).reshape(T.shape[m], -1), "C-order"),
                        (lambda T, m: T.reshape(T.shape[m], -1), "row i_n|C-order"),
                        (lambda T, m: T.movedim(m, 0).reshape(-1, T.shape[m]), "I_n = ")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_4_1(wrong)


def test_exercise_4_2(capsys):
    checks.exercise_4_2(tensor.mode_dot)
    assert "✓ Exercise 4.2" in capsys.readouterr().out
    for wrong, hint in [(lambda T, M, m: torch.tensordot(M, T, dims=([1], [m])), "movedim"),
                        (lambda T, M, m: T, "shape of T with size J|unfold")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_4_2(wrong)


def test_exercise_4_3(capsys):
    checks.exercise_4_3(als_update_reference)
    assert "✓ Exercise 4.3" in capsys.readouterr().out

    def no_inverse(T, factors, mode):
        others = [factors[k] for k in reversed(range(T.ndim)) if k != mode]
        return tensor.unfold(T, mode) @ tensor.khatri_rao(others)

    def forward_order(T, factors, mode):
        rank = factors[0].shape[1]
        gram = torch.ones(rank, rank, dtype=T.dtype)
        for k, factor in enumerate(factors):
            if k != mode:
                gram = gram * (factor.T @ factor)
        others = [factors[k] for k in range(T.ndim) if k != mode]
        return tensor.unfold(T, mode) @ tensor.khatri_rao(others) @ torch.linalg.pinv(gram)

    def normalized(T, factors, mode):
        result = als_update_reference(T, factors, mode)
        return result / result.norm(dim=0)

    for wrong, hint in [(no_inverse, "pinv"), (forward_order, "LAST mode"),
                        (normalized, "before normalizing")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_4_3(wrong)


def test_exercise_4_4(capsys):
    def reference(T, ranks):
        result = tensor.hosvd(T, ranks)
        return result.core, result.factors

    checks.exercise_4_4(reference)
    assert "✓ Exercise 4.4" in capsys.readouterr().out

    def trailing_vectors(T, ranks):
        factors = []
        for mode, rank in enumerate(ranks):
            U, _, _ = torch.linalg.svd(tensor.unfold(T, mode), full_matrices=False)
            factors.append(U[:, -rank:])
        core = T
        for mode, factor in enumerate(factors):
            core = tensor.mode_dot(core, factor.T, mode)
        return core, factors

    def not_orthonormal(T, ranks):
        core, factors = reference(T, ranks)
        return core, [2 * f for f in factors]

    for wrong, hint in [(trailing_vectors, "LEADING"), (not_orthonormal, "orthonormal"),
                        (lambda T, r: tensor.hosvd(T, r), "return core, factors")]:
        with pytest.raises(AssertionError, match=hint):
            checks.exercise_4_4(wrong)


# ------------------------------------------------------------------ checker gaps closed
from checker_asserts import fails_with  # noqa: E402


def test_exercise_2_2_names_true_division_in_the_output_size():
    def true_division(batch, in_channels, out_channels, kernel_size, height, width,
                      stride=1, padding=0, groups=1):
        h_out = (height + 2 * padding - kernel_size) / stride + 1
        w_out = (width + 2 * padding - kernel_size) / stride + 1
        return 2 * batch * out_channels * h_out * w_out * (in_channels // groups) * kernel_size ** 2

    fails_with(checks.exercise_2_2, true_division,
               "the output size is a floor division: ⌊(H + 2p − k)/s⌋ + 1", "2.2")
    # truncating the float result afterwards is still wrong, and named the same way
    fails_with(checks.exercise_2_2, lambda *a, **k: int(true_division(*a, **k)),
               "floor division", "2.2")


def test_exercise_3_4_names_a_forgotten_bias():
    def random_bias(linear, rank):
        first, second = split_reference(linear, rank)
        fresh = nn.Linear(rank, linear.out_features, dtype=second.weight.dtype)  # random bias
        with torch.no_grad():
            fresh.weight.copy_(second.weight)
        return nn.Sequential(first, fresh)

    fails_with(checks.exercise_3_4, random_bias, "the weights are right but the bias is not",
               "3.4")


def test_exercise_3_4_handles_float32_layers(capsys):
    seen = []

    def reference_noting_dtypes(linear, rank):
        seen.append(linear.weight.dtype)
        return split_reference(linear, rank)

    checks.exercise_3_4(reference_noting_dtypes)
    assert torch.float32 in seen and torch.float64 in seen
    assert "✓ Exercise 3.4" in capsys.readouterr().out

    def always_float64(linear, rank):   # layers in float64 even for a float32 layer
        import copy
        return split_reference(copy.deepcopy(linear).double(), rank)

    checks.exercise_3_4(always_float64)
    assert "✓ Exercise 3.4" in capsys.readouterr().out

    def float32_without_bias(linear, rank):
        first, second = split_reference(linear, rank)
        second.bias = None
        return nn.Sequential(first, second)

    # a wrong float32 answer is a failure with a hint, not a RuntimeError of the checker
    fails_with(checks.exercise_3_4, float32_without_bias, "original bias", "3.4")


def test_exercise_3_5_names_a_missing_tolerance():
    def no_tolerance(S, energy):
        squares = S.double() ** 2
        kept = torch.cumsum(squares, 0) / squares.sum()
        return int((kept < energy).sum()) + 1

    def solution_03(S, energy):   # the reference solution of solutions/03
        squares = S.double() ** 2
        kept = torch.cumsum(squares, 0) / squares.sum()
        return int((kept < energy - 1e-12).sum()) + 1

    checks.exercise_3_5(solution_03)
    fails_with(checks.exercise_3_5, no_tolerance, "tolerance", "3.5")


def test_exercise_4_3_shows_how_far_a_wrong_update_is():
    def off_by_a_bit(T, factors, mode):
        return als_update_reference(T, factors, mode) * 1.1

    with pytest.raises(AssertionError) as info:
        checks.exercise_4_3(off_by_a_bit)
    message = str(info.value)
    got_line = next(line for line in message.splitlines() if line.startswith("  got:"))
    assert "relative error 0.1" in got_line, message
    assert "max abs difference" in got_line, message
    assert "(4, 3)'" not in got_line and got_line.strip() != "got:      (4, 3)", message


# ------------------------------------------------------------------ Exercise 3.6
def whitened_reference(W, X, rank):
    L = torch.linalg.cholesky(X.T @ X)
    U, S, Vh = torch.linalg.svd(W @ L, full_matrices=False)
    return torch.linalg.solve_triangular(L.T, ((U[:, :rank] * S[:rank]) @ Vh[:rank]).T, upper=True).T


def test_exercise_3_6_passes_the_whitened_svd(capsys):
    checks.exercise_3_6(whitened_reference)
    assert capsys.readouterr().out.startswith("✓ Exercise 3.6:")


def test_exercise_3_6_names_the_plain_svd_a_missing_unwhitening_and_the_wrong_inverse():
    def plain(W, X, rank):
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        return (U[:, :rank] * S[:rank]) @ Vh[:rank]

    def still_whitened(W, X, rank):
        L = torch.linalg.cholesky(X.T @ X)
        U, S, Vh = torch.linalg.svd(W @ L, full_matrices=False)
        return (U[:, :rank] * S[:rank]) @ Vh[:rank]

    def transposed_inverse(W, X, rank):
        L = torch.linalg.cholesky(X.T @ X)
        return still_whitened(W, X, rank) @ torch.linalg.inv(L).T

    fails_with(checks.exercise_3_6, plain, "ignores the inputs", "3.6")
    fails_with(checks.exercise_3_6, still_whitened, "multiply back by L⁻¹", "3.6")
    fails_with(checks.exercise_3_6, transposed_inverse, "not L⁻ᵀ", "3.6")
    fails_with(checks.exercise_3_6, lambda W, X, rank: torch.linalg.svd(W @ torch.linalg.cholesky(X.T @ X)),
               "not its factors", "3.6")
