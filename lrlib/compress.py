"""Model surgery: replace chosen Linear and Conv2d layers by factorized ones, and report
what changed.

Introduced in notebook ``03_svd_low_rank`` (Linear layers); convolutions and measured
speedups in ``05_decomposing_convolutions``.

``compress(model, rank=..., method=...)`` walks the model's ``nn.Linear`` and ``nn.Conv2d``
layers, resolves a method for each (:mod:`lrlib.factorizations`), turns the rank rule into
a rank (:mod:`lrlib.rank_rules`), replaces the layer by the factorized one where that saves
parameters, and returns the new model with a :class:`CompressionReport`: per layer, its
shape, method, rank, parameters and FLOPs before and after, the speedup the FLOPs predict,
the speedup measured on this machine (only with ``measure=True``), and the relative weight
error ``‖W − Ŵ‖_F / ‖W‖_F``. Layers where factorizing would not save anything are left
dense, and the report says why.

``method=`` takes the names of :data:`lrlib.factorizations.METHODS`, one for all layers or
a dict per layer name; ``rank=`` takes the rules of :mod:`lrlib.rank_rules`, the same way.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from ._table import html_table, text_table
from .factorizations import check_method, resolve
from .layers import LowRankLinear, check_conv, dense_flops
from .profile import layer_inputs
from .rank_rules import check_rule, choose_rank
from .svd import break_even_rank
from .tensor import relative_error
from .validate import check_finite, check_int, check_number, check_type

__all__ = ["CompressionReport", "compress", "select_layers"]


# --------------------------------------------------------------------------- the report
@dataclass
class CompressionReport:
    """One row per layer considered. Prints as a table; HTML in notebooks.

    FLOPs are per example; for convolutions they need ``example_input`` (else "–").
    ``predicted`` is the FLOP ratio before/after; ``measured`` the latency ratio of the dense
    layer to its replacement on the layer's own input (with ``measure=True``)."""

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


# --------------------------------------------------------------------------- choosing layers
def _check_patterns(patterns, name: str):
    if patterns is not None and (isinstance(patterns, str) or not hasattr(patterns, "__iter__")
                                 or not all(isinstance(p, str) for p in patterns)):
        raise TypeError(f"{name} must be a list of layer names or patterns, got {patterns!r}")
    return None if patterns is None else list(patterns)


def select_layers(model: nn.Module, include=None, exclude=None) -> list:
    """``(name, layer)`` for every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` that matches
    a pattern of ``include`` (default: all) and none of ``exclude``. Patterns are layer names
    or shell-style patterns (``"conv*"``, ``"encoder.*.fc1"``); a pattern that matches no
    such layer is an error listing the layer names, so a typo cannot compress nothing."""
    include, exclude = _check_patterns(include, "include"), _check_patterns(exclude, "exclude")
    layers = [(name, module) for name, module in model.named_modules()
              if isinstance(module, (nn.Linear, nn.Conv2d))]
    names = [name for name, _ in layers]
    for what, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns or []:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise ValueError(f"{what} pattern {pattern!r} matches no Linear or Conv2d layer; "
                                 f"the model's layers are {names}")
    return [(name, module) for name, module in layers
            if (include is None or any(fnmatch.fnmatchcase(name, p) for p in include))
            and not (exclude is not None and any(fnmatch.fnmatchcase(name, p) for p in exclude))]


# --------------------------------------------------------------------------- compress
def _check_arguments(model, rank, method):
    check_type(model, "model", nn.Module)
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"model is a single nn.{type(model).__name__}; compress works on models that "
                        "contain such layers -- use lrlib.factorizations.factorize(layer, rank) "
                        "for one layer")
    check_method(method)
    for name, rule in (rank.items() if isinstance(rank, dict) else [(None, rank)]):
        check_rule(rule, "rank" if name is None else f"rank[{name!r}]")


def _measured_speedup(dense: nn.Module, factorized: nn.Module, x: torch.Tensor, seconds: float) -> float:
    from .bench import measure_latency

    options = {"warmup": 3, "min_run_time": seconds, "min_samples": 5}
    before = measure_latency(dense, x, **options).median_ms
    after = measure_latency(factorized, x, **options).median_ms
    return before / after


def compress(model: nn.Module, *, rank, method="auto", include=None, exclude=None,
             inplace: bool = False, seed: int = 0, n_iter_max=None, example_input=None,
             measure: bool = False, measure_seconds: float = 0.2):
    """Replace the model's Linear and Conv2d layers by factorized ones.

    Parameters
    ----------
    model : nn.Module
    rank : rule or dict
        A rank rule (:mod:`lrlib.rank_rules`) for every layer, or a dict mapping layer names to
        rules (layers not named are left alone).
    method : str or dict
        One of :data:`lrlib.factorizations.METHODS` for every layer (a convolution method
        leaves Linear layers to SVD), or a dict mapping layer names to methods (layers not
        named use ``"auto"``).
    include, exclude : list of str, optional
        Layer names or shell-style patterns (``"conv*"``) to consider / to skip; each must
        match at least one layer.
    inplace : bool
        Change ``model`` itself. By default a deep copy is compressed and ``model`` is
        left exactly as it was.
    seed : int
        Seed of the randomized SVD and of CP's initialization.
    n_iter_max : int, optional
        Caps the sweeps of CP-ALS and HOOI (default: :func:`lrlib.tensor.cp_als`'s and
        :func:`lrlib.tensor.tucker_hooi`'s own); fewer sweeps are faster and less exact.
    example_input : Tensor, optional
        A batch the model accepts. With it, the report gives the convolutions' FLOPs and
        predicted speedups, and ``FlopReduction`` rules work on convolutions.
    measure : bool
        Also time each replaced layer against the dense one on the input it sees in the
        model (needs ``example_input``), for ``measure_seconds`` per phase. Off by default:
        timing is slow, and a number that is measured should be asked for.

    Returns
    -------
    (nn.Module, CompressionReport)
        A layer is left dense, with the reason in the report's ``note``, when no rank fits
        the rule or factorizing would not save parameters.
    """
    _check_arguments(model, rank, method)
    check_number(measure_seconds, "measure_seconds", low=0, low_open=True)
    if n_iter_max is not None:
        check_int(n_iter_max, "n_iter_max", minimum=1)
    if measure and example_input is None:
        raise ValueError("measure=True needs example_input= (each layer is timed on the input "
                         "it sees in the model)")
    target = model if inplace else copy.deepcopy(model)
    selected = select_layers(target, include, exclude)
    names = [name for name, _ in selected]
    for what, given in (("rank", rank), ("method", method)):
        if isinstance(given, dict):
            unknown = sorted(set(given) - {name for name, _ in select_layers(target)})
            if unknown:
                raise ValueError(f"{what} names layers that are not Linear or Conv2d layers of "
                                 f"the model: {unknown}; its layers are {names}")
    if isinstance(rank, dict):
        selected = [(name, layer) for name, layer in selected if name in rank]
    for name, layer in selected:
        if isinstance(layer, nn.Conv2d):
            check_conv(layer, f"layer {name!r}")
        else:
            check_finite(layer.weight, f"layer {name!r} weight")
    inputs = layer_inputs(target, example_input, [n for n, _ in selected]) if example_input is not None else {}

    rows = []
    for name, layer in selected:
        rule = rank[name] if isinstance(rank, dict) else rank
        if isinstance(method, dict):
            factorization = resolve(method.get(name, "auto"), layer)
        else:
            factorization = resolve(method, layer, linear_fallback=True)
        x = inputs.get(name)
        input_hw = tuple(x.shape[-2:]) if x is not None and isinstance(layer, nn.Conv2d) else None
        row, factorized = _compress_one(target, name, layer, rule, factorization, input_hw,
                                        {"seed": seed, "n_iter_max": n_iter_max})
        if factorized is not None and measure:
            row["measured_speedup"] = _measured_speedup(layer, factorized, x, measure_seconds)
        rows.append(row)
    return target, CompressionReport(rows)


def _flops_or_none(layer: nn.Module, input_hw):
    """FLOPs per example of a dense or factorized layer; None for a convolution whose input
    size is unknown."""
    if isinstance(layer, (nn.Linear, LowRankLinear)):
        return layer.flops() if isinstance(layer, LowRankLinear) else dense_flops(layer)
    if input_hw is None:
        return None
    return dense_flops(layer, input_hw) if isinstance(layer, nn.Conv2d) else layer.flops(input_hw)


def _compress_one(target, name, layer, rule, factorization, input_hw, options) -> tuple:
    """Factorize one layer in ``target`` (if that saves something): ``(report row, the
    factorized layer or None)``."""
    weight = layer.weight.detach()
    dense_params = sum(p.numel() for p in layer.parameters())
    row = {"layer": name, "shape": tuple(weight.shape), "method": factorization.name, "rank": None,
           "params_before": dense_params, "flops_before": _flops_or_none(layer, input_hw),
           "measured_speedup": None, "relative_error": 0.0, "note": ""}
    choice = choose_rank(rule, factorization, layer, input_hw)
    note = choice.note
    if choice.rank is not None and not note:
        try:
            structure = factorization.like(layer, choice.rank, device="meta")
        except ValueError as error:             # the rank is out of range for this layer
            structure, note = None, str(error)
        if structure is not None and structure.params >= dense_params:
            note = (f"rank {choice.rank} > break-even {break_even_rank(tuple(weight.shape))}: no saving"
                    if isinstance(layer, nn.Linear) else f"rank {choice.rank} saves no parameters")
    if choice.rank is None or note:
        row.update(params_after=dense_params, flops_after=row["flops_before"], note=note,
                   method="dense")
        return row, None

    factorized = factorization.build(layer, choice.rank, **options)
    with torch.no_grad():
        error = relative_error(factorized.to_dense().weight, weight)
    row.update(rank=choice.rank, params_after=factorized.params, relative_error=float(error),
               flops_after=_flops_or_none(factorized, input_hw))
    target.set_submodule(name, factorized)
    return row, factorized
