"""Checkers of notebook ``04_tensor_decompositions``: Exercises 4.1 to 4.4."""

from __future__ import annotations

import math

import torch

from .core import Case, Failure, run_cases

__all__ = ["exercise_4_1", "exercise_4_2", "exercise_4_3", "exercise_4_4"]


def _tensor(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _same_shape(got, expected) -> bool:
    return isinstance(got, torch.Tensor) and got.shape == expected.shape


def exercise_4_1(unfold) -> None:
    """Check ``unfold(T, mode)``: the mode-n unfolding with Kolda & Bader's column order
    (the earliest remaining mode varies fastest)."""
    from .. import tensor

    example = torch.arange(1, 25, dtype=torch.float64).reshape(2, 4, 3).permute(2, 1, 0)
    inputs = [(example, 0), (example, 1), (example, 2), (_tensor((2, 3, 4, 5), 1), 2),
              (_tensor((3, 4), 2), 1)]
    cases = [Case(f"a tensor of shape {tuple(T.shape)}, mode={mode}", (T.clone(), mode),
                  tensor.unfold(T, mode), given=(T, mode))
             for T, mode in inputs]

    def mistake(got, expected, T, mode):
        if _same_shape(got, expected) and torch.equal(got, expected):
            return None
        c_order = T.movedim(mode, 0).reshape(T.shape[mode], -1)
        if _same_shape(got, expected) and torch.equal(got, c_order):
            hint = ("that is the C-order unfolding (the LAST remaining mode varies fastest); "
                    "Kolda & Bader let the earliest vary fastest: permute to (mode, "
                    "*reversed(others)) before reshaping")
        elif isinstance(got, torch.Tensor) and got.shape != expected.shape:
            hint = (f"the unfolding has I_n = {T.shape[mode]} rows and the product of the other "
                    "sizes as columns")
        else:
            hint = "row i_n holds every entry whose mode-n index is i_n"
        shown = (got if not isinstance(got, torch.Tensor) or got.numel() <= 24
                 else f"a tensor of shape {tuple(got.shape)}")
        return Failure(expected if expected.numel() <= 24 else "lrlib.tensor.unfold's result",
                       shown, hint)

    run_cases("4.1", unfold, cases, mistake,
              "unfoldings match Kolda & Bader's worked example and 4-way tensors")


def exercise_4_2(mode_dot) -> None:
    """Check ``mode_dot(T, M, mode)``: ``T ×_n M``, multiplying every mode-n fibre by ``M``
    (shape ``(J, I_n)``); the result has size ``J`` in mode n and the other modes in place."""
    from .. import tensor

    def cases():
        for shape, mode, rows in [((3, 4, 5), 0, 2), ((3, 4, 5), 1, 6), ((3, 4, 5), 2, 5),
                                  ((2, 3, 4, 2), 3, 3)]:
            T, M = _tensor(shape, mode), _tensor((rows, shape[mode]), 10 + mode)
            yield Case(f"T of shape {shape}, M of shape {(rows, shape[mode])}, mode={mode}",
                       (T.clone(), M.clone(), mode), tensor.mode_dot(T, M, mode),
                       given=(T, M, mode))

    def mistake(got, expected, T, M, mode):
        if _same_shape(got, expected) and torch.allclose(got, expected):
            return None
        got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        if isinstance(got, torch.Tensor) and got.shape != expected.shape:
            if got.shape == torch.tensordot(M, T, dims=([1], [mode])).shape:
                hint = "the new mode must go back to position `mode` (torch.movedim)"
            else:
                hint = "the result has the shape of T with size J in mode n"
        else:
            hint = "unfold(result, n) must equal M @ unfold(T, n)"
        return Failure(f"a tensor of shape {tuple(expected.shape)} equal to T ×_n M",
                       got_shape if got_shape != tuple(expected.shape) else "different values",
                       hint)

    run_cases("4.2", mode_dot, cases(), mistake,
              "mode-n products match on 3- and 4-way tensors in every mode")


def exercise_4_3(als_update) -> None:
    """Check ``als_update(T, factors, mode)``: the least-squares factor of ``mode`` with the
    others fixed, ``X_(n) (⊙_{k≠n} A^(k)) (∗_{k≠n} A^(k)ᵀA^(k))⁻¹`` (Khatri–Rao of the
    other factors in REVERSED mode order, Kolda & Bader's convention), not normalized."""
    from .. import tensor

    def cases():
        for shape, rank, mode in [((4, 5, 6), 3, 0), ((4, 5, 6), 2, 1), ((3, 4, 5), 4, 2),
                                  ((3, 4, 2, 5), 2, 2)]:
            T = _tensor(shape, sum(shape) + mode)
            factors = [_tensor((size, rank), 20 + k) for k, size in enumerate(shape)]
            others = [factors[k] for k in reversed(range(len(shape))) if k != mode]
            gram = torch.ones(rank, rank, dtype=torch.float64)
            for k, factor in enumerate(factors):
                if k != mode:
                    gram = gram * (factor.T @ factor)
            mttkrp = tensor.unfold(T, mode) @ tensor.khatri_rao(others)
            yield Case(f"T of shape {shape}, rank {rank}, mode={mode}",
                       (T.clone(), [f.clone() for f in factors], mode),
                       mttkrp @ torch.linalg.pinv(gram), given=(mttkrp,))

    def mistake(got, expected, mttkrp):
        if _same_shape(got, expected):
            got = got.to(expected.dtype)  # compare a float32 answer in float64
        if _same_shape(got, expected) and torch.allclose(got, expected, atol=1e-8):
            return None
        if _same_shape(got, expected) and torch.allclose(got, mttkrp, atol=1e-8):
            hint = ("multiply by the inverse (torch.linalg.pinv) of the Hadamard product of the "
                    "Gram matrices")
        elif _same_shape(got, expected) and torch.allclose(
                got / got.norm(dim=0), expected / expected.norm(dim=0), atol=1e-8):
            hint = "return the factor before normalizing its columns"
        else:
            hint = ("with Kolda & Bader's unfolding the Khatri–Rao product takes the other "
                    "factors from the LAST mode to the first")
        if _same_shape(got, expected):
            difference = (got - expected).abs().max().item()
            relative = (torch.linalg.matrix_norm(got - expected)
                        / torch.linalg.matrix_norm(expected)).item()
            shown = (f"a {tuple(got.shape)} factor with relative error {relative:.3g} "
                     f"(max abs difference {difference:.3g})")
        else:
            shown = tuple(got.shape) if isinstance(got, torch.Tensor) else got
        return Failure(f"a {tuple(expected.shape)} least-squares factor", shown, hint)

    run_cases("4.3", als_update, cases(), mistake,
              "the ALS update matches the least-squares solution in every mode")


def exercise_4_4(hosvd) -> None:
    """Check ``hosvd(T, ranks)`` → ``(core, factors)``: factors with orthonormal columns
    spanning the leading left singular vectors of each unfolding, and
    ``core = T ×_1 U1ᵀ ×_2 U2ᵀ …``."""
    from .. import tensor

    def cases():
        for shape, ranks in [((5, 6, 7), (2, 3, 4)), ((4, 4, 3, 3), (2, 3, 3, 3)),
                             ((6, 5), (2, 2))]:
            T = _tensor(shape, sum(ranks))
            yield Case(f"T of shape {shape}, ranks={ranks}", (T.clone(), ranks),
                       given=(T, shape, ranks))

    def mistake(got, _, T, shape, ranks):
        if not (isinstance(got, tuple) and len(got) == 2):
            return Failure("a pair (core, factors)", type(got).__name__, "return core, factors")
        core, factors = got
        if tuple(core.shape) != tuple(ranks) or len(factors) != len(shape):
            return Failure(f"a core of shape {ranks} and {len(shape)} factors",
                           (tuple(core.shape), len(factors)),
                           "one factor per mode, U_n of shape (I_n, R_n)")
        for n, factor in enumerate(factors):
            if not torch.allclose(factor.T @ factor, torch.eye(ranks[n], dtype=factor.dtype),
                                  atol=1e-8):
                return Failure(f"U_{n} with orthonormal columns", "U_nᵀU_n ≠ I",
                               "take left singular vectors (or eigenvectors of X_(n) X_(n)ᵀ)")
        reference = tensor.hosvd(T, ranks)
        got_error = torch.linalg.vector_norm(T - tensor.tucker_to_tensor(core, factors)).item()
        expected_error = torch.linalg.vector_norm(T - reference.to_tensor()).item()
        if math.isclose(got_error, expected_error, rel_tol=1e-6, abs_tol=1e-10):
            return None
        return Failure(f"reconstruction error {expected_error:.6f}", f"{got_error:.6f}",
                       "keep the LEADING singular vectors of each unfolding (largest singular "
                       "values), and project: core = T ×_n U_nᵀ for every n")

    run_cases("4.4", hosvd, cases(), mistake,
              "HOSVD cores and factors reproduce the truncated HOSVD on 3 tensors")
