"""Build the Fashion-MNIST subset that ships with lrlib.

    python tools/make_dataset.py [--source /usr/share/datasets/fashion-mnist]

Reads the full data set (gzip'd IDX files from Debian's package ``dataset-fashion-mnist``:
``apt-get install -y dataset-fashion-mnist``), draws a class-balanced subset with a fixed
seed -- 1,200 training and 200 test images per class -- and writes it, with the indices it
took from the original, to ``lrlib/assets/fashion_mnist_subset.npz``. The MIT licence notice
of Zalando SE lies beside it in ``lrlib/assets/FASHION_MNIST_LICENSE.txt``.

Running it twice gives the same file contents.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrlib.data import CLASS_NAMES, DEBIAN_PATH, SUBSET_PATH, fashion_mnist  # noqa: E402

PER_CLASS = {"train": 1200, "test": 200}
SEED = 2017


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class, drawn without replacement, in ascending order."""
    chosen = []
    for label in range(len(CLASS_NAMES)):
        candidates = np.flatnonzero(labels == label)
        if len(candidates) < per_class:
            raise ValueError(f"class {label} has only {len(candidates)} images, need {per_class}")
        chosen.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument("--source", default=str(DEBIAN_PATH),
                        help="folder with the original gzip'd IDX files (default: %(default)s)")
    parser.add_argument("--output", default=str(SUBSET_PATH), help="where to write the .npz")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, per_class in PER_CLASS.items():
        full = fashion_mnist(split, path=args.source)
        labels = full.labels.numpy()
        index = balanced_indices(labels, per_class, rng)
        pixels = (full.images[index, 0] * 255).round().numpy().astype(np.uint8)
        arrays[f"{split}_images"] = pixels
        arrays[f"{split}_labels"] = labels[index].astype(np.uint8)
        arrays[f"{split}_source_index"] = index.astype(np.int32)
        counts = np.bincount(labels[index], minlength=len(CLASS_NAMES))
        print(f"{split}: {len(index)} images, per class {counts.tolist()}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
