"""lrlib.bench: percentiles, latency measurement, throughput, comparison, simulation."""

import platform
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lrlib import bench, optimize

FAST = dict(warmup=2, min_run_time=0.02, min_samples=5)


# --------------------------------------------------------------------------- percentile
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
       st.floats(0, 100))
def test_percentile_equals_numpy(samples, q):
    assert bench.percentile(samples, q) == pytest.approx(np.percentile(samples, q), rel=1e-9, abs=1e-6)


def test_percentile_known_values():
    assert bench.percentile([1, 2, 3, 4], 50) == 2.5
    assert bench.percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46.0)
    assert bench.percentile([3, 1, 2], 0) == 1 and bench.percentile([3, 1, 2], 100) == 3


@pytest.mark.parametrize("samples, q, match", [([], 50, "empty"), ([1.0], 101, "q must"),
                                               ([1.0], -1, "q must")])
def test_percentile_rejects_bad_input(samples, q, match):
    with pytest.raises(ValueError, match=match):
        bench.percentile(samples, q)


# --------------------------------------------------------------------------- latency
class Sleeper(nn.Module):
    """A 'model' that takes a known time and records the thread setting it ran with."""

    def __init__(self, ms):
        super().__init__()
        self.ms, self.threads_seen, self.grad_enabled, self.training_seen = ms, set(), set(), set()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.threads_seen.add(torch.get_num_threads())
        self.grad_enabled.add(torch.is_grad_enabled())
        self.training_seen.add(self.training)
        time.sleep(self.ms / 1e3)
        return x * self.scale


class Counting(nn.Module):
    """A stand-in model that counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class FakeClock:
    """Stands in for ``time.perf_counter_ns``: bench reads it twice around each call it
    times one by one, and the n-th pair of reads is ``durations_ms[n]`` apart. ``first_read``
    is how often ``model`` had been called when the clock was first read."""

    def __init__(self, durations_ms, model=None):
        self.durations_ns = [round(ms * 1e6) for ms in durations_ms]
        self.reads, self.now, self.model, self.first_read = 0, 1_000_000_000, model, None

    def __call__(self):
        if self.reads == 0 and self.model is not None:
            self.first_read = self.model.calls
        if self.reads % 2:                                  # the read after a call
            assert self.reads // 2 < len(self.durations_ns), "more calls timed than scripted"
            self.now += self.durations_ns[self.reads // 2]
        self.reads += 1
        return self.now


@pytest.fixture
def scripted_timing(monkeypatch):
    """Replace the clock of measure_latency; returns a function that installs a FakeClock
    with the given per-call durations (watching ``model``'s calls) and gives it back."""
    def install(durations_ms, model=None):
        clock = FakeClock(durations_ms, model)
        monkeypatch.setattr(time, "perf_counter_ns", clock)
        return clock
    return install


# exactly min_samples calls are timed one by one when min_run_time is this short
INSTANT = dict(min_run_time=1e-9, min_samples=5)


def test_statistics_come_from_the_warmed_up_samples_it_returns(scripted_timing):
    model = Counting()
    clock = scripted_timing([1.0, 2.0, 3.0, 4.0, 10.0], model)
    result = bench.measure_latency(model, torch.zeros(4, 2), warmup=7, **INSTANT)
    # the 7 warm-up calls ran before anything was timed, and none of them was timed
    assert clock.first_read == 7 and model.calls == 7 + 5
    # every statistic comes from the 5 returned samples: one experiment
    assert result.samples_ms == (1.0, 2.0, 3.0, 4.0, 10.0) and result.n_samples == 5
    assert result.median_ms == 3.0 and result.mean_ms == 4.0
    assert result.p90_ms == pytest.approx(7.6)       # position 3.6: 4 + 0.6 · (10 - 4)
    assert result.p95_ms == pytest.approx(8.8)
    assert result.p99_ms == pytest.approx(9.76)
    assert result.iqr_ms == pytest.approx(4.0 - 2.0)
    assert result.batch_size == 4 and result.device == "cpu"
    assert result.items_per_second == pytest.approx(4 / 0.003)
    assert str(result).startswith("batch 4: median 3.000 ms, p95 8.800 ms, p99 9.760 ms (5 calls")


def test_the_percentiles_never_fall_below_the_median(scripted_timing):
    """The stored latency tables once showed p95 < median: the median came from a second
    experiment. From one set of samples the order holds whatever the samples are."""
    generator = np.random.default_rng(0)
    for _ in range(20):
        durations = list(generator.lognormal(0.0, 1.0, size=9))
        scripted_timing(durations)
        result = bench.measure_latency(Counting(), torch.zeros(1, 2), warmup=1,
                                       min_run_time=1e-9, min_samples=9)
        assert min(durations) <= result.median_ms <= result.p90_ms <= result.p95_ms <= result.p99_ms


def test_a_real_measurement_reports_the_statistics_of_its_own_samples():
    model = Sleeper(0.0)
    result = bench.measure_latency(model, torch.zeros(3, 2), warmup=1, min_run_time=0.02,
                                   min_samples=20)
    samples = np.asarray(result.samples_ms)
    assert result.n_samples == len(samples) >= 20
    assert result.p99_ms == pytest.approx(np.percentile(samples, 99))
    assert result.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert result.median_ms == pytest.approx(np.median(samples))
    assert result.mean_ms == pytest.approx(samples.mean())
    assert result.iqr_ms == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25))
    assert result.items_per_second == pytest.approx(3 / (result.median_ms / 1e3))


def test_measure_latency_runs_in_eval_and_inference_mode_and_restores_state():
    model = Sleeper(0.0)
    model.train()
    saved = torch.get_num_threads()
    result = bench.measure_latency(model, torch.zeros(1, 2), threads=1, **FAST)
    assert model.threads_seen == {1} and result.threads == 1
    assert model.grad_enabled == {False} and model.training_seen == {False}
    assert model.training and torch.get_num_threads() == saved


def test_measure_latency_accepts_tuple_inputs_and_plain_functions():
    result = bench.measure_latency(torch.add, (torch.ones(3, 5), torch.ones(3, 5)), **FAST)
    assert result.batch_size == 3 and result.device == "cpu"


def test_input_on_another_device_is_a_clear_error():
    with pytest.raises(ValueError, match="example_input is on meta but the model is on cpu"):
        bench.measure_latency(nn.Linear(2, 2), torch.zeros(1, 2, device="meta"), **FAST)


def test_device_argument_measures_a_copy_and_leaves_the_model():
    model = nn.Linear(2, 2)
    result = bench.measure_latency(model, torch.zeros(1, 2), device="cpu", **FAST)
    assert result.device == "cpu" and model.weight.device.type == "cpu"


def test_model_error_is_reraised_with_the_batch_size():
    def broken(x):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="batch size 7: shape mismatch"):
        bench.measure_latency(broken, torch.zeros(7, 3), **FAST)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(warmup=0), ValueError, "warmup must be a positive int, got 0"),
    (dict(min_run_time=0), ValueError, "min_run_time must be a number > 0, got 0"),
    (dict(min_run_time=-1.0), ValueError, "min_run_time"),
    (dict(threads=0), ValueError, "threads must be a positive int, got 0"),
    (dict(warmup=2.0), TypeError, r"warmup must be a positive int, got 2.0 \(float\)"),
    (dict(min_samples=True), TypeError, "min_samples must be a positive int, got True"),
])
def test_bad_measurement_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        bench.measure_latency(nn.Linear(2, 2), torch.zeros(1, 2), **kwargs)


def test_bad_model_or_input_types():
    with pytest.raises(TypeError, match="example_input must be a tensor"):
        bench.measure_latency(nn.Linear(2, 2), [[1.0, 2.0]], **FAST)
    with pytest.raises(TypeError, match="model must be"):
        bench.measure_latency("model", torch.zeros(1, 2), **FAST)


# --------------------------------------------------------------------------- throughput
def test_throughput_curve_points_in_order(scripted_timing):
    scripted_timing([2.0, 1.0, 3.0] * 3)               # one-by-one calls, per batch size
    seen = []
    model = lambda x: seen.append(x.shape[0]) or x      # noqa: E731 - records the batch sizes
    curve = bench.throughput_curve(model, lambda b: torch.zeros(b, 16), [1, 4, 16],
                                   warmup=1, min_run_time=1e-9, min_samples=3)
    assert [p.batch_size for p in curve] == [1, 4, 16]
    assert [p.median_ms for p in curve] == pytest.approx([2.0, 2.0, 2.0])
    assert [p.p95_ms for p in curve] == pytest.approx([2.9, 2.9, 2.9])  # of samples 1, 2, 3
    assert [p.items_per_second for p in curve] == pytest.approx([500, 2000, 8000])
    assert seen == [1] * 4 + [4] * 4 + [16] * 4       # 1 warm-up and 3 timed calls each


@pytest.mark.parametrize("sizes, error, match", [
    ([], ValueError, "batch_sizes must be a non-empty"),
    ([1, 0], ValueError, r"batch_sizes\[1\] must be a positive int, got 0"),
    ([2.5], TypeError, r"batch_sizes\[0\] must be a positive int, got 2.5"),
    (5, TypeError, "batch_sizes must be a sequence of positive ints, got 5")])
def test_throughput_curve_rejects_bad_batch_sizes(sizes, error, match):
    with pytest.raises(error, match=match):
        bench.throughput_curve(nn.Linear(2, 2), lambda b: torch.zeros(b, 2), sizes)


def test_throughput_curve_names_the_failing_batch_size():
    def fails_above_8(x):
        if x.shape[0] > 8:
            raise MemoryError("out of memory")
        return x

    with pytest.raises(MemoryError, match="batch size 16"):
        bench.throughput_curve(fails_above_8, lambda b: torch.zeros(b, 2), [1, 16], **FAST)


def test_best_batch_size():
    point = bench.ThroughputPoint
    curve = [point(1, 1, 1.5, 1000), point(8, 3, 4, 2667), point(32, 8, 10, 4000),
             point(64, 20, 24, 3200)]
    assert bench.best_batch_size(curve, 100).batch_size == 32
    assert bench.best_batch_size(curve, 9).batch_size == 8
    assert bench.best_batch_size(curve, 4).batch_size == 8  # equal to the budget is within
    assert bench.best_batch_size(curve, 1) is None
    with pytest.raises(ValueError, match="p95_budget_ms must be a number > 0, got 0"):
        bench.best_batch_size(curve, 0)
    with pytest.raises(TypeError, match=r"curve\[1\] must be a ThroughputPoint, got tuple"):
        bench.best_batch_size([curve[0], (8, 3, 4, 2667)], 10)


def test_compare_alternates_the_models_in_rounds(scripted_timing):
    # rounds=2, min_samples=6: 3 calls per model and round, after one untimed round.
    # Order of the timed stretches: untimed small, big; round 0 small, big; round 1 big, small.
    scripted_timing([9, 9, 9] + [9, 9, 9]                   # untimed round: not in any statistic
                    + [1.0, 1.0, 1.0] + [4.0, 5.0, 4.0]     # round 0: ratio 1/4
                    + [2.0, 2.0, 3.0] + [1.0, 2.0, 1.0])    # round 1 (big first): ratio 1/2
    small, big = nn.Linear(8, 8), nn.Linear(8, 512)
    table = bench.compare({"small": small, "big": big}, torch.zeros(2, 8), warmup=1, rounds=2,
                          min_run_time=1e-9, min_samples=6)
    first, second = table.rows
    assert [row["name"] for row in table.rows] == ["small", "big"]
    assert first["latency"].samples_ms == (1.0, 1.0, 1.0, 1.0, 2.0, 1.0)
    assert second["latency"].samples_ms == (4.0, 5.0, 4.0, 2.0, 2.0, 3.0)
    assert first["median_ms"] == 1.0 and second["median_ms"] == 3.5
    assert second["p95_ms"] == pytest.approx(4.75)
    # speedup: the ratio of the medians; its range: the ratios of rounds 0 (1/4) and 1 (1/2)
    assert second["speedup"] == pytest.approx(1 / 3.5)
    assert (second["speedup_low"], second["speedup_high"]) == pytest.approx((0.25, 0.5))
    assert first["verdict"] == "baseline" and second["verdict"] == "slower"
    assert first["params"] == 72 and second["params"] == 8 * 512 + 512
    assert first["flops"] == 2 * 2 * 8 * 8 and second["flops"] == 2 * 2 * 8 * 512
    lines = str(table).splitlines()
    assert lines[0].split()[:4] == ["model", "median", "ms", "p95"]
    assert lines[3].split() == ["big", "3.500", "4.750", "0.29×", "[0.25,", "0.50]", "slower",
                                "4,608", "0.0"]
    assert "2 alternating rounds" in lines[4] and "50% confidence" in lines[4]
    # the rounds disagree by a factor of 2: the table says so
    assert any("big: the rounds disagree (0.25–0.50×)" in note for note in table.notes)
    assert table.row("big") is second and "<table>" in table._repr_html_()
    with pytest.raises(KeyError, match="no model called 'huge'"):
        table.row("huge")


def test_compare_rejects_bad_models():
    small = nn.Linear(8, 8)
    with pytest.raises(ValueError, match="non-empty dict"):
        bench.compare({}, torch.zeros(1, 8))
    with pytest.raises(TypeError, match="models must be a dict of name -> model, got list"):
        bench.compare([small], torch.zeros(1, 8))
    with pytest.raises(TypeError, match=r"models\['a'\] must be a \(model, input\) pair"):
        bench.compare({"a": small})
    with pytest.raises(ValueError, match="rounds must be an int >= 2, got 1"):
        bench.compare({"a": small}, torch.zeros(1, 8), rounds=1)


def test_ratio_range_and_its_verdict():
    low, high = bench.ratio_range([2.0, 2.2, 1.8], [1.0, 1.0, 1.2])
    assert (low, high) == pytest.approx((1.5, 2.2))
    assert bench.verdict(low, high) == "faster"
    assert bench.verdict(0.5, 0.9) == "slower"
    assert bench.verdict(0.95, 1.1) == "within noise" and bench.verdict(1.0, 1.0) == "within noise"
    with pytest.raises(ValueError, match="equal length >= 2, got 2 and 3"):
        bench.ratio_range([1.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        bench.ratio_range([1.0, 0.0], [1.0, 1.0])


def test_round_interval_is_the_sign_test_coverage():
    assert bench.round_interval(3) == 0.75 and bench.round_interval(7) == pytest.approx(0.984375)
    # by simulation: the range of R ratios drawn around a known median covers it that often
    generator = np.random.default_rng(0)
    ratios = 2.0 * generator.lognormal(0.0, 0.2, size=(20_000, 5))
    covered = np.mean((ratios.min(axis=1) < 2.0) & (2.0 < ratios.max(axis=1)))
    assert covered == pytest.approx(bench.round_interval(5), abs=0.01)


class BusyWait:
    """A synthetic model with a known cost: each call spins for ``ms`` milliseconds times a
    seeded random factor between 0.8 and 1.2 (so the median cost is exactly ``ms``)."""

    def __init__(self, ms, seed):
        self.ms, self.generator = ms, np.random.default_rng(seed)

    def __call__(self, x):
        until = time.perf_counter() + self.ms / 1e3 * self.generator.uniform(0.8, 1.2)
        while time.perf_counter() < until:
            pass
        return x


def test_the_interval_contains_the_true_ratio_of_a_known_cost():
    table = bench.compare({"2 ms": BusyWait(2.0, seed=1), "1 ms": BusyWait(1.0, seed=2)},
                          torch.zeros(1, 1), warmup=2, min_run_time=0.7, rounds=7)
    row = table.row("1 ms")
    assert row["speedup_low"] <= 2.0 <= row["speedup_high"] * 1.01   # 1%: the call overhead
    assert row["verdict"] == "faster"


def test_two_equal_costs_are_reported_as_within_noise():
    table = bench.compare({"a": BusyWait(1.0, seed=3), "b": BusyWait(1.0, seed=4)},
                          torch.zeros(1, 1), warmup=2, min_run_time=0.35, rounds=7)
    assert table.row("b")["verdict"] == "within noise"
    assert any(note.startswith("b: within noise of a") for note in table.notes)
    assert "b: within noise of a" in str(table)


def test_compare_takes_one_input_per_model_and_can_keep_autograd():
    linear = Sleeper(0.0)
    x = torch.zeros(2, 1)
    table = bench.compare({"plain": (linear, x), "twice as wide": (linear, torch.zeros(4, 1))},
                          warmup=1, min_run_time=0.01, min_samples=6, rounds=2,
                          inference_mode=False)
    assert [row["latency"].batch_size for row in table.rows] == [2, 4]
    # the timed calls ran with autograd on (count_flops adds calls in inference mode)
    assert True in linear.grad_enabled and linear.training_seen == {False}


# --------------------------------------------------------------------------- simulation
def test_simulation_is_seeded():
    a = bench.simulate_server(lambda k: 2.0, 200, n_requests=2000, seed=1)
    b = bench.simulate_server(lambda k: 2.0, 200, n_requests=2000, seed=1)
    c = bench.simulate_server(lambda k: 2.0, 200, n_requests=2000, seed=2)
    assert a == b and a.mean_ms != c.mean_ms


def test_littles_law_holds_on_a_long_run():
    for max_batch, max_wait in [(1, 0.0), (8, 2.0), (32, 5.0)]:
        result = bench.simulate_server(lambda k: 1.0 + 0.2 * k, 600, max_batch=max_batch,
                                       max_wait_ms=max_wait, n_requests=100_000)
        assert result.littles_law_ratio == pytest.approx(1.0, abs=0.05)


def test_md1_queue_matches_queueing_theory():
    """max_batch=1 with a fixed service time D is an M/D/1 queue: the mean time in the
    system is W = D + ρ·D / (2(1 − ρ)) (Pollaczek–Khinchine), ρ = λ·D."""
    service_ms = 2.0
    for rho in (0.3, 0.6, 0.85):
        rate = rho / (service_ms / 1e3)
        result = bench.simulate_server(lambda k: service_ms, rate, n_requests=200_000)
        theory = service_ms + rho * service_ms / (2 * (1 - rho))
        assert result.mean_ms == pytest.approx(theory, rel=0.05)
        assert result.utilisation == pytest.approx(rho, rel=0.03)
        assert result.mean_batch_size == 1.0


def test_latency_blows_up_near_capacity():
    service = lambda k: 4.0 + 0.5 * k  # noqa: E731  capacity 16 / 12 ms = 1333 requests/s
    capacity = 16 / (service(16) / 1e3)
    tails = [bench.simulate_server(service, f * capacity, max_batch=16, max_wait_ms=4.0,
                                   n_requests=30_000).p99_ms for f in (0.3, 0.6, 0.9, 0.98)]
    assert tails == sorted(tails)
    assert tails[-1] > 5 * tails[0]


def test_dynamic_batching_raises_capacity():
    """At an arrival rate above what batch-1 serving can handle, batching keeps up."""
    service = lambda k: 2.0 + 0.1 * k  # noqa: E731  batch 1: 476/s; batch 32: 6000/s
    unbatched = bench.simulate_server(service, 1000, max_batch=1, n_requests=20_000)
    batched = bench.simulate_server(service, 1000, max_batch=32, max_wait_ms=2.0,
                                    n_requests=20_000)
    assert unbatched.throughput < 500 and unbatched.utilisation > 0.99
    assert batched.throughput == pytest.approx(1000, rel=0.05)
    assert batched.mean_batch_size > 1 and batched.p99_ms < unbatched.p99_ms


def test_service_times_from_a_dict_or_a_curve():
    by_dict = bench.simulate_server({1: 1.0, 8: 4.0}, 100, max_batch=8, max_wait_ms=1.0,
                                    n_requests=500)
    curve = [bench.ThroughputPoint(1, 1.0, 1.2, 1000.0), bench.ThroughputPoint(8, 4.0, 4.4, 2000.0)]
    by_curve = bench.simulate_server(curve, 100, max_batch=8, max_wait_ms=1.0, n_requests=500)
    assert by_dict == by_curve
    with pytest.raises(ValueError, match="larger than the largest measured one"):
        bench.simulate_server({1: 1.0, 4: 2.0}, 5000, max_batch=8, max_wait_ms=5.0, n_requests=500)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(arrival_rate=0), ValueError, "arrival_rate must be a number > 0, got 0"),
    (dict(max_batch=0), ValueError, "max_batch must be a positive int"),
    (dict(max_wait_ms=-1), ValueError, "max_wait_ms must be a number >= 0"),
    (dict(n_requests=0), ValueError, "n_requests"),
    (dict(max_batch=2.0), TypeError, "max_batch must be a positive int, got 2.0"),
    (dict(arrival_rate="10"), TypeError, "arrival_rate must be a number > 0, got '10'"),
    (dict(service_ms="fast"), TypeError, "service_ms must be"),
    (dict(service_ms=lambda k: 0.0), ValueError, "must be positive"),
])
def test_simulation_rejects_bad_settings(kwargs, error, match):
    arguments = dict(service_ms=lambda k: 1.0, arrival_rate=10.0)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        bench.simulate_server(arguments.pop("service_ms"), arguments.pop("arrival_rate"),
                              **arguments)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_frozen_torchscript_modules_can_be_measured_and_counted():
    from lrlib import profile

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU()).eval()
    frozen = torch.jit.freeze(torch.jit.script(model))
    x = torch.zeros(2, 8)
    assert bench.measure_latency(frozen, x, **FAST).batch_size == 2
    assert profile.count_flops(frozen, x) == 2 * 2 * 8 * 16


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="keep_freed_memory acts on glibc's malloc")
def test_measurements_run_with_freed_memory_kept_by_default():
    """A serving process keeps its freed activations; by default so does a measurement."""
    result = bench.measure_latency(nn.Linear(4, 4), torch.zeros(1, 4), **FAST)
    assert result.allocator == "steady" and optimize.freed_memory_kept()
    assert "steady allocator" in str(result)
    table = bench.compare({"a": nn.Linear(4, 4)}, torch.zeros(1, 4), rounds=2, **FAST)
    assert table.row("a")["latency"].allocator == "steady"


# --------------------------------------------------------------------------- Pareto front
def brute_force_front(points):
    """Independent of lrlib: keep p when no other point is <= in latency, >= in accuracy and
    different from p in at least one of them."""
    return {name for name, (lat, acc) in points.items()
            if not any(l2 <= lat and a2 >= acc and (l2, a2) != (lat, acc)
                       for other, (l2, a2) in points.items() if other != name)}


def test_pareto_front_on_the_exercise_cases():
    from lrlib.checks.nb07_capstone import _pareto_cases
    for _, points, expected in _pareto_cases():
        assert bench.pareto_front(points) == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3),
                       st.tuples(st.integers(1, 5).map(float), st.integers(0, 5).map(float)),
                       min_size=1, max_size=8))
def test_pareto_front_matches_brute_force_and_keeps_identical_points(points):
    front = bench.pareto_front(points)
    assert set(front) == brute_force_front(points)
    assert [points[n][0] for n in front] == sorted(points[n][0] for n in front)


def test_pareto_front_rejects_bad_points():
    with pytest.raises(TypeError, match=r"points\['a'\] must be a \(latency, accuracy\) pair"):
        bench.pareto_front({"a": 3.0})
    with pytest.raises(TypeError, match="points must be a dict"):
        bench.pareto_front([(1.0, 0.5)])


def test_the_interval_always_contains_the_printed_speedup(scripted_timing):
    """Pooled medians can give a ratio outside every round's ratio; the interval is widened
    so that error bars drawn from it are never negative."""
    # untimed round, then round 0 (a, b) and round 1 (b, a); 3 calls each
    scripted_timing([1] * 6 + [1.0, 4.0, 3.0] + [3.0, 4.0, 4.0]      # round 0: a, then b
                    + [3.0, 1.0, 3.0] + [2.0, 2.0, 4.0])             # round 1: b, then a
    table = bench.compare({"a": Counting(), "b": Counting()}, torch.zeros(1, 2), warmup=1,
                          rounds=2, min_run_time=1e-9, min_samples=6)
    row = table.row("b")
    # medians of all samples: a 2.5, b 3; the rounds' ratios are only 3/4 and 2/3
    assert row["speedup"] == pytest.approx(2.5 / 3)
    assert (row["speedup_low"], row["speedup_high"]) == pytest.approx((2 / 3, 2.5 / 3))
