"""Rank rules: how many components each factorized layer keeps.

Introduced in notebook ``03_svd_low_rank`` (an int, a parameter fraction, energy);
``VBMF`` and ``FlopReduction`` in ``05_decomposing_convolutions``.

A rule is given to ``compress(model, rank=rule)`` (one for all layers, or a dict per layer
name) and turned into a rank per layer by :func:`choose_rank`:

* an int ``R`` (for Tucker-2: ``R_out = min(R, C_out)``, ``R_in = min(R, C_in)``), or a pair
  ``(R_out, R_in)`` for a Tucker-2 layer (mode order of the kernel);
* a float ``keep`` in (0, 1]: the largest rank whose weights are at most that fraction of
  the layer's (Tucker-2 keeps ``R_out / R_in ≈ C_out / C_in``);
* :class:`Energy` ``(e)``: the smallest rank keeping that fraction of ``Σ σ²`` of the
  unfolding(s) (SVD and Tucker-2); for the whitened methods with calibration statistics,
  of the *outputs* on the calibration inputs (see :class:`Energy`);
* :class:`VBMF` ``()``: the EVBMF rank estimate of the unfolding(s) (Nakajima, Sugiyama,
  Babacan & Tomioka 2013, "Global analytic solution of fully-observed variational Bayesian
  matrix factorization", JMLR; for Tucker-2 as Kim et al. 2016 do, one per channel mode);
* :class:`FlopReduction` ``(f)``: the largest rank whose FLOPs are at most ``1/f`` of the
  dense layer's, on the input size the layer sees; ``FlopReduction(f, multiple_of=8)`` keeps
  to ranks that are multiples of 8, which run faster per FLOP on a CPU.

Costs (parameters, FLOPs) are never computed from formulas here: each candidate rank is
built as an untrained layer on the ``meta`` device (shapes only) and asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data_aware import output_spectra
from .factorizations import Factorization, resolve
from .layers import check_conv, dense_flops
from .svd import rank_for_energy
from .validate import check_int, check_number, check_type

__all__ = ["Energy", "VBMF", "FlopReduction", "RankChoice", "RULE_HELP", "check_rule",
           "choose_rank", "choose_ranks", "aligned", "largest_within"]


@dataclass(frozen=True)
class Energy:
    """Rank rule: the smallest rank keeping a fraction ``energy`` of ``Σ S_i²``
    (see :func:`lrlib.svd.rank_for_energy`). Use as ``compress(model, rank=Energy(0.9))``.

    With a whitened method (``"whitened"``, ``"whitened-tucker2"``) and calibration data,
    the spectrum read is that of ``W S`` (``S Sᵀ`` the inputs' Gram matrix,
    :mod:`lrlib.data_aware`), whose singular values are those of the layer's outputs
    ``W X``: the rank then keeps a fraction ``energy`` of the outputs' ``‖W X‖_F²``, and the
    layer's relative output error on the calibration inputs is ``√(1 − energy)`` at most
    (before the bias). For Tucker-2 the output mode reads ``W G Wᵀ`` and the input mode the
    stacked taps whitened by one pixel's channel Gram, as
    :func:`lrlib.data_aware.whitened_tucker2` factorizes them."""

    energy: float

    def __post_init__(self):
        check_number(self.energy, "energy", low=0, high=1, low_open=True)


@dataclass(frozen=True)
class VBMF:
    """Rank rule: the EVBMF estimate of how many singular values of the unfolding stand out
    of the noise (:func:`lrlib.vbmf.evbmf`); no parameter to tune."""


@dataclass(frozen=True)
class FlopReduction:
    """Rank rule: the largest rank whose factorized layer needs at most ``1/factor`` of the
    dense layer's FLOPs (on convolutions this needs the input size).

    ``multiple_of=m`` allows only ranks that are multiples of ``m`` (each of the pair, for
    Tucker-2). A CPU computes 8 float32 numbers per AVX2 instruction, and oneDNN's
    convolutions pad channel counts up to such blocks, so a rank of 51 costs about what 56
    costs: with ``multiple_of=8`` the FLOPs saved are FLOPs the hardware really skips
    (measured in ``benchmarks/conv_speedup.py``)."""

    factor: float
    multiple_of: int = 1

    def __post_init__(self):
        check_number(self.factor, "factor", low=1, low_open=True)
        check_int(self.multiple_of, "multiple_of", minimum=1)


RULE_HELP = ("an int, a pair (R_out, R_in), a float in (0, 1], Energy(e), VBMF() or "
             "FlopReduction(f)")


def check_rule(rule, name: str = "rank"):
    """``rule`` if it is a rank rule: a positive int, a pair of them, a float in (0, 1], or
    one of the rule objects above."""
    if isinstance(rule, int) and not isinstance(rule, bool):
        return check_int(rule, name, minimum=1)
    if isinstance(rule, float):
        return check_number(rule, f"{name} (as a float, the fraction of parameters to keep)",
                            low=0, high=1, low_open=True)
    if isinstance(rule, tuple):
        if len(rule) != 2:
            raise ValueError(f"{name} as a tuple must be a pair (R_out, R_in), got {rule!r}")
        for i, value in enumerate(rule):
            check_int(value, f"{name}[{i}]", minimum=1)
        return rule
    return check_type(rule, name, (Energy, VBMF, FlopReduction), RULE_HELP)


@dataclass(frozen=True)
class RankChoice:
    """What a rule gives one layer: ``rank`` (an int, a Tucker-2 pair, or None when no rank
    satisfies the rule) and ``note``, the reason when it is None."""

    rank: object
    note: str = ""


def aligned(candidates: list, multiple: int) -> list:
    """The candidate ranks rounded down to multiples of ``multiple``, in the same order,
    without repeats; a rank that rounds down to 0 is dropped."""
    check_type(candidates, "candidates", list)
    if check_int(multiple, "multiple", minimum=1) == 1:
        return candidates
    result = []
    for candidate in candidates:
        pair = candidate if isinstance(candidate, tuple) else (candidate,)
        rounded = tuple(r // multiple * multiple for r in pair)
        if min(rounded) == 0:
            continue
        rounded = rounded if isinstance(candidate, tuple) else rounded[0]
        if not result or result[-1] != rounded:
            result.append(rounded)
    return result


def largest_within(candidates: list, cost, budget):
    """The last candidate whose ``cost(candidate)`` is at most ``budget``, or None; costs
    must grow along the list, so a bisection asks ``cost`` about log₂(len) times."""
    check_type(candidates, "candidates", list)
    if not callable(cost):
        raise TypeError(f"cost must be a function of a candidate, got {type(cost).__name__}")
    check_number(budget, "budget")
    low, high = 0, len(candidates)          # candidates[:low] fit, candidates[high:] do not
    while low < high:
        middle = (low + high) // 2
        if cost(candidates[middle]) <= budget:
            low = middle + 1
        else:
            high = middle
    return candidates[low - 1] if low else None


def _unfolding_rank(weight: torch.Tensor, mode: int, rule) -> int:
    """The rank ``rule`` (Energy or VBMF) gives the mode-``mode`` unfolding of ``weight``."""
    from .tensor import unfold
    from .vbmf import evbmf

    matrix = unfold(weight.double(), mode)
    if isinstance(rule, Energy):
        return rank_for_energy(torch.linalg.svdvals(matrix), rule.energy)
    return max(1, evbmf(matrix).rank)


def choose_rank(rule, factorization: Factorization, layer: nn.Module, input_hw=None, *,
                statistics=None, damping: float = 0.0) -> RankChoice:
    """The rank ``rule`` gives ``layer`` when it is factorized by ``factorization``
    (a registry entry, :func:`lrlib.factorizations.resolve`); ``input_hw`` is the size of
    the input a convolution sees (needed by :class:`FlopReduction`). ``statistics`` (the
    layer's :class:`lrlib.calibration.LayerStatistics`) and ``damping`` make
    :class:`Energy` read the outputs' spectrum for a whitened method."""
    check_rule(rule)
    check_type(factorization, "factorization", Factorization, "a Factorization from the registry")
    check_type(layer, "layer", factorization.dense_type)
    weight = layer.weight.detach()
    modes = factorization.spectral_modes          # one rank per mode: a pair for Tucker-2
    if isinstance(rule, tuple):
        if len(modes) != 2:
            return RankChoice(None, f"a pair of ranks needs method 'tucker2', this layer uses "
                                    f"{factorization.name!r}")
        return RankChoice(rule)
    if isinstance(rule, int):
        return RankChoice(tuple(min(rule, weight.shape[m]) for m in modes) if len(modes) == 2 else rule)
    if isinstance(rule, (float, FlopReduction)):
        return _rank_within_budget(rule, factorization, layer, input_hw)
    if not modes:
        raise ValueError(f"{type(rule).__name__} rules read the spectra of unfoldings and are "
                         "defined for SVD and Tucker-2, not for CP (here method "
                         f"{factorization.name!r}); give these layers an int or a float rule")
    if isinstance(rule, Energy) and factorization.calibration == "gram" and statistics is not None:
        spectra = output_spectra(weight, statistics.gram, tucker2=len(modes) == 2, damping=damping)
        ranks = tuple(rank_for_energy(spectrum, rule.energy) for spectrum in spectra)
    else:
        ranks = tuple(_unfolding_rank(weight, mode, rule) for mode in modes)
    return RankChoice(ranks if len(modes) == 2 else ranks[0])


def _rank_within_budget(rule, factorization: Factorization, layer: nn.Module, input_hw) -> RankChoice:
    """The largest candidate rank within a parameter (float rule) or FLOP budget."""
    candidates = factorization.rank_candidates(layer)

    def meta(rank):
        return factorization.like(layer, rank, device="meta")

    if isinstance(rule, float):
        bias = layer.bias.numel() if layer.bias is not None else 0
        chosen = largest_within(candidates, lambda r: meta(r).params - bias, rule * layer.weight.numel())
        return RankChoice(chosen, "" if chosen is not None else f"keep={rule} leaves less than rank 1")
    if isinstance(layer, nn.Conv2d) and input_hw is None:
        raise ValueError("FlopReduction on a convolution needs example_input= (the FLOPs "
                         "depend on the input size)")
    budget = dense_flops(layer, input_hw) / rule.factor
    chosen = largest_within(aligned(candidates, rule.multiple_of), lambda r: meta(r).flops(input_hw), budget)
    which = "rank" if rule.multiple_of == 1 else f"rank that is a multiple of {rule.multiple_of}"
    return RankChoice(chosen, "" if chosen is not None else f"no {which} reaches {rule.factor}× fewer FLOPs")


def choose_ranks(layer: nn.Module, rule, *, method: str = "auto", input_hw=None):
    """The rank (or Tucker-2 pair) that ``compress`` would give ``layer`` under ``rule``.

    ``input_hw`` (the ``(H, W)`` the convolution sees) is needed for ``FlopReduction`` on a
    convolution. Returns None when no rank satisfies the rule."""
    check_type(layer, "layer", (nn.Linear, nn.Conv2d))
    check_rule(rule)
    if isinstance(layer, nn.Conv2d):
        check_conv(layer, "layer")
    factorization = resolve(method, layer, linear_fallback=True)
    return choose_rank(rule, factorization, layer, None if input_hw is None else tuple(input_hw)).rank
