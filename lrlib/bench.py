"""Measuring speed: latency percentiles, throughput curves, side-by-side comparisons, and a
simulated server with dynamic batching.

Introduced in notebook ``01_latency_vs_throughput``; every later notebook measures with it.

* **Latency** is the time one call takes. Report the median (typical) *and* a tail
  percentile such as p99 (what 1 request in 100 waits at least), measured after a warm-up,
  with a monotonic high-resolution clock, over many calls.
* **Throughput** is how many items are processed per second. Larger batches usually raise
  throughput and also raise the latency of each request: the central trade-off of serving.

``measure_latency`` times calls one by one with ``time.perf_counter_ns`` (reading the clock
costs well under a microsecond, against tens of microseconds for the smallest layer), and
every statistic, the median, the mean, the percentiles and the interquartile range, comes
from that one set of samples, so a p95 can never fall below the median. On a GPU,
``torch.cuda.synchronize()`` is called around every timed region, since CUDA kernels run
asynchronously.
"""

from __future__ import annotations

import contextlib
import copy
import html
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._table import html_table, text_table
from .profile import as_input_tuple
from .validate import check_bool, check_int, check_number, check_positive_ints, check_type

__all__ = [
    "percentile",
    "LatencyResult",
    "measure_latency",
    "ThroughputPoint",
    "throughput_curve",
    "best_batch_size",
    "NOISY_SPREAD",
    "round_interval",
    "ratio_range",
    "verdict",
    "Comparison",
    "compare",
    "SimulationResult",
    "simulate_server",
    "pareto_front",
]


# --------------------------------------------------------------------------- percentiles
def percentile(samples, q: float) -> float:
    """The ``q``-th percentile of ``samples`` by linear interpolation.

    Sort the ``n`` samples as ``x_0 ≤ … ≤ x_{n-1}``; the percentile sits at position
    ``h = (n - 1) · q / 100`` and is ``x_⌊h⌋ + (h - ⌊h⌋) · (x_⌊h⌋+1 - x_⌊h⌋)``. This is
    numpy's default (``method="linear"``, Hyndman & Fan 1996, definition 7).
    """
    try:
        values = sorted(float(s) for s in samples)
    except (TypeError, ValueError):
        raise TypeError(f"samples must be a sequence of numbers, got {samples!r}") from None
    if not values:
        raise ValueError(f"samples must not be empty, got {samples!r}")
    check_number(q, "q", low=0, high=100)
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (position - low) * (values[high] - values[low])


# --------------------------------------------------------------------------- helpers
def _model_device(model) -> torch.device | None:
    if isinstance(model, nn.Module):
        tensor = next(iter(model.parameters()), None)
        if tensor is None:
            tensor = next(iter(model.buffers()), None)
        if tensor is not None:
            return tensor.device
    return None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _EvalMode:
    """Put a module in eval mode and set the thread count for a measurement; undo both."""

    def __init__(self, model, threads):
        self.model, self.threads = model, threads

    def __enter__(self):
        self.saved_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        # frozen TorchScript modules have no training flag: there is nothing to switch
        self.switch = isinstance(self.model, nn.Module) and hasattr(self.model, "training")
        if self.switch:
            self.was_training = self.model.training
            self.model.eval()
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved_threads)
        if self.switch:
            self.model.train(self.was_training)
        return False


def _prepare(model, example_input, device):
    """Validate and place model and inputs; never moves the caller's model."""
    if not callable(model):
        raise TypeError(f"model must be an nn.Module or callable, got {type(model).__name__}")
    inputs = as_input_tuple(example_input)
    if device is not None:
        device = torch.device(device)
        if isinstance(model, nn.Module) and _model_device(model) not in (None, device):
            model = copy.deepcopy(model).to(device)
        inputs = tuple(x.to(device) for x in inputs)
    else:
        device = _model_device(model) or inputs[0].device
        for x in inputs:
            if x.device != device:
                raise ValueError(
                    f"example_input is on {x.device} but the model is on {device}; move "
                    f"one of them, or pass device=... to measure on that device"
                )
    return model, inputs, device


def _batch_size(inputs) -> int:
    first = inputs[0]
    return int(first.shape[0]) if first.ndim > 0 else 1


def _call(model, inputs, batch_size):
    """Run the model once; re-raise its error with the batch size that caused it."""
    try:
        return model(*inputs)
    except Exception as error:
        message = f"the model failed on an input of batch size {batch_size}: {error}"
        try:
            wrapped = type(error)(message)
        except Exception:
            wrapped = RuntimeError(message)
        raise wrapped from error


# --------------------------------------------------------------------------- latency
@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement. All times are in milliseconds per call.

    Every statistic comes from ``samples_ms``, the calls timed one by one after the
    warm-up, so ``median_ms ≤ p90_ms ≤ p95_ms ≤ p99_ms`` always holds.
    """

    median_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    iqr_ms: float
    n_samples: int
    batch_size: int
    threads: int
    device: str
    samples_ms: tuple = field(repr=False)
    allocator: str = "default"

    @property
    def items_per_second(self) -> float:
        """Throughput at this batch size: ``batch_size / median latency``."""
        return self.batch_size / (self.median_ms / 1e3)

    def __str__(self) -> str:
        return (
            f"batch {self.batch_size}: median {self.median_ms:.3f} ms, p95 {self.p95_ms:.3f} ms, "
            f"p99 {self.p99_ms:.3f} ms ({self.n_samples} calls, {self.threads} threads, "
            f"{self.device}, {self.allocator} allocator); {self.items_per_second:,.0f} items/s"
        )


def _warm_up(model, inputs, batch, device, calls) -> None:
    """``calls`` untimed calls (allocation, caches, kernel selection), then a sync."""
    for _ in range(calls):
        _call(model, inputs, batch)
    _synchronize(device)


def _time_calls(model, inputs, batch, device, seconds, min_samples) -> list:
    """Time calls of ``model(*inputs)`` one by one: at least ``min_samples`` of them, for at
    least ``seconds``. Returns milliseconds per call. On CUDA each call ends with a sync."""
    samples_ms = []
    deadline = time.perf_counter() + seconds
    while len(samples_ms) < min_samples or time.perf_counter() < deadline:
        _synchronize(device)
        start = time.perf_counter_ns()
        _call(model, inputs, batch)
        _synchronize(device)
        samples_ms.append((time.perf_counter_ns() - start) / 1e6)
    return samples_ms


def _summary(samples_ms, batch, threads, device, allocator) -> LatencyResult:
    """Every statistic of a LatencyResult from one list of samples."""
    samples = np.asarray(samples_ms, dtype=float)
    return LatencyResult(
        median_ms=percentile(samples, 50),
        mean_ms=float(samples.mean()),
        p90_ms=percentile(samples, 90),
        p95_ms=percentile(samples, 95),
        p99_ms=percentile(samples, 99),
        iqr_ms=percentile(samples, 75) - percentile(samples, 25),
        n_samples=len(samples),
        batch_size=batch,
        threads=threads,
        device=str(device),
        samples_ms=tuple(float(s) for s in samples),
        allocator=allocator,
    )


def _steady_allocator(keep: bool) -> str:
    """Ask glibc to keep freed memory (:func:`lrlib.optimize.keep_freed_memory`) when
    ``keep`` is true; say which allocator setting the measurement runs under."""
    from .optimize import freed_memory_kept, keep_freed_memory

    if keep and not freed_memory_kept():
        keep_freed_memory()
    return "steady" if freed_memory_kept() else "default"


def _check_timing_arguments(warmup, min_run_time, min_samples, threads, inference_mode,
                            keep_freed_memory):
    check_int(warmup, "warmup", minimum=1)
    check_number(min_run_time, "min_run_time", low=0, low_open=True)
    check_int(min_samples, "min_samples", minimum=1)
    if threads is not None:
        check_int(threads, "threads", minimum=1)
    check_bool(inference_mode, "inference_mode")
    check_bool(keep_freed_memory, "keep_freed_memory")


def measure_latency(
    model,
    example_input,
    *,
    warmup: int = 10,
    min_run_time: float = 0.5,
    min_samples: int = 20,
    threads: int | None = None,
    device=None,
    inference_mode: bool = True,
    keep_freed_memory: bool = True,
) -> LatencyResult:
    """Measure the latency of ``model(example_input)`` correctly.

    1. ``warmup`` untimed calls first (memory allocation, caches, lazy initialisation
       and oneDNN kernel selection make the first calls slow);
    2. at least ``min_samples`` calls timed one by one, for at least ``min_run_time``
       seconds; the median, the mean, p90, p95, p99 and the interquartile range all come
       from these samples (one experiment, not two).

    Everything runs under ``torch.inference_mode()`` with the model in ``eval()`` mode; the
    model's mode and the caller's thread setting are restored afterwards. On CUDA the
    device is synchronized around each timed call.

    Parameters
    ----------
    model : nn.Module or callable
    example_input : Tensor or tuple of Tensors
        Its first dimension is taken as the batch size.
    warmup : int
        Untimed calls before measuring, at least 1.
    min_run_time : float
        Seconds spent timing calls, positive.
    min_samples : int
        Fewest one-by-one timed calls.
    threads : int, optional
        Intra-op threads for the measurement (``torch.set_num_threads``).
    device : str or torch.device, optional
        Measure on this device (a copy of the model is moved there if needed). Without it,
        model and input must already be on the same device.
    inference_mode : bool
        ``False`` times the calls with autograd as the caller left it (notebook 02 uses it
        to show what inference mode saves).
    keep_freed_memory : bool
        ``True`` (the default) first calls :func:`lrlib.optimize.keep_freed_memory`, once
        per process, so that the measurement sees the steady state of a serving process:
        glibc keeps freed activations for the next call instead of returning them to the
        operating system and faulting fresh pages in on every call. It changes the whole
        process's allocator settings and cannot be undone; ``False`` measures with them as
        they are (once kept, they stay kept). The result's ``allocator`` says which setting
        the calls ran under: ``"steady"`` (freed memory kept) or ``"default"``.
        Measured on the course's 2-core machine, reference CNN at batch 256: about 300 ms
        per call with glibc's defaults, 172 ms with freed memory kept (notebook 05 shows it).

    To compare two or more models, use :func:`compare`: it alternates them in rounds.
    """
    _check_timing_arguments(warmup, min_run_time, min_samples, threads, inference_mode,
                            keep_freed_memory)
    model, inputs, device = _prepare(model, example_input, device)
    allocator = _steady_allocator(keep_freed_memory)
    batch = _batch_size(inputs)
    with _EvalMode(model, threads), torch.inference_mode(inference_mode):
        _warm_up(model, inputs, batch, device, warmup)
        samples_ms = _time_calls(model, inputs, batch, device, min_run_time, min_samples)
        used_threads = torch.get_num_threads()
    return _summary(samples_ms, batch, used_threads, device, allocator)


# --------------------------------------------------------------------------- throughput
@dataclass(frozen=True)
class ThroughputPoint:
    """Latency and throughput at one batch size."""

    batch_size: int
    median_ms: float
    p95_ms: float
    items_per_second: float


def throughput_curve(model, make_input, batch_sizes, **measure_kwargs) -> list:
    """Latency and throughput of ``model`` at each batch size.

    Parameters
    ----------
    model : nn.Module or callable
    make_input : callable
        ``make_input(batch_size)`` returns an input batch of that size.
    batch_sizes : list of positive int
    **measure_kwargs
        Passed to :func:`measure_latency` (``warmup``, ``min_run_time``, ``threads``, ...).

    Returns
    -------
    list of ThroughputPoint
        ``items_per_second = batch_size / median latency``.
    """
    sizes = check_positive_ints(batch_sizes, "batch_sizes")
    if not callable(make_input):
        raise TypeError(f"make_input must be a function of the batch size, got {make_input!r}")
    points = []
    for size in sizes:
        result = measure_latency(model, make_input(size), **measure_kwargs)
        points.append(ThroughputPoint(size, result.median_ms, result.p95_ms,
                                      result.items_per_second))
    return points


def best_batch_size(curve, p95_budget_ms: float):
    """The point of ``curve`` with the highest throughput whose p95 latency is within
    ``p95_budget_ms``; ``None`` when no batch size meets the budget."""
    check_type(curve, "curve", (list, tuple), "a list of ThroughputPoint")
    check_number(p95_budget_ms, "p95_budget_ms", low=0, low_open=True)
    for i, point in enumerate(curve):
        check_type(point, f"curve[{i}]", ThroughputPoint, "a ThroughputPoint")
    allowed = [point for point in curve if point.p95_ms <= p95_budget_ms]
    return max(allowed, key=lambda point: point.items_per_second, default=None)


# --------------------------------------------------------------------------- comparison
NOISY_SPREAD = 1.5
"""A comparison is flagged as noisy when its rounds' speedups span more than this factor
(the highest over the lowest)."""


def round_interval(rounds: int) -> float:
    """How sure the range of ``rounds`` per-round ratios is to contain the median ratio.

    If the rounds are independent and each ratio is as likely to fall above the median
    ratio as below it, all of them fall on one side with probability ``2 · 0.5^rounds``; so
    the range from the lowest to the highest contains it with probability
    ``1 − 2 · 0.5^rounds`` (the sign-test interval of order statistics): 75% for 3 rounds,
    94% for 5, 98% for 7.
    """
    check_int(rounds, "rounds", minimum=2)
    return 1 - 2 * 0.5 ** rounds


def ratio_range(baseline_ms, model_ms) -> tuple:
    """``(low, high)``: the range of the per-round speedups of a model over a baseline.

    Round ``r`` gives the ratio ``baseline_ms[r] / model_ms[r]`` of the two models' medians
    in that round (above 1: the model is faster). The lowest and the highest of them are an
    interval for the speedup with the coverage :func:`round_interval` gives.
    """
    try:
        baseline = np.array([float(ms) for ms in baseline_ms])
        model = np.array([float(ms) for ms in model_ms])
    except (TypeError, ValueError):
        raise TypeError(
            f"baseline_ms and model_ms must be sequences of milliseconds, got "
            f"{baseline_ms!r} and {model_ms!r}"
        ) from None
    if baseline.shape != model.shape or baseline.ndim != 1 or len(baseline) < 2:
        raise ValueError(
            f"baseline_ms and model_ms must be per-round medians of equal length >= 2, got "
            f"{len(baseline_ms)} and {len(model_ms)} values"
        )
    if not (np.all(baseline > 0) and np.all(model > 0)):
        raise ValueError("per-round medians must be positive milliseconds")
    ratios = baseline / model
    return float(ratios.min()), float(ratios.max())


def verdict(low: float, high: float) -> str:
    """What an interval of speedups supports: ``"faster"`` (all of it above 1),
    ``"slower"`` (all below 1) or ``"within noise"`` (it contains 1)."""
    check_number(low, "low", low=0, low_open=True)
    check_number(high, "high", low=low)
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return "within noise"


@dataclass(frozen=True)
class Comparison:
    """Rows of :func:`compare`; prints as a plain-text table and as HTML in notebooks.

    Each row is a dict: ``name``, ``median_ms`` and ``p95_ms`` (over every sample of that
    model), ``speedup`` with its interval ``speedup_low``–``speedup_high`` (against the
    first model, over rounds), ``verdict``, ``params`` (None for a plain function),
    ``flops`` and ``latency`` (the full :class:`LatencyResult`). ``notes`` says where a conclusion is not supported.
    """

    rows: tuple
    rounds: int
    notes: tuple = ()
    columns = ("model", "median ms", "p95 ms", "speedup [range over rounds]", "vs first",
               "params", "MFLOPs")

    def row(self, name: str) -> dict:
        """The row of the model called ``name``."""
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(f"no model called {name!r}; the models are "
                       f"{[row['name'] for row in self.rows]}")

    def _cells(self) -> list:
        cells = []
        for i, row in enumerate(self.rows):
            speedup = (f"{row['speedup']:.2f}×" if i == 0 else
                       f"{row['speedup']:.2f}× [{row['speedup_low']:.2f}, "
                       f"{row['speedup_high']:.2f}]")
            cells.append([row["name"], f"{row['median_ms']:.3f}", f"{row['p95_ms']:.3f}",
                          speedup, row["verdict"],
                          "—" if row["params"] is None else f"{row['params']:,}",
                          f"{row['flops'] / 1e6:,.1f}"])
        return cells

    def _footer(self) -> list:
        return [f"{self.rounds} alternating rounds; a range covers the speedup with "
                f"about {100 * round_interval(self.rounds):.0f}% confidence"] + list(self.notes)

    def __str__(self) -> str:
        return "\n".join([text_table(self.columns, self._cells()), *self._footer()])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        lines = "".join(f"<br>{html.escape(line)}" for line in self._footer())
        return html_table(self.columns, self._cells()) + f"<small>{lines}</small>"


def _models_and_inputs(models, example_input) -> list:
    """``[(name, model, input)]`` from ``{name: model}`` with one shared input, or from
    ``{name: (model, input)}`` when each model has its own input."""
    check_type(models, "models", dict, "a dict of name -> model")
    if not models:
        raise ValueError("models must be a non-empty dict of name -> model, got {}")
    entries = []
    for name, value in models.items():
        if example_input is None:
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TypeError(
                    f"models[{name!r}] must be a (model, input) pair when example_input is "
                    f"None, got {type(value).__name__}"
                )
            entries.append((str(name), *value))
        else:
            entries.append((str(name), value, example_input))
    return entries


def compare(
    models: dict,
    example_input=None,
    *,
    rounds: int = 7,
    warmup: int = 10,
    min_run_time: float = 0.5,
    min_samples: int = 20,
    threads: int | None = None,
    device=None,
    inference_mode: bool = True,
    keep_freed_memory: bool = True,
) -> Comparison:
    """Measure several models side by side, alternating them in rounds.

    A busy moment of another program slows whatever runs during it. Timing model A for a
    second and then B for a second lets such a moment fall on one of them only. So after
    ``warmup`` calls of each and one untimed round (the first timed stretch of a process
    often runs slow while the processor's clock and caches settle), the time is cut into
    ``rounds`` rounds; in each round every
    model is timed for ``min_run_time / rounds`` seconds (and at least
    ``ceil(min_samples / rounds)`` calls, never fewer than 3), in an order that rotates
    from round to round.

    * ``median_ms`` and ``p95_ms`` come from all the samples of a model;
    * the speedup against the *first* model is the ratio of the two medians, and its
      interval is the range of the same ratio round by round (:func:`ratio_range`,
      :func:`round_interval`), widened to contain the speedup where it falls outside;
    * ``verdict`` is "faster", "slower" or "within noise" (the interval contains 1), and
      ``notes`` say so in words, as they do when the rounds disagree by more than
      :data:`NOISY_SPREAD`: then no clean-looking number should be trusted.

    Parameters
    ----------
    models : dict
        ``{name: model}`` measured on ``example_input``, or ``{name: (model, input)}`` with
        ``example_input=None`` when each needs its own input (a channels_last copy, say).
    rounds : int
        At least 2.
    warmup, min_run_time, min_samples, threads, device, inference_mode, keep_freed_memory
        As in :func:`measure_latency`; ``min_run_time`` is per model, over all rounds.
    """
    from .profile import count_flops, count_params

    entries = _models_and_inputs(models, example_input)
    _check_timing_arguments(warmup, min_run_time, min_samples, threads, inference_mode,
                            keep_freed_memory)
    check_int(rounds, "rounds", minimum=2)
    allocator = _steady_allocator(keep_freed_memory)
    prepared = []
    for name, model, x in entries:
        model, inputs, used_device = _prepare(model, x, device)
        prepared.append((name, model, inputs, _batch_size(inputs), used_device))

    per_round = max(3, math.ceil(min_samples / rounds))
    samples = {name: [] for name, *_ in prepared}
    round_medians = {name: [] for name, *_ in prepared}
    with contextlib.ExitStack() as stack:
        for _, model, *_ in prepared:
            stack.enter_context(_EvalMode(model, threads))
        stack.enter_context(torch.inference_mode(inference_mode))
        for name, model, inputs, batch, used_device in prepared:
            _warm_up(model, inputs, batch, used_device, warmup)
        for name, model, inputs, batch, used_device in prepared:      # one untimed round
            _time_calls(model, inputs, batch, used_device, min_run_time / rounds, per_round)
        for r in range(rounds):
            shift = r % len(prepared)
            for name, model, inputs, batch, used_device in prepared[shift:] + prepared[:shift]:
                times = _time_calls(model, inputs, batch, used_device,
                                    min_run_time / rounds, per_round)
                samples[name].extend(times)
                round_medians[name].append(percentile(times, 50))
        used_threads = torch.get_num_threads()

    first = prepared[0][0]
    rows, notes = [], []
    for i, (name, model, inputs, batch, used_device) in enumerate(prepared):
        latency = _summary(samples[name], batch, used_threads, used_device, allocator)
        if i == 0:
            baseline_ms = latency.median_ms
            speedup, low, high, judged = 1.0, 1.0, 1.0, "baseline"
        else:
            speedup = baseline_ms / latency.median_ms
            low, high = ratio_range(round_medians[first], round_medians[name])
            # the ratio of all samples' medians can fall just outside the rounds' range;
            # the interval always contains the speedup it is printed with
            low, high = min(low, speedup), max(high, speedup)
            judged = verdict(low, high)
            if judged == "within noise":
                notes.append(f"{name}: within noise of {first} (speedup {low:.2f}–{high:.2f}× "
                             f"over the rounds); this run shows no speed difference")
            if high / low > NOISY_SPREAD:
                notes.append(f"{name}: the rounds disagree ({low:.2f}–{high:.2f}×): the "
                             f"machine was busy or the calls are too short; rerun on a quiet "
                             f"machine or with a longer min_run_time")
        rows.append({
            "name": name,
            "median_ms": latency.median_ms,
            "p95_ms": latency.p95_ms,
            "speedup": speedup,
            "speedup_low": low,
            "speedup_high": high,
            "verdict": judged,
            "params": count_params(model) if isinstance(model, nn.Module) else None,
            "flops": count_flops(model, inputs),
            "latency": latency,
        })
    return Comparison(tuple(rows), rounds, tuple(notes))


# --------------------------------------------------------------------------- choosing
def pareto_front(points: dict) -> list:
    """The names on the Pareto front of ``points`` (``{name: (latency, accuracy)}``),
    fastest first, names of equal latency in the order of ``points``.

    A point ``q`` *dominates* ``p`` when it is at least as fast and at least as accurate,
    and strictly better in one of the two: ``q_lat ≤ p_lat``, ``q_acc ≥ p_acc`` and
    ``(q_lat < p_lat or q_acc > p_acc)``. The front is the points no other point
    dominates, so two identical points both stay. Notebooks 05–07 draw it (Exercise 7.4
    asks for it).
    """
    check_type(points, "points", dict, "a dict of name -> (latency, accuracy)")
    for name, point in points.items():
        if not (isinstance(point, (tuple, list)) and len(point) == 2):
            raise TypeError(f"points[{name!r}] must be a (latency, accuracy) pair, got {point!r}")
        check_number(point[0], f"points[{name!r}] latency")
        check_number(point[1], f"points[{name!r}] accuracy")

    def dominates(q, p):
        return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])

    kept = [name for name, p in points.items()
            if not any(dominates(q, p) for other, q in points.items() if other != name)]
    return sorted(kept, key=lambda name: points[name][0])     # sorted() keeps ties in order


# --------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_server` observed. Times in milliseconds, rates per second."""

    arrival_rate: float
    n_requests: int
    mean_ms: float
    median_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    utilisation: float
    mean_batch_size: float
    mean_in_system: float
    latencies_ms: tuple = field(repr=False)

    @property
    def littles_law_ratio(self) -> float:
        """``L / (λ W)``: time-average number in the system over arrival rate times mean
        latency. Little's law (Little 1961) says it is 1 for any stable queue."""
        return self.mean_in_system / (self.arrival_rate * self.mean_ms / 1e3)


def _service_function(service_ms):
    """Turn a callable, a {batch: ms} dict or a throughput curve into k -> ms."""
    if callable(service_ms):
        return service_ms
    if isinstance(service_ms, dict):
        table = sorted(service_ms.items())
    elif isinstance(service_ms, (list, tuple)) and all(
        isinstance(p, ThroughputPoint) for p in service_ms
    ):
        table = sorted((p.batch_size, p.median_ms) for p in service_ms)
    else:
        raise TypeError(
            "service_ms must be a function of the batch size, a {batch_size: ms} dict or a "
            f"throughput_curve result, got {type(service_ms).__name__}"
        )
    if not table:
        raise ValueError("service_ms must hold at least one batch size")
    sizes = np.array([size for size, _ in table], dtype=float)
    times = np.array([ms for _, ms in table], dtype=float)

    def interpolated(k: int) -> float:
        if k > sizes[-1]:
            raise ValueError(
                f"batch size {k} is larger than the largest measured one ({int(sizes[-1])}); "
                "lower max_batch or measure larger batches"
            )
        return float(np.interp(k, sizes, times))

    return interpolated


def simulate_server(
    service_ms,
    arrival_rate: float,
    *,
    max_batch: int = 1,
    max_wait_ms: float = 0.0,
    n_requests: int = 20_000,
    seed: int = 0,
) -> SimulationResult:
    """Simulate a server with dynamic batching, event by event.

    Requests arrive as a Poisson process of rate ``arrival_rate`` per second (exponential
    gaps, seeded). One worker serves batches: when it is free and requests are waiting, it
    starts a batch as soon as ``max_batch`` requests wait, or when the oldest waiting
    request has waited ``max_wait_ms``, whichever comes first (but never before the worker
    is free). A batch of ``k`` requests takes ``service_ms(k)`` milliseconds, and every
    request in it completes at the end.

    Parameters
    ----------
    service_ms : callable, dict or list of ThroughputPoint
        Service time of a batch by size: ``f(k)``, ``{k: ms}`` (linearly interpolated) or a
        :func:`throughput_curve` result (its medians).
    arrival_rate : float
        Requests per second, positive.
    max_batch : int
        Largest batch the worker takes.
    max_wait_ms : float
        How long the worker may hold the oldest request to fill a batch (0: never waits).
    n_requests : int
        Requests to simulate.
    seed : int, optional
        Seeds the arrival times (``None``: fresh, unseeded ones).

    Returns
    -------
    SimulationResult
        Latency (arrival to completion) percentiles, throughput (completed requests per
        second), utilisation (fraction of time the worker is busy), the mean batch size,
        and the time-average number of requests in the system, which Little's law ties to
        the rest: ``mean_in_system ≈ arrival_rate × mean latency``.

    Capacity is about ``max_batch / service_ms(max_batch)`` requests per second; as the
    arrival rate approaches it, the queue and so the latency grow without bound.
    """
    rate = float(check_number(arrival_rate, "arrival_rate", low=0, low_open=True))
    check_int(max_batch, "max_batch", minimum=1)
    check_number(max_wait_ms, "max_wait_ms", low=0)
    check_int(n_requests, "n_requests", minimum=1)
    if seed is not None:
        check_int(seed, "seed", minimum=0)
    service = _service_function(service_ms)

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1e3 / rate, size=n_requests))  # milliseconds
    completions = np.empty(n_requests)
    batch_sizes, busy_ms = [], 0.0
    worker_free_at, first = 0.0, 0
    while first < n_requests:
        last_needed = first + max_batch - 1
        full_at = arrivals[last_needed] if last_needed < n_requests else math.inf
        start = max(worker_free_at, min(arrivals[first] + max_wait_ms, full_at))
        # the batch: the waiting requests that have arrived by `start`, at most max_batch
        end = min(int(np.searchsorted(arrivals, start, side="right")), first + max_batch)
        size = end - first
        duration = float(service(size))
        if not duration > 0:
            raise ValueError(f"service_ms({size}) must be positive, got {duration!r}")
        completions[first:end] = start + duration
        batch_sizes.append(size)
        busy_ms += duration
        worker_free_at = start + duration
        first = end

    latencies = completions - arrivals
    horizon_ms = completions[-1]
    # Time-average number in the system: integrate N(t) over [0, horizon] from the events.
    events = np.concatenate([np.stack([arrivals, np.ones(n_requests)], axis=1),
                             np.stack([completions, -np.ones(n_requests)], axis=1)])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    in_system = np.cumsum(events[:, 1])
    area = float(np.sum(in_system[:-1] * np.diff(events[:, 0])))
    return SimulationResult(
        arrival_rate=rate,
        n_requests=n_requests,
        mean_ms=float(latencies.mean()),
        median_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        throughput=float(n_requests / (horizon_ms / 1e3)),
        utilisation=float(busy_ms / horizon_ms),
        mean_batch_size=float(np.mean(batch_sizes)),
        mean_in_system=float(area / horizon_ms),
        latencies_ms=tuple(float(x) for x in latencies),
    )
