"""Checkers of notebook ``03_svd_low_rank``: Exercises 3.1 to 3.7."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .core import Case, Failure, as_number, close, outputs_differ, run_cases
from .pipeline import (Requirement, check_requirements, learner_model, percent, state_of,
                       test_accuracy, unchanged_requirement)

__all__ = ["exercise_3_1", "exercise_3_2", "exercise_3_3", "exercise_3_4", "exercise_3_5",
           "exercise_3_6", "exercise_3_7", "MLP_BUDGET_FRACTION", "MLP_TARGET_ACCURACY"]


def _matrix(m, n, seed):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exercise_3_1(rank_k_approximation) -> None:
    """Check ``rank_k_approximation(W, k)``: the best rank-``k`` approximation
    ``U[:, :k] diag(S[:k]) Vh[:k]`` of ``W``, same shape as ``W``."""

    def cases():
        for m, n, k in [(6, 4, 1), (5, 8, 3), (10, 10, 10), (7, 3, 2)]:
            W = _matrix(m, n, seed=m * n + k)
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            yield Case(f"a {m}×{n} matrix W (float64), k={k}", (W.clone(), k),
                       U[:, :k] @ torch.diag(S[:k]) @ Vh[:k], given=(W.shape, k, U, S, Vh))

    def mistake(got, expected, shape, k, U, S, Vh):
        if not isinstance(got, torch.Tensor) or got.shape != shape:
            return Failure(f"a tensor of shape {tuple(shape)}",
                           tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__,
                           "return the approximation itself, U_k @ diag(S_k) @ Vh_k, not the factors")
        if torch.allclose(got.double(), expected, atol=1e-8):
            return None
        error = torch.linalg.matrix_norm(got.double() - expected).item()
        if torch.allclose(got.double(), U[:, :k] @ Vh[:k], atol=1e-8):
            hint = "the singular values are missing: U_k @ torch.diag(S_k) @ Vh_k"
        elif k < min(shape) and torch.allclose(
                got.double(), U[:, :k + 1] @ torch.diag(S[:k + 1]) @ Vh[:k + 1], atol=1e-8):
            hint = "that keeps k + 1 terms; slicing [:k] keeps k"
        else:
            hint = ("U, S, Vh = torch.linalg.svd(W, full_matrices=False); keep the first k "
                    "columns of U, entries of S and rows of Vh")
        return Failure("the rank-k truncated SVD of W",
                       f"a matrix {error:.3g} away from it (Frobenius)", hint)

    run_cases("3.1", rank_k_approximation, cases(), mistake,
              "the best rank-k approximation on 4 matrices, wide, tall and full rank")


def exercise_3_2(error_from_singular_values) -> None:
    """Check ``error_from_singular_values(S, k)``: the Frobenius error of the best rank-k
    approximation, ``sqrt(S[k]² + S[k+1]² + …)`` (0-based), from the singular values
    alone (Eckart–Young)."""
    inputs = [([4.0, 3.0, 0.0], 1, 3.0), ([4.0, 3.0, 0.0], 0, 5.0), ([5.0, 2.0, 2.0, 1.0], 1, 3.0),
              ([5.0, 2.0, 2.0, 1.0], 4, 0.0), ([2.0, 1.0], 2, 0.0)]
    cases = [Case(f"S={values}, k={k}", (torch.tensor(values, dtype=torch.float64), k), expected,
                  given=(values, k))
             for values, k, expected in inputs]

    def mistake(got, expected, values, k):
        if close(got, expected, abs_tol=1e-9):
            return None
        tail = values[k:]
        if close(got, sum(v * v for v in tail)):
            return "take the square root of the sum of squares"
        if tail and close(got, tail[0]):
            return ("that is the spectral-norm error S[k]; the Frobenius error uses every "
                    "dropped value")
        if close(got, math.sqrt(sum(v * v for v in values[k + 1:]))):
            return "indices start at 0: the dropped values are S[k:], not S[k+1:]"
        return "sqrt of the sum of the squares of the dropped singular values S[k:]"

    run_cases("3.2", error_from_singular_values, cases, mistake,
              f"the Eckart–Young error matches on {len(cases)} cases, k = 0 and full rank included")


def exercise_3_3(break_even_rank) -> None:
    """Check ``break_even_rank(m, n)``: the largest ``r`` with ``r·(m + n) < m·n``."""
    from ..svd import break_even_rank as reference

    shapes = [(1024, 784), (1024, 1024), (512, 10), (2, 2), (100, 100), (7, 9)]
    cases = [Case(f"m={m}, n={n}", (m, n), reference((m, n)), given=(m, n)) for m, n in shapes]

    def mistake(got, expected, m, n):
        if as_number(got) == expected and not isinstance(got, float):
            return None
        if as_number(got) == expected:
            return "return an int (use // for integer division)"
        if got == m * n // (m + n):
            return ("at r = mn / (m + n) the factors hold exactly as many numbers as W: no "
                    "saving. The inequality is strict")
        if got == min(m, n) // 2:
            return "the break-even rank depends on both sizes: solve r·(m + n) < m·n for r"
        return "the largest integer r with r·(m + n) < m·n is (m·n − 1) // (m + n)"

    run_cases("3.3", break_even_rank, cases, mistake,
              f"the break-even rank matches on {len(cases)} shapes, exact ties included")


def exercise_3_4(split_linear) -> None:
    """Check ``split_linear(linear, rank)``: an ``nn.Sequential`` of two ``nn.Linear``
    layers (``in → rank`` without bias, then ``rank → out`` with the original bias) whose
    product is the rank-``rank`` truncated SVD of ``linear.weight``; ``linear`` unchanged."""
    from ..layers import LowRankLinear

    generator = torch.Generator().manual_seed(3)

    def cases():
        # the float32 case comes first: the global random state after the last case (each
        # case seeds it) stays what the notebooks' later cells were executed with
        for n_in, n_out, rank, dtype in [(16, 12, 5, torch.float32), (12, 8, 8, torch.float64),
                                         (20, 10, 3, torch.float64), (6, 9, 2, torch.float64)]:
            torch.manual_seed(n_in + n_out)
            linear = nn.Linear(n_in, n_out).to(dtype)
            before = {k: v.clone() for k, v in linear.state_dict().items()}
            name = str(dtype).removeprefix("torch.")
            yield Case(f"nn.Linear({n_in}, {n_out}) in {name}, rank={rank}", (linear, rank),
                       None, given=(linear, n_in, n_out, rank, before))

    def mistake(got, _, linear, n_in, n_out, rank, before):
        layers = list(got.children()) if isinstance(got, nn.Sequential) else []
        if len(layers) != 2 or not all(isinstance(layer, nn.Linear) for layer in layers):
            return Failure("nn.Sequential(nn.Linear, nn.Linear)", got,
                           "return nn.Sequential(first, second) with two nn.Linear layers")
        first, second = layers
        shapes = (tuple(first.weight.shape), tuple(second.weight.shape))
        if shapes != ((rank, n_in), (n_out, rank)):
            return Failure(f"weights of shapes {((rank, n_in), (n_out, rank))}", shapes,
                           "first maps in_features → rank, second rank → out_features")
        if any(not torch.equal(before[k], v) for k, v in linear.state_dict().items()):
            return Failure("linear unchanged", "linear's weights changed",
                           "build new layers; never change the caller's layer")
        # compare in float64, whatever the dtype of the layer and of the learner's layers
        x = torch.randn(5, n_in, generator=generator, dtype=torch.float64)
        reference = LowRankLinear.from_linear(copy.deepcopy(linear).double(), rank)
        with torch.no_grad():
            expected = reference(x)
            try:
                output = got(x.to(first.weight.dtype)).double()
            except RuntimeError as error:
                return Failure("two layers that run on linear's inputs",
                               f"running them raised RuntimeError: {error}",
                               f"build both layers in linear's dtype ({linear.weight.dtype}), e.g. "
                               "nn.Linear(..., dtype=linear.weight.dtype)")
        atol = 1e-8 if linear.weight.dtype == torch.float64 else 1e-4
        if torch.allclose(output, expected, atol=atol):
            return None
        with torch.no_grad():
            product = second.weight.double() @ first.weight.double()
            weights_right = torch.allclose(
                product, reference.last.weight @ reference.first.weight, atol=atol)
        if first.bias is not None:
            hint = "the bias is added once, at the end: first has bias=False"
        elif second.bias is None:
            hint = "second must carry the original bias"
        elif weights_right:
            hint = ("the weights are right but the bias is not: nn.Linear starts with a random "
                    "bias, so copy it, second.bias.copy_(linear.bias) (inside torch.no_grad())")
        else:
            hint = ("first.weight = diag(S_r) @ Vh_r (or √S·Vh_r), second.weight = U_r (or "
                    "U_r·√S): their product must be the truncated SVD of linear.weight")
        return outputs_differ("outputs equal to the rank-r factorization", output, expected, hint)

    run_cases("3.4", split_linear, cases(), mistake,
              "two Linear layers reproduce the truncated SVD (full rank equals the dense layer), "
              "the original is unchanged")


def exercise_3_5(rank_for_energy) -> None:
    """Check ``rank_for_energy(S, energy)``: the smallest ``r`` with
    ``S[:r]² summed ≥ energy × (all S²) summed``."""
    S = [3.0, 2.0, 1.0, 1.0, 1.0]  # squares 9, 4, 1, 1, 1 of 16
    # energy 1.0 is reached by all 7 values, but in floating point the last cumulative
    # fraction comes out a hair below 1.0 (cumsum and sum add in different orders)
    rounding = [3.0, 2.2, 1.6, 1.1, 0.7, 0.4, 0.2]
    inputs = [(S, 0.5, 1), (rounding, 1.0, 7), (S, 0.8125, 2), (S, 0.9, 4), (S, 1.0, 5),
              ([1.0], 0.3, 1)]
    cases = [Case(f"S={values}, energy={energy}",
                  (torch.tensor(values, dtype=torch.float64), energy), expected,
                  given=(values, energy))
             for values, energy, expected in inputs]

    def mistake(got, expected, values, energy):
        if as_number(got) == expected and not isinstance(got, float):
            return None
        if as_number(got) == expected:
            return "return an int"
        by_values = next((r for r in range(1, len(values) + 1)
                          if sum(values[:r]) >= energy * sum(values) - 1e-12), None)
        if got == by_values and by_values != expected:
            return "energy is measured by the squares of the singular values"
        squares = torch.tensor(values, dtype=torch.float64) ** 2
        no_tolerance = int((torch.cumsum(squares, 0) / squares.sum() < energy).sum()) + 1
        if got == no_tolerance and no_tolerance != expected:
            return ("the cumulative energy equals the target in exact arithmetic but comes out "
                    "a rounding error below it in floating point: compare with a small "
                    "tolerance, kept < energy - 1e-12 (or kept >= energy - 1e-12)")
        if got == expected - 1:
            return "return the number of values kept (a count), not the index of the last one"
        if got == expected + 1:
            return "reaching the target exactly is enough (use >=)"
        return ("cumulative sums of S² divided by their total; the first position where "
                "that reaches energy, counted from 1")

    run_cases("3.5", rank_for_energy, cases, mistake,
              f"the energy rank matches on {len(cases)} cases, exact ties included")



def exercise_3_6(whitened_approximation) -> None:
    """Check ``whitened_approximation(W, X, rank)`` → ``W'``: the rank-``rank`` matrix with the
    smallest output error ``‖(W − W') Xᵀ‖_F`` on the inputs ``X`` (one per row): with
    ``G = XᵀX = L Lᵀ`` (Cholesky), the truncated SVD of ``W L`` multiplied back by ``L⁻¹``
    (Chen et al. 2021; Wang et al. 2024)."""
    from ..data_aware import whitened_factors

    def cases():
        for m, n, count, rank, seed in [(6, 5, 40, 2, 1), (8, 10, 60, 3, 2), (5, 5, 30, 5, 3),
                                        (9, 4, 25, 1, 4)]:
            W = _matrix(m, n, seed)
            scales = torch.logspace(-1, 1, n, dtype=torch.float64)      # features of unequal size
            X = _matrix(count, n, seed + 100) * scales
            first, last = whitened_factors(W, X.T @ X, rank)
            yield Case(f"W {m}×{n}, X {count}×{n} (float64), rank={rank}", (W.clone(), X.clone(), rank),
                       last @ first, given=(W, X, rank))

    def mistake(got, expected, W, X, rank):
        if not isinstance(got, torch.Tensor) or got.shape != W.shape:
            return Failure(f"a tensor of W's shape {tuple(W.shape)}",
                           tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__,
                           "return the approximation W' itself (m × n), not its factors")
        got = got.double()
        if torch.allclose(got, expected, atol=1e-7):
            return None
        error = torch.linalg.matrix_norm((W - got) @ X.T).item()
        best = torch.linalg.matrix_norm((W - expected) @ X.T).item()
        L = torch.linalg.cholesky(X.T @ X)
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        Uw, Sw, Vhw = torch.linalg.svd(W @ L, full_matrices=False)
        truncated_WL = (Uw[:, :rank] * Sw[:rank]) @ Vhw[:rank]
        if torch.allclose(got, (U[:, :rank] * S[:rank]) @ Vh[:rank], atol=1e-7):
            hint = ("that is the plain truncated SVD of W, which ignores the inputs: truncate W L "
                    "instead, with L the Cholesky factor of G = XᵀX")
        elif torch.allclose(got, truncated_WL, atol=1e-7):
            hint = "you truncated W L; multiply back by L⁻¹ to get W' (e.g. torch.linalg.solve_triangular)"
        elif torch.allclose(got, truncated_WL @ torch.linalg.inv(L).T, atol=1e-7):
            hint = "the inverse goes on the same side and in the same form: W' = (W L)_r L⁻¹, not L⁻ᵀ"
        else:
            hint = ("G = XᵀX = L Lᵀ (torch.linalg.cholesky gives the lower-triangular L); "
                    "‖(W − W')Xᵀ‖ = ‖(W − W')L‖, so W' L must be the truncated SVD of W L")
        return Failure("the whitened rank-r approximation",
                       f"a matrix whose output error is {error:.4g} (the best is {best:.4g})", hint)

    run_cases("3.6", whitened_approximation, cases(), mistake,
              "the whitened SVD gives the smallest output error on 4 cases, full rank included")

#: Exercise 3.7: the compressed MLP may keep at most this fraction of the dense parameters …
MLP_BUDGET_FRACTION = 1 / 32
#: … and must reach at least this test accuracy (the dense MLP: about 86%).
MLP_TARGET_ACCURACY = 0.84


def low_rank_of(layer) -> int | None:
    """The rank of a factorized Linear layer: an ``lrlib`` LowRankLinear, or an
    ``nn.Sequential`` of two ``nn.Linear`` as in Exercise 3.4; None for anything else."""
    from ..layers import LowRankLinear

    if isinstance(layer, LowRankLinear):
        return layer.rank
    children = list(layer.children()) if isinstance(layer, nn.Sequential) else []
    if (len(children) == 2 and all(isinstance(c, nn.Linear) for c in children)
            and children[0].out_features == children[1].in_features):
        return children[0].out_features
    return None


def _factors_of(layer) -> tuple:
    children = list(layer.children())
    return children[0].weight.detach().double(), children[-1].weight.detach().double()


def _still_truncated(layer, dense_weight: torch.Tensor, rank: int) -> bool:
    """Whether the factors of ``layer`` still multiply to the truncated SVD of
    ``dense_weight``: the layer was factorized but never trained."""
    from ..svd import truncated_svd

    first, last = _factors_of(layer)
    U, S, Vh = truncated_svd(dense_weight.double(), rank)
    return torch.allclose(last @ first, (U * S) @ Vh, atol=1e-4)


def _factorized_requirement(model, names) -> tuple:
    ranks = {name: low_rank_of(getattr(model, name, None)) for name in names}
    described = ", ".join(f"{name} rank {rank}" if rank else
                          f"{name} {type(getattr(model, name)).__name__}" if hasattr(model, name)
                          else f"no layer {name}" for name, rank in ranks.items())
    requirement = Requirement(
        "fc1 and fc2 factorized", "two low-rank layers each", described,
        all(ranks.values()),
        "replace fc1 and fc2 by low-rank layers, e.g. compress.compress(mlp, rank={'fc1': r1, "
        "'fc2': r2}, method='svd'), which returns a new model")
    return requirement, ranks


def exercise_3_7(small_mlp) -> None:
    """Check ``small_mlp(mlp, train_set)``: a new model, built from the reference MLP, with
    ``fc1`` and ``fc2`` factorized (LowRankLinear, or two ``nn.Linear`` in an
    ``nn.Sequential``), at most 1/32 of the dense parameters, and test accuracy ≥ 84% on the
    2,000 shipped test images. The reference MLP passed in must come back unchanged.

    The checker loads the reference MLP and the training images itself, calls
    ``small_mlp`` once (it may fine-tune: a few seconds) and evaluates the result on the
    test images, which the learner's function never sees.
    """
    from .. import data, models, profile

    mlp = models.load_reference("mlp")
    dense = copy.deepcopy(mlp)                     # the learner's function may change mlp
    before = state_of(mlp)
    dense_params = profile.count_params(dense)
    budget = int(dense_params * MLP_BUDGET_FRACTION)
    model = learner_model("3.7", small_mlp, mlp, data.fashion_mnist("train"))

    structure, ranks = _factorized_requirement(model, ["fc1", "fc2"])
    params = profile.count_params(model)
    fixed = dense_params - sum(getattr(dense, n).weight.numel() for n in ranks)
    widths = {n: sum(getattr(dense, n).weight.shape) for n in ranks}
    accuracy = test_accuracy("3.7", model, data.fashion_mnist("test"))
    if all(ranks.values()) and all(_still_truncated(getattr(model, n), getattr(dense, n).weight, r)
                                   for n, r in ranks.items()):
        accuracy_hint = ("the factors are still the truncated SVD of the dense weights: "
                         "fine-tune them (train.fine_tune); at this budget truncation alone "
                         "loses several points")
    else:
        accuracy_hint = ("fine-tune for longer or at a larger learning rate (lr=1e-3 suits "
                         "these factors), and try splitting the budget differently between fc1 "
                         "and fc2; compare your choices on held-out training images (say the "
                         "last 2,000), not on the test set")
    requirements = [
        unchanged_requirement("reference MLP", mlp, before,
                              "work on a copy: compress.compress copies by default; "
                              "copy.deepcopy(mlp) before fine-tuning or changing layers yourself"),
        structure,
        Requirement("parameters", f"≤ {budget:,}", f"{params:,}", params <= budget,
                    f"a layer of rank r has r·(in + out) weights plus its bias: the budget "
                    f"allows r1·{widths['fc1']:,} + r2·{widths['fc2']:,} ≤ {budget - fixed:,} "
                    "(fc3 and the biases take the rest)"),
        Requirement("test accuracy", f"≥ {percent(MLP_TARGET_ACCURACY)}", percent(accuracy),
                    accuracy >= MLP_TARGET_ACCURACY - 1e-9, accuracy_hint),
    ]
    ranks_text = ", ".join(f"{name} at rank {rank}" for name, rank in ranks.items())
    check_requirements("3.7", requirements,
                       f"{ranks_text}: {params:,} parameters (1/{dense_params / params:.1f} of "
                       f"the dense MLP), test accuracy {percent(accuracy)}; the reference MLP "
                       "unchanged")
