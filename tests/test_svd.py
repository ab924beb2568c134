"""lrlib.svd: truncated and randomized SVD, Eckart–Young, rank rules."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlib import svd


def _random(m, n, seed=0, dtype=torch.float64):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _low_rank_plus_noise(m, n, rank, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, rank, generator=g, dtype=torch.float64)
    B = torch.randn(rank, n, generator=g, dtype=torch.float64)
    return A @ B + noise * torch.randn(m, n, generator=g, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_truncated_svd_error_equals_eckart_young(m, n, data):
    rank = data.draw(st.integers(1, min(m, n)))
    W = _random(m, n, seed=m * 100 + n)
    U, S, Vh = svd.truncated_svd(W, rank)
    assert U.shape == (m, rank) and S.shape == (rank,) and Vh.shape == (rank, n)
    approx = U @ torch.diag(S) @ Vh
    all_singular = torch.linalg.svdvals(W)
    fro = torch.linalg.matrix_norm(W - approx).item()
    assert fro == pytest.approx(svd.eckart_young_error(all_singular, rank), rel=1e-6, abs=1e-10)
    spectral = torch.linalg.matrix_norm(W - approx, ord=2).item()
    assert spectral == pytest.approx(svd.eckart_young_error(all_singular, rank, "spectral"),
                                     rel=1e-6, abs=1e-10)


def test_truncated_svd_agrees_with_numpy():
    W = _random(30, 20, seed=3)
    _, S, _ = svd.truncated_svd(W, 20)
    assert np.allclose(S.numpy(), np.linalg.svd(W.numpy(), compute_uv=False))


def test_full_rank_reconstructs_exactly():
    W = _random(12, 7)
    U, S, Vh = svd.truncated_svd(W, 7)
    assert torch.allclose(U @ torch.diag(S) @ Vh, W, atol=1e-12)


def _near_optimal_rivals(W, rank, seed=1):
    """Rank-``rank`` matrices within ``ε = 1e-3`` and ``1e-4`` of the true optimum ``W_r``,
    built from torch's own SVD (not from lrlib): each factor of ``U_r diag(S_r) V_rᵀ``
    nudged in a random direction, all three at once, and the truncation of a slightly
    perturbed ``W``. Each is worse than ``W_r`` by only O(ε²), so they beat a wrong
    ``truncated_svd`` (other singular triplets, a term missing, singular values off by
    1e-4); only the optimum beats all of them."""
    g = torch.Generator().manual_seed(seed)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
    rivals = []
    for eps in (1e-3, 1e-4):
        def nudge(A):
            return A + eps * torch.randn(A.shape, generator=g, dtype=A.dtype)

        for _ in range(3):
            rivals += [nudge(U) @ torch.diag(S) @ Vh, U @ torch.diag(nudge(S)) @ Vh,
                       U @ torch.diag(S) @ nudge(Vh), nudge(U) @ torch.diag(nudge(S)) @ nudge(Vh)]
            P, T, Qh = torch.linalg.svd(nudge(W), full_matrices=False)
            rivals.append(P[:, :rank] @ torch.diag(T[:rank]) @ Qh[:rank])
    return rivals


@pytest.mark.parametrize("m, n, rank", [(20, 15, 4), (15, 20, 1), (12, 12, 11)])
def test_no_other_rank_r_matrix_does_better(m, n, rank):
    """Eckart–Young: the truncated SVD's error is the bound, and every rank-r matrix close
    to the optimum does worse in the Frobenius norm (and no better in the spectral one)."""
    W = _random(m, n, seed=5)
    U, S, Vh = svd.truncated_svd(W, rank)
    best = W - U @ torch.diag(S) @ Vh
    fro, spectral = torch.linalg.matrix_norm(best).item(), torch.linalg.matrix_norm(best, ord=2).item()
    all_singular = torch.linalg.svdvals(W)
    assert fro == pytest.approx(math.sqrt((all_singular[rank:] ** 2).sum().item()), rel=1e-12)
    assert fro == pytest.approx(svd.eckart_young_error(all_singular, rank), rel=1e-12)
    assert spectral == pytest.approx(all_singular[rank].item(), rel=1e-12)
    for rival in _near_optimal_rivals(W, rank):
        assert torch.linalg.matrix_rank(rival) <= rank
        assert torch.linalg.matrix_norm(W - rival).item() > fro
        assert torch.linalg.matrix_norm(W - rival, ord=2).item() >= spectral * (1 - 1e-12)


@pytest.mark.parametrize("m, n, rank", [(200, 150, 10), (150, 300, 20), (400, 400, 32)])
def test_randomized_svd_is_nearly_optimal_on_low_rank_plus_noise(m, n, rank):
    W = _low_rank_plus_noise(m, n, rank, noise=0.1, seed=rank)
    U, S, Vh = svd.randomized_svd(W, rank, seed=0)
    exact = svd.eckart_young_error(torch.linalg.svdvals(W), rank)
    got = torch.linalg.matrix_norm(W - U @ torch.diag(S) @ Vh).item()
    assert exact <= got + 1e-9 and got <= 1.1 * exact


def test_randomized_svd_is_reproducible_with_a_seed():
    W = _random(60, 40)
    a = svd.randomized_svd(W, 5, seed=7)
    b = svd.randomized_svd(W, 5, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_eckart_young_error_values():
    S = torch.tensor([4.0, 3.0, 0.0])
    assert svd.eckart_young_error(S, 0) == 5.0
    assert svd.eckart_young_error(S, 1) == 3.0
    assert svd.eckart_young_error(S, 1, "spectral") == 3.0
    assert svd.eckart_young_error(S, 3, "spectral") == 0.0
    with pytest.raises(ValueError, match=r"norm must be one of \('fro', 'spectral'\), got 'nuclear'"):
        svd.eckart_young_error(S, 1, "nuclear")
    with pytest.raises(ValueError, match="rank must be an int between 0 and 3, got 4"):
        svd.eckart_young_error(S, 4)
    with pytest.raises(TypeError, match=r"rank must be an int between 0 and 3, got 1.0 \(float\)"):
        svd.eckart_young_error(S, 1.0)
    with pytest.raises(TypeError, match="S must be a torch.Tensor, got list"):
        svd.eckart_young_error([4.0, 3.0], 1)


def test_rank_for_energy():
    S = torch.tensor([3.0, 2.0, 1.0, 1.0, 1.0])  # squares 9, 4, 1, 1, 1: total 16
    assert svd.rank_for_energy(S, 0.5) == 1      # 9/16 = 0.5625
    assert svd.rank_for_energy(S, 0.8) == 2      # 13/16 = 0.8125
    assert svd.rank_for_energy(S, 0.8125) == 2   # exactly reached
    assert svd.rank_for_energy(S, 0.9) == 4      # 15/16 = 0.9375
    assert svd.rank_for_energy(S, 1.0) == 5
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"energy must be a number in \(0, 1\], got"):
            svd.rank_for_energy(S, bad)
    for bad in (True, "0.9", None):
        with pytest.raises(TypeError, match=r"energy must be a number in \(0, 1\], got"):
            svd.rank_for_energy(S, bad)


def test_rank_for_params_and_break_even():
    assert svd.rank_for_params((1024, 1024), 0.25) == 128
    assert svd.rank_for_params((1024, 784), 1.0) == 444
    assert svd.break_even_rank((1024, 1024)) == 511
    assert svd.break_even_rank((1024, 784)) == 444
    assert svd.break_even_rank((10, 512)) == 9
    assert svd.break_even_rank((2, 2)) == 0
    for m, n in [(7, 9), (100, 3), (64, 64), (1024, 512)]:
        r = svd.break_even_rank((m, n))
        assert r * (m + n) < m * n <= (r + 1) * (m + n)
    with pytest.raises(ValueError, match="too small"):
        svd.rank_for_params((4, 4), 0.1)
    with pytest.raises(ValueError, match="keep must be a number in"):
        svd.rank_for_params((4, 4), 0.0)
    with pytest.raises(ValueError, match=r"shape\[1\] must be a positive int, got 0"):
        svd.break_even_rank((4, 0))
    with pytest.raises(ValueError, match=r"shape must be 2 positive ints, got \(4, 4, 4\)"):
        svd.rank_for_params((4, 4, 4), 0.5)
    with pytest.raises(TypeError, match="shape must be a sequence of positive ints, got 16"):
        svd.break_even_rank(16)


@pytest.mark.parametrize("rank, error, match", [
    (0, ValueError, "between 1 and min"), (6, ValueError, r"min\(5, 8\) = 5, got 6"),
    (True, TypeError, "must be an int"), (2.0, TypeError, "must be an int")])
def test_bad_ranks(rank, error, match):
    with pytest.raises(error, match=match):
        svd.truncated_svd(_random(5, 8), rank)
    with pytest.raises(error, match=match):
        svd.randomized_svd(_random(5, 8), rank)


def test_bad_matrices():
    W = _random(4, 4)
    W[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        svd.truncated_svd(W, 2)
    with pytest.raises(ValueError, match="2-D matrix"):
        svd.truncated_svd(torch.zeros(2, 2, 2), 1)
    with pytest.raises(TypeError, match="floating-point"):
        svd.truncated_svd(torch.ones(3, 3, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="oversamples must be a non-negative int, got -1"):
        svd.randomized_svd(_random(5, 5), 2, oversamples=-1)
    with pytest.raises(TypeError, match=r"n_iter must be a non-negative int, got 1.5 \(float\)"):
        svd.randomized_svd(_random(5, 5), 2, n_iter=1.5)
    with pytest.raises(TypeError, match="W must be a torch.Tensor, got list"):
        svd.truncated_svd([[1.0, 2.0], [3.0, 4.0]], 1)
