"""lrlib.tensor: unfolding conventions, products, CP-ALS, HOSVD, HOOI and EVBMF,
checked against the definitions, Kolda & Bader's worked example, and tensorly."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlib import tensor, vbmf

tensorly = pytest.importorskip("tensorly")
from tensorly.decomposition import parafac, tucker  # noqa: E402


def _random(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _kolda_example():
    """Kolda & Bader (2009), §2.4: a 3×4×2 tensor with frontal slices [1..12] and [13..24]
    filled column by column."""
    return torch.arange(1, 25, dtype=torch.float64).reshape(2, 4, 3).permute(2, 1, 0)


def test_unfoldings_match_kolda_and_bader():
    X = _kolda_example()
    assert tensor.unfold(X, 0)[0].tolist() == [1, 4, 7, 10, 13, 16, 19, 22]
    assert tensor.unfold(X, 1)[0].tolist() == [1, 2, 3, 13, 14, 15]
    assert tensor.unfold(X, 2).tolist() == [list(range(1, 13)), list(range(13, 25))]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=4), st.data())
def test_fold_inverts_unfold_and_mode_dot_matches_unfolding(shape, data):
    X = _random(shape, seed=sum(shape))
    mode = data.draw(st.integers(0, len(shape) - 1))
    assert torch.equal(tensor.fold(tensor.unfold(X, mode), mode, X.shape), X)
    M = _random((3, shape[mode]), seed=7)
    Y = tensor.mode_dot(X, M, mode)
    assert Y.shape[mode] == 3
    assert torch.allclose(tensor.unfold(Y, mode), M @ tensor.unfold(X, mode))


def test_mode_dot_agrees_with_tensorly():
    X = _random((3, 4, 5))
    M = _random((6, 4), seed=1)
    expected = tensorly.tenalg.mode_dot(X.numpy(), M.numpy(), 1)
    assert np.allclose(tensor.mode_dot(X, M, 1).numpy(), expected)


def test_khatri_rao_columns_are_kronecker_products():
    A, B, C = _random((2, 3)), _random((4, 3), 1), _random((5, 3), 2)
    K = tensor.khatri_rao([A, B, C])
    assert K.shape == (40, 3)
    for r in range(3):
        assert torch.allclose(K[:, r], torch.kron(torch.kron(A[:, r], B[:, r]), C[:, r]))


def test_mttkrp_matches_its_elementwise_definition_on_a_non_cubic_3_way_tensor():
    X = _random((4, 5, 6))
    A, B, C = _random((4, 3), 1), _random((5, 3), 2), _random((6, 3), 3)
    expected = torch.zeros(4, 3, dtype=torch.float64)
    for i in range(4):  # M[i, r] = Σ_{j,k} X[i, j, k] B[j, r] C[k, r]
        for r in range(3):
            expected[i, r] = sum(X[i, j, k] * B[j, r] * C[k, r] for j in range(5) for k in range(6))
    assert torch.allclose(tensor.mttkrp(X, [A, B, C], 0), expected)
    assert torch.allclose(tensor.mttkrp(X, [A, B, C], 1), torch.einsum("ijk,ir,kr->jr", X, A, C))
    assert torch.allclose(tensor.mttkrp(X, [A, B, C], 2), torch.einsum("ijk,ir,jr->kr", X, A, B))
    assert torch.equal(tensor.mttkrp(X, [None, B, C], 0), tensor.mttkrp(X, [A, B, C], 0))


def test_mttkrp_matches_its_elementwise_definition_on_a_4_way_tensor():
    X = _random((3, 4, 2, 5))
    factors = [_random((size, 2), seed) for seed, size in enumerate(X.shape, start=1)]
    letters = "ijkl"
    for mode in range(4):
        others = [k for k in range(4) if k != mode]
        formula = "ijkl," + ",".join(f"{letters[k]}r" for k in others) + f"->{letters[mode]}r"
        expected = torch.einsum(formula, X, *[factors[k] for k in others])
        assert torch.allclose(tensor.mttkrp(X, factors, mode), expected)


@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 4, 2, 5), (6, 2, 3, 3), (2, 7)])
def test_the_mttkrp_inside_cp_als_equals_the_textbook_formula(shape):
    """CP-ALS contracts mode by mode instead of forming the Khatri–Rao matrix: same numbers."""
    from lrlib.tensor import _mttkrp

    X = _random(shape)
    factors = [_random((size, 3), seed) for seed, size in enumerate(shape, start=1)]
    for mode in range(len(shape)):
        assert torch.allclose(_mttkrp(X, factors, mode), tensor.mttkrp(X, factors, mode), atol=1e-12)


def test_cp_to_tensor_is_a_sum_of_outer_products_and_matches_the_unfolding_identity():
    factors = [_random((3, 2)), _random((4, 2), 1), _random((5, 2), 2)]
    weights = torch.tensor([2.0, -0.5], dtype=torch.float64)
    X = tensor.cp_to_tensor(weights, factors)
    expected = sum(weights[r] * torch.einsum("i,j,k->ijk", *[f[:, r] for f in factors])
                   for r in range(2))
    assert torch.allclose(X, expected)
    kr = tensor.khatri_rao([factors[2], factors[0]])  # mode 1: reversed order of the others
    assert torch.allclose(tensor.unfold(X, 1), factors[1] @ torch.diag(weights) @ kr.T)


def test_tucker_to_tensor_matches_einsum():
    core = _random((2, 3, 2))
    factors = [_random((4, 2), 1), _random((5, 3), 2), _random((6, 2), 3)]
    expected = torch.einsum("abc,ia,jb,kc->ijk", core, *factors)
    assert torch.allclose(tensor.tucker_to_tensor(core, factors), expected)


def test_cp_als_recovers_an_exact_low_rank_tensor():
    factors = [_random((8, 3), s) for s in range(3)]
    X = tensor.cp_to_tensor(None, factors)
    for init in ("svd", "random"):
        result = tensor.cp_als(X, 3, init=init, seed=0, n_iter_max=500, tol=1e-12)
        assert result.rec_errors[-1] < 1e-6
        assert torch.allclose(result.to_tensor(), X, atol=1e-5)
        assert result.converged and result.n_iter == len(result.rec_errors)


def test_cp_als_reported_error_is_the_true_error_and_does_not_increase():
    X = _random((6, 7, 8))
    result = tensor.cp_als(X, 4, n_iter_max=30, tol=0)
    true = (torch.linalg.vector_norm(X - result.to_tensor()) / torch.linalg.vector_norm(X)).item()
    assert result.rec_errors[-1] == pytest.approx(true, rel=1e-8)
    assert all(b <= a + 1e-12 for a, b in zip(result.rec_errors, result.rec_errors[1:]))
    assert result.n_iter == 30 and not result.converged


@pytest.mark.parametrize("shape, rank", [((10, 12, 14), 5), ((16, 8, 6, 6), 5)])
def test_cp_als_is_as_good_as_tensorly(shape, rank):
    """Both start from the same SVD initialization (rank <= every size: nothing random)."""
    g = torch.Generator().manual_seed(1)
    factors = [torch.randn(s, rank, generator=g, dtype=torch.float64) for s in shape]
    X = tensor.cp_to_tensor(None, factors) + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    ours = tensor.cp_als(X, rank, n_iter_max=200, tol=1e-10)
    _, errors = parafac(X.numpy(), rank, n_iter_max=200, tol=1e-10, init="svd", return_errors=True)
    assert ours.rec_errors[-1] <= errors[-1] * 1.001


def test_cp_svd_init_fills_modes_smaller_than_the_rank_from_the_data():
    """A (16, 12, 3, 3) kernel at rank 8: the 3-element modes have only 3 singular vectors,
    so their other columns come from the large modes, not from the seed."""
    X = _random((16, 12, 3, 3), seed=4)
    first = tensor.cp_als(X, 8, n_iter_max=20, seed=0)
    second = tensor.cp_als(X, 8, n_iter_max=20, seed=1)
    assert first.rec_errors == second.rec_errors
    for a, b in zip(first.factors, second.factors):
        assert torch.equal(a, b)


def test_cp_linesearch_reaches_a_lower_error_in_the_same_number_of_sweeps():
    from lrlib.models import load_reference

    kernel = load_reference("cnn").conv3.weight.detach().double()
    plain = tensor.cp_als(kernel, 16, n_iter_max=40, tol=0, linesearch=False)
    searched = tensor.cp_als(kernel, 16, n_iter_max=40, tol=0, linesearch=True)
    assert searched.rec_errors[-1] < plain.rec_errors[-1]
    true = torch.linalg.vector_norm(kernel - searched.to_tensor()) / torch.linalg.vector_norm(kernel)
    assert searched.rec_errors[-1] == pytest.approx(float(true), rel=1e-8)


def test_float32_runs_stop_when_rounding_outweighs_progress():
    """HOOI never increases the error in exact arithmetic; in float32 the computed error
    jitters by about 1e-6, so a tol of 1e-12 cannot be met and the run stops at the jitter."""
    signal = tensor.tucker_to_tensor(_random((5, 5, 5), 5), [_random((n, 5), n) for n in (30, 35, 40)])
    X = (signal / signal.norm() + 0.1 * _random((30, 35, 40), 6) / 210).float()
    result = tensor.tucker_hooi(X, (5, 5, 5), n_iter_max=100, tol=1e-12)
    assert result.converged and result.n_iter < 100
    exact = tensor.tucker_hooi(X.double(), (5, 5, 5), n_iter_max=100, tol=1e-12)
    assert result.rec_errors[-1] == pytest.approx(exact.rec_errors[-1], abs=1e-5)


def test_degenerate_cp_is_detected_and_ridge_helps():
    """The classic degenerate case (Kruskal et al. 1989; de Silva & Lim 2008): a rank-3
    tensor a∘a∘b + a∘b∘a + b∘a∘a has no best rank-2 approximation."""
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64)
    outer = lambda x, y, z: torch.einsum("i,j,k->ijk", x, y, z)  # noqa: E731
    X = outer(a, a, b) + outer(a, b, a) + outer(b, a, a)
    with pytest.warns(tensor.DegenerateCPWarning, match="ridge"):
        result = tensor.cp_als(X, 2, init="random", seed=0, n_iter_max=1000, tol=0)
    assert result.degenerate
    with warnings.catch_warnings():
        warnings.simplefilter("error", tensor.DegenerateCPWarning)
        damped = tensor.cp_als(X, 2, init="random", seed=0, n_iter_max=1000, tol=0, ridge=1e-2)
    assert not damped.degenerate and damped.weights.max() < result.weights.max()


def test_hosvd_factors_are_orthonormal_and_error_is_exact():
    X = _random((6, 7, 8))
    result = tensor.hosvd(X, (3, 4, 5))
    for factor in result.factors:
        assert torch.allclose(factor.T @ factor, torch.eye(factor.shape[1], dtype=X.dtype), atol=1e-10)
    true = (torch.linalg.vector_norm(X - result.to_tensor()) / torch.linalg.vector_norm(X)).item()
    assert result.rec_errors == [pytest.approx(true, rel=1e-8)]
    full = tensor.hosvd(X, X.shape)
    assert torch.allclose(full.to_tensor(), X, atol=1e-10)


def test_hooi_improves_on_hosvd_and_matches_tensorly():
    X = _random((10, 12, 9), seed=3)
    start = tensor.hosvd(X, (3, 4, 3)).rec_errors[-1]
    result = tensor.tucker_hooi(X, (3, 4, 3), n_iter_max=200, tol=1e-12)
    assert result.rec_errors[-1] <= start + 1e-12
    assert all(b <= a + 1e-12 for a, b in zip(result.rec_errors, result.rec_errors[1:]))
    _, errors = tucker(X.numpy(), rank=(3, 4, 3), n_iter_max=200, tol=1e-12, init="svd",
                       return_errors=True)
    assert result.rec_errors[-1] <= errors[-1] * 1.001


def test_hooi_keeps_full_rank_modes_as_identity_without_loss():
    X = _random((12, 10, 3, 3), seed=4)
    result = tensor.tucker_hooi(X, (4, 5, 3, 3))
    assert torch.equal(result.factors[2], torch.eye(3, dtype=X.dtype))
    true = (torch.linalg.vector_norm(X - result.to_tensor()) / torch.linalg.vector_norm(X)).item()
    assert result.rec_errors[-1] == pytest.approx(true, rel=1e-8)
    random_init = tensor.tucker_hooi(X, (4, 5, 3, 3), init="random", seed=0, n_iter_max=300, tol=1e-12)
    assert random_init.rec_errors[-1] == pytest.approx(result.rec_errors[-1], rel=1e-3)


def test_evbmf_finds_the_rank_of_low_rank_plus_noise_and_nothing_in_noise():
    g = torch.Generator().manual_seed(0)
    for rank, (m, n) in [(5, (100, 200)), (12, (300, 150)), (1, (64, 64))]:
        signal = torch.randn(m, rank, generator=g, dtype=torch.float64) @ \
            torch.randn(rank, n, generator=g, dtype=torch.float64)
        noisy = signal + 0.1 * torch.randn(m, n, generator=g, dtype=torch.float64)
        estimate = vbmf.evbmf(noisy)
        assert estimate.rank == rank
        assert estimate.sigma2 == pytest.approx(0.01, rel=0.2)
    assert vbmf.evbmf(torch.randn(80, 120, generator=g, dtype=torch.float64)).rank == 0


def test_evbmf_returns_a_frozen_typed_result():
    noisy = _random((30, 40))
    result = vbmf.evbmf(noisy)
    assert isinstance(result, vbmf.VBMFResult)
    assert isinstance(result.rank, int) and isinstance(result.sigma2, float)
    assert result.rank == int(torch.sum(result.singular_values > result.threshold))
    assert torch.allclose(result.singular_values, torch.linalg.svdvals(noisy))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.rank = 3
    zero = vbmf.evbmf(torch.zeros(3, 4, dtype=torch.float64))
    assert (zero.rank, zero.sigma2, zero.threshold) == (0, 0.0, 0.0)


def test_evbmf_constant_is_the_zero_of_phi():
    """Nakajima et al. (2013): z̲ ≈ 2.5129 solves Φ(z) = ln(1 + z)/z − 1/2 = 0."""
    z = vbmf._evbmf_phi_zero()
    assert round(z, 4) == 2.5129
    assert math.log1p(z) / z == pytest.approx(0.5, abs=1e-14)


def test_relative_error_is_the_frobenius_ratio_in_float64_for_any_order():
    for shape in [(5, 7), (3, 4, 5), (2, 3, 2, 2)]:
        target, approximation = _random(shape, 1), _random(shape, 2)
        expected = np.linalg.norm((target - approximation).numpy()) / np.linalg.norm(target.numpy())
        assert tensor.relative_error(approximation, target) == pytest.approx(expected, rel=1e-12)
    target = torch.full((1000,), 1.0, dtype=torch.float32)
    approximation = target + 1e-4 * torch.randn(1000, generator=torch.Generator().manual_seed(0))
    exact = np.linalg.norm(target.numpy().astype(np.float64) - approximation.numpy().astype(np.float64)) \
        / np.linalg.norm(target.numpy().astype(np.float64))
    assert tensor.relative_error(approximation, target) == pytest.approx(exact, rel=1e-12)
    assert tensor.relative_error(target, target) == 0.0


def test_parameter_counts():
    assert tensor.cp_params((256, 256, 3, 3), 32) == 32 * 518
    assert tensor.tucker_params((256, 256, 3, 3), (64, 64, 3, 3)) == 64 * 64 * 9 + 2 * 256 * 64 + 9 + 9


@pytest.mark.parametrize("call, error, match", [
    (lambda: tensor.unfold(_random((2, 3)), 2), ValueError, "mode must be an int between 0 and 1"),
    (lambda: tensor.mode_dot(_random((2, 3)), _random((4, 2)), 1), ValueError, "3 columns"),
    (lambda: tensor.fold(_random((2, 5)), 0, (2, 3)), ValueError, "gives"),
    (lambda: tensor.cp_als(_random((2, 3)), 0), ValueError, "rank must be a positive int"),
    (lambda: tensor.cp_als(_random((2, 3)), 2, init="hosvd"), ValueError, r"init must be one of \('svd', 'random'\)"),
    (lambda: tensor.cp_als(_random((2, 3)), 2, ridge=-1), ValueError, "ridge"),
    (lambda: tensor.cp_als(_random((2, 3)), 2, linesearch="yes"), TypeError, "linesearch"),
    (lambda: tensor.hosvd(_random((2, 3)), (3, 1)), ValueError, r"ranks\[0\] must be an int between 1 and 2"),
    (lambda: tensor.tucker_hooi(_random((2, 3)), (1,)), ValueError, "one entry per mode"),
    (lambda: tensor.cp_als(torch.ones(2, 2, dtype=torch.int64), 1), TypeError, "floating-point"),
    (lambda: tensor.cp_als(torch.full((2, 2), float("nan")), 1), ValueError, "NaN or Inf"),
    (lambda: vbmf.evbmf(_random((2, 3, 4))), ValueError, "2-D matrix"),
    # a wrong type is a TypeError, a wrong value a ValueError (lrlib.validate's policy)
    (lambda: tensor.cp_als(_random((2, 3)), 2.0), TypeError, "rank must be a positive int, got 2.0"),
    (lambda: tensor.cp_als(_random((2, 3)), True), TypeError, "rank must be a positive int"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, n_iter_max=0), ValueError, "n_iter_max"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, tol=-1.0), ValueError, "tol must be a number >= 0"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, tol="small"), TypeError, "tol"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, ridge="1e-2"), TypeError, "ridge"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, init=None), TypeError, "init must be one of"),
    (lambda: tensor.cp_als(_random((2, 3)), 1, init="random", seed=0.5), TypeError, "seed must be an int"),
    (lambda: tensor.cp_als([[1.0, 2.0]], 1), TypeError, "T must be a torch.Tensor"),
    (lambda: tensor.hosvd(_random((2, 3)), (1.5, 1)), TypeError, r"ranks\[0\] must be an int between 1 and 2"),
    (lambda: tensor.hosvd(_random((2, 3)), 2.0), TypeError, "ranks must be an int or a sequence"),
    (lambda: tensor.tucker_hooi(_random((2, 3)), (1, 1), init="svd"), ValueError, "init must be one of"),
    (lambda: tensor.unfold(_random((2, 3)), 1.0), TypeError, "mode must be an int between 0 and 1"),
    (lambda: tensor.fold([[1.0, 2.0]], 0, (1, 2)), TypeError, "M must be a torch.Tensor"),
    (lambda: tensor.fold(_random((2, 3)), 0, (2, 0)), ValueError, r"shape\[1\] must be a positive int"),
    (lambda: tensor.mode_dot(_random((2, 3)), [[1.0, 2.0, 3.0]], 1), TypeError, "M must be a torch.Tensor"),
    (lambda: tensor.khatri_rao([]), ValueError, "matrices must be a non-empty list of matrices, got \\[\\]"),
    (lambda: tensor.khatri_rao([_random((2, 3)), _random((2, 2))]), ValueError, "same number of columns"),
    (lambda: tensor.mttkrp(_random((2, 3)), [_random((2, 2))], 0), ValueError, "one matrix per mode"),
    (lambda: tensor.mttkrp(_random((2, 3)), [None, _random((4, 2))], 0),
     ValueError, r"factors\[1\] must have shape \(3, R\)"),
    (lambda: tensor.mttkrp(_random((2, 3)), [None, "B"], 0), TypeError, r"factors\[1\] must be a torch.Tensor"),
    (lambda: tensor.relative_error(_random((2, 3)), _random((3, 2))), ValueError, "shape of target"),
    (lambda: tensor.relative_error(_random((2, 3)), torch.zeros(2, 3)),
     ValueError, r"target must be non-zero .*got \(2, 3\) zeros"),
    (lambda: tensor.relative_error([1.0], _random((1,))), TypeError, "approximation must be a torch.Tensor"),
    (lambda: tensor.cp_params((256, 256, 3, 3), 0), ValueError, "rank must be a positive int"),
    (lambda: tensor.tucker_params((4, 4), (2,)), ValueError, "ranks must be 2 positive ints"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
