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
error ``‖W − Ŵ‖_F / ‖W‖_F`` (and, given an example input, the error of the layer's outputs on
it). Layers where factorizing would not save anything are left dense, and the report says
why; so are, by default, the layers where it is known to be fragile (:func:`default_scope`),
and the report warns where the result is at risk.

``method=`` takes the names of :data:`lrlib.factorizations.METHODS`, one for all layers or
a dict per layer name; ``rank=`` takes the rules of :mod:`lrlib.rank_rules`, the same way.
"""

from __future__ import annotations

import copy
import fnmatch
import html
from dataclasses import dataclass, field

import torch
from torch import nn

from ._table import html_table, text_table
from .calibration import CalibrationStatistics, collect_statistics
from .data_aware import relative_output_error
from .factorizations import check_method, resolve
from .layers import LowRankLinear, check_conv, dense_flops
from .profile import layer_inputs
from .rank_rules import check_rule, choose_rank
from .svd import break_even_rank
from .tensor import relative_error
from .validate import check_finite, check_int, check_number, check_type

__all__ = ["CompressionReport", "compress", "select_layers", "default_scope",
           "OUTPUT_ERROR_WARNING", "WEIGHT_ERROR_WARNING"]

#: A factorized layer whose outputs on the example input are off by more than this
#: (relative Frobenius error) gets a warning: on the reference models, the layers that broke
#: accuracy were at 0.63–0.95, those that did not at 0.11–0.24 (see tests/test_compress.py).
OUTPUT_ERROR_WARNING = 0.5
#: Without an example input, the weight error that gets a warning. Weight errors say less:
#: working layers of the reference CNN reach 0.64 at a quarter of their weights.
WEIGHT_ERROR_WARNING = 0.8


# --------------------------------------------------------------------------- the report
@dataclass
class CompressionReport:
    """One row per layer considered, and the warnings. Prints as a table; HTML in notebooks.

    FLOPs are per example; for convolutions they need ``example_input`` (else "–").
    ``predicted`` is the FLOP ratio before/after; ``measured`` the latency ratio of the dense
    layer to its replacement on the layer's own input (with ``measure=True``); ``weight err.``
    is ``‖W − Ŵ‖_F / ‖W‖_F`` and ``output err.`` the same for the layer's outputs on the
    input it sees in the model (with ``example_input``). With ``calibration=`` a column
    ``calib. err.`` gives the relative output error on all the calibration inputs,
    ``‖(W − Ŵ) X‖_F / ‖W X‖_F`` from their Gram matrix, and ``calibration`` holds the
    statistics (:class:`lrlib.calibration.CalibrationStatistics`). ``warnings`` lists what
    puts the compressed model at risk; they are printed below the table."""

    rows: list
    warnings: list = field(default_factory=list)
    calibration: object = None

    columns = ("layer", "shape", "method", "rank", "params before", "params after",
               "MFLOPs before", "MFLOPs after", "predicted", "measured", "weight err.",
               "output err.", "note")

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

    @property
    def _calibrated(self) -> bool:
        return any(row.get("calibration_error") is not None for row in self.rows)

    def _columns(self) -> tuple:
        if not self._calibrated:
            return self.columns
        return self.columns[:-1] + ("calib. err.", self.columns[-1])

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
                f"{row['relative_error']:.4f}",
                "–" if row["output_error"] is None else f"{row['output_error']:.4f}", row["note"],
            ])
            if self._calibrated:
                error = row.get("calibration_error")
                cells[-1].insert(-1, "–" if error is None else f"{error:.4f}")
        cells.append(["total", "", "", "", f"{self.params_before:,}", f"{self.params_after:,}",
                      _mflops(self.flops_before), _mflops(self.flops_after),
                      _ratio(self.flops_before, self.flops_after), "", "", "", ""]
                     + ([""] if self._calibrated else []))
        return cells

    def __str__(self) -> str:
        columns = self._columns()
        table = text_table(columns, self._cells(), left_aligned=(0, 1, 2, len(columns) - 1))
        lines = [table]
        if self.calibration is not None:
            lines.append(f"calibration: {self.calibration.batches} batch(es), "
                         f"{self.calibration.nbytes / 2 ** 20:.1f} MiB of statistics"
                         + "".join(f"; {name} skipped: {why}"
                                   for name, why in self.calibration.skipped.items()))
        return "\n".join([*lines, *(f"warning: {text}" for text in self.warnings)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        warnings = "".join(f"<p><b>warning:</b> {html.escape(text)}</p>" for text in self.warnings)
        return html_table(self._columns(), self._cells()) + warnings


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


def default_scope(model: nn.Module) -> dict:
    """``{layer name: reason}``: the layers ``compress`` leaves dense unless they are named
    explicitly (in ``include``, or as a key of a ``rank`` or ``method`` dict).

    * The output layer (the last Linear or Conv2d the model registers): it produces the
      classes, and at any rank that saves parameters it has fewer components than classes,
      so classes it told apart can no longer be told apart independently; on the reference
      CNN factorizing it alone costs most of the accuracy.
    * A first convolution on at most 3 input channels (an image's colours): its kernel is
      small, so little is saved, and its error reaches every later layer.

    Lebedev et al. (2015) and Kim et al. (2016) leave the first and last layers dense for
    the same reasons; the command line (``lrlib compress``) uses this scope too."""
    check_type(model, "model", nn.Module)
    return _scope_of(select_layers(model))


def _scope_of(layers: list) -> dict:
    """:func:`default_scope` of a model whose ``(name, layer)`` list is ``layers``."""
    if not layers:
        return {}
    scope = {}
    first_name, first = layers[0]
    if isinstance(first, nn.Conv2d) and first.in_channels <= 3:
        scope[first_name] = (f"kept dense by default: first conv, {first.in_channels} input "
                             "channel(s)")
    last_name, last = layers[-1]
    outputs = last.out_features if isinstance(last, nn.Linear) else last.out_channels
    scope[last_name] = f"kept dense by default: output layer ({outputs} outputs)"
    return scope


def _explicitly_named(include, rank, method) -> set:
    """Layer names given explicitly: exact entries of ``include`` and keys of dicts."""
    named = set(include or [])
    for given in (rank, method):
        if isinstance(given, dict):
            named |= set(given)
    return named


def _warnings(model: nn.Module, rows: list, factorized: dict, output_layer: str) -> list:
    """What the report warns about: large errors, an output layer below its class count,
    and stale BatchNorm statistics."""
    warnings = []
    for row in rows:
        if row["rank"] is None:
            continue
        if row["output_error"] is not None and row["output_error"] > OUTPUT_ERROR_WARNING:
            warnings.append(f"{row['layer']}: its outputs on example_input are off by "
                            f"{row['output_error']:.2f} (relative): accuracy is at risk; raise "
                            "its rank, fine-tune, or leave it dense")
        elif row["output_error"] is None and row["relative_error"] > WEIGHT_ERROR_WARNING:
            warnings.append(f"{row['layer']}: its weights are off by {row['relative_error']:.2f} "
                            "(relative): accuracy may be at risk; pass example_input= to see "
                            "the error of its outputs, a better sign")
        layer = factorized[row["layer"]]
        outputs = getattr(layer, "out_features", getattr(layer, "out_channels", None))
        rank = row["rank"] if isinstance(row["rank"], int) else row["rank"][0]
        if row["layer"] == output_layer and rank < outputs:
            warnings.append(f"{row['layer']}: the output layer now has rank {rank}, fewer than "
                            f"its {outputs} outputs (classes): it can no longer score them "
                            "independently")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms and factorized:
        warnings.append(f"the model has {len(norms)} BatchNorm layer(s) whose running statistics "
                        "were measured for the dense layers: re-estimate them with "
                        "lrlib.train.recalibrate_batchnorm(model, data) on a few thousand "
                        "training images before evaluating or fine-tuning")
    return warnings


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
             calibration=None, damping: float = 0.0, measure: bool = False,
             measure_seconds: float = 0.2):
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
        match at least one layer. The layers of :func:`default_scope` (the output layer, a
        first convolution on ≤ 3 channels) stay dense, with the reason in the report,
        unless named exactly in ``include`` or as a key of a ``rank`` or ``method`` dict.
    inplace : bool
        Change ``model`` itself. By default a deep copy is compressed and ``model`` is
        left exactly as it was.
    seed : int
        Seed of the randomized SVD and of CP's initialization.
    n_iter_max : int, optional
        Caps the sweeps of CP-ALS and HOOI (default: :func:`lrlib.tensor.cp_als`'s and
        :func:`lrlib.tensor.tucker_hooi`'s own); fewer sweeps are faster and less exact.
    example_input : Tensor, optional
        A batch the model accepts (real data if possible). With it, the report gives the
        convolutions' FLOPs and predicted speedups and each layer's output error on the
        input it sees, and ``FlopReduction`` rules work on convolutions.
    calibration : optional
        Calibration data (anything :func:`lrlib.calibration.collect_statistics` accepts: a
        tensor, an ``ImageSet``, an ``(images, labels)`` pair, an iterable of batches, of
        ``(input, label)`` pairs or of dicts of keyword inputs, or a function that runs the
        model), or statistics already collected. With it the data-aware methods
        ``"whitened"``, ``"asvd"`` and ``"whitened-tucker2"`` work, ``"auto"`` uses the
        whitened SVD for Linear layers and 1×1 convolutions and the whitened Tucker-2 for
        larger kernels, and the report gives each layer's output error on all the
        calibration inputs.
    damping : float
        For the whitened methods: fit the outputs plus ``damping · mean(diag G)`` times the
        weight error (:func:`lrlib.data_aware.damped`). 0, the default, fits the outputs
        alone; a layer that sees fewer calibration vectors than it has inputs (a classifier
        sees one per image) then cannot take a rank above their number, and needs a
        positive ``damping`` (0.01 is a common choice) or more calibration data.
    measure : bool
        Also time each replaced layer against the dense one on the input it sees in the
        model (needs ``example_input``), for ``measure_seconds`` per phase. Off by default:
        timing is slow, and a number that is measured should be asked for.

    Returns
    -------
    (nn.Module, CompressionReport)
        A layer is left dense, with the reason in the report's ``note``, when no rank fits
        the rule or factorizing would not save parameters. The report's ``warnings`` name
        layers whose error puts accuracy at risk, and BatchNorm statistics made stale (this
        function does not re-estimate them: it has one example batch, not a data set).
    """
    _check_arguments(model, rank, method)
    check_number(measure_seconds, "measure_seconds", low=0, low_open=True)
    check_number(damping, "damping", low=0)
    if n_iter_max is not None:
        check_int(n_iter_max, "n_iter_max", minimum=1)
    if measure and example_input is None:
        raise ValueError("measure=True needs example_input= (each layer is timed on the input "
                         "it sees in the model)")
    target = model if inplace else copy.deepcopy(model)
    every_layer = select_layers(target)           # before any layer is replaced
    names = [name for name, _ in every_layer]
    selected = select_layers(target, include, exclude)
    for what, given in (("rank", rank), ("method", method)):
        if isinstance(given, dict):
            unknown = sorted(set(given) - set(names))
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
    statistics = None
    if isinstance(calibration, CalibrationStatistics):
        statistics = calibration
    elif calibration is not None:
        statistics = collect_statistics(target, calibration, include=[n for n, _ in selected])
    scope = _scope_of(every_layer)
    explicit = _explicitly_named(include, rank, method)
    output_layer = names[-1] if names else None

    rows, factorized_layers = [], {}
    data_aware = statistics is not None
    for name, layer in selected:
        if name in scope and name not in explicit:
            rows.append(_dense_row(name, layer, "dense", scope[name], inputs.get(name)))
            continue
        rule = rank[name] if isinstance(rank, dict) else rank
        if isinstance(method, dict):
            factorization = resolve(method.get(name, "auto"), layer, data_aware=data_aware)
        else:
            factorization = resolve(method, layer, linear_fallback=True, data_aware=data_aware)
        x = inputs.get(name)
        layer_statistics = statistics.layers.get(name) if statistics is not None else None
        if factorization.calibration and layer_statistics is None:
            why = (statistics.skipped.get(name, "not collected") if statistics is not None
                   else "no calibration= given")
            rows.append(_dense_row(name, layer, "dense", f"{factorization.name} needs calibration "
                                                         f"statistics: {why}", x))
            continue
        row, factorized = _compress_one(target, name, layer, rule, factorization, x,
                                        {"seed": seed, "n_iter_max": n_iter_max,
                                         "statistics": layer_statistics, "damping": damping})
        if factorized is not None:
            factorized_layers[name] = factorized
            if measure:
                row["measured_speedup"] = _measured_speedup(layer, factorized, x, measure_seconds)
        rows.append(row)
    return target, CompressionReport(rows, _warnings(target, rows, factorized_layers, output_layer),
                                     statistics)


def _flops_or_none(layer: nn.Module, input_hw):
    """FLOPs per example of a dense or factorized layer; None for a convolution whose input
    size is unknown."""
    if isinstance(layer, (nn.Linear, LowRankLinear)):
        return layer.flops() if isinstance(layer, LowRankLinear) else dense_flops(layer)
    if input_hw is None:
        return None
    return dense_flops(layer, input_hw) if isinstance(layer, nn.Conv2d) else layer.flops(input_hw)


def _input_hw(layer: nn.Module, x):
    return tuple(x.shape[-2:]) if x is not None and isinstance(layer, nn.Conv2d) else None


def _dense_row(name: str, layer: nn.Module, method: str, note: str, x) -> dict:
    """The report row of a layer that stays as it is."""
    params = sum(p.numel() for p in layer.parameters())
    flops = _flops_or_none(layer, _input_hw(layer, x))
    return {"layer": name, "shape": tuple(layer.weight.shape), "method": method, "rank": None,
            "params_before": params, "params_after": params, "flops_before": flops,
            "flops_after": flops, "measured_speedup": None, "relative_error": 0.0,
            "output_error": None, "calibration_error": None, "note": note}


def _output_error(dense: nn.Module, factorized: nn.Module, x) -> float | None:
    """``‖f(x) − f̂(x)‖_F / ‖f(x)‖_F`` on the input the layer sees (None without one)."""
    if x is None:
        return None
    with torch.inference_mode():
        return relative_error(factorized(x), dense(x))


def _compress_one(target, name, layer, rule, factorization, x, options) -> tuple:
    """Factorize one layer in ``target`` (if that saves something): ``(report row, the
    factorized layer or None)``. ``x`` is the input the layer sees, or None."""
    weight = layer.weight.detach()
    dense_params = sum(p.numel() for p in layer.parameters())
    input_hw = _input_hw(layer, x)
    choice = choose_rank(rule, factorization, layer, input_hw,
                         statistics=options.get("statistics"), damping=options.get("damping", 0.0))
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
        return _dense_row(name, layer, "dense", note, x), None

    factorized = factorization.build(layer, choice.rank, **options)
    row = _dense_row(name, layer, factorization.name, "", x)
    with torch.no_grad():
        approximation = factorized.to_dense().weight
        row.update(rank=choice.rank, params_after=factorized.params,
                   relative_error=relative_error(approximation, weight),
                   flops_after=_flops_or_none(factorized, input_hw),
                   output_error=_output_error(layer, factorized, x))
        statistics = options.get("statistics")
        if statistics is not None:
            outputs = weight.shape[0]           # a conv kernel as its C_out × C_in k_h k_w unfolding
            row["calibration_error"] = relative_output_error(
                weight.reshape(outputs, -1), approximation.reshape(outputs, -1),
                statistics.gram, bias=layer.bias, input_sum=statistics.total, count=statistics.count)
    target.set_submodule(name, factorized)
    return row, factorized
