"""Model surgery: replace chosen Linear and Conv2d layers by factorized ones and report
what changed.

Introduced in notebook ``03_svd_low_rank`` (Linear layers); convolutions, more rank rules,
measured speedups and sensitivity scans in ``05_decomposing_convolutions``.

``compress(model, rank=..., method=...)`` walks the model's ``nn.Linear`` and ``nn.Conv2d``
layers, picks a method and a rank for each, replaces each layer where that saves something
by a factorized one from :mod:`lrlib.layers`, and returns the new model with a report:
per layer, its shape, method, rank, parameters and FLOPs before and after, the speedup the
FLOPs predict and (given an example input) the speedup measured on this machine, and the
relative weight error ``‖W − Ŵ‖_F / ‖W‖_F``. Layers where factorizing would not save
anything are left dense, and the report says why.

Methods (``method=``, one for all layers or a dict per layer name):

* ``"svd"``: Linear → :class:`~lrlib.layers.LowRankLinear`; Conv2d → the channel SVD
  :class:`~lrlib.layers.SVDConv2d` (for a 1×1 conv, exactly the Linear case);
* ``"randomized"``: Linear layers with the randomized SVD (convolutions as ``"svd"``);
* ``"tucker2"``: Conv2d → :class:`~lrlib.layers.Tucker2Conv2d` (Kim et al. 2016);
* ``"cp"``, ``"cp-separable"``, ``"cp-fused"``: Conv2d → :class:`~lrlib.layers.CPConv2d`
  (Lebedev et al. 2015); ``"cp"`` uses :data:`DEFAULT_CP_IMPLEMENTATION`;
* ``"auto"``: SVD for Linear and 1×1 convolutions, Tucker-2 for larger kernels.

Rank rules (``rank=``, one for all layers or a dict per layer name):

* an int ``R`` (for Tucker-2: ``R_in = min(R, C_in)``, ``R_out = min(R, C_out)``), or a
  pair ``(R_in, R_out)`` for a Tucker-2 layer;
* a float ``keep`` in (0, 1]: the largest rank whose weights are at most that fraction of
  the layer's (Tucker-2 keeps ``R_in / R_out ≈ C_in / C_out``);
* :class:`Energy` ``(e)``: the smallest rank keeping that fraction of ``Σ σ²`` of the
  unfolding(s) (SVD and Tucker-2);
* :class:`VBMF` ``()``: the EVBMF rank estimate of the unfolding(s) (Nakajima et al. 2013;
  for Tucker-2 as Kim et al. 2016 do, one per channel mode);
* :class:`FlopReduction` ``(f)``: the largest rank whose FLOPs are at most ``1/f`` of the
  dense layer's, on the example input's size; ``FlopReduction(f, multiple_of=8)`` keeps to
  ranks that are multiples of 8, which run faster per FLOP on a CPU.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from ._table import html_table, text_table
from .layers import (CPConv2d, LowRankLinear, SVDConv2d, Tucker2Conv2d, chain_like, check_conv,
                     conv_output_size, max_cp_rank)
from .svd import break_even_rank, rank_for_energy

__all__ = ["Energy", "VBMF", "FlopReduction", "CompressionReport", "compress", "choose_ranks",
           "SensitivityScan", "sensitivity_scan", "factorized_structure", "rebuild", "METHODS",
           "DEFAULT_CP_IMPLEMENTATION"]

METHODS = ("auto", "svd", "randomized", "tucker2", "cp", "cp-separable", "cp-fused")

#: The CP chain ``method="cp"`` builds. Chosen by ``benchmarks/conv_speedup.py``: on the
#: 2-core CPU it was measured on, the fused chain (one depthwise k×k conv) ran faster than
#: the separable one (two depthwise convs) on most of the grid; see that script's output.
DEFAULT_CP_IMPLEMENTATION = "fused"


# --------------------------------------------------------------------------- rank rules
@dataclass(frozen=True)
class Energy:
    """Rank rule: the smallest rank keeping a fraction ``energy`` of ``Σ S_i²``
    (see :func:`lrlib.svd.rank_for_energy`). Use as ``compress(model, rank=Energy(0.9))``."""

    energy: float

    def __post_init__(self):
        if isinstance(self.energy, bool) or not isinstance(self.energy, (int, float)) \
                or not 0 < self.energy <= 1:
            raise ValueError(f"energy must be a number in (0, 1], got {self.energy!r}")


@dataclass(frozen=True)
class VBMF:
    """Rank rule: the EVBMF estimate of how many singular values of the unfolding stand out
    of the noise (:func:`lrlib.tensor.evbmf`); no parameter to tune."""


@dataclass(frozen=True)
class FlopReduction:
    """Rank rule: the largest rank whose factorized layer needs at most ``1/factor`` of the
    dense layer's FLOPs (on convolutions this needs ``example_input``).

    ``multiple_of=m`` allows only ranks that are multiples of ``m`` (each of the pair, for
    Tucker-2). A CPU computes 8 float32 numbers per AVX2 instruction, and oneDNN's
    convolutions pad channel counts up to such blocks, so a rank of 51 costs about what 56
    costs: with ``multiple_of=8`` the FLOPs saved are FLOPs the hardware really skips
    (measured in ``benchmarks/conv_speedup.py``)."""

    factor: float
    multiple_of: int = 1

    def __post_init__(self):
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) \
                or not self.factor > 1:
            raise ValueError(f"factor must be a number > 1, got {self.factor!r}")
        if isinstance(self.multiple_of, bool) or not isinstance(self.multiple_of, int) \
                or self.multiple_of < 1:
            raise ValueError(f"multiple_of must be a positive int, got {self.multiple_of!r}")


RULE_HELP = ("an int, a pair (R_in, R_out), a float in (0, 1], Energy(e), VBMF() or "
             "FlopReduction(f)")


def _check_rule(rule, where: str = "rank"):
    """A rank rule is a positive int, a pair of them, a float in (0, 1], or a rule object."""
    if isinstance(rule, bool):
        raise TypeError(f"{where} must be {RULE_HELP}, got {rule!r}")
    if isinstance(rule, int):
        if rule < 1:
            raise ValueError(f"{where} must be a positive int, got {rule}")
    elif isinstance(rule, float):
        if not 0 < rule <= 1:
            raise ValueError(f"{where} as a float is the fraction of parameters to keep and must "
                             f"be in (0, 1], got {rule}")
    elif isinstance(rule, tuple):
        if len(rule) != 2 or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rule):
            raise ValueError(f"{where} as a tuple must be a pair of positive ints (R_in, R_out), "
                             f"got {rule!r}")
    elif not isinstance(rule, (Energy, VBMF, FlopReduction)):
        raise TypeError(f"{where} must be {RULE_HELP}, or a dict of those, got {type(rule).__name__}")
    return rule


# --------------------------------------------------------------------------- costs of a choice
def _resolve_method(method: str, layer: nn.Module) -> str:
    """The concrete method for ``layer``: "svd", "randomized", "tucker2", "cp-separable" or
    "cp-fused"."""
    if isinstance(layer, nn.Linear):
        return "randomized" if method == "randomized" else "svd"
    if method == "auto":
        return "svd" if layer.kernel_size == (1, 1) else "tucker2"
    if method == "randomized":
        return "svd"
    if method == "cp":
        return "cp-" + DEFAULT_CP_IMPLEMENTATION
    return method


def _weights_after(method: str, shape, ranks) -> int:
    """Weights of the factorized layer (biases excluded: they stay as they are)."""
    if len(shape) == 2:
        m, n = shape
        return ranks * (m + n)
    c_out, c_in, k_h, k_w = shape
    if method in ("svd", "randomized"):
        return ranks * (c_in * k_h * k_w + c_out)
    if method == "tucker2":
        r_in, r_out = ranks
        return c_in * r_in + r_in * r_out * k_h * k_w + r_out * c_out
    spatial = k_h + k_w if method == "cp-separable" else k_h * k_w
    return ranks * (c_in + spatial + c_out)


def _build(method: str, layer: nn.Module, ranks, seed: int) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return LowRankLinear.from_linear(layer, ranks, method=method, seed=seed)
    if method == "svd":
        return SVDConv2d.from_conv(layer, ranks)
    if method == "tucker2":
        return Tucker2Conv2d.from_conv(layer, ranks)
    return CPConv2d.from_conv(layer, ranks, implementation=method[3:], seed=seed)


def _flops_after(method: str, layer: nn.Module, ranks, input_hw) -> int | None:
    """FLOPs per example of the factorized layer (built on the 'meta' device: shapes only)."""
    if isinstance(layer, nn.Linear):
        return 2 * ranks * (layer.in_features + layer.out_features)
    if input_hw is None:
        return None
    return chain_like(layer, method, ranks, device="meta").flops(input_hw)


def _flops_before(layer: nn.Module, input_hw) -> int | None:
    if isinstance(layer, nn.Linear):
        return 2 * layer.in_features * layer.out_features
    if input_hw is None:
        return None
    h, w = conv_output_size(input_hw, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    return 2 * layer.out_channels * h * w * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]


def _candidates(method: str, shape) -> list:
    """Every rank (or Tucker-2 pair) the method can use, from smallest to largest."""
    if method == "tucker2":
        c_out, c_in = shape[:2]
        largest = max(c_in, c_out)
        return [(max(1, min(c_in, round(t * c_in / largest))), max(1, min(c_out, round(t * c_out / largest))))
                for t in range(1, largest + 1)]
    if len(shape) == 2 or method == "svd":
        m = shape[0]
        n = shape[1] if len(shape) == 2 else shape[1] * shape[2] * shape[3]
        return list(range(1, min(m, n) + 1))
    return list(range(1, max_cp_rank(shape) + 1))


def _multiples_of(candidates, multiple: int) -> list:
    """The candidate ranks rounded down to multiples of ``multiple``, in the same order,
    without repeats; a rank that rounds down to 0 is dropped."""
    if multiple == 1:
        return candidates
    aligned = []
    for candidate in candidates:
        pair = candidate if isinstance(candidate, tuple) else (candidate,)
        rounded = tuple(r // multiple * multiple for r in pair)
        if min(rounded) == 0:
            continue
        rounded = rounded if isinstance(candidate, tuple) else rounded[0]
        if not aligned or aligned[-1] != rounded:
            aligned.append(rounded)
    return aligned


def _largest_within(candidates, cost, budget):
    """The last candidate whose cost is within budget (costs grow along the list)."""
    best = None
    for candidate in candidates:
        if cost(candidate) > budget:
            break
        best = candidate
    return best


def _unfolding_singular_values(weight: torch.Tensor, mode: int) -> torch.Tensor:
    from .tensor import unfold

    return torch.linalg.svdvals(unfold(weight.double(), mode))


def _choose_ranks(rule, method: str, layer: nn.Module, input_hw):
    """(ranks or None, note) for one layer under ``rule``."""
    weight = layer.weight.detach()
    shape = tuple(weight.shape)
    if isinstance(rule, tuple):
        if method != "tucker2":
            return None, f"a pair of ranks needs method 'tucker2', this layer uses {method!r}"
        return rule, ""
    if isinstance(rule, int):
        if method == "tucker2":
            return (min(rule, shape[1]), min(rule, shape[0])), ""
        return rule, ""
    if isinstance(rule, float):
        chosen = _largest_within(_candidates(method, shape),
                                 lambda r: _weights_after(method, shape, r), rule * weight.numel())
        return chosen, "" if chosen is not None else f"keep={rule} leaves less than rank 1"
    if isinstance(rule, FlopReduction):
        before = _flops_before(layer, input_hw)
        if before is None:
            raise ValueError("FlopReduction on a convolution needs example_input= (the FLOPs "
                             "depend on the input size)")
        chosen = _largest_within(_multiples_of(_candidates(method, shape), rule.multiple_of),
                                 lambda r: _flops_after(method, layer, r, input_hw), before / rule.factor)
        which = "rank" if rule.multiple_of == 1 else f"rank that is a multiple of {rule.multiple_of}"
        return chosen, "" if chosen is not None else f"no {which} reaches {rule.factor}× fewer FLOPs"
    if method.startswith("cp"):
        raise ValueError(f"{type(rule).__name__} rules are defined for SVD and Tucker-2, not for "
                         "CP; give CP layers an int or a float rule")
    if isinstance(rule, Energy):
        if method == "tucker2":
            return (rank_for_energy(_unfolding_singular_values(weight, 1), rule.energy),
                    rank_for_energy(_unfolding_singular_values(weight, 0), rule.energy)), ""
        return rank_for_energy(_unfolding_singular_values(weight, 0), rule.energy), ""
    from .tensor import evbmf, unfold

    if method == "tucker2":
        return (max(1, evbmf(unfold(weight.double(), 1))["rank"]),
                max(1, evbmf(unfold(weight.double(), 0))["rank"])), ""
    return max(1, evbmf(unfold(weight.double(), 0))["rank"]), ""


def choose_ranks(layer: nn.Module, rule, *, method: str = "auto", input_hw=None):
    """The rank (or Tucker-2 pair) that ``compress`` would give ``layer`` under ``rule``.

    ``input_hw`` (the ``(H, W)`` the convolution sees) is needed for ``FlopReduction`` on a
    convolution. Returns None when no rank satisfies the rule."""
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"layer must be an nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_rule(rule)
    if isinstance(layer, nn.Conv2d):
        check_conv(layer, "layer")
    ranks, note = _choose_ranks(rule, _resolve_method(method, layer), layer,
                                None if input_hw is None else tuple(input_hw))
    return None if note else ranks


def _rank_limit_note(method: str, shape, ranks) -> str:
    """Why ``ranks`` cannot be used for this layer, or "" if they can."""
    if method == "tucker2":
        if ranks[0] > shape[1] or ranks[1] > shape[0]:
            return f"ranks {ranks} > channels ({shape[1]}, {shape[0]})"
        return ""
    if method.startswith("cp"):
        limit = max_cp_rank(shape)
        return f"rank {ranks} > {limit}, the largest CP rank a {shape} kernel needs" if ranks > limit else ""
    m, n = shape[0], shape[1] if len(shape) == 2 else shape[1] * shape[2] * shape[3]
    return f"rank {ranks} > min({m}, {n})" if ranks > min(m, n) else ""


# --------------------------------------------------------------------------- the report
@dataclass
class CompressionReport:
    """One row per layer considered. Prints as a table; HTML in notebooks.

    FLOPs are per example; for convolutions they need ``example_input`` (else "–").
    ``predicted`` is the FLOP ratio before/after; ``measured`` the latency ratio of the dense
    layer to its replacement on the layer's own input (given ``example_input``)."""

    rows: list

    columns = ("layer", "shape", "method", "rank", "params before", "params after",
               "MFLOPs before", "MFLOPs after", "predicted", "measured", "rel. error", "note")

    @property
    def params_before(self) -> int:
        return sum(row["params_before"] for row in self.rows)

    @property
    def params_after(self) -> int:
        return sum(row["params_after"] for row in self.rows)

    @property
    def flops_before(self):
        return _sum_or_none(row["flops_before"] for row in self.rows)

    @property
    def flops_after(self):
        return _sum_or_none(row["flops_after"] for row in self.rows)

    def _cells(self) -> list:
        cells = []
        for row in self.rows:
            cells.append([
                row["layer"], "×".join(str(s) for s in row["shape"]), row["method"],
                "dense" if row["rank"] is None else str(row["rank"]),
                f"{row['params_before']:,}", f"{row['params_after']:,}",
                _mflops(row["flops_before"]), _mflops(row["flops_after"]),
                _ratio(row["flops_before"], row["flops_after"]),
                "–" if row["measured_speedup"] is None else f"{row['measured_speedup']:.2f}×",
                f"{row['relative_error']:.4f}", row["note"],
            ])
        cells.append(["total", "", "", "", f"{self.params_before:,}", f"{self.params_after:,}",
                      _mflops(self.flops_before), _mflops(self.flops_after),
                      _ratio(self.flops_before, self.flops_after), "", "", ""])
        return cells

    def __str__(self) -> str:
        return text_table(self.columns, self._cells(), left_aligned=(0, 1, 2, 11))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_table(self.columns, self._cells())


def _sum_or_none(values):
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _mflops(flops) -> str:
    return "–" if flops is None else f"{flops / 1e6:.3f}"


def _ratio(before, after) -> str:
    return "–" if before is None or after is None or after == 0 else f"{before / after:.2f}×"


# --------------------------------------------------------------------------- compress
def _selected(name: str, include, exclude) -> bool:
    if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude is not None and any(fnmatch.fnmatchcase(name, p) for p in exclude))


def _layer_inputs(model: nn.Module, names, example_input) -> dict:
    """Run ``model`` once on ``example_input`` and keep the input each named layer saw."""
    seen, handles = {}, []
    modules = dict(model.named_modules())
    for name in names:
        def hook(module, args, name=name):
            seen.setdefault(name, args[0].detach())
        handles.append(modules[name].register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(*(example_input if isinstance(example_input, tuple) else (example_input,)))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def _measured_speedup(dense: nn.Module, factorized: nn.Module, x: torch.Tensor, seconds: float) -> float:
    from .bench import measure_latency

    options = {"warmup": 3, "min_run_time": seconds, "min_samples": 5}
    before = measure_latency(dense, x, **options).median_ms
    after = measure_latency(factorized, x, **options).median_ms
    return before / after


def _check_arguments(model, rank, method, include, exclude):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"model is a single nn.{type(model).__name__}; compress works on models that "
                        "contain such layers -- use LowRankLinear.from_linear(layer, rank) or "
                        "Tucker2Conv2d.from_conv(layer, ranks) for one layer")
    methods = method if isinstance(method, dict) else {None: method}
    for name, value in methods.items():
        if value not in METHODS:
            where = "method" if name is None else f"method[{name!r}]"
            raise ValueError(f"{where} must be one of {METHODS}, got {value!r}")
    if isinstance(rank, dict):
        for name, rule in rank.items():
            _check_rule(rule, f"rank[{name!r}]")
    else:
        _check_rule(rank)
    for name, patterns in (("include", include), ("exclude", exclude)):
        if patterns is not None and (isinstance(patterns, str)
                                     or not all(isinstance(p, str) for p in patterns)):
            raise TypeError(f"{name} must be a list of layer names or patterns, got {patterns!r}")


def compress(model: nn.Module, *, rank, method="auto", include=None, exclude=None,
             inplace: bool = False, seed: int = 0, example_input=None, measure: bool = True,
             measure_seconds: float = 0.2):
    """Replace the model's Linear and Conv2d layers by factorized ones.

    Parameters
    ----------
    model : nn.Module
    rank : rule or dict
        A rank rule for every layer, or a dict mapping layer names to rules (layers not
        named are left alone). Rules: see the module docstring.
    method : str or dict
        One of :data:`METHODS` for every layer, or a dict mapping layer names to methods
        (layers not named use ``"auto"``).
    include, exclude : list of str, optional
        Layer names or shell-style patterns (``"conv*"``) to consider / to skip.
    inplace : bool
        Change ``model`` itself. By default a deep copy is compressed and ``model`` is
        left exactly as it was.
    seed : int
        Seed of the randomized SVD and of CP's initialization.
    example_input : Tensor, optional
        A batch the model accepts. With it, the report gives the convolutions' FLOPs and
        predicted speedups, ``FlopReduction`` rules work on convolutions, and (with
        ``measure=True``) each replaced layer is timed against the dense one on the input
        it sees in the model, for ``measure_seconds`` per phase.

    Returns
    -------
    (nn.Module, CompressionReport)
        A layer is left dense, with the reason in the report's ``note``, when its rank is
        out of range or factorizing would not save parameters.
    """
    _check_arguments(model, rank, method, include, exclude)
    target = model if inplace else copy.deepcopy(model)
    layers = [(name, module) for name, module in target.named_modules()
              if isinstance(module, (nn.Linear, nn.Conv2d))]
    names = {name for name, _ in layers}
    for what, given in (("rank", rank), ("method", method)):
        if isinstance(given, dict):
            unknown = sorted(set(given) - names)
            if unknown:
                raise ValueError(f"{what} names layers that are not Linear or Conv2d layers of "
                                 f"the model: {unknown}")
    chosen_layers = [(name, module) for name, module in layers
                     if _selected(name, include, exclude) and (not isinstance(rank, dict) or name in rank)]
    for name, module in chosen_layers:
        if isinstance(module, nn.Conv2d):
            check_conv(module, f"layer {name!r}")
        elif not bool(torch.isfinite(module.weight).all()):
            raise ValueError(f"layer {name!r} has NaN or Inf weights; cannot factorize it")
    inputs = (_layer_inputs(target, [n for n, _ in chosen_layers], example_input)
              if example_input is not None else {})

    rows = []
    for name, layer in chosen_layers:
        rule = rank[name] if isinstance(rank, dict) else rank
        layer_method = _resolve_method(method.get(name, "auto") if isinstance(method, dict) else method, layer)
        x = inputs.get(name)
        input_hw = tuple(x.shape[-2:]) if x is not None and isinstance(layer, nn.Conv2d) else None
        rows.append(_compress_one(target, name, layer, rule, layer_method, input_hw, x, seed,
                                  measure and x is not None, measure_seconds))
    return target, CompressionReport(rows)


def _compress_one(target, name, layer, rule, method, input_hw, x, seed, measure, seconds) -> dict:
    """Factorize one layer in ``target`` (if that saves something) and return its report row."""
    weight = layer.weight.detach()
    shape = tuple(weight.shape)
    bias = layer.bias.numel() if layer.bias is not None else 0
    row = {"layer": name, "shape": shape, "method": method, "rank": None,
           "params_before": weight.numel() + bias, "flops_before": _flops_before(layer, input_hw),
           "measured_speedup": None, "relative_error": 0.0, "note": ""}
    ranks, note = _choose_ranks(rule, method, layer, input_hw)
    if ranks is not None and not note:
        note = _rank_limit_note(method, shape, ranks)
    if ranks is not None and not note and _weights_after(method, shape, ranks) >= weight.numel():
        if isinstance(layer, nn.Linear):
            note = f"rank {ranks} > break-even {break_even_rank(shape)}: no saving"
        else:
            note = f"rank {ranks} saves no parameters"
    if ranks is None or note:
        row.update(params_after=row["params_before"], flops_after=row["flops_before"],
                   note=note, method="dense")
        return row

    factorized = _build(method, layer, ranks, seed)
    with torch.no_grad():
        dense_kernel = factorized.to_dense().weight.double()
        error = torch.linalg.vector_norm(dense_kernel - weight.double()) / torch.linalg.vector_norm(weight.double())
    row.update(rank=ranks, params_after=factorized.params, relative_error=float(error),
               flops_after=_flops_after(method, layer, ranks, input_hw))
    if measure:
        row["measured_speedup"] = _measured_speedup(layer, factorized, x, seconds)
    _replace(target, name, factorized)
    return row


def _replace(root: nn.Module, dotted_name: str, new: nn.Module) -> None:
    parent_name, _, child = dotted_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


# --------------------------------------------------------------------------- sensitivity scan
@dataclass
class SensitivityScan:
    """Accuracy after factorizing one layer at a time, with everything else left dense.

    ``baseline`` is the dense model's accuracy; ``rows`` has one dict per (layer, rule):
    ``layer``, ``rule``, ``rank``, ``params_after``, ``accuracy``, ``drop`` (baseline −
    accuracy). Prints as a table; :meth:`choose` turns it into a per-layer rank dict."""

    baseline: float
    rows: list

    def choose(self, max_drop: float) -> dict:
        """For each layer, the rule with the fewest parameters whose accuracy drop is at
        most ``max_drop`` (layers where no rule qualifies are left out, i.e. stay dense)."""
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or max_drop < 0:
            raise ValueError(f"max_drop must be a number >= 0, got {max_drop!r}")
        choice = {}
        for layer in dict.fromkeys(row["layer"] for row in self.rows):
            good = [row for row in self.rows if row["layer"] == layer and row["rank"] is not None
                    and row["drop"] <= max_drop]
            if good:
                choice[layer] = min(good, key=lambda row: row["params_after"])["rule"]
        return choice

    def _cells(self) -> list:
        return [[row["layer"], str(row["rule"]), "dense" if row["rank"] is None else str(row["rank"]),
                 f"{row['params_after']:,}", f"{row['accuracy']:.4f}", f"{row['drop']:+.4f}"]
                for row in self.rows]

    columns = ("layer", "rule", "rank", "params after", "accuracy", "drop")

    def __str__(self) -> str:
        return f"dense accuracy {self.baseline:.4f}\n" + text_table(self.columns, self._cells(), left_aligned=(0, 1, 2))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<p>dense accuracy {self.baseline:.4f}</p>" + html_table(self.columns, self._cells())


def sensitivity_scan(model: nn.Module, data, *, rules=(0.1, 0.25, 0.5), method="auto",
                     include=None, exclude=None, batch_size: int = 500, seed: int = 0) -> SensitivityScan:
    """How much accuracy each layer loses when it alone is factorized, for each rank rule.

    A layer whose accuracy barely moves can be compressed hard; a sensitive layer needs a
    high rank or should stay dense (the per-layer scan of Han et al. 2015's pruning work,
    and of MIT 6.5940's labs, applied to ranks). ``model`` is not changed.

    Parameters
    ----------
    model : nn.Module
    data : ImageSet, (inputs, labels) or DataLoader
        What :func:`lrlib.train.evaluate` accepts; a few hundred examples are enough to
        rank layers.
    rules : sequence of rank rules
        Tried for every layer (see :func:`compress`; e.g. fractions of parameters to keep).
    method, include, exclude, seed
        As in :func:`compress`.
    """
    from .train import evaluate

    if isinstance(rules, (str, bytes)) or not hasattr(rules, "__iter__"):
        raise TypeError(f"rules must be a sequence of rank rules, got {rules!r}")
    rules = list(rules)
    if not rules:
        raise ValueError("rules must not be empty")
    for i, rule in enumerate(rules):
        _check_rule(rule, f"rules[{i}]")
    _check_arguments(model, rules[0], method, include, exclude)
    layers = [name for name, module in model.named_modules()
              if isinstance(module, (nn.Linear, nn.Conv2d)) and _selected(name, include, exclude)]
    baseline = evaluate(model, data, batch_size=batch_size).accuracy
    rows = []
    for name in layers:
        for rule in rules:
            compressed, report = compress(model, rank={name: rule}, method=method, seed=seed,
                                          measure=False)
            (row,) = report.rows
            accuracy = evaluate(compressed, data, batch_size=batch_size).accuracy
            rows.append({"layer": name, "rule": rule, "rank": row["rank"],
                         "params_after": row["params_after"], "accuracy": accuracy,
                         "drop": baseline - accuracy})
    return SensitivityScan(baseline, rows)


# --------------------------------------------------------------------------- saving and rebuilding
def _empty_factorized(method: str, layer: nn.Module, ranks) -> nn.Module:
    """A factorized layer with ``layer``'s shape and geometry and the given ranks, with
    untrained weights: the structure a saved state_dict loads into."""
    options = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Linear):
        return LowRankLinear(layer.in_features, layer.out_features, ranks, bias=layer.bias is not None,
                             **options)
    return chain_like(layer, "svd" if method == "randomized" else method,
                      tuple(ranks) if method == "tucker2" else ranks, **options)


def factorized_structure(report: CompressionReport) -> dict:
    """``{layer name: {"method": ..., "rank": ...}}`` for every layer the report replaced:
    what, together with the dense architecture, rebuilds the compressed model."""
    return {row["layer"]: {"method": row["method"],
                           "rank": list(row["rank"]) if isinstance(row["rank"], tuple) else row["rank"]}
            for row in report.rows if row["rank"] is not None}


def rebuild(dense_model: nn.Module, structure: dict, *, inplace: bool = False) -> nn.Module:
    """Replace the layers named in ``structure`` (from :func:`factorized_structure`) by
    factorized layers of those methods and ranks, untrained, so that the compressed model's
    ``state_dict`` can be loaded into the result. ``dense_model`` must have the architecture
    the compressed model started from (e.g. ``models.build_reference("cnn")``, with
    BatchNorm folded if it was folded before compressing)."""
    target = dense_model if inplace else copy.deepcopy(dense_model)
    modules = dict(target.named_modules())
    for name, entry in structure.items():
        if name not in modules or not isinstance(modules[name], (nn.Linear, nn.Conv2d)):
            raise ValueError(f"structure names {name!r}, which is not a Linear or Conv2d layer of "
                             "dense_model")
        _replace(target, name, _empty_factorized(entry["method"], modules[name], entry["rank"]))
    return target
