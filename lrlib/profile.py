"""What a model costs: parameters, FLOPs, bytes, where its time goes, and the roofline of
this machine.

Introduced in notebook ``02_compression_vs_optimization``.

* **Parameters** and **bytes** measure size (what compression shrinks).
* **FLOPs** measure arithmetic. They are counted by PyTorch's
  ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix multiplications and
  convolutions, a multiply-add as 2 FLOPs; element-wise work (ReLU, BatchNorm in eval
  mode, bias adds) is not counted.
* **Arithmetic intensity** ``I = FLOPs / bytes moved`` decides, with the machine's peak
  compute ``P`` and memory bandwidth ``B``, which one limits a layer: the roofline model
  (Williams, Waterman & Patterson 2009) bounds attainable performance by ``min(P, B·I)``.
* **Layer inputs** (:func:`layer_inputs`) are what each layer receives on real data: the
  calibration inputs of data-aware factorization (lessons 03, 05 and 08).
"""

from __future__ import annotations

import io
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from ._table import html_table, text_table
from .validate import check_bool, check_int, check_number, check_positive_ints, check_type

__all__ = [
    "as_input_tuple",
    "count_params",
    "count_flops",
    "model_bytes",
    "LayerTable",
    "layer_table",
    "layer_inputs",
    "arithmetic_intensity",
    "linear_intensity",
    "Roofline",
    "machine_roofline",
]


def as_input_tuple(example_input, name: str = "example_input") -> tuple:
    """The positional arguments of one model call: ``(x,)`` for a tensor ``x``, or the
    tensors of a tuple or list, as a tuple, so that every caller can run ``model(*inputs)``.

    Raises TypeError for anything else (a number, a nested list of numbers, a tuple
    holding something other than tensors) and ValueError for an empty tuple or list.
    """
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError(
            f"{name} must be a tensor or a tuple of tensors, got {type(example_input).__name__}"
        )
    if not inputs:
        raise ValueError(f"{name} must hold at least one tensor, got {example_input!r}")
    return tuple(inputs)


@contextmanager
def _eval_mode(model):
    """Run the block with ``model`` in eval mode; afterwards (also after an error) every
    submodule gets back its own training flag. Frozen TorchScript modules have no flag:
    there is nothing to switch."""
    if not (isinstance(model, nn.Module) and hasattr(model, "training")):
        yield
        return
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextmanager
def _hooks(handles: list):
    """Run the block, then remove every hook in ``handles`` (also after an error); hooks
    registered inside the block are appended to ``handles`` there."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    check_type(model, "model", nn.Module)
    check_bool(trainable_only, "trainable_only")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model, example_input) -> int:
    """FLOPs of one forward call on ``example_input``, by ``FlopCounterMode``.

    For ``nn.Linear(n, m)`` on a batch of ``b`` that is ``2·b·n·m``; for ``nn.Conv2d`` it
    is ``2·b·C_out·H_out·W_out·(C_in/groups)·k_h·k_w``. Runs in inference mode with the
    model in eval mode, which is restored afterwards.
    """
    if not callable(model):
        raise TypeError(f"model must be an nn.Module or callable, got {type(model).__name__}")
    inputs = as_input_tuple(example_input)
    with _eval_mode(model), FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(*inputs)
    return int(counter.get_total_flops())


def model_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's serialized ``state_dict`` (what ``torch.save`` writes):
    the size on disk or on the wire."""
    check_type(model, "model", nn.Module)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """``flops / bytes_moved``: FLOPs done per byte read or written."""
    check_number(flops, "flops", low=0)
    check_number(bytes_moved, "bytes_moved", low=0, low_open=True)
    return flops / bytes_moved


def linear_intensity(batch: int, in_features: int, out_features: int, *,
                     bytes_per_element: int = 4) -> float:
    """Arithmetic intensity of ``nn.Linear(in_features, out_features)`` on a batch.

    FLOPs ``= 2·b·n·m``; bytes, if every tensor is read or written once,
    ``= e·(n·m + m + b·n + b·m)`` (weights, bias, input, output; ``e`` bytes per element).
    At batch 1 this is below 0.5 FLOP/byte in float32: memory-bound on every machine.
    """
    for name, value in (("batch", batch), ("in_features", in_features),
                        ("out_features", out_features), ("bytes_per_element", bytes_per_element)):
        check_int(value, name, minimum=1)
    flops = 2 * batch * in_features * out_features
    elements = in_features * out_features + out_features + batch * in_features + batch * out_features
    return arithmetic_intensity(flops, bytes_per_element * elements)


# --------------------------------------------------------------------------- per layer
@dataclass(frozen=True)
class LayerTable:
    """Per-layer cost of a model: rows of dicts with ``name``, ``type``, ``params``,
    ``flops``, ``time_ms`` (mean per forward call) and ``share`` (of the whole forward
    time; the rest is spent outside leaf modules)."""

    rows: tuple
    total_ms: float

    def _cells(self) -> list:
        return [[r["name"], r["type"], f"{r['params']:,}", f"{r['flops'] / 1e6:,.2f}",
                 f"{r['time_ms']:.3f}", f"{100 * r['share']:.1f}%"] for r in self.rows]

    columns = ("layer", "type", "params", "MFLOPs", "ms", "time share")

    def __str__(self) -> str:
        table = text_table(self.columns, self._cells(), left_aligned=(0, 1))
        return f"{table}\nwhole forward: {self.total_ms:.3f} ms"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        table = html_table(self.columns, self._cells())
        return f"{table}<p>whole forward: {self.total_ms:.3f} ms</p>"


def _leaf_modules(model: nn.Module) -> list:
    return [(name, module) for name, module in model.named_modules()
            if name and not list(module.children())]


def _profiled_modules(model: nn.Module, modules) -> list:
    """``(name, module)`` to time: every leaf, or every submodule of the given types."""
    if modules is None:
        return _leaf_modules(model)
    classes = modules if isinstance(modules, tuple) else (modules,)
    if not classes or not all(isinstance(c, type) and issubclass(c, nn.Module) for c in classes):
        raise TypeError(f"modules must be an nn.Module class or a tuple of them, got {modules!r}")
    return [(name, module) for name, module in model.named_modules()
            if name and isinstance(module, classes)]


def layer_table(model: nn.Module, example_input, *, repeats: int = 20,
                warmup: int = 3, modules=None) -> LayerTable:
    """Parameters, FLOPs and measured time of every leaf layer of ``model``.

    Time per layer is measured with forward hooks (a clock read before and after each
    leaf module) over ``repeats`` calls after ``warmup`` calls, and summarized by the
    median (one slow call does not distort it); ``share`` divides it by the median time
    of the whole forward call measured without hooks.

    ``modules`` (an ``nn.Module`` class or a tuple of them) times every submodule of those
    types instead of the leaves, e.g. ``(nn.Conv2d, nn.BatchNorm2d)`` for a model whose
    convolutions are subclasses holding a padding module (not leaves). Do not name types
    that contain each other: a module's time includes its children's.
    """
    check_type(model, "model", nn.Module)
    inputs = as_input_tuple(example_input)
    check_int(repeats, "repeats", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    leaves = _profiled_modules(model, modules)
    if not leaves:
        raise ValueError("model has no layers to profile")

    with _eval_mode(model):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(*inputs)
        flop_counts = counter.get_flop_counts()
        root = type(model).__name__
        flops = {name: int(sum(flop_counts.get(f"{root}.{name}", {}).values()))
                 for name, _ in leaves}

        # per call, the time each leaf layer took: spent[name][call]
        started, spent = {}, {name: [] for name, _ in leaves}
        handles = []
        with _hooks(handles), torch.inference_mode():
            for name, module in leaves:
                handles.append(module.register_forward_pre_hook(
                    lambda m, args, n=name: started.__setitem__(n, time.perf_counter_ns())))
                handles.append(module.register_forward_hook(
                    lambda m, args, out, n=name:
                        spent[n].append(time.perf_counter_ns() - started[n])))
            for _ in range(warmup):
                model(*inputs)
            for times in spent.values():
                times.clear()
            for _ in range(repeats):
                model(*inputs)

        with torch.inference_mode():
            timer = benchmark.Timer("model(*inputs)", globals={"model": model, "inputs": inputs},
                                    num_threads=torch.get_num_threads())
            total_ms = timer.blocked_autorange(min_run_time=0.2).median * 1e3

    rows = []
    for name, module in leaves:
        # a layer called several times per forward (shared) adds up its calls
        calls_per_forward = max(1, len(spent[name]) // repeats)
        time_ms = statistics.median(spent[name]) * calls_per_forward / 1e6 if spent[name] else 0.0
        rows.append({
            "name": name,
            "type": type(module).__name__,
            "params": sum(p.numel() for p in module.parameters()),
            "flops": flops[name],
            "time_ms": time_ms,
            "share": time_ms / total_ms,
        })
    return LayerTable(tuple(rows), total_ms)


# --------------------------------------------------------------------------- layer inputs
def _chosen_layers(model: nn.Module, names) -> list:
    """``(name, module)`` for each of ``names``, or for every Linear and Conv2d."""
    if names is None:
        return [(name, module) for name, module in model.named_modules()
                if isinstance(module, (nn.Linear, nn.Conv2d))]
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise TypeError(f"names must be a list of submodule names, got {names!r}")
    names = list(dict.fromkeys(names))          # in the given order, each name once
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"names[{i}] must be a str, got {name!r} ({type(name).__name__})")
    modules = {name: module for name, module in model.named_modules() if name}
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"names holds {unknown}, which are not submodules of the model; "
                         f"its submodules are {list(modules)}")
    return [(name, modules[name]) for name in names]


def _first_tensor(args: tuple, kwargs: dict):
    """The first tensor among a call's positional, then keyword arguments (None if none)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def layer_inputs(model: nn.Module, example_input, names=None) -> dict:
    """What each layer of ``model`` receives: ``{name: input tensor}`` from one forward call.

    Data-aware factorization (lessons 03, 05 and 08) minimises the error of a layer's
    *outputs* ``‖W X − W' X‖`` on calibration inputs ``X`` rather than that of its weights
    ``‖W − W'‖``; this collects those ``X``. ``model`` runs once on ``example_input`` (a
    tensor or a tuple of tensors) in eval mode under ``torch.no_grad``, with a
    forward pre-hook on each chosen submodule that keeps the first tensor argument of its
    first call. A layer called several times per forward (a shared layer) keeps the input
    of its first call.

    Parameters
    ----------
    model : nn.Module
        Its train/eval mode is restored afterwards, and every hook is removed, also when
        the model raises.
    example_input : Tensor or tuple of Tensors
    names : list of str, optional
        Dotted submodule names, as ``model.named_modules()`` gives them. Default: every
        ``nn.Linear`` and ``nn.Conv2d``.

    Returns
    -------
    dict
        In the order of ``names`` (default: the order of ``named_modules``); a layer that
        did not run on ``example_input`` (or received no tensor) is left out. Each tensor
        is detached and cloned, so a later in-place operation in the model cannot change
        it. They are ordinary tensors (not inference-mode ones), so they can also go into a
        computation that autograd tracks, such as training a replacement layer.
    """
    check_type(model, "model", nn.Module)
    inputs = as_input_tuple(example_input)
    chosen = _chosen_layers(model, names)
    seen = {}

    def keep_first(name):
        def hook(module, args, kwargs):
            tensor = _first_tensor(args, kwargs)
            if name not in seen and tensor is not None:
                seen[name] = tensor.detach().clone()
        return hook

    handles = []
    with _hooks(handles), _eval_mode(model), torch.no_grad():
        for name, module in chosen:
            handles.append(module.register_forward_pre_hook(keep_first(name), with_kwargs=True))
        model(*inputs)
    return {name: seen[name] for name, _ in chosen if name in seen}


# --------------------------------------------------------------------------- roofline
@dataclass(frozen=True)
class Roofline:
    """Measured peak compute (GFLOP/s) and memory bandwidth (GB/s) of this machine."""

    peak_gflops: float
    bandwidth_gbs: float
    dtype: str
    threads: int
    peak_kernel: str | None = None
    """The kernel that reached the peak (None: given, not measured)."""

    def __post_init__(self):
        check_number(self.peak_gflops, "peak_gflops", low=0, low_open=True)
        check_number(self.bandwidth_gbs, "bandwidth_gbs", low=0, low_open=True)
        check_type(self.dtype, "dtype", str)
        check_int(self.threads, "threads", minimum=1)

    @property
    def ridge_point(self) -> float:
        """Arithmetic intensity (FLOP/byte) where memory-bound turns into compute-bound."""
        return self.peak_gflops / self.bandwidth_gbs

    def attainable_gflops(self, intensity: float) -> float:
        """The roofline: ``min(peak, bandwidth × intensity)``."""
        check_number(intensity, "intensity", low=0)
        return min(self.peak_gflops, self.bandwidth_gbs * intensity)

    def bound(self, intensity: float) -> str:
        """``"memory"`` or ``"compute"``: what limits a kernel of this intensity."""
        check_number(intensity, "intensity", low=0)
        return "memory" if intensity < self.ridge_point else "compute"


def machine_roofline(*, matmul_sizes=(512, 1024, 2048),
                     conv_shapes=((32, 128, 128, 14), (32, 256, 256, 14), (64, 128, 256, 7),
                                  (256, 128, 256, 7)),
                     copy_megabytes: int = 256, dtype=torch.float32, min_run_time: float = 0.3,
                     threads: int | None = None) -> Roofline:
    """Measure this machine's roofline with two kinds of kernel.

    * peak compute: the best that dense kernels reach: ``n×n`` by ``n×n`` matrix products
      (``2n³`` FLOPs) for every ``n`` in ``matmul_sizes``, and 3×3 convolutions (padding 1)
      for every ``(batch, C_in, C_out, size)`` in ``conv_shapes``, on ``size×size`` images
      (``2 · batch · size² · 9 · C_in · C_out`` FLOPs);
    * memory bandwidth: copying a tensor of ``copy_megabytes`` MB into another, which
      reads and writes each byte once (``2 × size`` bytes moved).

    The copy is far larger than the caches, so it measures main memory. Both are timed
    with ``torch.utils.benchmark.Timer`` and the *best* block is kept: a peak is what the
    machine can reach, and slower blocks only show interference from other work. One kernel
    is not enough: which matrix size runs best depends on the cache sizes and the number of
    threads, and the libraries differ. PyTorch hands matrix products to a BLAS (MKL on
    x86) and convolutions to oneDNN; on the AMD processor the course is tested on, oneDNN's
    3×3 convolutions reach about 1.2× the best matrix product. A peak measured with matrix
    products alone put the reference CNN's conv4 at 147% of "peak" in notebook 02.
    ``peak_kernel`` says which kernel set the peak.
    """
    sizes = check_positive_ints(matmul_sizes, "matmul_sizes")
    check_type(conv_shapes, "conv_shapes", (list, tuple), "a list of (batch, C_in, C_out, size)")
    shapes = [check_positive_ints(shape, f"conv_shapes[{i}]", length=4)
              for i, shape in enumerate(conv_shapes)]
    check_int(copy_megabytes, "copy_megabytes", minimum=1)
    check_type(dtype, "dtype", torch.dtype)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    check_number(min_run_time, "min_run_time", low=0, low_open=True)
    if threads is not None:
        check_int(threads, "threads", minimum=1)
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        kernels = []                                   # (name, statement, tensors, FLOPs)
        for n in sizes:
            kernels.append((f"matmul {n}×{n}", "torch.mm(a, b)",
                            (torch.randn(n, n, generator=generator).to(dtype),
                             torch.randn(n, n, generator=generator).to(dtype)), 2 * n ** 3))
        for batch, c_in, c_out, size in shapes:
            kernels.append((f"conv3x3 {c_in}→{c_out} on {batch}×{c_in}×{size}×{size}",
                            "conv2d(a, b, padding=1)",
                            (torch.randn(batch, c_in, size, size, generator=generator).to(dtype),
                             torch.randn(c_out, c_in, 3, 3, generator=generator).to(dtype)),
                            2 * batch * size * size * 9 * c_in * c_out))
        peak, peak_kernel = 0.0, None
        with torch.inference_mode():
            for name, statement, (a, b), flops in kernels:
                timer = benchmark.Timer(statement, num_threads=torch.get_num_threads(),
                                        globals={"a": a, "b": b, "torch": torch,
                                                 "conv2d": torch.nn.functional.conv2d})
                seconds = min(timer.blocked_autorange(min_run_time=min_run_time).times)
                if flops / seconds / 1e9 > peak:
                    peak, peak_kernel = flops / seconds / 1e9, name

        element_bytes = torch.empty((), dtype=dtype).element_size()
        count = copy_megabytes * 1_000_000 // element_bytes
        source, target = torch.ones(count, dtype=dtype), torch.empty(count, dtype=dtype)
        copy = benchmark.Timer("target.copy_(source)",
                               globals={"target": target, "source": source},
                               num_threads=torch.get_num_threads())
        seconds = min(copy.blocked_autorange(min_run_time=min_run_time).times)
        bandwidth = 2 * count * element_bytes / seconds / 1e9
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)
    return Roofline(peak_gflops=peak, bandwidth_gbs=bandwidth, dtype=str(dtype), threads=used,
                    peak_kernel=peak_kernel)
