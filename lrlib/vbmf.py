"""Rank estimation for a noisy matrix by empirical variational Bayesian matrix
factorization (EVBMF): how many singular values stand out of the noise.

Introduced in notebook ``04_tensor_decompositions`` (on a noisy low-rank matrix and on the
unfoldings of trained kernels); the ``VBMF()`` rank rule of :mod:`lrlib.rank_rules` uses it
in ``05_decomposing_convolutions``, as Kim et al. (2016) do to choose Tucker-2 ranks.

References
----------
* S. Nakajima, M. Sugiyama, S. D. Babacan, R. Tomioka (2013). Global analytic solution of
  fully-observed variational Bayesian matrix factorization. *JMLR* 14, 1–37.
* Y.-D. Kim, E. Park, S. Yoo, T. Choi, L. Yang, D. Shin (2016). Compression of deep
  convolutional neural networks for fast and low power mobile applications. *ICLR*.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .validate import check_finite, check_tensor

__all__ = ["VBMFResult", "evbmf"]

@dataclass(frozen=True)
class VBMFResult:
    """An EVBMF rank estimate of a noisy matrix (see :func:`evbmf`): ``rank`` (int, the
    number of singular values above ``threshold``), ``sigma2`` (float, the estimated noise
    variance σ²; 0.0 for a zero matrix), ``threshold`` (float, ``γ̲ = √(M σ² (1 + τ̲)(1 +
    α/τ̲))``), ``singular_values`` (all of them, float64, descending)."""

    rank: int
    sigma2: float
    threshold: float
    singular_values: torch.Tensor


@functools.lru_cache(maxsize=None)
def _evbmf_phi_zero() -> float:
    """``z̲ ≈ 2.5129``, the zero of ``Φ(z) = ln(1 + z)/z − 1/2`` (Nakajima et al. 2013) by
    bisection: ``Φ`` falls from ½ (as ``z → 0``) towards −½, ``Φ(1) > 0 > Φ(4)`` brackets
    the zero, and 60 halvings of the bracket reach float64 resolution."""
    low, high = 1.0, 4.0
    for _ in range(60):
        middle = (low + high) / 2
        if math.log1p(middle) / middle > 0.5:    # Φ(middle) > 0: the zero lies above
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _evbmf_tau(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """τ(x) = ½ (x − (1 + α) + √((x − (1 + α))² − 4α)), the positive root used by the
    EVBMF solution for the squared singular values scaled by ``M σ²``."""
    shifted = x - (1 + alpha)
    return 0.5 * (shifted + torch.sqrt(torch.clamp(shifted ** 2 - 4 * alpha, min=0)))


def _evbmf_objective(sigma2: float, s: torch.Tensor, L: int, M: int, residual: float,
                     x_threshold: float) -> float:
    """The negative free energy of EVBMF as a function of the noise variance σ²
    (Nakajima et al. 2013, up to constants)."""
    alpha = L / M
    x = s ** 2 / (M * sigma2)
    large, small = x[x > x_threshold], x[x <= x_threshold]
    tau = _evbmf_tau(large, alpha)
    value = torch.sum(small - torch.log(small))
    value = value + torch.sum(large - tau) + torch.sum(torch.log((tau + 1) / large))
    value = value + alpha * torch.sum(torch.log(tau / alpha + 1))
    return float(value) + residual / (M * sigma2) + (L - len(s)) * math.log(sigma2)


def _golden_section_minimum(function, low: float, high: float, iterations: int = 200) -> float:
    """Minimize a one-dimensional function on ``[low, high]`` by golden-section search."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = function(c), function(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = function(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = function(d)
        if b - a < 1e-12 * max(1.0, abs(b)):
            break
    return (a + b) / 2


def evbmf(M: torch.Tensor) -> VBMFResult:
    """Empirical variational Bayesian matrix factorization: a rank estimate for a noisy
    matrix, with no tuning parameter (Nakajima, Sugiyama, Babacan & Tomioka 2013).

    The matrix is modelled as low rank plus Gaussian noise of unknown variance σ². EVBMF
    estimates σ² by minimizing the free energy, then keeps exactly the singular values above
    ``γ̲ = √(M σ² (1 + τ̲)(1 + α/τ̲))``, ``α = L/M`` (``L ≤ M`` the two sizes). Kim et al.
    (2016) apply it to the unfoldings of a convolution kernel to choose Tucker-2 ranks.

    Where τ̲ comes from: it is the zero of ``Ξ(τ; α) = Φ(τ) + Φ(τ/α)``, ``Φ(z) = ln(1 +
    z)/z − 1/2`` (Nakajima et al. 2013); for a square matrix (α = 1), the zero ``z̲ ≈ 2.5129``
    of ``Φ`` itself (``_evbmf_phi_zero``). Like the implementations Kim et al. (2016) made
    popular, lrlib takes ``τ̲ = z̲ √α`` for every α; for α < 1 the zero of ``Ξ`` is a little
    larger (2.545 √α at α = 1/4), so this threshold is a lower bound of the exact one."""
    check_tensor(M, "M")
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D matrix, got shape {tuple(M.shape)}")
    if not M.is_floating_point():
        raise TypeError(f"M must have a floating-point dtype, got {M.dtype}")
    check_finite(M, "M")
    matrix = M.double()
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    L, N = matrix.shape  # L ≤ N
    s = torch.linalg.svdvals(matrix)
    if float(s[0]) == 0.0:
        return VBMFResult(rank=0, sigma2=0.0, threshold=0.0, singular_values=s)
    alpha = L / N
    tau_bar = _evbmf_phi_zero() * math.sqrt(alpha)
    x_threshold = (1 + tau_bar) * (1 + alpha / tau_bar)
    residual = max(float(torch.sum(matrix ** 2)) - float(torch.sum(s ** 2)), 0.0)

    # bounds for σ²: above, everything is noise; below, at most ~L/(1+α) components are signal
    most_components = min(math.ceil(L / (1 + alpha)) - 1, L) - 1
    upper = (float(torch.sum(s ** 2)) + residual) / (L * N)
    tail = s[most_components + 1:] if most_components + 1 < L else s[-1:]
    lower = max(float(tail[0]) ** 2 / (N * x_threshold), float(torch.mean(tail ** 2)) / N)
    lower = min(lower, upper)
    positive = s[s > 0]
    sigma2 = _golden_section_minimum(
        lambda v: _evbmf_objective(v, positive, L, N, residual, x_threshold),
        max(lower, 1e-300), upper)
    threshold = math.sqrt(N * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    return VBMFResult(rank=int(torch.sum(s > threshold)), sigma2=sigma2, threshold=threshold,
                      singular_values=s)
