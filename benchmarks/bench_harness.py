"""Does lrlib.bench measure what torch.utils.benchmark measures?

    python benchmarks/bench_harness.py [--repeats 5] [--min-run-time 0.3] [--output FILE]

For each model and batch size, side by side in one run, ``--repeats`` times in alternation:

* ``lrlib``: ``lrlib.bench.measure_latency(...).median_ms``
* ``Timer``: a bare ``torch.utils.benchmark.Timer("model(x)").blocked_autorange().median``
  under ``torch.inference_mode()`` with the model in eval mode.

It prints, per row, the median over repeats of each, their ratio (goal: within 0.9–1.1),
and the spread of each (max − min over repeats, as a fraction of the median), then writes
everything, with the machine it ran on, to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

from lrlib import bench, env, models
from lrlib.data import synthetic_input

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "bench_harness.json"


def cases():
    """(label, model, input) rows: memory-bound and compute-bound, small and large batch."""
    mlp, cnn = models.load_reference("mlp"), models.load_reference("cnn")
    linear = torch.nn.Linear(1024, 1024).eval()
    return [
        ("Linear 1024x1024, batch 1", linear, synthetic_input((1, 1024))),
        ("Linear 1024x1024, batch 256", linear, synthetic_input((256, 1024))),
        ("mlp, batch 1", mlp, synthetic_input((1, 1, 28, 28))),
        ("mlp, batch 64", mlp, synthetic_input((64, 1, 28, 28))),
        ("cnn, batch 1", cnn, synthetic_input((1, 1, 28, 28))),
        ("cnn, batch 32", cnn, synthetic_input((32, 1, 28, 28))),
    ]


def bare_timer_ms(model, x, min_run_time: float) -> float:
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": x},
                            num_threads=torch.get_num_threads())
    with torch.inference_mode():
        for _ in range(10):
            model(x)
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def spread(values) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="lrlib.bench against a bare torch Timer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.min_run_time <= 0:
        parser.error("--repeats must be >= 1 and --min-run-time > 0")

    rows = []
    header = f"{'case':<30} {'lrlib ms':>9} {'Timer ms':>9} {'ratio':>6} {'lrlib spread':>13} {'Timer spread':>13}"
    print(header)
    print("-" * len(header))
    for label, model, x in cases():
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternate, so that drift hits both alike
            ours.append(bench.measure_latency(model, x, min_run_time=args.min_run_time).median_ms)
            theirs.append(bare_timer_ms(model, x, args.min_run_time))
        row = {
            "case": label,
            "lrlib_median_ms": statistics.median(ours),
            "timer_median_ms": statistics.median(theirs),
            "lrlib_medians_ms": ours,
            "timer_medians_ms": theirs,
        }
        row["ratio"] = row["lrlib_median_ms"] / row["timer_median_ms"]
        row["lrlib_spread"], row["timer_spread"] = spread(ours), spread(theirs)
        row["within_goal"] = 0.9 <= row["ratio"] <= 1.1
        rows.append(row)
        print(f"{label:<30} {row['lrlib_median_ms']:>9.3f} {row['timer_median_ms']:>9.3f} "
              f"{row['ratio']:>6.3f} {100 * row['lrlib_spread']:>12.1f}% "
              f"{100 * row['timer_spread']:>12.1f}%")

    inside = sum(row["within_goal"] for row in rows)
    print(f"\n{inside} of {len(rows)} rows have a ratio within 0.9-1.1")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"benchmark": "bench_harness", "repeats": args.repeats,
                                       "min_run_time": args.min_run_time,
                                       "environment": env.environment(), "rows": rows},
                                      indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
