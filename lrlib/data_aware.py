"""Data-aware low rank: factorize a weight so that its *outputs* on real inputs stay close,
not its entries.

Introduced in notebook ``03_svd_low_rank``. Let ``W`` be ``m × n`` (a Linear weight, or a
convolution kernel unfolded to ``C_out × C_in k_h k_w``) and let the columns of ``X``
(``n × N``) be the inputs it sees on calibration data, summarised by the Gram matrix
``G = X Xᵀ`` and the mean absolute value of each input feature
(:mod:`lrlib.calibration`). The plain truncated SVD minimises ``‖W − W'‖_F``; on real
inputs what counts is

    ‖(W − W') X‖_F² = trace((W − W') G (W − W')ᵀ).

**Whitened SVD** (the closed form of Chen et al. 2021, DRONE; Wang et al. 2024, SVD-LLM).
Write ``G = S Sᵀ``. Then ``‖(W − W') X‖_F = ‖(W − W') S‖_F``. Take the truncated SVD of
``W S = U Σ Vᵀ`` and ``W' = U_r Σ_r V_rᵀ S⁻¹``: then ``W' S`` is the best rank-``r``
approximation of ``W S`` (Eckart–Young), so ``W'`` is the rank-``r`` map with the smallest
output error on the calibration inputs, and that error is ``√(Σ_{i>r} σ_i²)`` of ``W S``.
``S`` is the Cholesky factor of ``G`` when ``G`` is positive definite. When it is singular
(fewer calibration vectors than features, or a feature that is always zero, such as a
border pixel), the fallback is ``S = Q₊ Λ₊^{1/2}`` from the eigenvectors of ``G`` with
eigenvalues above a tolerance, and ``S⁻¹`` becomes ``Λ₊^{-1/2} Q₊ᵀ``: the result is still
optimal on the calibration inputs, and it maps the directions they never visit to zero.

**Damping.** A layer that sees fewer calibration vectors than it has inputs (a classifier
sees one per image) has a singular ``G`` of rank below ``n``, and no rank above that can be
fitted to the data alone. ``damping = λ`` replaces ``G`` by ``G + λ μ I`` with ``μ`` the
mean of ``G``'s diagonal (the damping of Frantar et al. 2023, GPTQ). Since
``trace(Δ (G + λμI) Δᵀ) = ‖Δ X‖_F² + λμ ‖Δ‖_F²`` for ``Δ = W − W'``, the whitened SVD then
minimises the output error plus ``λμ`` times the weight error: directions the data never
visit are kept as the weights have them, and ``λ → ∞`` is the plain SVD.

**Activation-aware SVD** (Yuan et al. 2023, ASVD). Scale each input column of ``W`` by
``s_j = (mean |x_j|)^α``, truncate the SVD of ``W diag(s)``, and undo the scaling:
``W' = (U_r Σ_r V_rᵀ) diag(s)⁻¹``. Columns that meet large activations are kept more
faithfully. It uses only the diagonal information of the inputs, so it is not optimal in
the sense above; ``α = 0`` is the plain SVD, and the paper uses ``α = 0.5``.

The SVD functions return ``(first, last)`` with ``last @ first = W'``, the singular values
split evenly (``first = √Σ_r V_rᵀ S⁻¹``, ``last = U_r √Σ_r``) as in
:class:`lrlib.layers.LowRankLinear`.

**Data-aware Tucker-2** of a ``k_h × k_w`` convolution (:func:`whitened_tucker2`), the
chain ``C_in → R_in`` (1×1), ``R_in → R_out`` (``k_h × k_w``), ``R_out → C_out`` (1×1) of
:class:`lrlib.layers.Tucker2Conv2d`, fitted to the patch Gram matrix ``G`` of the
calibration inputs. Three steps:

1. *Input factor* ``V`` (``C_in × R_in``, the first 1×1 convolution computes ``z = Vᵀ x``
   at every pixel). Sum the ``k_h k_w`` diagonal blocks of ``G`` into the channel Gram
   matrix ``G_c`` (``C_in × C_in``: what one pixel's channel vector looks like) and stack
   the kernel's taps into ``W_taps`` (``C_out k_h k_w × C_in``). ``V`` comes from the
   whitened SVD of ``W_taps`` against ``G_c``. This is optimal for a proxy, the sum over
   taps of each tap's own output error, as if each tap saw its pixel alone; it ignores how
   neighbouring pixels correlate, so it is **not** the optimal ``V`` for the layer's output.
2. *Core, given* ``V``. The core convolution sees the patches of ``z``, ``Qᵀ p`` with
   ``Qᵀ = Vᵀ ⊗ I_{k_h k_w}`` acting on each patch ``p``. The core that best reproduces the
   outputs ``W p`` is the least-squares solution ``C = W G Q (Qᵀ G Q)⁻¹``.
3. *Output factor, given* ``V``. Keeping only ``R_out`` output directions is a reduced-rank
   regression of ``W P`` on ``Qᵀ P``: its exact optimum takes ``U_out`` as the leading
   ``R_out`` eigenvectors of ``C (Qᵀ G Q) Cᵀ`` and the core ``U_outᵀ C``.

So steps 2–3 are the exact optimum of the output error *for the chosen* ``V`` (the same
reasoning as Zhang et al. 2016's response reconstruction of a convolution's outputs, in
closed form), and the whole is optimal when ``R_in = C_in``. At ``R_in = C_in`` and
``R_out = C_out`` it reproduces the layer.
"""

from __future__ import annotations

import torch

from .svd import check_rank
from .validate import check_number, check_tensor

__all__ = ["whitening", "damped", "whitened_factors", "channel_gram", "whitened_tucker2",
           "output_spectra", "activation_scale", "activation_aware_factors", "output_error",
           "relative_output_error", "DEFAULT_ALPHA", "EIGENVALUE_TOLERANCE"]

#: ASVD's exponent, the value Yuan et al. (2023) use.
DEFAULT_ALPHA = 0.5
#: Eigenvalues of ``G`` below this fraction of the largest count as zero in the fallback.
EIGENVALUE_TOLERANCE = 1e-12


def _check_gram(gram) -> torch.Tensor:
    gram = check_tensor(gram, "input_gram", ndim=2, finite=True).to(torch.float64)
    n = gram.shape[0]
    if gram.shape != (n, n):
        raise ValueError(f"input_gram must be {n}×{n} (square, one row per input feature), got "
                         f"{tuple(gram.shape)}")
    if not torch.allclose(gram, gram.T, rtol=1e-8, atol=1e-10 * gram.abs().max().clamp(min=1e-300)):
        raise ValueError("input_gram must be symmetric (a Gram matrix X Xᵀ)")
    if gram.abs().max() == 0:
        raise ValueError("input_gram is zero: the calibration inputs of this layer were all zero")
    return gram


def whitening(gram: torch.Tensor) -> tuple:
    """``(S, S_inverse, method)`` with ``S Sᵀ = gram`` and ``S_inverse @ S = I``: the
    Cholesky factor and its inverse, or, when ``gram`` is singular, the eigen square root
    ``Q₊ Λ₊^{1/2}`` and ``Λ₊^{-1/2} Q₊ᵀ`` (``method`` says which: "cholesky" or "eigen")."""
    return _whiten(_check_gram(gram))


def _whiten(gram: torch.Tensor) -> tuple:
    """:func:`whitening` of a Gram matrix already checked by ``_check_gram``."""
    lower, info = torch.linalg.cholesky_ex(gram)
    if info == 0:
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        inverse = torch.linalg.solve_triangular(lower, eye, upper=False)
        # a numerically singular G can pass Cholesky with a tiny pivot; check the inverse
        if torch.isfinite(inverse).all() and lower.diagonal().min() > 1e-7 * lower.diagonal().max():
            return lower, inverse, "cholesky"
    values, vectors = torch.linalg.eigh(gram)
    keep = values > EIGENVALUE_TOLERANCE * values.max()
    root = values[keep].sqrt()
    return vectors[:, keep] * root, (vectors[:, keep] / root).T, "eigen"


def damped(gram: torch.Tensor, damping: float = 0.0) -> torch.Tensor:
    """``G + λ μ I`` with ``λ = damping`` and ``μ`` the mean of ``G``'s diagonal (see the
    module docstring); ``G`` itself when ``damping`` is 0."""
    check_number(damping, "damping", low=0)
    if damping == 0:
        return gram
    gram = gram.to(torch.float64)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return gram + damping * gram.diagonal().mean() * eye


def _split(U, S, Vh, rank: int, right: torch.Tensor) -> tuple:
    root = S[:rank].sqrt()
    return (root[:, None] * Vh[:rank]) @ right, U[:, :rank] * root


def whitened_factors(weight: torch.Tensor, gram: torch.Tensor, rank: int, *,
                     damping: float = 0.0) -> tuple:
    """``(first, last)`` of the whitened SVD of ``weight`` (``m × n``) at ``rank`` for inputs
    with Gram matrix ``gram`` (``n × n``): the rank-``rank`` map with the smallest output
    error on those inputs (see the module docstring), with ``damping`` the smallest output
    error plus ``damping · mean(diag G)`` times the weight error. Computed in float64."""
    weight = check_tensor(weight, "weight", ndim=2, finite=True).to(torch.float64)
    check_rank(rank, weight.shape)
    if not isinstance(gram, torch.Tensor) or gram.shape != (weight.shape[1],) * 2:
        shape = tuple(gram.shape) if isinstance(gram, torch.Tensor) else type(gram).__name__
        raise ValueError(f"input_gram must be {weight.shape[1]}×{weight.shape[1]} (the weight's "
                         f"input features), got {shape}")
    S, S_inverse, _ = _whiten(damped(_check_gram(gram), damping))
    if rank > S.shape[1]:
        raise ValueError(f"rank {rank} is above the rank {S.shape[1]} of the calibration inputs' "
                         "Gram matrix (fewer calibration vectors than inputs): collect more "
                         "calibration data, choose a smaller rank, or pass damping (e.g. 0.01)")
    U, sigma, Vh = torch.linalg.svd(weight @ S, full_matrices=False)
    return _split(U, sigma, Vh, rank, S_inverse)


def channel_gram(patch_gram: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``G_c = Σ_taps G[(c, tap), (c', tap)]``: the ``C_in × C_in`` Gram matrix of single
    pixels' channel vectors, from the Gram matrix of unfolded patches (index
    ``c · k_h k_w + tap``, :func:`torch.nn.functional.unfold`'s order)."""
    taps = patch_gram.shape[0] // in_channels
    blocks = patch_gram.reshape(in_channels, taps, in_channels, taps)
    return torch.einsum("atbt->ab", blocks)


def _stacked_taps(kernel: torch.Tensor) -> torch.Tensor:
    """The kernel's taps stacked into one ``C_out k_h k_w × C_in`` matrix (step 1)."""
    c_out, c_in, k_h, k_w = kernel.shape
    return kernel.permute(0, 2, 3, 1).reshape(c_out * k_h * k_w, c_in)


def output_spectra(weight: torch.Tensor, gram: torch.Tensor, *, tucker2: bool = False,
                   damping: float = 0.0) -> list:
    """The singular values the whitened methods truncate, float64, largest first: for the
    whitened SVD one spectrum, that of ``W S`` (the layer's outputs on the calibration
    inputs); for :func:`whitened_tucker2` two, the output mode's (from ``W G Wᵀ``) and the
    input mode's (the stacked taps whitened by one pixel's channel Gram). ``weight`` is a
    Linear weight or a convolution kernel (unfolded to ``C_out × C_in k_h k_w``)."""
    weight = weight.detach().to(torch.float64)
    gram = damped(_check_gram(gram), damping)
    unfolded = weight.reshape(weight.shape[0], -1)
    if not tucker2:
        S, _, _ = _whiten(gram)
        return [torch.linalg.svdvals(unfolded @ S)]
    outputs = torch.linalg.eigvalsh(unfolded @ gram @ unfolded.T).clamp(min=0).sqrt().flip(0)
    S, _, _ = whitening(channel_gram(gram, weight.shape[1]))
    return [outputs, torch.linalg.svdvals(_stacked_taps(weight) @ S)]


def _pseudo_inverse_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The pseudo-inverse of a symmetric positive semi-definite matrix, dropping the
    eigenvalues below :data:`EIGENVALUE_TOLERANCE` of the largest."""
    values, vectors = torch.linalg.eigh(matrix)
    keep = values > EIGENVALUE_TOLERANCE * values.max()
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def whitened_tucker2(kernel: torch.Tensor, patch_gram: torch.Tensor, rank, *,
                     damping: float = 0.0) -> tuple:
    """``(core, u_out, v_in)`` of the data-aware Tucker-2 of a convolution ``kernel``
    (``C_out × C_in × k_h × k_w``) at ``rank = (R_out, R_in)`` for input patches with Gram
    matrix ``patch_gram`` (``C_in k_h k_w`` square), computed in float64 (module docstring:
    steps 1–3; optimal given the input factor, which comes from a per-tap proxy).

    ``core`` is ``(R_out, R_in, k_h, k_w)``, ``u_out`` ``(C_out, R_out)`` with orthonormal
    columns, ``v_in`` ``(C_in, R_in)``: ``K ≈ Σ U_out[o, s] core[s, t] v_in[i, t]``, the
    argument order of :meth:`lrlib.layers.Tucker2Conv2d.from_tucker`. ``damping`` is
    applied to ``patch_gram`` as in :func:`damped`."""
    kernel = check_tensor(kernel, "weight", ndim=4, finite=True).to(torch.float64)
    c_out, c_in, k_h, k_w = kernel.shape
    r_out, r_in = rank
    taps = k_h * k_w
    d = c_in * taps
    if not isinstance(patch_gram, torch.Tensor) or patch_gram.shape != (d, d):
        shape = tuple(patch_gram.shape) if isinstance(patch_gram, torch.Tensor) else type(patch_gram).__name__
        raise ValueError(f"input_gram must be {d}×{d} (C_in·k_h·k_w, the kernel's patch length), "
                         f"got {shape}")
    gram = damped(_check_gram(patch_gram), damping)
    # 1. the input factor: whitened SVD of the stacked taps against one pixel's channel Gram
    first, _ = whitened_factors(_stacked_taps(kernel), channel_gram(gram, c_in), r_in)
    v_in = first.T                                              # (C_in, R_in): z = v_inᵀ x
    # 2. the best core for that input factor: least squares on the patches.
    # Q = v_in ⊗ I_taps, Q[(c, tap), (r, tap')] = v_in[c, r] if tap = tap' (unfold's order)
    eye = torch.eye(taps, dtype=torch.float64, device=kernel.device)
    q = (v_in[:, None, :, None] * eye[None, :, None, :]).reshape(d, r_in * taps)
    w = kernel.reshape(c_out, d)
    reduced = q.T @ gram @ q                                    # Gram of the patches of z
    core = (w @ gram @ q) @ _pseudo_inverse_psd(reduced)        # (C_out, R_in taps)
    # 3. the best R_out output directions: reduced-rank regression, eigenvectors of C H Cᵀ
    values, vectors = torch.linalg.eigh(core @ reduced @ core.T)
    u_out = vectors[:, values.argsort(descending=True)[:r_out]]
    core = (u_out.T @ core).reshape(r_out, r_in, k_h, k_w)
    return core, u_out, v_in


def activation_scale(mean_abs: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """ASVD's column scales ``s_j = (mean |x_j|)^α``, float64. A feature whose mean is zero
    (never active on the calibration data) gets the smallest positive scale, so that the
    scaling stays invertible."""
    mean_abs = check_tensor(mean_abs, "input_mean_abs", ndim=1, finite=True).to(torch.float64)
    check_number(alpha, "alpha", low=0)
    if (mean_abs < 0).any():
        raise ValueError("input_mean_abs must be non-negative (a mean of |x|)")
    positive = mean_abs[mean_abs > 0]
    if positive.numel() == 0:
        raise ValueError("input_mean_abs is zero: the calibration inputs of this layer were all zero")
    return mean_abs.clamp(min=positive.min().item()) ** alpha


def activation_aware_factors(weight: torch.Tensor, mean_abs: torch.Tensor, rank: int, *,
                             alpha: float = DEFAULT_ALPHA) -> tuple:
    """``(first, last)`` of the activation-aware SVD (ASVD) of ``weight`` at ``rank``: the
    truncated SVD of ``W diag(s)``, ``s = mean|x|^α``, with the scaling undone."""
    weight = check_tensor(weight, "weight", ndim=2, finite=True).to(torch.float64)
    check_rank(rank, weight.shape)
    if mean_abs.shape != (weight.shape[1],):
        raise ValueError(f"input_mean_abs must have {weight.shape[1]} entries (the weight's input "
                         f"features), got shape {tuple(mean_abs.shape)}")
    scale = activation_scale(mean_abs, alpha)
    U, sigma, Vh = torch.linalg.svd(weight * scale, full_matrices=False)
    return _split(U, sigma, Vh, rank, torch.diag(1 / scale))


def output_error(weight: torch.Tensor, approximation: torch.Tensor, gram: torch.Tensor) -> float:
    """``‖(W − W') X‖_F = √trace((W − W') G (W − W')ᵀ)`` from the Gram matrix alone."""
    difference = weight.detach().to(torch.float64) - approximation.detach().to(torch.float64)
    gram = gram.detach().to(torch.float64)
    return float(torch.einsum("ij,jk,ik->", difference, gram, difference).clamp(min=0).sqrt())


def relative_output_error(weight: torch.Tensor, approximation: torch.Tensor, gram: torch.Tensor,
                          *, bias=None, input_sum=None, count: int = 0) -> float:
    """:func:`output_error` divided by the norm of the layer's outputs on the same inputs,
    ``‖W X + b 1ᵀ‖_F``: 0 is exact, 1 as far off as outputting zero. With ``bias`` the norm
    needs the inputs' sum ``Σ x`` and their ``count``:
    ``‖W X + b 1ᵀ‖² = trace(W G Wᵀ) + 2 bᵀ W Σx + count ‖b‖²`` (the bias cancels in the error)."""
    squared = output_error(weight, torch.zeros_like(weight), gram) ** 2
    if bias is not None:
        b = bias.detach().to(torch.float64)
        squared += float(2 * b @ (weight.detach().to(torch.float64) @ input_sum.to(torch.float64))
                         + count * (b @ b))
    reference = max(squared, 0.0) ** 0.5
    return output_error(weight, approximation, gram) / reference if reference > 0 else 0.0
