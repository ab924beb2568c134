"""lrlib.tensor against TensorLy: same tensors, same ranks, same settings, side by side.

    python benchmarks/decompositions.py [--n-iter-max 100] [--tol 1e-8] [--output FILE]

For each tensor (trained and random conv kernels, and low-rank-plus-noise 3-way tensors)
it runs CP-ALS and Tucker (HOOI) in lrlib and in TensorLy (NumPy backend; TensorLy's
``parafac`` and ``tucker`` with ``init="svd"``, the same rank, ``n_iter_max`` and ``tol``
as lrlib's ``cp_als(init="svd")`` and ``tucker_hooi(init="hosvd")``), in float32 like the
weights, and prints (lrlib's CP runs with its default ``linesearch=True``; TensorLy's
``parafac`` defaults to no line search, and that is what a user of each gets)

* error ratio = lrlib's relative reconstruction error / TensorLy's  (goal ≤ 1.00)
* time ratio  = lrlib's seconds / TensorLy's                        (goal ≤ 0.5)

The errors are recomputed here from the returned factors, the same way for both. The
reference CNN has no 256×256 kernel, so the trained rows use its conv4 (256×128×3×3) and
conv3 (128×64×3×3); the random rows use the shapes (256, 256, 3, 3) and (128, 64, 3, 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lrlib import env, models, tensor

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "decompositions.json"


def cases():
    """(label, tensor, CP rank, Tucker ranks)."""
    cnn = models.load_reference("cnn")
    generator = torch.Generator().manual_seed(0)

    def low_rank_plus_noise(shape, rank):
        factors = [torch.randn(size, rank, generator=generator) for size in shape]
        signal = tensor.cp_to_tensor(None, factors)
        noise = torch.randn(shape, generator=generator)
        return signal / signal.norm() + 0.1 * noise / noise.norm()

    return [
        ("trained conv4 256x128x3x3", cnn.conv4.weight.detach().clone(), 32, (64, 64, 3, 3)),
        ("trained conv3 128x64x3x3", cnn.conv3.weight.detach().clone(), 16, (32, 32, 3, 3)),
        ("random 256x256x3x3", torch.randn(256, 256, 3, 3, generator=generator), 32, (64, 64, 3, 3)),
        ("random 128x64x3x3", torch.randn(128, 64, 3, 3, generator=generator), 16, (32, 32, 3, 3)),
        ("low-rank+noise 60x70x80", low_rank_plus_noise((60, 70, 80), 10), 10, (10, 10, 10)),
        ("low-rank+noise 120x100x50", low_rank_plus_noise((120, 100, 50), 20), 20, (20, 20, 20)),
    ]


def relative_error(T: torch.Tensor, approximation: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(T.double() - approximation.double())
                 / torch.linalg.vector_norm(T.double()))


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run_cp(T, rank, n_iter_max, tol):
    from tensorly.decomposition import parafac

    ours, our_s = timed(lambda: tensor.cp_als(T, rank, n_iter_max=n_iter_max, tol=tol,
                                              init="svd", seed=0))
    theirs, their_s = timed(lambda: parafac(T.numpy(), rank, n_iter_max=n_iter_max, tol=tol,
                                            init="svd", random_state=0))
    their_weights, their_factors = theirs
    their_tensor = tensor.cp_to_tensor(torch.from_numpy(np.asarray(their_weights)),
                                       [torch.from_numpy(np.asarray(f)) for f in their_factors])
    return (relative_error(T, ours.to_tensor()), relative_error(T, their_tensor), our_s, their_s,
            ours.n_iter)


def run_tucker(T, ranks, n_iter_max, tol):
    from tensorly.decomposition import tucker

    ours, our_s = timed(lambda: tensor.tucker_hooi(T, ranks, n_iter_max=n_iter_max, tol=tol,
                                                   init="hosvd"))
    theirs, their_s = timed(lambda: tucker(T.numpy(), rank=list(ranks), n_iter_max=n_iter_max,
                                           tol=tol, init="svd", random_state=0))
    core, factors = theirs
    their_tensor = tensor.tucker_to_tensor(torch.from_numpy(np.asarray(core)),
                                           [torch.from_numpy(np.asarray(f)) for f in factors])
    return (relative_error(T, ours.to_tensor()), relative_error(T, their_tensor), our_s, their_s,
            ours.n_iter)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="lrlib.tensor against TensorLy")
    parser.add_argument("--n-iter-max", type=int, default=100)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="tensorly")

    header = (f"{'tensor':<27} {'method':<7} {'rank':<15} {'lrlib err':>9} {'tly err':>9} "
              f"{'err ratio':>9} {'lrlib s':>8} {'tly s':>8} {'time ratio':>10}")
    print(header)
    print("-" * len(header))
    rows = []
    for label, T, cp_rank, tucker_ranks in cases():
        for method, rank in (("CP", cp_rank), ("Tucker", tucker_ranks)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", tensor.DegenerateCPWarning)
                if method == "CP":
                    ours, theirs, our_s, their_s, iterations = run_cp(T, rank, args.n_iter_max, args.tol)
                else:
                    ours, theirs, our_s, their_s, iterations = run_tucker(T, rank, args.n_iter_max, args.tol)
            row = {"tensor": label, "method": method, "rank": rank, "lrlib_error": ours,
                   "tensorly_error": theirs, "error_ratio": ours / theirs, "lrlib_s": our_s,
                   "tensorly_s": their_s, "time_ratio": our_s / their_s, "lrlib_iterations": iterations}
            rows.append(row)
            print(f"{label:<27} {method:<7} {str(rank):<15} {ours:>9.5f} {theirs:>9.5f} "
                  f"{row['error_ratio']:>9.4f} {our_s:>8.2f} {their_s:>8.2f} {row['time_ratio']:>10.3f}",
                  flush=True)

    worst_error = max(row["error_ratio"] for row in rows)
    worst_time = max(row["time_ratio"] for row in rows)
    print(f"\nworst error ratio {worst_error:.4f} (goal <= 1.00 on every row: "
          f"{'met' if worst_error <= 1.0 + 1e-4 else 'missed'})")
    print(f"worst time ratio {worst_time:.3f} (goal <= 0.5 on every row: "
          f"{'met' if worst_time <= 0.5 else 'missed'})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"benchmark": "decompositions", "n_iter_max": args.n_iter_max,
                                       "tol": args.tol, "environment": env.environment(),
                                       "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
