"""Tensor decompositions: unfolding, mode-n products, CP, Tucker, and VBMF rank estimates.

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
"""

from __future__ import annotations

import math
import string
import warnings
from dataclasses import dataclass, field

import torch

__all__ = [
    "unfold",
    "fold",
    "mode_dot",
    "khatri_rao",
    "cp_to_tensor",
    "tucker_to_tensor",
    "CPResult",
    "TuckerResult",
    "cp_als",
    "hosvd",
    "tucker_hooi",
    "evbmf",
    "cp_params",
    "tucker_params",
    "DegenerateCPWarning",
]


# --------------------------------------------------------------------------- checks
def _check_tensor(T, name: str = "T", min_ndim: int = 1) -> torch.Tensor:
    if not isinstance(T, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
    if T.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} modes, got shape {tuple(T.shape)}")
    if not T.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {T.dtype}")
    if not bool(torch.isfinite(T).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return T


def _check_mode(mode, ndim: int) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode < ndim:
        raise ValueError(f"mode must be an int between 0 and {ndim - 1}, got {mode!r}")
    return mode


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _generator(seed, device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


# --------------------------------------------------------------------------- basic operations
def unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """The mode-``mode`` unfolding ``X_(n)``, of shape ``(I_n, Π_{k≠n} I_k)``, earliest
    remaining mode varying fastest (Kolda & Bader 2009)."""
    T = _check_tensor(T)
    return _unfold(T, _check_mode(mode, T.ndim))


def _unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """:func:`unfold` without the argument checks, for use inside the algorithms."""
    others = [k for k in range(T.ndim) if k != mode]
    # a C-order reshape makes the LAST axis vary fastest, so list the other modes reversed
    return T.permute(mode, *reversed(others)).reshape(T.shape[mode], -1)


def fold(M: torch.Tensor, mode: int, shape) -> torch.Tensor:
    """The inverse of :func:`unfold`: the tensor of ``shape`` whose mode-``mode``
    unfolding is ``M``."""
    shape = tuple(shape)
    mode = _check_mode(mode, len(shape))
    if not isinstance(M, torch.Tensor) or M.ndim != 2:
        raise ValueError("M must be a 2-D tensor (an unfolding)")
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
    T = _check_tensor(T)
    mode = _check_mode(mode, T.ndim)
    if not isinstance(M, torch.Tensor) or M.ndim != 2 or M.shape[1] != T.shape[mode]:
        shape = tuple(M.shape) if isinstance(M, torch.Tensor) else type(M).__name__
        raise ValueError(f"M must be a matrix with {T.shape[mode]} columns (size of mode "
                         f"{mode}), got {shape}")
    return _mode_dot(T, M, mode)


def _mode_dot(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """:func:`mode_dot` without the argument checks, for use inside the algorithms."""
    return torch.tensordot(M, T, dims=([1], [mode])).movedim(0, mode)


def khatri_rao(matrices) -> torch.Tensor:
    """Column-wise Kronecker product ``A_1 ⊙ A_2 ⊙ … ⊙ A_K`` of matrices with the same
    number of columns ``R``; the result has ``Π I_k`` rows, the last matrix's row index
    varying fastest."""
    matrices = list(matrices)
    if not matrices:
        raise ValueError("matrices must not be empty")
    rank = matrices[0].shape[1]
    if any(m.ndim != 2 or m.shape[1] != rank for m in matrices):
        raise ValueError(f"all matrices must be 2-D with {rank} columns, got shapes "
                         f"{[tuple(m.shape) for m in matrices]}")
    result = matrices[0]
    for matrix in matrices[1:]:
        result = (result[:, None, :] * matrix[None, :, :]).reshape(-1, rank)
    return result


def cp_to_tensor(weights, factors) -> torch.Tensor:
    """``Σ_r λ_r a_r^(1) ∘ … ∘ a_r^(N)`` from weights ``λ`` (length R, or None for ones)
    and factor matrices ``A^(n)`` of shape ``(I_n, R)``."""
    factors = list(factors)
    if not factors:
        raise ValueError("factors must not be empty")
    if weights is None:
        weights = torch.ones(factors[0].shape[1], dtype=factors[0].dtype, device=factors[0].device)
    shape = tuple(f.shape[0] for f in factors)
    if len(factors) == 1:
        return (factors[0] * weights).sum(dim=1)
    unfolded = (factors[0] * weights) @ khatri_rao(list(reversed(factors[1:]))).T
    return fold(unfolded, 0, shape)


def tucker_to_tensor(core: torch.Tensor, factors) -> torch.Tensor:
    """``G ×_1 U^(1) ×_2 U^(2) … ×_N U^(N)``."""
    factors = list(factors)
    if len(factors) != core.ndim:
        raise ValueError(f"need one factor per mode of the core ({core.ndim}), got {len(factors)}")
    result = core
    for mode, factor in enumerate(factors):
        result = _mode_dot(result, factor, mode)
    return result


def cp_params(shape, rank: int) -> int:
    """Numbers stored by a rank-``rank`` CP decomposition: ``R · Σ I_n`` (weights folded
    into the factors)."""
    _check_positive_int("rank", rank)
    return rank * sum(shape)


def tucker_params(shape, ranks) -> int:
    """Numbers stored by a Tucker decomposition: ``Π R_n + Σ I_n R_n``."""
    ranks = tuple(ranks)
    if len(ranks) != len(shape):
        raise ValueError(f"ranks needs one entry per mode ({len(shape)}), got {ranks!r}")
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


def _mttkrp(T: torch.Tensor, factors, mode: int) -> torch.Tensor:
    """``X_(n) (⊙_{k≠n} A^(k))``, the matricized tensor times Khatri–Rao product, without
    forming the Khatri–Rao matrix: an einsum contracting every mode but ``mode``."""
    letters = string.ascii_lowercase[: T.ndim]
    operands, terms = [T], [letters]
    for k, factor in enumerate(factors):
        if k != mode:
            operands.append(factor)
            terms.append(letters[k] + "z")
    return torch.einsum(",".join(terms) + "->" + letters[mode] + "z", *operands)


def _cancelling_pair(weights: torch.Tensor, factors, norm: float) -> bool:
    """Whether two components cancel: their congruence ``Π_n cos(a_r^(n), a_s^(n))`` is
    below −0.8 (nearly opposite rank-one tensors) and both weights exceed 1.5 × ‖X‖
    (bigger than the whole tensor, which only cancellation can explain)."""
    congruence = torch.ones(len(weights), len(weights), dtype=weights.dtype,
                            device=weights.device)
    for factor in factors:
        congruence = congruence * (factor.T @ factor)
    large = weights > 1.5 * norm
    pairs = (congruence < -0.8) & large[:, None] & large[None, :]
    return bool(pairs.any())


def _svd_init(T: torch.Tensor, rank: int, generator: torch.Generator) -> list:
    """Initial CP factors from the data.

    A mode with ``I_n ≥ R`` gets the ``R`` leading left singular vectors of ``X_(n)``.
    A mode smaller than the rank (the 3 × 3 spatial modes of a conv kernel at rank 32) has
    only ``I_n`` singular vectors, so its columns come from the large modes instead: for
    component ``r``, contract ``X`` with column ``r`` of every large mode's factor and give
    the small modes the best rank-one approximation of what remains (one SVD per small mode,
    batched over ``r``). With no large mode at all, the missing columns are Gaussian.
    """
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

    letters = string.ascii_lowercase[: T.ndim]
    operands, terms = [T], [letters]
    for mode in large:
        operands.append(factors[mode])
        terms.append(letters[mode] + "z")
    output = "z" + "".join(letters[mode] for mode in small)
    remainder = torch.einsum(",".join(terms) + "->" + output, *operands)  # (R, small sizes…)
    for mode in small[:-1]:
        matrices = remainder.reshape(rank, T.shape[mode], -1)
        u, s, vh = torch.linalg.svd(matrices, full_matrices=False)
        factors[mode] = u[:, :, 0].T
        remainder = (s[:, :1] * vh[:, 0, :]).reshape(rank, *remainder.shape[2:])
    factors[small[-1]] = remainder.reshape(rank, -1).T
    return factors


def _normalize_columns(factors, weights):
    """Scale every factor's columns to unit norm, moving the norms into ``weights``."""
    normalized = []
    for factor in factors:
        norms = torch.linalg.vector_norm(factor, dim=0)
        norms = torch.where(norms > 0, norms, torch.ones_like(norms))
        normalized.append(factor / norms)
        weights = weights * norms
    return normalized, weights


def _cp_error(T: torch.Tensor, weights, factors, norm_squared: float, mttkrp=None, gram=None) -> float:
    """Relative error ``‖X − X̂‖_F / ‖X‖_F`` from ``‖X‖² − 2⟨X, X̂⟩ + ‖X̂‖²``, without
    building ``X̂``: ``⟨X, X̂⟩ = Σ_r λ_r (A^(N)ᵀ MTTKRP_N)_rr`` and ``‖X̂‖² = λᵀ (∗_n A^(n)ᵀA^(n)) λ``.
    ``mttkrp`` and ``gram`` (the product over all modes but the last) are reused when the
    caller already has them. The three terms nearly cancel, so they are summed in float64
    even for float32 input: otherwise rounding makes the error jitter."""
    if mttkrp is None:
        mttkrp = _mttkrp(T, factors, T.ndim - 1)
    if gram is None:
        gram = torch.ones(len(weights), len(weights), dtype=T.dtype, device=T.device)
        for factor in factors[:-1]:
            gram = gram * (factor.T @ factor)
    last, w = factors[-1].double(), weights.double()
    inner = float(torch.sum(w * torch.sum(last * mttkrp.double(), dim=0)))
    model_norm_squared = float(w @ (gram.double() * (last.T @ last)) @ w)
    return math.sqrt(max(norm_squared - 2 * inner + model_norm_squared, 0.0) / norm_squared)


def cp_als(T: torch.Tensor, rank: int, *, n_iter_max: int = 100, tol: float = 1e-8,
           init: str = "svd", seed=None, ridge: float = 0.0, linesearch: bool = True) -> CPResult:
    """CP decomposition by alternating least squares (Carroll & Chang 1970; Harshman 1970;
    Kolda & Bader 2009, Figure 3.3).

    Each iteration solves, for one mode at a time with the others fixed,

        A^(n) ← X_(n) (⊙_{k≠n} A^(k)) · (∗_{k≠n} A^(k)ᵀA^(k) + ridge·I)⁻¹

    (``∗`` is the element-wise product of the small R×R Gram matrices), then normalizes
    the columns into ``weights``. The error is computed from Gram matrices too, without
    rebuilding the tensor. Stops when the relative error changes by less than ``tol``.

    Parameters
    ----------
    T : Tensor with at least 2 modes
    rank : int
    n_iter_max : int
    tol : float
        Stop when ``|e_{k-1} − e_k| < tol`` for the relative errors ``e``. ALS cannot
        increase the error in exact arithmetic, so (without ``ridge``) a computed increase
        means rounding is larger than the progress: that also stops, as converged.
    init : {"svd", "random"}
        ``"svd"``: leading left singular vectors of each unfolding (from the eigenvectors of
        ``X_(n) X_(n)ᵀ``); modes smaller than the rank get columns fitted to the large
        modes' singular vectors (see ``_svd_init``). ``"random"``: Gaussian.
    seed : int, optional
        Seeds the random parts of the initialization.
    ridge : float
        A small ``ridge ≥ 0`` added to the Gram matrix keeps the solves well-posed and
        damps degenerate solutions (a remedy for the degeneracy below).
    linesearch : bool
        After each sweep from the third on, try jumping along the last step,
        ``A ← A_old + k^(1/p) (A − A_old)`` at iteration ``k``, and keep the jump only if
        it lowers the error; after four failed jumps ``p`` grows by one (extrapolation as
        in Bro 1998). It costs one MTTKRP and often saves many sweeps.

    Degeneracy: when the best rank-R approximation does not exist, ALS drives two or more
    components towards huge norms that cancel each other (Kruskal, Harshman & Lundy 1989).
    When two nearly opposite components both weigh more than 1.5 × ‖X‖_F, the result is
    flagged ``degenerate`` and a :class:`DegenerateCPWarning` says what to do.
    """
    T = _check_tensor(T, min_ndim=2)
    _check_positive_int("rank", rank)
    _check_positive_int("n_iter_max", n_iter_max)
    if init not in ("svd", "random"):
        raise ValueError(f"init must be 'svd' or 'random', got {init!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or ridge < 0:
        raise ValueError(f"ridge must be a number >= 0, got {ridge!r}")
    if not isinstance(linesearch, bool):
        raise TypeError(f"linesearch must be True or False, got {linesearch!r}")

    generator = _generator(seed, T.device)
    if init == "svd":
        factors = _svd_init(T, rank, generator)
    else:
        factors = [torch.randn(size, rank, generator=generator, dtype=T.dtype, device=T.device)
                   for size in T.shape]
    factors, weights = _normalize_columns(factors, torch.ones(rank, dtype=T.dtype, device=T.device))

    norm_squared = float(torch.sum(T.double() ** 2))
    identity = torch.eye(rank, dtype=T.dtype, device=T.device)
    exponent, failed_jumps = 3.0, 0
    rec_errors, converged, iteration = [], False, 0
    for iteration in range(1, n_iter_max + 1):
        before = (weights, factors.copy())
        for mode in range(T.ndim):
            gram = torch.ones(rank, rank, dtype=T.dtype, device=T.device)
            for k, factor in enumerate(factors):
                if k != mode:
                    gram = gram * (factor.T @ factor)
            mttkrp = _mttkrp(T, factors, mode)
            factor = torch.linalg.solve(gram + ridge * identity, mttkrp.T).T
            [factors[mode]], weights = _normalize_columns([factor], torch.ones_like(weights))
        error = _cp_error(T, weights, factors, norm_squared, mttkrp, gram)

        if linesearch and iteration >= 3:
            step = iteration ** (1.0 / exponent)
            # compare whole rank-one terms: put each set of weights into its first factor
            old = [before[1][0] * before[0]] + before[1][1:]
            new = [factors[0] * weights] + factors[1:]
            trial, trial_weights = _normalize_columns(
                [a + step * (b - a) for a, b in zip(old, new)], torch.ones_like(weights))
            trial_error = _cp_error(T, trial_weights, trial, norm_squared)
            if trial_error < error:
                factors, weights, error, failed_jumps = trial, trial_weights, trial_error, 0
            else:
                failed_jumps += 1
                if failed_jumps == 4:
                    exponent, failed_jumps = exponent + 1, 0

        rec_errors.append(error)
        if len(rec_errors) > 1:
            change = rec_errors[-2] - rec_errors[-1]
            if abs(change) < tol or (ridge == 0 and change < 0):
                converged = True
                break

    degenerate = _cancelling_pair(weights, factors, math.sqrt(norm_squared))
    if degenerate:
        warnings.warn(
            f"CP-ALS at rank {rank} looks degenerate: two components point in nearly "
            "opposite directions with weights above 1.5 × ‖X‖, so they cancel each other "
            "and keep growing with more iterations. Lower the rank, pass ridge= (e.g. 1e-2), "
            "or use a Tucker decomposition, which cannot degenerate.",
            DegenerateCPWarning, stacklevel=2)
    return CPResult(weights, factors, rec_errors, iteration, converged, degenerate)


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
    ranks = tuple(ranks) if not isinstance(ranks, int) else (ranks,) * len(shape)
    if len(ranks) != len(shape):
        raise ValueError(f"ranks needs one entry per mode ({len(shape)}), got {ranks!r}")
    for mode, (r, size) in enumerate(zip(ranks, shape)):
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= size:
            raise ValueError(f"ranks[{mode}] must be an int between 1 and {size} (the size of "
                             f"mode {mode}), got {r!r}")
    return ranks


def _project(T: torch.Tensor, factors, skip=None) -> torch.Tensor:
    """``T ×_k U^(k)ᵀ`` for every mode ``k`` except ``skip``."""
    result = T
    for mode, factor in enumerate(factors):
        if mode != skip:
            result = _mode_dot(result, factor.T, mode)
    return result


def _tucker_error(norm_squared: float, core: torch.Tensor) -> float:
    """With orthonormal factors, ``‖X − X̂‖² = ‖X‖² − ‖G‖²`` (summed in float64)."""
    return math.sqrt(max(norm_squared - float(torch.sum(core.double() ** 2)), 0.0) / norm_squared)


def hosvd(T: torch.Tensor, ranks) -> TuckerResult:
    """Truncated higher-order SVD (De Lathauwer, De Moor & Vandewalle 2000a): ``U^(n)`` =
    the ``R_n`` leading left singular vectors of ``X_(n)`` (eigenvectors of
    ``X_(n) X_(n)ᵀ``), and ``G = X ×_1 U^(1)ᵀ … ×_N U^(N)ᵀ``. Not optimal, but within a
    factor √N of the best Tucker approximation in error."""
    T = _check_tensor(T, min_ndim=2)
    ranks = _check_ranks(ranks, T.shape)
    factors = []
    for mode, rank in enumerate(ranks):
        if rank == T.shape[mode]:  # full rank: any orthonormal basis loses nothing
            factors.append(torch.eye(rank, dtype=T.dtype, device=T.device))
            continue
        unfolded = _unfold(T, mode)
        factors.append(_leading_eigenvectors(unfolded @ unfolded.T, rank))
    core = _project(T, factors)
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
    T = _check_tensor(T, min_ndim=2)
    ranks = _check_ranks(ranks, T.shape)
    _check_positive_int("n_iter_max", n_iter_max)
    if init not in ("hosvd", "random"):
        raise ValueError(f"init must be 'hosvd' or 'random', got {init!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    # A mode kept at full rank loses nothing whatever orthonormal basis it gets, so it keeps
    # the identity and is neither projected nor updated (for a conv kernel (C_out, C_in,
    # k, k) with ranks (R_out, R_in, k, k) this is the Tucker-2 of Kim et al. 2016).
    reduced = [mode for mode, (r, size) in enumerate(zip(ranks, T.shape)) if r < size]
    if init == "hosvd":
        factors = hosvd(T, ranks).factors
    else:
        generator = _generator(seed, T.device)
        factors = [torch.linalg.qr(torch.randn(size, r, generator=generator, dtype=T.dtype,
                                               device=T.device))[0]
                   for size, r in zip(T.shape, ranks)]
    for mode in range(T.ndim):
        if mode not in reduced:
            factors[mode] = torch.eye(T.shape[mode], dtype=T.dtype, device=T.device)

    def project(skip=None):
        result = T
        for mode in reduced:
            if mode != skip:
                result = _mode_dot(result, factors[mode].T, mode)
        return result

    norm_squared = float(torch.sum(T.double() ** 2))
    rec_errors, converged, iteration = [], False, 0
    for iteration in range(1, n_iter_max + 1):
        for mode in reduced:
            partial = _unfold(project(skip=mode), mode)
            factors[mode] = _leading_eigenvectors(partial @ partial.T, ranks[mode])
        core = project()
        rec_errors.append(_tucker_error(norm_squared, core))
        # HOOI cannot increase the error in exact arithmetic; an increase is rounding
        # noise larger than the progress (about 1e-6 for float32), so it stops too
        if len(rec_errors) > 1 and rec_errors[-2] - rec_errors[-1] < tol:
            converged = True
            break
    return TuckerResult(core, factors, rec_errors, iteration, converged)


# --------------------------------------------------------------------------- VBMF
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


def evbmf(M: torch.Tensor) -> dict:
    """Empirical variational Bayesian matrix factorization: a rank estimate for a noisy
    matrix, with no tuning parameter (Nakajima, Sugiyama, Babacan & Tomioka 2013).

    The matrix is modelled as low rank plus Gaussian noise of unknown variance σ². EVBMF
    estimates σ² by minimizing the free energy, then keeps exactly the singular values
    above the threshold ``√(M σ² (1 + τ̲)(1 + α/τ̲))`` with ``α = L/M`` (``L ≤ M`` the
    two sizes) and ``τ̲ = 2.5129 √α``. Kim et al. (2016) apply it to the unfoldings of a
    convolution kernel to choose Tucker-2 ranks.

    Returns
    -------
    dict
        ``rank`` (int), ``sigma2`` (estimated noise variance), ``threshold``, and
        ``singular_values`` (all of them, descending).
    """
    M = _check_tensor(M, "M", min_ndim=2)
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D matrix, got shape {tuple(M.shape)}")
    matrix = M.double()
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    L, N = matrix.shape  # L ≤ N
    s = torch.linalg.svdvals(matrix)
    if float(s[0]) == 0.0:
        return {"rank": 0, "sigma2": 0.0, "threshold": 0.0, "singular_values": s}
    alpha = L / N
    tau_bar = 2.5129 * math.sqrt(alpha)
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
    return {"rank": int(torch.sum(s > threshold)), "sigma2": sigma2, "threshold": threshold,
            "singular_values": s}
