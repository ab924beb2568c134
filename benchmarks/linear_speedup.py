"""How much faster is a LowRankLinear than the nn.Linear it replaces — and is that what
the FLOP count predicts?

    python benchmarks/linear_speedup.py [--sizes 512,1024,2048,4096] [--batches 1,32,256]
                                        [--reductions 2,4,8] [--min-run-time 0.1] [--repeats 3]
                                        [--skip-svd] [--output FILE]

For every shape ``m × n`` (out × in), batch size ``b`` and FLOP-reduction factor ``f``, the
rank is ``r = ⌊mn / (f(m + n))⌋`` and, measured side by side in one run with
``lrlib.bench.compare`` (``--repeats`` alternating rounds; the speedup's range over them is kept):

* predicted speedup  = dense FLOPs / factorized FLOPs = ``mn / (r(m + n))``
* measured speedup   = dense median latency / factorized median latency
* ratio              = measured / predicted (1.0: the FLOP count tells the whole story)

It prints every row, the median ratio over all rows and over the rows the course's goal is
about (both sides ≥ 1024, batch ≥ 32; goal ≥ 0.9), then times the exact and the randomized
SVD of a 4096×4096 matrix at rank 256, and writes everything to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lrlib import bench, env, svd
from lrlib.layers import LowRankLinear

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "linear_speedup.json"


def int_list(text: str) -> list:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def rank_for_reduction(m: int, n: int, factor: int) -> int:
    return max(1, (m * n) // (factor * (m + n)))


def measure_row(m, n, batch, factor, min_run_time, repeats) -> dict:
    torch.manual_seed(0)
    dense = nn.Linear(n, m).eval()
    rank = rank_for_reduction(m, n, factor)
    low = LowRankLinear.from_linear(dense, rank).eval()
    x = torch.randn(batch, n)
    # alternating rounds, so that a burst of other load hits both alike
    table = bench.compare({"dense": dense, "low rank": low}, x, rounds=max(2, repeats), warmup=3,
                          min_run_time=min_run_time * repeats, min_samples=5)
    dense_row, low_row = table.rows
    predicted = (m * n) / (rank * (m + n))
    measured = low_row["speedup"]
    return {"m": m, "n": n, "batch": batch, "reduction": factor, "rank": rank,
            "dense_ms": dense_row["median_ms"], "lowrank_ms": low_row["median_ms"],
            "predicted": predicted, "measured": measured, "ratio": measured / predicted,
            "measured_range": [low_row["speedup_low"], low_row["speedup_high"]],
            "verdict": low_row["verdict"]}


def time_svds(size: int = 4096, rank: int = 256) -> dict:
    generator = torch.Generator().manual_seed(0)
    # a matrix with decaying spectrum, like trained weights
    W = torch.randn(size, size, generator=generator) / (1 + torch.arange(size)) ** 0.5
    W = W @ torch.linalg.qr(torch.randn(size, size, generator=generator))[0]
    start = time.perf_counter()
    U, S, Vh = svd.truncated_svd(W, rank)
    exact_s = time.perf_counter() - start
    exact_error = torch.linalg.matrix_norm(W - U @ torch.diag(S) @ Vh).item()
    start = time.perf_counter()
    U, S, Vh = svd.randomized_svd(W, rank, seed=0)
    randomized_s = time.perf_counter() - start
    randomized_error = torch.linalg.matrix_norm(W - U @ torch.diag(S) @ Vh).item()
    return {"size": size, "rank": rank, "exact_s": exact_s, "randomized_s": randomized_s,
            "speedup": exact_s / randomized_s, "exact_error": exact_error,
            "randomized_error": randomized_error, "error_ratio": randomized_error / exact_error}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="LowRankLinear vs nn.Linear, measured vs predicted")
    parser.add_argument("--sizes", type=int_list, default=[512, 1024, 2048, 4096])
    parser.add_argument("--batches", type=int_list, default=[1, 32, 256])
    parser.add_argument("--reductions", type=int_list, default=[2, 4, 8])
    parser.add_argument("--min-run-time", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements per row")
    parser.add_argument("--skip-svd", action="store_true", help="skip the SVD timing")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    header = (f"{'m':>5} {'n':>5} {'batch':>5} {'f':>2} {'rank':>5} {'dense ms':>9} "
              f"{'lowrank ms':>10} {'predicted':>9} {'measured':>8} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    rows = []
    for m in args.sizes:
        for n in args.sizes:
            for batch in args.batches:
                for factor in args.reductions:
                    row = measure_row(m, n, batch, factor, args.min_run_time, args.repeats)
                    rows.append(row)
                    print(f"{m:>5} {n:>5} {batch:>5} {factor:>2} {row['rank']:>5} "
                          f"{row['dense_ms']:>9.3f} {row['lowrank_ms']:>10.3f} "
                          f"{row['predicted']:>8.2f}× {row['measured']:>7.2f}× {row['ratio']:>6.2f}",
                          flush=True)

    def median_ratio(selected):
        return statistics.median(r["ratio"] for r in selected) if selected else None

    goal_rows = [r for r in rows if min(r["m"], r["n"]) >= 1024 and r["batch"] >= 32]
    summary = {"median_ratio_all": median_ratio(rows), "median_ratio_goal_rows": median_ratio(goal_rows),
               "goal_rows": len(goal_rows)}
    for batch in args.batches:
        summary[f"median_ratio_batch_{batch}"] = median_ratio([r for r in rows if r["batch"] == batch])
    print()
    for key, value in summary.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    if summary["median_ratio_goal_rows"] is not None:
        verdict = "meets" if summary["median_ratio_goal_rows"] >= 0.9 else "misses"
        print(f"goal (median ratio >= 0.9 for layers >= 1024 wide at batch >= 32): {verdict} it")

    result = {"benchmark": "linear_speedup", "environment": env.environment(), "rows": rows,
              "summary": summary}
    if not args.skip_svd:
        svd_times = time_svds()
        result["svd_4096_rank_256"] = svd_times
        print(f"\nSVD of a 4096×4096 matrix at rank 256: exact {svd_times['exact_s']:.2f} s, "
              f"randomized {svd_times['randomized_s']:.2f} s ({svd_times['speedup']:.1f}× faster), "
              f"error ratio randomized/exact {svd_times['error_ratio']:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
