"""Small reference models that the course compresses, and their shipped trained weights.

Introduced in notebook ``00_welcome``; lessons 02–07 measure, factorize and fine-tune them.

* ``"mlp"`` -- :class:`MLP`, 784 → 1024 → 512 → 10 with ReLU. Its two wide Linear layers
  (1024×784 and 512×1024 weight matrices) are what lesson 03 factorizes with the SVD.
* ``"cnn"`` -- :class:`CNN`, four 3×3 convolutions with 32, 64, 128 and 256 channels, each
  followed by BatchNorm and ReLU, then global average pooling and a Linear classifier. The
  wide 3×3 convolutions are what lesson 05 factorizes with CP and Tucker-2.

Both were trained on the shipped Fashion-MNIST subset by
``tools/train_reference_models.py`` (seeded); the weights live in ``lrlib/assets/`` and
are loaded with ``torch.load(..., weights_only=True)``, which reads tensors only and runs
no code from the file.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "MLP",
    "CNN",
    "REFERENCE_MODELS",
    "ReferenceModel",
    "load_reference",
    "reference_info",
    "build_reference",
]

ASSETS = Path(__file__).resolve().parent / "assets"

#: Written by tools/train_reference_models.py: how each model was trained and how it scored.
TRAINING_RECORD = ASSETS / "reference_models.json"

IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


def _positive_ints(name: str, values) -> tuple:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                             for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    return values


class MLP(nn.Sequential):
    """A multi-layer perceptron for 28×28 images: flatten, then Linear + ReLU layers.

    With the default ``hidden=(1024, 512)`` the layers are ``fc1`` (784 → 1024), ``fc2``
    (1024 → 512) and ``fc3`` (512 → 10): 1,333,770 parameters.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers.
    """

    def __init__(self, hidden=(1024, 512)):
        hidden = _positive_ints("hidden", hidden)
        widths = (IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2],) + hidden
        layers = [("flatten", nn.Flatten())]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            layers += [(f"fc{i}", nn.Linear(n_in, n_out)), (f"relu{i}", nn.ReLU())]
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(widths[-1], NUM_CLASSES)))
        super().__init__(OrderedDict(layers))


class CNN(nn.Sequential):
    """A small VGG-style convolutional network for 28×28 images.

    Each stage is ``conv{i}`` (3×3, padding 1, no bias) → ``bn{i}`` → ``relu{i}``; a 2×2
    max-pool follows stages 2 and 3, so with the default channels the convolutions run at
    28×28, 28×28, 14×14 and 7×7. Global average pooling and ``fc`` (256 → 10) finish it:
    390,890 parameters, about 43 million multiply-adds per image.

    Parameters
    ----------
    channels : sequence of int
        Output channels of the convolutions (at least 3, so that both pools apply).
    """

    def __init__(self, channels=(32, 64, 128, 256)):
        channels = _positive_ints("channels", channels)
        if len(channels) < 3:
            raise ValueError(f"channels needs at least 3 entries, got {channels!r}")
        layers = []
        in_channels = IMAGE_SHAPE[0]
        for i, out_channels in enumerate(channels, start=1):
            layers += [
                (f"conv{i}", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)),
                (f"bn{i}", nn.BatchNorm2d(out_channels)),
                (f"relu{i}", nn.ReLU()),
            ]
            if i in (2, 3):
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
            in_channels = out_channels
        layers += [
            ("gap", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(in_channels, NUM_CLASSES)),
        ]
        super().__init__(OrderedDict(layers))


@dataclass(frozen=True)
class ReferenceModel:
    """How to build one reference model, where its weights are, and what it is for."""

    name: str
    builder: type
    description: str

    @property
    def weights_path(self) -> Path:
        return ASSETS / f"{self.name}.pt"

    @property
    def input_shape(self) -> tuple:
        """Shape of one input image (add a batch dimension in front)."""
        return IMAGE_SHAPE


REFERENCE_MODELS = {
    "mlp": ReferenceModel("mlp", MLP, "MLP 784-1024-512-10 (wide Linear layers, lesson 03)"),
    "cnn": ReferenceModel("cnn", CNN, "CNN with 3x3 convs of 32-64-128-256 channels (lesson 05)"),
}


def _entry(name) -> ReferenceModel:
    if name not in REFERENCE_MODELS:
        raise ValueError(f"name must be one of {sorted(REFERENCE_MODELS)}, got {name!r}")
    return REFERENCE_MODELS[name]


def build_reference(name: str) -> nn.Module:
    """A freshly initialized (untrained) model of the architecture called ``name``."""
    return _entry(name).builder()


def load_reference(name: str, *, device=None) -> nn.Module:
    """The trained reference model ``name`` (``"mlp"`` or ``"cnn"``), in ``eval()`` mode.

    Each call returns a new model, so changing it never changes another caller's copy.
    """
    entry = _entry(name)
    path = entry.weights_path
    if not path.exists():
        raise FileNotFoundError(
            f"The weights of reference model {name!r} ({path}) are missing. Rebuild them "
            "with `python tools/train_reference_models.py`."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise RuntimeError(
            f"The weights of reference model {name!r} ({path}) cannot be read ({error}). "
            "Rebuild them with `python tools/train_reference_models.py`."
        ) from error
    model = entry.builder()
    model.load_state_dict(state)
    return model.to(device).eval()


def reference_info(name: str) -> dict:
    """What ``tools/train_reference_models.py`` recorded for ``name``: epochs, learning
    rate, seed, test accuracy on the subset, torch version and threads used."""
    _entry(name)
    if not TRAINING_RECORD.exists():
        raise FileNotFoundError(
            f"{TRAINING_RECORD} is missing; run `python tools/train_reference_models.py`"
        )
    return json.loads(TRAINING_RECORD.read_text())[name]
