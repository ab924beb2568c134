"""Train the four small networks that notebook 06 compares, with one shared budget.

    python tools/train_block_variants.py [--only baseline|one_by_one|fire|separable]

The variants (``lrlib.models.VARIANTS``) differ only in stages 2-4: 3×3 convolutions
(baseline), 1×1 convolutions, Fire modules, or depthwise separable convolutions. All of
them get the same settings (``SETTINGS``: epochs, learning rate, schedule, batch size,
weight decay, seed) and are trained with ``lrlib.train.fit`` on the shipped Fashion-MNIST
training subset, then evaluated on the test subset. The script saves each state_dict as
``lrlib/assets/variants/<name>.pt`` and records the settings, the accuracy and the
training time in ``lrlib/assets/variants/variants.json``.

Seeded and deterministic: on the same machine, with the same torch version and thread
count, it writes the same weights. It trains on one thread (``--threads``), which on a
small CPU shared with other work is faster than two and keeps the result reproducible.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrlib.data import fashion_mnist  # noqa: E402
from lrlib.models import (VARIANT_ASSETS, VARIANT_RECORD, VARIANTS,  # noqa: E402
                          build_variant, variant_weights_path)
from lrlib.profile import count_flops, count_params  # noqa: E402
from lrlib.train import evaluate, fit  # noqa: E402

#: The one budget every variant gets.
SETTINGS = {"epochs": 8, "lr": 3e-3, "batch_size": 128, "weight_decay": 1e-4,
            "schedule": "cosine", "seed": 0}


def train_one(name: str, train, test) -> dict:
    torch.manual_seed(SETTINGS["seed"])
    model = build_variant(name)
    params = count_params(model)
    flops = count_flops(model, torch.zeros(1, *train.images.shape[1:]))
    start = time.perf_counter()
    history = fit(model, train, **SETTINGS)
    seconds = time.perf_counter() - start
    result = evaluate(model, test)
    torch.save(model.state_dict(), variant_weights_path(name))
    print(f"{name:>10}: {params:>7,} parameters, {flops / 1e6:6.2f} MFLOPs per image, "
          f"test accuracy {result.accuracy:.4f} on {result.n} images "
          f"(train accuracy {history[-1]['accuracy']:.4f}, {seconds:.0f} s)", flush=True)
    return {
        **SETTINGS,
        "params": params,
        "flops": flops,
        "test_accuracy": round(result.accuracy, 4),
        "test_images": result.n,
        "final_train_accuracy": round(history[-1]["accuracy"], 4),
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the variants of notebook 06.")
    parser.add_argument("--only", choices=list(VARIANTS), help="train just this variant")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be a positive int, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    VARIANT_ASSETS.mkdir(parents=True, exist_ok=True)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    record = json.loads(VARIANT_RECORD.read_text()) if VARIANT_RECORD.exists() else {}
    start = time.perf_counter()
    for name in [args.only] if args.only else list(VARIANTS):
        record[name] = train_one(name, train, test)
        # write after each variant, so that an interrupted run keeps what it finished
        VARIANT_RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {VARIANT_RECORD} ({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
