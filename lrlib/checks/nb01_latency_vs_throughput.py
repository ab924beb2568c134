"""Checkers of notebook ``01_latency_vs_throughput``: Exercises 1.1 to 1.3."""

from __future__ import annotations

import math

import numpy as np

from .core import Case, close, run_cases

__all__ = ["exercise_1_1", "exercise_1_2", "exercise_1_3"]


def exercise_1_1(percentile) -> None:
    """Check ``percentile(samples, q)``: linear interpolation between sorted samples at
    position ``(n - 1) · q / 100`` (numpy's default method)."""
    inputs = [
        ([5.0, 1.0, 3.0], 50),           # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 50),      # between two samples
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90),
        ([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], 99),
        ([7.0], 95),                     # a single sample
        ([2.0, 8.0], 0),
        ([2.0, 8.0], 100),
    ]
    cases = [Case(f"samples={samples}, q={q}", (list(samples), q),
                  float(np.percentile(samples, q)), given=(samples, q))
             for samples, q in inputs]

    def mistake(got, expected, samples, q):
        if close(got, expected, rel_tol=1e-9, abs_tol=1e-12):
            return None
        ordered = sorted(samples)
        nearest_rank = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
        if samples != ordered and close(got, float(np.interp((len(samples) - 1) * q / 100,
                                                             range(len(samples)), samples))):
            return "sort the samples first"
        if close(got, nearest_rank):
            return ("that is the nearest-rank percentile; interpolate linearly between the "
                    "two samples around position (n - 1) * q / 100")
        return ("sort, find the position h = (n - 1) * q / 100, and interpolate between "
                "the samples at floor(h) and floor(h) + 1")

    run_cases("1.1", percentile, cases, mistake,
              f"percentiles match numpy.percentile on {len(cases)} cases, unsorted input and "
              "q = 0 and 100 included")


def exercise_1_2(throughput) -> None:
    """Check ``throughput(batch_size, batch_latency_ms)``: items per second when a batch
    of ``batch_size`` items takes ``batch_latency_ms`` milliseconds."""
    inputs = [(1, 10.0, 100.0), (32, 8.0, 4000.0), (256, 64.0, 4000.0), (8, 0.5, 16000.0)]
    cases = [Case(f"batch_size={batch}, batch_latency_ms={latency_ms}", (batch, latency_ms),
                  expected, given=(batch, latency_ms))
             for batch, latency_ms, expected in inputs]

    def mistake(got, expected, batch, latency_ms):
        if close(got, expected, rel_tol=1e-9):
            return None
        if close(got, expected / 1000):
            return "the latency is in milliseconds: 1 s = 1000 ms"
        if close(got, 1000 / latency_ms):
            return "each call processes a whole batch: multiply by batch_size"
        if close(got, latency_ms / batch):
            return "that is the latency per item; throughput is items per second"
        return "items per second = batch_size / (batch_latency_ms / 1000)"

    run_cases("1.2", throughput, cases, mistake,
              f"throughput matches on {len(cases)} batch sizes")


def exercise_1_3(choose_batch_size) -> None:
    """Check ``choose_batch_size(points, p95_budget_ms)``: the ``batch_size`` of the
    point with the highest ``items_per_second`` among those with ``p95_ms`` within the
    budget (equal counts as within), or ``None`` when none is."""
    from ..bench import ThroughputPoint

    def point(batch, median_ms, p95_ms):
        return ThroughputPoint(batch, median_ms, p95_ms, batch / (median_ms / 1e3))

    curve = [point(1, 1.0, 1.5), point(8, 3.0, 4.0), point(32, 8.0, 10.0),
             point(64, 20.0, 24.0), point(128, 60.0, 70.0)]
    # throughput: 1000, 2667, 4000, 3200, 2133 items/s -- it peaks at batch 32
    budgets = [(10.0, 32), (100.0, 32), (9.9, 8), (3.0, 1), (1.0, None), (24.0, 32)]
    cases = [Case(f"p95_budget_ms={budget} on batch sizes {[p.batch_size for p in curve]}",
                  (list(curve), budget), expected, given=(budget,))
             for budget, expected in budgets]

    def mistake(got, expected, budget):
        if got == expected and (expected is None or not isinstance(got, bool)):
            return None
        allowed = [p.batch_size for p in curve if p.p95_ms <= budget]
        if allowed and got == max(allowed):
            return ("the largest allowed batch is not always the fastest: compare "
                    "items_per_second")
        if got == 128:
            return "keep only the points whose p95_ms is within the budget"
        if expected is None:
            return "return None when no batch size meets the budget"
        if budget in (p.p95_ms for p in curve):
            return "a p95 exactly equal to the budget meets it (use <=)"
        return "filter by p95_ms <= budget, then take the point with most items_per_second"

    run_cases("1.3", choose_batch_size, cases, mistake,
              f"the right batch size for {len(cases)} budgets (throughput peaks before the "
              "largest batch; no batch fits the smallest budget)")
