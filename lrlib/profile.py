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
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from ._table import html_table, text_table

__all__ = [
    "count_params",
    "count_flops",
    "model_bytes",
    "LayerTable",
    "layer_table",
    "arithmetic_intensity",
    "linear_intensity",
    "Roofline",
    "machine_roofline",
]


def _check_module(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _inputs(example_input) -> tuple:
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError(
            "example_input must be a tensor or a tuple of tensors, got "
            f"{type(example_input).__name__}"
        )
    return tuple(inputs)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    _check_module(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model, example_input) -> int:
    """FLOPs of one forward call on ``example_input``, by ``FlopCounterMode``.

    For ``nn.Linear(n, m)`` on a batch of ``b`` that is ``2·b·n·m``; for ``nn.Conv2d`` it
    is ``2·b·C_out·H_out·W_out·(C_in/groups)·k_h·k_w``. Runs in inference mode with the
    model in eval mode, which is restored afterwards.
    """
    inputs = _inputs(example_input)
    # frozen TorchScript modules have no training flag: there is nothing to switch
    switch = isinstance(model, nn.Module) and hasattr(model, "training")
    was_training = switch and model.training
    if switch:
        model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(*inputs)
    finally:
        if switch:
            model.train(was_training)
    return int(counter.get_total_flops())


def model_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's serialized ``state_dict`` (what ``torch.save`` writes):
    the size on disk or on the wire."""
    _check_module(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """``flops / bytes_moved``: FLOPs done per byte read or written."""
    if not flops >= 0:
        raise ValueError(f"flops must be >= 0, got {flops!r}")
    if not bytes_moved > 0:
        raise ValueError(f"bytes_moved must be positive, got {bytes_moved!r}")
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
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
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


def layer_table(model: nn.Module, example_input, *, repeats: int = 20,
                warmup: int = 3) -> LayerTable:
    """Parameters, FLOPs and measured time of every leaf layer of ``model``.

    Time per layer is measured with forward hooks (a clock read before and after each
    leaf module) over ``repeats`` calls after ``warmup`` calls, and summarized by the
    median (one slow call does not distort it); ``share`` divides it by the median time
    of the whole forward call measured without hooks.
    """
    _check_module(model)
    inputs = _inputs(example_input)
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    leaves = _leaf_modules(model)
    if not leaves:
        raise ValueError("model has no layers to profile")

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(*inputs)
        flop_counts = counter.get_flop_counts()
        root = type(model).__name__
        flops = {name: int(sum(flop_counts.get(f"{root}.{name}", {}).values()))
                 for name, _ in leaves}

        # per call, the time each leaf layer took: spent[name][call]
        started, spent = {}, {name: [] for name, _ in leaves}
        handles = []
        for name, module in leaves:
            handles.append(module.register_forward_pre_hook(
                lambda m, args, n=name: started.__setitem__(n, time.perf_counter_ns())))
            handles.append(module.register_forward_hook(
                lambda m, args, out, n=name: spent[n].append(time.perf_counter_ns() - started[n])))
        try:
            with torch.inference_mode():
                for _ in range(warmup):
                    model(*inputs)
                for times in spent.values():
                    times.clear()
                for _ in range(repeats):
                    model(*inputs)
        finally:
            for handle in handles:
                handle.remove()

        with torch.inference_mode():
            timer = benchmark.Timer("model(*inputs)", globals={"model": model, "inputs": inputs},
                                    num_threads=torch.get_num_threads())
            total_ms = timer.blocked_autorange(min_run_time=0.2).median * 1e3
    finally:
        model.train(was_training)

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


# --------------------------------------------------------------------------- roofline
@dataclass(frozen=True)
class Roofline:
    """Measured peak compute (GFLOP/s) and memory bandwidth (GB/s) of this machine."""

    peak_gflops: float
    bandwidth_gbs: float
    dtype: str
    threads: int

    @property
    def ridge_point(self) -> float:
        """Arithmetic intensity (FLOP/byte) where memory-bound turns into compute-bound."""
        return self.peak_gflops / self.bandwidth_gbs

    def attainable_gflops(self, intensity: float) -> float:
        """The roofline: ``min(peak, bandwidth × intensity)``."""
        return min(self.peak_gflops, self.bandwidth_gbs * intensity)

    def bound(self, intensity: float) -> str:
        """``"memory"`` or ``"compute"``: what limits a kernel of this intensity."""
        return "memory" if intensity < self.ridge_point else "compute"


def machine_roofline(*, matmul_size: int = 1024, copy_megabytes: int = 256,
                     dtype=torch.float32, min_run_time: float = 0.3,
                     threads: int | None = None) -> Roofline:
    """Measure this machine's roofline with two kernels.

    * peak compute: an ``n×n`` by ``n×n`` matrix product, ``2n³`` FLOPs;
    * memory bandwidth: copying a tensor of ``copy_megabytes`` MB into another, which
      reads and writes each byte once (``2 × size`` bytes moved).

    The copy is far larger than the caches, so it measures main memory. Both are timed
    with ``torch.utils.benchmark.Timer`` and the *best* block is kept: a peak is what the
    machine can reach, and slower blocks only show interference from other work.
    """
    for name, value in (("matmul_size", matmul_size), ("copy_megabytes", copy_megabytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(matmul_size, matmul_size, generator=generator).to(dtype)
        b = torch.randn(matmul_size, matmul_size, generator=generator).to(dtype)
        matmul = benchmark.Timer("torch.mm(a, b)", globals={"a": a, "b": b, "torch": torch},
                                 num_threads=torch.get_num_threads())
        seconds = min(matmul.blocked_autorange(min_run_time=min_run_time).times)
        peak = 2 * matmul_size ** 3 / seconds / 1e9

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
    return Roofline(peak_gflops=peak, bandwidth_gbs=bandwidth, dtype=str(dtype), threads=used)
