"""The singular value decomposition as a compression tool: truncated and randomized SVD,
the Eckart–Young error, and rules for choosing a rank.

Introduced in notebook ``03_svd_low_rank``.

Every real ``m×n`` matrix factors as ``W = U diag(S) Vᴴ`` with orthonormal columns in
``U`` and rows in ``Vᴴ`` and singular values ``S₁ ≥ S₂ ≥ … ≥ 0``. Keeping the first ``r``
terms gives ``W_r = U[:, :r] diag(S[:r]) Vᴴ[:r]``, and by the Eckart–Young(–Mirsky)
theorem (Eckart & Young 1936; Mirsky 1960) no matrix of rank ``r`` is closer to ``W``:

    ‖W − W_r‖_F = √(S_{r+1}² + … + S_k²)        ‖W − W_r‖₂ = S_{r+1}

Stored as two factors, ``W_r`` needs ``r(m + n)`` numbers instead of ``mn``, and a product
with a vector costs ``2r(m + n)`` FLOPs instead of ``2mn``: it saves both when
``r < mn / (m + n)``.
"""

from __future__ import annotations

import math

import torch

from .validate import (check_choice, check_finite, check_int, check_number, check_positive_ints,
                       check_tensor)

__all__ = [
    "truncated_svd",
    "randomized_svd",
    "eckart_young_error",
    "rank_for_energy",
    "rank_for_params",
    "break_even_rank",
    "check_rank",
]


def _check_matrix(W, name: str = "W") -> torch.Tensor:
    """``W`` if it is a finite, floating-point 2-D tensor."""
    check_tensor(W, name)
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(W.shape)}")
    if not W.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {W.dtype}")
    return check_finite(W, name)


def check_rank(rank, shape, name: str = "rank") -> int:
    """``rank`` if it is an int in ``1 … min(shape)``: a TypeError for another type, a
    ValueError outside that range."""
    check_int(rank, name)
    limit = min(shape)
    if not 1 <= rank <= limit:
        raise ValueError(f"{name} must be between 1 and min{tuple(shape)} = {limit}, got {rank}")
    return rank


def truncated_svd(W: torch.Tensor, rank: int):
    """The best rank-``rank`` factors of ``W``: ``(U, S, Vh)`` with shapes ``(m, r)``,
    ``(r,)`` and ``(r, n)``, such that ``U @ diag(S) @ Vh`` is the closest rank-``r``
    matrix to ``W`` (Eckart & Young 1936). Computed in ``W``'s dtype and device."""
    W = _check_matrix(W)
    rank = check_rank(rank, W.shape)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :rank], S[:rank], Vh[:rank]


def randomized_svd(W: torch.Tensor, rank: int, *, oversamples: int = 10, n_iter: int = 2,
                   seed=None):
    """Approximate truncated SVD by random projection (Halko, Martinsson & Tropp 2011).

    1. Draw a Gaussian ``n × ℓ`` matrix ``Ω`` with ``ℓ = rank + oversamples``; the columns
       of ``Y = WΩ`` span (nearly) the top of ``W``'s column space.
    2. Power iterations ``Y ← W(WᵀY)``, re-orthonormalized with QR each time, sharpen it
       when the singular values decay slowly (Algorithm 4.4 of the paper).
    3. ``Q = orth(Y)``; the small ``ℓ × n`` matrix ``B = QᵀW`` has an exact SVD
       ``B = Ũ S Vᴴ``; then ``U = QŨ``.

    It costs ``O(mnℓ)`` instead of ``O(mn·min(m, n))``. Returns ``(U, S, Vh)`` like
    :func:`truncated_svd`; ``seed`` makes it reproducible.
    """
    W = _check_matrix(W)
    rank = check_rank(rank, W.shape)
    check_int(oversamples, "oversamples", minimum=0)
    check_int(n_iter, "n_iter", minimum=0)
    if seed is not None:
        check_int(seed, "seed")
    m, n = W.shape
    width = min(rank + oversamples, m, n)
    generator = torch.Generator(device=W.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    omega = torch.randn(n, width, generator=generator, device=W.device, dtype=W.dtype)
    Q, _ = torch.linalg.qr(W @ omega)
    for _ in range(n_iter):
        Z, _ = torch.linalg.qr(W.T @ Q)
        Q, _ = torch.linalg.qr(W @ Z)
    U_small, S, Vh = torch.linalg.svd(Q.T @ W, full_matrices=False)
    U = Q @ U_small
    return U[:, :rank], S[:rank], Vh[:rank]


def _check_singular_values(S) -> torch.Tensor:
    """``S`` (detached) if it is a non-empty 1-D tensor."""
    check_tensor(S, "S")
    if S.ndim != 1 or len(S) == 0:
        raise ValueError("S must be a non-empty 1-D tensor of singular values, got shape "
                         f"{tuple(S.shape)}")
    return S.detach()


def eckart_young_error(S: torch.Tensor, rank: int, norm: str = "fro") -> float:
    """The error of the best rank-``rank`` approximation, from the singular values alone.

    ``norm="fro"``: ``√(Σ_{i>r} S_i²)``; ``norm="spectral"``: ``S_{r+1}`` (0 when
    ``r`` keeps every singular value). ``S`` must hold *all* singular values of the matrix.
    """
    S = _check_singular_values(S)
    check_int(rank, "rank", minimum=0, maximum=len(S))
    check_choice(norm, "norm", ("fro", "spectral"))
    if norm == "fro":
        return float(torch.sqrt(torch.sum(S[rank:].double() ** 2)))
    return float(S[rank]) if rank < len(S) else 0.0


def rank_for_energy(S: torch.Tensor, energy: float) -> int:
    """The smallest rank whose singular values keep a fraction ``energy`` of
    ``Σ S_i²`` (the squared Frobenius norm): ``Σ_{i≤r} S_i² ≥ energy · Σ_i S_i²``."""
    S = _check_singular_values(S)
    check_number(energy, "energy", low=0, high=1, low_open=True)
    squares = S.double() ** 2
    kept = torch.cumsum(squares, 0) / squares.sum()
    # the small tolerance keeps energy=1.0 from failing on rounding in the last digit
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype))) + 1


def rank_for_params(shape, keep: float) -> int:
    """The largest rank whose two factors hold at most a fraction ``keep`` of the dense
    matrix's parameters: ``r(m + n) ≤ keep · m · n`` (biases are not counted: they stay).

    Raises ValueError when even rank 1 would need more than that.
    """
    m, n = check_positive_ints(shape, "shape", length=2)
    check_number(keep, "keep", low=0, high=1, low_open=True)
    rank = min(math.floor(keep * m * n / (m + n)), m, n)
    if rank < 1:
        raise ValueError(
            f"keep={keep} is too small for a {m}x{n} matrix: rank 1 already keeps "
            f"{(m + n) / (m * n):.4f} of its parameters"
        )
    return rank


def break_even_rank(shape) -> int:
    """The largest rank at which two factors still save parameters and FLOPs:
    the largest ``r`` with ``r(m + n) < mn``, that is ``⌈mn / (m + n)⌉ − 1``.

    0 means factorizing this matrix can never save anything.
    """
    m, n = check_positive_ints(shape, "shape", length=2)
    return (m * n - 1) // (m + n)
