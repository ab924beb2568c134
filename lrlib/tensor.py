"""Compress multi-way arrays: unfold a tensor into matrices, then factor it into CP or Tucker form.

Introduced in notebook ``04_tensor_decompositions``; lesson 05 uses them to factorize
convolution kernels, which are 4-way tensors ``(C_out, C_in, k_h, k_w)``.

Conventions follow Kolda & Bader (2009), "Tensor Decompositions and Applications":

* the **mode-n unfolding** ``X_(n)`` has the mode-n fibres as columns, ordered so that
  the *earliest* remaining mode varies fastest: entry ``(i_1, …, i_N)`` goes to row
  ``i_n`` and column ``Σ_{k≠n} i_k J_k`` with ``J_k = Π_{m<k, m≠n} I_m``;
* the **mode-n product** ``Y = X ×_n M`` multiplies every mode-n fibre by ``M``:
  ``Y_(n) = M X_(n)``;
* the **Khatri–Rao product** ``A ⊙ B`` is the column-wise Kronecker product, with ``B``'s
  row index varying fastest;
* **CP**: ``X ≈ Σ_r λ_r a_r^(1) ∘ … ∘ a_r^(N)``, and then
  ``X_(n) = A^(n) diag(λ) (A^(N) ⊙ … ⊙ A^(n+1) ⊙ A^(n−1) ⊙ … ⊙ A^(1))ᵀ``;
* **Tucker**: ``X ≈ G ×_1 U^(1) ×_2 … ×_N U^(N)``.

The algorithms work with Gram matrices (``AᵀA``, ``X_(n) X_(n)ᵀ``) and small eigen
problems instead of SVDs of wide unfoldings: for a conv kernel of shape (256, 256, 3, 3)
the unfoldings are 256 × 2304 but the Gram matrices only 256 × 256.

References
----------
* T. G. Kolda, B. W. Bader (2009). Tensor decompositions and applications. *SIAM Review*
  51(3), 455–500. (The conventions above, CP-ALS, HOOI.)
* J. D. Carroll, J.-J. Chang (1970). Analysis of individual differences in multidimensional
  scaling via an N-way generalization of "Eckart–Young" decomposition. *Psychometrika* 35(3),
  283–319; R. A. Harshman (1970). Foundations of the PARAFAC procedure. *UCLA Working Papers
  in Phonetics* 16, 1–84. (CP and ALS.)
* L. R. Tucker (1966). Some mathematical notes on three-mode factor analysis. *Psychometrika*
  31(3), 279–311. (Tucker.)
* L. De Lathauwer, B. De Moor, J. Vandewalle (2000a). A multilinear singular value
  decomposition; (2000b). On the best rank-1 and rank-(R1, R2, …, RN) approximation of
  higher-order tensors. *SIAM J. Matrix Anal. Appl.* 21(4), 1253–1278 and 1324–1342. (HOSVD, HOOI.)
* R. Bro (1998). *Multi-way Analysis in the Food Industry: Models, Algorithms, and
  Applications.* PhD thesis, University of Amsterdam. (The line search of CP-ALS.)
* J. B. Kruskal, R. A. Harshman, M. E. Lundy (1989). How 3-MFA data can cause degenerate
  PARAFAC solutions, among other relationships. *Multiway Data Analysis*, 115–122. (Degeneracy.)
* Y.-D. Kim, E. Park, S. Yoo, T. Choi, L. Yang, D. Shin (2016). Compression of deep
  convolutional neural networks for fast and low power mobile applications. *ICLR*.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from .validate import (check_bool, check_choice, check_finite, check_int, check_number,
                       check_positive_ints, check_tensor)

__all__ = ["unfold", "fold", "mode_dot", "khatri_rao", "mttkrp", "cp_to_tensor", "tucker_to_tensor",
           "relative_error", "CPResult", "TuckerResult", "cp_als", "hosvd",
           "tucker_hooi", "cp_params", "tucker_params", "DegenerateCPWarning"]


# --------------------------------------------------------------------------- checks
def _check_float_tensor(T, name: str = "T", min_ndim: int = 1) -> torch.Tensor:
    """``T`` if it is a finite floating-point tensor with at least ``min_ndim`` modes."""
    check_tensor(T, name)
    if T.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} modes, got shape {tuple(T.shape)}")
    if not T.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {T.dtype}")
    return check_finite(T, name)


def _check_matrices(matrices, name: str) -> list:
    """``matrices`` as a non-empty list of 2-D tensors with one common number of columns."""
    matrices = list(matrices)
    if not matrices:
        raise ValueError(f"{name} must be a non-empty list of matrices, got {matrices!r}")
    for i, matrix in enumerate(matrices):
        check_tensor(matrix, f"{name}[{i}]", ndim=2)
    if len({m.shape[1] for m in matrices}) > 1:
        raise ValueError(f"{name} must all have the same number of columns, got shapes "
                         f"{[tuple(m.shape) for m in matrices]}")
    return matrices


def _generator(seed, device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(check_int(seed, "seed"))
    return generator


# --------------------------------------------------------------------------- basic operations
def unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """The mode-``mode`` unfolding ``X_(n)``, of shape ``(I_n, Π_{k≠n} I_k)``, earliest
    remaining mode varying fastest (Kolda & Bader 2009)."""
    T = _check_float_tensor(T)
    return _unfold(T, check_int(mode, "mode", minimum=0, maximum=T.ndim - 1))


def _unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """:func:`unfold` without the argument checks, for use inside the algorithms."""
    others = [k for k in range(T.ndim) if k != mode]
    # a C-order reshape makes the LAST axis vary fastest, so list the other modes reversed
    return T.permute(mode, *reversed(others)).reshape(T.shape[mode], -1)


def fold(M: torch.Tensor, mode: int, shape) -> torch.Tensor:
    """The inverse of :func:`unfold`: the tensor of ``shape`` whose mode-``mode``
    unfolding is ``M``."""
    shape = check_positive_ints(shape, "shape")
    mode = check_int(mode, "mode", minimum=0, maximum=len(shape) - 1)
    check_tensor(M, "M", ndim=2)
    expected = (shape[mode], math.prod(shape) // shape[mode])
    if tuple(M.shape) != expected:
        raise ValueError(f"M has shape {tuple(M.shape)}; unfolding mode {mode} of {shape} "
                         f"gives {expected}")
    others = [k for k in range(len(shape)) if k != mode]
    order = [mode, *reversed(others)]
    folded = M.reshape([shape[k] for k in order])
    return folded.permute(*[order.index(k) for k in range(len(shape))])


def mode_dot(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """The mode-``mode`` product ``T ×_n M`` for a matrix ``M`` of shape ``(J, I_n)``:
    every mode-n fibre of ``T`` is multiplied by ``M``; the result has ``J`` in mode n.
    Equivalently ``unfold(result, n) = M @ unfold(T, n)``."""
    T = _check_float_tensor(T)
    mode = check_int(mode, "mode", minimum=0, maximum=T.ndim - 1)
    check_tensor(M, "M")
    if M.ndim != 2 or M.shape[1] != T.shape[mode]:
        raise ValueError(f"M must be a matrix with {T.shape[mode]} columns (size of mode "
                         f"{mode}), got shape {tuple(M.shape)}")
    return _mode_dot(T, M, mode)


def _mode_dot(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """:func:`mode_dot` without the argument checks, for use inside the algorithms."""
    return torch.tensordot(M, T, dims=([1], [mode])).movedim(0, mode)


def khatri_rao(matrices) -> torch.Tensor:
    """Column-wise Kronecker product ``A_1 ⊙ A_2 ⊙ … ⊙ A_K`` of matrices with the same
    number of columns ``R``: column ``r`` is ``a_r^(1) ⊗ … ⊗ a_r^(K)``, so the result has
    ``Π I_k`` rows, the last matrix's row index varying fastest."""
    matrices = _check_matrices(matrices, "matrices")
    rank = matrices[0].shape[1]
    result = matrices[0]
    for matrix in matrices[1:]:
        result = (result[:, None, :] * matrix[None, :, :]).reshape(-1, rank)
    return result


def mttkrp(T: torch.Tensor, factors, mode: int) -> torch.Tensor:
    """The matricized tensor times Khatri–Rao product (Kolda & Bader 2009, §3.4), the
    right-hand side of the CP-ALS normal equations, of shape ``(I_n, R)``:

        M = X_(n) (A^(N) ⊙ … ⊙ A^(n+1) ⊙ A^(n−1) ⊙ … ⊙ A^(1)).

    Element-wise, for a 3-way tensor and mode 0, ``M[i, r] = Σ_{j,k} X[i,j,k] B[j,r] C[k,r]``.
    The other factors come in reverse mode order because the unfolding lets the earliest
    mode vary fastest and :func:`khatri_rao` the last matrix. ``factors`` holds one
    ``(I_k, R)`` matrix per mode; ``factors[mode]`` is not used (it may be None). Computed
    as written, it forms the ``(Π_{k≠n} I_k) × R`` Khatri–Rao matrix (98,304 rows for a
    3-element mode of a (256, 128, 3, 3) kernel)."""
    T = _check_float_tensor(T, min_ndim=2)
    mode = check_int(mode, "mode", minimum=0, maximum=T.ndim - 1)
    factors = list(factors)
    if len(factors) != T.ndim:
        raise ValueError(f"factors must have one matrix per mode ({T.ndim}), got {len(factors)}")
    others = [k for k in range(T.ndim) if k != mode]
    for k in others:
        check_tensor(factors[k], f"factors[{k}]", ndim=2)
        if tuple(factors[k].shape) != (T.shape[k], factors[others[0]].shape[1]):
            raise ValueError(f"factors[{k}] must have shape ({T.shape[k]}, R) with the R of the "
                             f"other factors, got {tuple(factors[k].shape)}")
    return _unfold(T, mode) @ khatri_rao([factors[k] for k in reversed(others)])


def _mttkrp(T: torch.Tensor, factors, mode: int) -> torch.Tensor:
    """The product :func:`mttkrp` computes, without forming the Khatri–Rao matrix (inside
    CP-ALS, where that matrix would be rebuilt every sweep and cost about 4× the time):
    contract the largest other mode with its factor by one matrix product, which leaves an
    ``R`` axis, then each remaining mode element-wise along that axis. No argument checks."""
    others = [k for k in range(T.ndim) if k != mode]
    first = max(others, key=lambda k: T.shape[k])
    product = torch.tensordot(T, factors[first], dims=([first], [0]))   # R is the last axis
    axes = [k for k in range(T.ndim) if k != first]
    for k in sorted(set(others) - {first}, reverse=True):
        shape = [1] * product.ndim
        shape[axes.index(k)], shape[-1] = T.shape[k], factors[k].shape[1]
        product = (product * factors[k].reshape(shape)).sum(dim=axes.index(k))
        axes.remove(k)
    return product


def cp_to_tensor(weights, factors) -> torch.Tensor:
    """``Σ_r λ_r a_r^(1) ∘ … ∘ a_r^(N)`` from weights ``λ`` (length R, or None for ones)
    and factor matrices ``A^(n)`` of shape ``(I_n, R)``."""
    factors = _check_matrices(factors, "factors")
    rank = factors[0].shape[1]
    if weights is None:
        weights = torch.ones(rank, dtype=factors[0].dtype, device=factors[0].device)
    if tuple(check_tensor(weights, "weights").shape) != (rank,):
        raise ValueError(f"weights must have shape ({rank},), got {tuple(weights.shape)}")
    shape = tuple(f.shape[0] for f in factors)
    if len(factors) == 1:
        return (factors[0] * weights).sum(dim=1)
    unfolded = (factors[0] * weights) @ khatri_rao(list(reversed(factors[1:]))).T
    return fold(unfolded, 0, shape)


def tucker_to_tensor(core: torch.Tensor, factors) -> torch.Tensor:
    """``G ×_1 U^(1) ×_2 U^(2) … ×_N U^(N)``."""
    check_tensor(core, "core")
    factors = list(factors)
    if len(factors) != core.ndim:
        raise ValueError(f"need one factor per mode of the core ({core.ndim}), got {len(factors)}")
    result = core
    for mode, factor in enumerate(factors):
        result = _mode_dot(result, check_tensor(factor, f"factors[{mode}]", ndim=2), mode)
    return result


def relative_error(approximation: torch.Tensor, target: torch.Tensor) -> float:
    """``‖target − approximation‖_F / ‖target‖_F``, the Frobenius norm taken over all
    entries (a matrix or a tensor of any order), computed in float64."""
    check_tensor(approximation, "approximation")
    if check_tensor(target, "target").shape != approximation.shape:
        raise ValueError(f"approximation must have the shape of target, {tuple(target.shape)}, "
                         f"got {tuple(approximation.shape)}")
    target, approximation = target.detach().double(), approximation.detach()
    norm = torch.linalg.vector_norm(target)
    if float(norm) == 0.0:
        raise ValueError(f"target must be non-zero (the denominator), got {tuple(target.shape)} zeros")
    return float(torch.linalg.vector_norm(target - approximation.double()) / norm)


def cp_params(shape, rank: int) -> int:
    """Numbers stored by a rank-``rank`` CP decomposition: ``R · Σ I_n`` (λ in the factors)."""
    shape = check_positive_ints(shape, "shape")
    return check_int(rank, "rank", minimum=1) * sum(shape)


def tucker_params(shape, ranks) -> int:
    """Numbers stored by a Tucker decomposition: ``Π R_n + Σ I_n R_n``."""
    shape = check_positive_ints(shape, "shape")
    ranks = check_positive_ints(ranks, "ranks", length=len(shape))
    return math.prod(ranks) + sum(i * r for i, r in zip(shape, ranks))


def _leading_eigenvectors(gram: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` eigenvectors of the symmetric ``gram`` with the largest eigenvalues,
    as columns (these are the leading left singular vectors of the matrix it came from)."""
    _, vectors = torch.linalg.eigh(gram)
    return vectors[:, -count:].flip(1)


# --------------------------------------------------------------------------- CP
class DegenerateCPWarning(RuntimeWarning):
    """CP-ALS found components whose norms grow while they cancel each other."""


@dataclass
class CPResult:
    """A CP decomposition: ``weights`` (R,), ``factors`` (one ``(I_n, R)`` matrix per
    mode, unit-norm columns), ``rec_errors`` (relative error ``‖X − X̂‖_F / ‖X‖_F`` after
    each iteration), ``n_iter``, ``converged``, and ``degenerate`` (see ``cp_als``)."""

    weights: torch.Tensor
    factors: list
    rec_errors: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    degenerate: bool = False

    def to_tensor(self) -> torch.Tensor:
        return cp_to_tensor(self.weights, self.factors)


def cp_als(T: torch.Tensor, rank: int, *, n_iter_max: int = 100, tol: float = 1e-8,
           init: str = "svd", seed=None, ridge: float = 0.0, linesearch: bool = True) -> CPResult:
    """CP decomposition by alternating least squares (Carroll & Chang 1970; Harshman 1970;
    Kolda & Bader 2009, Figure 3.3).

    Each sweep solves, for one mode at a time with the others fixed, the normal equations

        A^(n) ← X_(n) Z · (ZᵀZ + ridge·I)⁻¹,   Z = ⊙_{k≠n} A^(k),   ZᵀZ = ∗_{k≠n} A^(k)ᵀA^(k)

    (:func:`mttkrp` gives ``X_(n) Z``; ``∗`` is the element-wise product of the small R × R
    Gram matrices), then moves the column norms into ``weights``. The error comes from
    Gram matrices too, without rebuilding the tensor.

    Parameters
    ----------
    T : Tensor with at least 2 modes
    rank, n_iter_max : int
    tol : float
        Stop when ``|e_{k-1} − e_k| < tol`` for the relative errors ``e``, or (without
        ``ridge``) when ``e`` rises, which in ALS only rounding can cause; both count as converged.
    init : {"svd", "random"}
        ``"svd"``: leading left singular vectors of each unfolding (modes smaller than the
        rank: see ``_svd_init``); ``"random"``: Gaussian.
    seed : int, optional
        Seeds the random parts of the initialization.
    ridge : float
        A small ``ridge ≥ 0`` added to ``ZᵀZ`` keeps the solves well-posed and damps
        degenerate solutions (a remedy for the degeneracy below).
    linesearch : bool
        From the third sweep on, try the jump ``A ← A_old + k^(1/p) (A − A_old)`` and keep
        it only if it lowers the error; after four failed jumps ``p`` grows by one
        (extrapolation as in Bro 1998). It costs one MTTKRP and often saves many sweeps.

    Degeneracy: where no best rank-R approximation exists, ALS drives components to huge
    norms that cancel (Kruskal, Harshman & Lundy 1989). Two nearly opposite components both
    above 1.5 × ‖X‖_F flag it ``degenerate``; a :class:`DegenerateCPWarning` says what to do.
    """
    T = _check_float_tensor(T, min_ndim=2)
    check_int(rank, "rank", minimum=1)
    check_int(n_iter_max, "n_iter_max", minimum=1)
    check_number(tol, "tol", low=0)
    check_choice(init, "init", ("svd", "random"))
    check_number(ridge, "ridge", low=0)
    check_bool(linesearch, "linesearch")
    weights, factors = _cp_initial_factors(T, rank, init, _generator(seed, T.device))
    norm_squared = float(torch.sum(T.double() ** 2))
    line_search = _LineSearch() if linesearch else None
    rec_errors, converged, iteration = [], False, 0
    for iteration in range(1, n_iter_max + 1):
        previous = (weights, list(factors))
        for mode in range(T.ndim):
            gram = _hadamard_of_grams(factors, skip=mode)                 # ZᵀZ, R × R
            product = _mttkrp(T, factors, mode)                           # X_(n) Z
            solution = _solve_normal_equations(gram, product, ridge)      # A (ZᵀZ + ρI) = X_(n) Z
            weights, (factors[mode],) = _normalize_columns([solution])      # norms into λ
        error = _cp_error(T, weights, factors, norm_squared, product, gram)
        if line_search is not None and iteration >= 3:
            weights, factors, error = line_search.extrapolate(
                T, previous, (weights, factors), error, iteration, norm_squared)
        rec_errors.append(error)
        if _cp_should_stop(rec_errors, tol, ridge):
            converged = True
            break
    degenerate = _warn_if_degenerate(weights, factors, math.sqrt(norm_squared), rank)
    return CPResult(weights, factors, rec_errors, iteration, converged, degenerate)


def _cp_initial_factors(T: torch.Tensor, rank: int, init: str, generator) -> tuple:
    """``(weights, factors)`` to start ALS from, ``_svd_init`` or Gaussian, normalized."""
    if init == "svd":
        return _normalize_columns(_svd_init(T, rank, generator))
    return _normalize_columns([torch.randn(size, rank, generator=generator, dtype=T.dtype,
                                           device=T.device) for size in T.shape])


def _svd_init(T: torch.Tensor, rank: int, generator: torch.Generator) -> list:
    """Initial CP factors from the data. A mode with ``I_n ≥ R`` gets the ``R`` leading left
    singular vectors of ``X_(n)``. A mode smaller than the rank (the 3 × 3 spatial modes of a
    conv kernel at rank 32) has only ``I_n`` of them, so its columns come from the large
    modes: for component ``r``, contract ``X`` with column ``r`` of every large mode's factor
    and give the small modes the best rank-one approximation of what remains (one SVD per
    small mode, batched over ``r``). With no large mode at all, missing columns are Gaussian."""
    factors, large, small = [], [], []
    for mode, size in enumerate(T.shape):
        unfolded = _unfold(T, mode)
        count = min(rank, size)
        factor = torch.randn(size, rank, generator=generator, dtype=T.dtype, device=T.device)
        factor[:, :count] = _leading_eigenvectors(unfolded @ unfolded.T, count)
        factors.append(factor)
        (large if size >= rank else small).append(mode)
    if not large or not small:
        return factors
    # an MTTKRP with the small modes as rows: for every r, X contracted with each large a_r
    small_sizes = [T.shape[k] for k in small]
    grouped = T.permute(*small, *large).reshape(math.prod(small_sizes), -1)
    remainder = (grouped @ khatri_rao([factors[k] for k in large])).T.reshape(-1, *small_sizes)
    for mode in small[:-1]:
        matrices = remainder.reshape(rank, T.shape[mode], -1)
        u, s, vh = torch.linalg.svd(matrices, full_matrices=False)
        factors[mode] = u[:, :, 0].T
        remainder = (s[:, :1] * vh[:, 0, :]).reshape(rank, *remainder.shape[2:])
    factors[small[-1]] = remainder.reshape(rank, -1).T
    return factors


def _hadamard_of_grams(factors, skip=None) -> torch.Tensor:
    """``∗_{k≠skip} A^(k)ᵀA^(k)``, the element-wise product of the R × R Gram matrices: it is
    ``ZᵀZ`` for ``Z`` the Khatri–Rao product of those factors (Kolda & Bader 2009, §2.6)."""
    rank = factors[0].shape[1]
    gram = torch.ones(rank, rank, dtype=factors[0].dtype, device=factors[0].device)
    for k, factor in enumerate(factors):
        if k != skip:
            gram = gram * (factor.T @ factor)
    return gram


def _solve_normal_equations(gram: torch.Tensor, mttkrp_product, ridge: float) -> torch.Tensor:
    """``A`` solving ``A (ZᵀZ + ρI) = X_(n) Z``: for ``ρ = ridge = 0`` least squares,
    ``min ‖X_(n) − A Zᵀ‖_F``; for ``ρ > 0`` ridge regression, ``min ‖X_(n) − A Zᵀ‖_F² +
    ρ‖A‖_F²``, which stays bounded when ``ZᵀZ`` nears singular (as in a degenerate CP)."""
    identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * identity, mttkrp_product.T).T


def _normalize_columns(factors) -> tuple:
    """``(weights, factors)``: every factor's columns scaled to unit norm, ``λ_r = Π_n
    ‖a_r^(n)‖`` (a zero column keeps norm 1, so that nothing divides by zero)."""
    weights = torch.ones(factors[0].shape[1], dtype=factors[0].dtype, device=factors[0].device)
    normalized = []
    for factor in factors:
        norms = torch.linalg.vector_norm(factor, dim=0)
        norms = torch.where(norms > 0, norms, torch.ones_like(norms))
        normalized.append(factor / norms)
        weights = weights * norms
    return weights, normalized


def _cp_error(T, weights, factors, norm_squared: float, mttkrp_last=None, gram=None) -> float:
    """``‖X − X̂‖_F / ‖X‖_F`` from ``‖X‖² − 2⟨X, X̂⟩ + ‖X̂‖²`` without building ``X̂``:
    ``⟨X, X̂⟩ = Σ_r λ_r (A^(N)ᵀ MTTKRP_N)_rr``, ``‖X̂‖² = λᵀ (∗_n A^(n)ᵀA^(n)) λ``, reusing
    ``mttkrp_last`` and ``gram`` (all modes but the last) when given. The terms nearly cancel,
    so they are summed in float64 even for float32 input, or rounding makes the error jitter."""
    last_mode = T.ndim - 1
    if mttkrp_last is None:
        mttkrp_last = _mttkrp(T, factors, last_mode)
    if gram is None:
        gram = _hadamard_of_grams(factors, skip=last_mode)
    last, w = factors[-1].double(), weights.double()
    inner = float(torch.sum(w * torch.sum(last * mttkrp_last.double(), dim=0)))
    model_norm_squared = float(w @ (gram.double() * (last.T @ last)) @ w)
    return math.sqrt(max(norm_squared - 2 * inner + model_norm_squared, 0.0) / norm_squared)


class _LineSearch:
    """Extrapolation between ALS sweeps (Bro 1998), with its state. ALS often crawls along a
    valley, each sweep moving the factors a little the same way; from sweep ``k = 3`` on,
    try ``A ← A_old + k^(1/p) (A − A_old)`` on whole rank-one terms, kept only if the error
    drops. After 4 rejected jumps in a row ``p`` (first 3) grows by one: shorter steps."""

    def __init__(self):
        self.exponent, self.failed_jumps = 3.0, 0

    def extrapolate(self, T, previous, current, error, iteration, norm_squared) -> tuple:
        """``(weights, factors, error)``: the jump if it lowers ``error``, else ``current``."""
        weights, factors = current
        step = iteration ** (1.0 / self.exponent)
        # compare whole rank-one terms: put each set of weights into its first factor
        old = [previous[1][0] * previous[0]] + previous[1][1:]
        new = [factors[0] * weights] + factors[1:]
        trial_weights, trial = _normalize_columns([a + step * (b - a) for a, b in zip(old, new)])
        trial_error = _cp_error(T, trial_weights, trial, norm_squared)
        if trial_error < error:
            self.failed_jumps = 0
            return trial_weights, trial, trial_error
        self.failed_jumps += 1
        if self.failed_jumps == 4:
            self.exponent, self.failed_jumps = self.exponent + 1, 0
        return weights, factors, error


def _cp_should_stop(rec_errors: list, tol: float, ridge: float) -> bool:
    """The stopping test: the error changed by less than ``tol``, or, without a ridge (when
    ALS cannot increase it in exact arithmetic), it rose: rounding outweighs progress."""
    if len(rec_errors) < 2:
        return False
    change = rec_errors[-2] - rec_errors[-1]
    return abs(change) < tol or (ridge == 0 and change < 0)


def _warn_if_degenerate(weights: torch.Tensor, factors, norm: float, rank: int) -> bool:
    """Whether two components cancel (then warn ``cp_als``'s caller): their congruence
    ``Π_n cos(a_r^(n), a_s^(n))``, an entry of ``∗_n A^(n)ᵀA^(n)``, is below −0.8 and both
    weights exceed 1.5 × ‖X‖, more than the whole tensor: only cancellation explains that."""
    large = weights > 1.5 * norm
    pairs = (_hadamard_of_grams(factors) < -0.8) & large[:, None] & large[None, :]
    degenerate = bool(pairs.any())
    if degenerate:
        warnings.warn(
            f"CP-ALS at rank {rank} looks degenerate: two components point in nearly "
            "opposite directions with weights above 1.5 × ‖X‖, so they cancel each other "
            "and keep growing with more iterations. Lower the rank, pass ridge= (e.g. 1e-2), "
            "or use a Tucker decomposition, which cannot degenerate.",
            DegenerateCPWarning, stacklevel=3)
    return degenerate


# --------------------------------------------------------------------------- Tucker
@dataclass
class TuckerResult:
    """A Tucker decomposition: ``core`` of shape ``ranks``, ``factors`` (orthonormal
    ``(I_n, R_n)`` matrices), ``rec_errors`` (relative error after each iteration; one
    entry for HOSVD), ``n_iter``, ``converged``."""

    core: torch.Tensor
    factors: list
    rec_errors: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False

    def to_tensor(self) -> torch.Tensor:
        return tucker_to_tensor(self.core, self.factors)


def _check_ranks(ranks, shape) -> tuple:
    """``ranks`` as one int ``1 ≤ R_n ≤ I_n`` per mode (an int: that rank for every mode)."""
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        ranks = (ranks,) * len(shape)
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__len__"):
        raise TypeError(f"ranks must be an int or a sequence of one int per mode, got {ranks!r}")
    ranks = tuple(ranks)
    if len(ranks) != len(shape):
        raise ValueError(f"ranks needs one entry per mode ({len(shape)}), got {ranks!r}")
    for mode, (r, size) in enumerate(zip(ranks, shape)):
        check_int(r, f"ranks[{mode}]", minimum=1, maximum=size)
    return ranks


def _project(T: torch.Tensor, factors, modes) -> torch.Tensor:
    """``T ×_k U^(k)ᵀ`` for every mode ``k`` in ``modes``: the core ``G`` when ``modes``
    holds every mode, HOOI's ``Y`` when it leaves out the mode being updated."""
    result = T
    for mode in modes:
        result = _mode_dot(result, factors[mode].T, mode)
    return result


def _tucker_error(norm_squared: float, core: torch.Tensor) -> float:
    """With orthonormal factors, ``‖X − X̂‖² = ‖X‖² − ‖G‖²`` (summed in float64)."""
    return math.sqrt(max(norm_squared - float(torch.sum(core.double() ** 2)), 0.0) / norm_squared)


def hosvd(T: torch.Tensor, ranks) -> TuckerResult:
    """Truncated higher-order SVD (De Lathauwer, De Moor & Vandewalle 2000a): ``U^(n)`` =
    the ``R_n`` leading left singular vectors of ``X_(n)`` (eigenvectors of
    ``X_(n) X_(n)ᵀ``), and ``G = X ×_1 U^(1)ᵀ … ×_N U^(N)ᵀ``. Not optimal, but within a
    factor √N of the best Tucker approximation in error."""
    T = _check_float_tensor(T, min_ndim=2)
    ranks = _check_ranks(ranks, T.shape)
    factors = []
    for mode, rank in enumerate(ranks):
        if rank == T.shape[mode]:  # full rank: any orthonormal basis loses nothing
            factors.append(torch.eye(rank, dtype=T.dtype, device=T.device))
            continue
        unfolded = _unfold(T, mode)
        factors.append(_leading_eigenvectors(unfolded @ unfolded.T, rank))
    core = _project(T, factors, range(T.ndim))
    error = _tucker_error(float(torch.sum(T.double() ** 2)), core)
    return TuckerResult(core, factors, [error], n_iter=0, converged=True)


def tucker_hooi(T: torch.Tensor, ranks, *, n_iter_max: int = 100, tol: float = 1e-8,
                init: str = "hosvd", seed=None) -> TuckerResult:
    """Tucker decomposition by higher-order orthogonal iteration (De Lathauwer, De Moor &
    Vandewalle 2000b; Kolda & Bader 2009, Figure 4.4).

    For each mode in turn: ``Y = X ×_{k≠n} U^(k)ᵀ``, and ``U^(n)`` ← the ``R_n`` leading
    left singular vectors of ``Y_(n)`` (eigenvectors of the small Gram ``Y_(n) Y_(n)ᵀ``).
    Each step cannot increase the error; stop when it falls by less than ``tol`` (or,
    through rounding, rises).
    """
    T = _check_float_tensor(T, min_ndim=2)
    ranks = _check_ranks(ranks, T.shape)
    check_int(n_iter_max, "n_iter_max", minimum=1)
    check_choice(init, "init", ("hosvd", "random"))
    check_number(tol, "tol", low=0)
    # A mode kept at full rank loses nothing whatever orthonormal basis it gets, so it keeps
    # the identity and is neither projected nor updated (for a conv kernel (C_out, C_in,
    # k, k) with ranks (R_out, R_in, k, k) this is the Tucker-2 of Kim et al. 2016).
    reduced = [mode for mode, (r, size) in enumerate(zip(ranks, T.shape)) if r < size]
    generator = _generator(seed, T.device)  # checks seed, even where init="hosvd" ignores it
    if init == "hosvd":
        factors = hosvd(T, ranks).factors
    else:
        factors = [torch.linalg.qr(torch.randn(size, r, generator=generator, dtype=T.dtype,
                                               device=T.device))[0]
                   for size, r in zip(T.shape, ranks)]
    for mode in range(T.ndim):
        if mode not in reduced:
            factors[mode] = torch.eye(T.shape[mode], dtype=T.dtype, device=T.device)
    norm_squared = float(torch.sum(T.double() ** 2))
    rec_errors, converged, iteration = [], False, 0
    for iteration in range(1, n_iter_max + 1):
        for mode in reduced:
            partial = _unfold(_project(T, factors, [k for k in reduced if k != mode]), mode)
            factors[mode] = _leading_eigenvectors(partial @ partial.T, ranks[mode])
        core = _project(T, factors, reduced)
        rec_errors.append(_tucker_error(norm_squared, core))
        # HOOI cannot increase the error in exact arithmetic; an increase is rounding
        # noise larger than the progress (about 1e-6 for float32), so it stops too
        if len(rec_errors) > 1 and rec_errors[-2] - rec_errors[-1] < tol:
            converged = True
            break
    return TuckerResult(core, factors, rec_errors, iteration, converged)
