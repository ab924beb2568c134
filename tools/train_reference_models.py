"""Train the reference models on the shipped Fashion-MNIST subset and save their weights.

    python tools/train_reference_models.py [--only mlp|cnn]

Seeded: on the same machine, with the same torch version and thread count, it writes the
same weights. It prints each model's test accuracy, saves ``lrlib/assets/<name>.pt`` (a
plain state_dict) and records the settings and the accuracy in
``lrlib/assets/reference_models.json``. The README quotes the accuracies it printed.
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
from lrlib.models import REFERENCE_MODELS, TRAINING_RECORD, build_reference  # noqa: E402
from lrlib.train import evaluate, fit  # noqa: E402

# Settings per model: chosen so that both train in a few minutes on a 2-core CPU.
SETTINGS = {
    "mlp": {"epochs": 10, "lr": 1e-3, "batch_size": 128, "weight_decay": 1e-4,
            "schedule": "cosine", "seed": 0},
    "cnn": {"epochs": 7, "lr": 3e-3, "batch_size": 128, "weight_decay": 1e-4,
            "schedule": "cosine", "seed": 0},
}


def train_one(name: str, train, test) -> dict:
    settings = SETTINGS[name]
    torch.manual_seed(settings["seed"])
    model = build_reference(name)
    start = time.perf_counter()
    history = fit(model, train, **settings)
    seconds = time.perf_counter() - start
    result = evaluate(model, test)
    torch.save(model.state_dict(), REFERENCE_MODELS[name].weights_path)
    print(f"{name}: test accuracy {result.accuracy:.4f} on {result.n} images "
          f"(train accuracy {history[-1]['accuracy']:.4f}, {seconds:.0f} s)")
    return {
        **settings,
        "test_accuracy": round(result.accuracy, 4),
        "test_images": result.n,
        "final_train_accuracy": round(history[-1]["accuracy"], 4),
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the lrlib reference models.")
    parser.add_argument("--only", choices=sorted(SETTINGS), help="train just this model")
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    record = json.loads(TRAINING_RECORD.read_text()) if TRAINING_RECORD.exists() else {}
    for name in [args.only] if args.only else sorted(SETTINGS):
        record[name] = train_one(name, train, test)
    TRAINING_RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {TRAINING_RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
