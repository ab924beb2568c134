"""The command line: ``python -m lrlib`` (also installed as ``lrlib``).

    lrlib models
    lrlib bench --model cnn --batch-sizes 1,8,32
    lrlib compress --model cnn --method auto --target-speedup 3 --fine-tune-epochs 1

``compress`` runs the whole path of the course on a reference model: factorize every layer
where that saves FLOPs at the target reduction (lessons 03–05), re-estimate the BatchNorm
statistics for the new layers, fine-tune, fold BatchNorm into the convolutions (lesson
02), evaluate, measure latency and throughput before and
after (lesson 01), and save the result into ``--output``: ``model.pt`` (state_dict),
``model.json`` (what rebuilds it, and the measurements) and ``latency.png``. The output
folder appears only when everything succeeded.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

EXIT_BAD_ARGUMENTS = 2
EXIT_FAILED = 1


class CommandError(Exception):
    """A bad argument found after parsing (shown as ``error: …``, exit status 2)."""


def _batch_sizes(text: str) -> list:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be comma-separated positive ints, got {text!r}")
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be comma-separated positive ints, got {text!r}")
    return sizes


def _number(text: str, convert, allowed, description: str):
    """``convert(text)`` if it parses and ``allowed`` accepts it, else an argparse error
    saying ``expected <description>``."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not allowed(value):
        raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number")


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive int")


def _non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an int >= 0")


def _check_model_name(name: str) -> str:
    from .models import REFERENCE_MODELS

    if name not in REFERENCE_MODELS:
        raise CommandError(f"--model must be one of {sorted(REFERENCE_MODELS)} (see `lrlib models`), got {name!r}")
    return name


# --------------------------------------------------------------------------- lrlib models
def command_models(args) -> int:
    from ._table import text_table
    from .models import REFERENCE_MODELS, load_reference, reference_info
    from .profile import count_params

    rows = []
    for name, entry in REFERENCE_MODELS.items():
        info = reference_info(name)
        rows.append([name, f"{count_params(load_reference(name)):,}",
                     f"{info['test_accuracy']:.4f}", entry.description])
    print(text_table(("name", "params", "test accuracy", "description"), rows, left_aligned=(0, 3)))
    return 0


# --------------------------------------------------------------------------- lrlib bench
def _latency_rows(models_by_label: dict, batch_sizes, seconds: float, threads,
                  keep_freed_memory: bool = True) -> list:
    """One row per model and batch size; the models are measured side by side, alternating
    in rounds (lrlib.bench.compare), and each row after the first carries its speedup."""
    from .bench import compare
    from .models import IMAGE_SHAPE

    rows = []
    for batch in batch_sizes:
        x = torch.randn(batch, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(0))
        table = compare(models_by_label, x, min_run_time=seconds, threads=threads,
                        keep_freed_memory=keep_freed_memory)
        for row in table.rows:
            rows.append({"model": row["name"], "batch": batch, "median_ms": row["median_ms"],
                         "p95_ms": row["p95_ms"],
                         "items_per_second": row["latency"].items_per_second,
                         "speedup": row["speedup"], "speedup_low": row["speedup_low"],
                         "speedup_high": row["speedup_high"], "verdict": row["verdict"],
                         "allocator": row["latency"].allocator})
        for note in table.notes:
            print(f"batch {batch}: {note}")
    return rows


def _print_latency(rows) -> None:
    from ._table import text_table

    print(text_table(("model", "batch", "median ms", "p95 ms", "items/s", "speedup [range]"),
                     [[r["model"], str(r["batch"]), f"{r['median_ms']:.3f}", f"{r['p95_ms']:.3f}",
                       f"{r['items_per_second']:,.0f}",
                       f"{r['speedup']:.2f}× [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}]"]
                      for r in rows], left_aligned=(0,)))
    allocator = rows[0]["allocator"] if rows else "default"
    print("allocator: freed memory kept, as in a serving process (lrlib.optimize.keep_freed_memory)"
          if allocator == "steady" else "allocator: glibc's default settings")


def command_bench(args) -> int:
    from .models import load_reference

    _check_model_name(args.model)
    rows = _latency_rows({args.model: load_reference(args.model)}, args.batch_sizes, args.seconds,
                         args.threads, keep_freed_memory=not args.default_allocator)
    _print_latency(rows)
    return 0


# --------------------------------------------------------------------------- lrlib compress
def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == label]
        left.plot([r["batch"] for r in mine], [r["median_ms"] for r in mine], "o-", label=label)
        right.plot([r["batch"] for r in mine], [r["items_per_second"] for r in mine], "o-", label=label)
    for axis, title in ((left, "median latency (ms)"), (right, "throughput (items/s)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _default_lr(model, report) -> float:
    """The fine-tuning learning rate: the gentlest that the methods of the factorized
    layers of ``model`` (the dense original) tolerate (CP chains need far gentler steps
    than the others; notebook 05)."""
    from .factorizations import resolve

    rates = [resolve(row["method"], model.get_submodule(row["layer"])).fine_tune_lr
             for row in report.rows if row["rank"] is not None]
    return min(rates, default=3e-4)


def command_compress(args) -> int:
    from . import compress as compress_module
    from . import deploy
    from .data import fashion_mnist
    from .models import load_reference
    from .optimize import fold_batchnorms
    from .rank_rules import FlopReduction
    from .train import evaluate, fine_tune, recalibrate_batchnorm

    _check_model_name(args.model)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise CommandError(f"--output {output} exists; pass --overwrite or choose another folder")
    if args.target_speedup <= 1:
        raise CommandError(f"--target-speedup must be > 1, got {args.target_speedup}")

    original = load_reference(args.model)
    test = fashion_mnist("test")
    if args.test_images is not None:
        test = (test.images[:args.test_images], test.labels[:args.test_images])
    start = time.perf_counter()
    train_set = fashion_mnist("train")
    example = train_set.images[:8]           # real images: the report's output errors use them
    # factorize with BatchNorm still in place, so that its statistics can be re-estimated
    # for the new layers and it can help fine-tuning; fold it at the end (notebook 05)
    # with --calibration-images N and --method auto: the data-aware methods (whitened SVD,
    # whitened Tucker-2), on the last N training images (those the report and fine-tuning
    # do not single out); a weights-only method named explicitly stays weights-only
    calibration = None
    if args.calibration_images:
        calibration = (train_set.images[-args.calibration_images:],
                       train_set.labels[-args.calibration_images:])
    elif args.method in ("whitened", "asvd", "whitened-tucker2"):
        raise CommandError(f"--method {args.method} is data-aware: pass --calibration-images N")
    compressed, report = compress_module.compress(
        original, rank=FlopReduction(args.target_speedup), method=args.method,
        example_input=example, include=args.include, exclude=args.exclude, calibration=calibration)
    print(report)
    accuracy = {"original": evaluate(original, test).accuracy,
                "factorized": evaluate(compressed, test).accuracy}
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in compressed.modules()):
        recalibrate_batchnorm(compressed, (train_set.images[:2000], train_set.labels[:2000]))
        accuracy["BN recalibrated"] = evaluate(compressed, test).accuracy
    if args.fine_tune_epochs:
        lr = args.lr if args.lr is not None else _default_lr(original, report)
        torch.manual_seed(args.seed)
        fine_tune(compressed, train_set, epochs=args.fine_tune_epochs, lr=lr, seed=args.seed)
    if not args.keep_batchnorm:
        compressed = fold_batchnorms(compressed)
    accuracy["fine-tuned"] = evaluate(compressed, test).accuracy
    print("test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))

    rows = _latency_rows({"original": original, "compressed": compressed.eval()}, args.batch_sizes,
                         args.seconds, args.threads)
    _print_latency(rows)
    for row in rows:
        if row["model"] == "compressed":
            print(f"batch {row['batch']}: measured speedup {row['speedup']:.2f}x "
                  f"[{row['speedup_low']:.2f}, {row['speedup_high']:.2f} over rounds]: "
                  f"{row['verdict']}")

    # deploy.save_compressed writes into a temporary folder and renames it into place
    deploy.save_compressed(
        compressed, output, base_model=args.model, structure=deploy.factorized_structure(report),
        batchnorm_folded=not args.keep_batchnorm, overwrite=args.overwrite,
        extra={"method": args.method, "target_speedup": args.target_speedup,
               "calibration_images": args.calibration_images or 0, "accuracy": accuracy,
               "latency": rows, "seconds": time.perf_counter() - start,
               "rebuild": "lrlib.deploy.load_compressed(folder)"},
        extra_files={"latency.png": lambda path: _plot(rows, path)})
    print(f"saved {output / 'model.pt'}, {output / 'model.json'} and {output / 'latency.png'}")
    return 0


# --------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    from .factorizations import METHODS

    parser = argparse.ArgumentParser(prog="lrlib", description="Low-rank compression of the course's "
                                     "reference models, from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models_parser = commands.add_parser("models", help="list the reference models",
                                        description="List the reference models with their size and accuracy.")
    models_parser.set_defaults(run=command_models)

    bench_parser = commands.add_parser("bench", help="measure a model's latency and throughput",
                                       description="Latency (median, p95) and throughput per batch size.")
    bench_parser.add_argument("--model", required=True, help="a reference model (see `lrlib models`)")
    bench_parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 8, 32], metavar="N,N,…")
    bench_parser.add_argument("--seconds", type=_positive_float, default=0.5, help="timing per phase")
    bench_parser.add_argument("--threads", type=int, default=None)
    bench_parser.add_argument("--default-allocator", action="store_true",
                              help="measure with glibc's default settings; without it, freed "
                                   "memory is kept in the process as in a serving process "
                                   "(lrlib.optimize.keep_freed_memory)")
    bench_parser.set_defaults(run=command_bench)

    compress_parser = commands.add_parser(
        "compress", help="factorize, fine-tune, verify, measure and save a model",
        description="Fold BatchNorm, factorize the layers at a FLOP-reduction target, fine-tune, "
                    "evaluate, measure before and after, and save the compressed model.")
    compress_parser.add_argument("--model", required=True, help="a reference model (see `lrlib models`)")
    compress_parser.add_argument("--method", choices=METHODS, default="auto")
    compress_parser.add_argument("--target-speedup", type=_positive_float, default=3.0,
                                 help="FLOP reduction asked of every factorized layer (> 1)")
    compress_parser.add_argument("--fine-tune-epochs", type=_non_negative_int, default=1)
    compress_parser.add_argument("--include", nargs="+", default=None, metavar="LAYER",
                                 help="layers to consider (default: all); a layer named here is "
                                      "factorized even if the default scope keeps it dense (the "
                                      "output layer, a first conv on ≤ 3 channels)")
    compress_parser.add_argument("--exclude", nargs="+", default=None, metavar="LAYER",
                                 help="layers to leave dense, besides the default scope's")
    compress_parser.add_argument("--test-images", type=_positive_int, default=None, metavar="N",
                                 help="evaluate on the first N test images only (default: all 2,000)")
    compress_parser.add_argument("--calibration-images", type=_non_negative_int, default=0, metavar="N",
                                 help="factorize against the inputs each layer sees on N training "
                                      "images (data-aware: with --method auto the whitened SVD and the "
                                      "whitened Tucker-2; 0: weights only)")
    compress_parser.add_argument("--keep-batchnorm", action="store_true",
                                 help="keep BatchNorm layers in the saved model (default: fold them "
                                      "into the convolutions after fine-tuning)")
    compress_parser.add_argument("--lr", type=_positive_float, default=None,
                                 help="fine-tuning learning rate (default 1e-5 when CP chains were "
                                      "used, else 3e-4)")
    compress_parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 8, 32], metavar="N,N,…")
    compress_parser.add_argument("--seconds", type=_positive_float, default=0.3, help="timing per phase")
    compress_parser.add_argument("--threads", type=int, default=None)
    compress_parser.add_argument("--seed", type=int, default=0)
    compress_parser.add_argument("--output", default="lrlib-compressed", help="folder to save into")
    compress_parser.add_argument("--overwrite", action="store_true")
    compress_parser.set_defaults(run=command_compress)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CommandError as error:
        parser.error(str(error))  # prints usage and "error: …", exits with status 2
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"lrlib {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED
