"""The course's data: a Fashion-MNIST subset that ships inside lrlib, and synthetic inputs.

Introduced in notebook ``00_welcome``; every later notebook trains, fine-tunes or
evaluates on it.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) holds 28×28 grey-scale images of clothing in
ten classes, 60,000 for training and 10,000 for testing. It is © 2017 Zalando SE and
released under the MIT licence; the notice ships beside the subset in
``lrlib/assets/FASHION_MNIST_LICENSE.txt``.

The course ships a class-balanced subset (1,200 training and 200 test images per class) as
``lrlib/assets/fashion_mnist_subset.npz``, so that nothing is downloaded at run time.
``tools/make_dataset.py`` rebuilds it from Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .validate import check_bool, check_choice, check_int, check_positive_ints, check_type

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "ImageSet",
    "fashion_mnist",
    "read_idx",
    "synthetic_input",
    "SAMPLE_PHOTOS",
    "load_photo",
    "photo_crops",
    "SUBSET_PATH",
    "DEBIAN_PATH",
]

#: The ten Fashion-MNIST classes, in label order (label ``i`` is ``CLASS_NAMES[i]``).
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: The allowed values of ``split``.
SPLITS = ("train", "test")

#: Where the shipped subset lives.
SUBSET_PATH = Path(__file__).resolve().parent / "assets" / "fashion_mnist_subset.npz"

#: Where Debian's ``dataset-fashion-mnist`` package puts the full data set.
DEBIAN_PATH = Path("/usr/share/datasets/fashion-mnist")

# File names of the original data set (gzip'd IDX files), per split.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_REBUILD_HINT = (
    "Rebuild it with `python tools/make_dataset.py` (it needs Debian's package "
    "dataset-fashion-mnist: `apt-get install -y dataset-fashion-mnist`), or reinstall the "
    "course from its repository."
)


@dataclass(frozen=True)
class ImageSet:
    """Images with their labels.

    Attributes
    ----------
    images : torch.Tensor
        Shape ``(N, 1, 28, 28)``, ``float32`` with values in ``[0, 1]``.
    labels : torch.Tensor
        Shape ``(N,)``, ``int64`` class indices in ``0..9``.
    class_names : tuple of str
        ``class_names[label]`` is the name of a label.
    split : str
        ``"train"`` or ``"test"``.
    source : str
        Where the images were read from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple
    split: str
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int = 128, *, shuffle: bool = False, seed: int = 0):
        """A ``torch.utils.data.DataLoader`` over ``(image, label)`` pairs.

        With ``shuffle=True`` the order is drawn from a generator seeded with ``seed``, so
        two loaders made with the same seed give the same batches.
        """
        check_int(batch_size, "batch_size", minimum=1)
        check_bool(shuffle, "shuffle")
        check_int(seed, "seed")
        dataset = torch.utils.data.TensorDataset(self.images, self.labels)
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=generator
        )


def fashion_mnist(split: str = "train", *, path=None) -> ImageSet:
    """Load Fashion-MNIST images and labels, offline.

    Parameters
    ----------
    split : {"train", "test"}
        Which part of the data set.
    path : str or Path, optional
        Leave it out to use the subset shipped with lrlib (12,000 training and 2,000 test
        images, 10% of each class of the original). Give a folder holding the original
        gzip'd IDX files (for example ``lrlib.data.DEBIAN_PATH``) to use the full data set.

    Returns
    -------
    ImageSet
        ``images`` as ``float32`` in ``[0, 1]`` of shape ``(N, 1, 28, 28)``, ``labels`` as
        ``int64``; call ``.loader(batch_size)`` for a DataLoader.

    Examples
    --------
    >>> test = fashion_mnist("test")
    >>> test.images.shape, test.class_names[int(test.labels[0])]  # doctest: +SKIP
    """
    check_choice(split, "split", SPLITS)
    if path is None:
        pixels, labels = _load_subset(split, SUBSET_PATH)
        source = str(SUBSET_PATH)
    else:
        folder = Path(check_type(path, "path", (str, os.PathLike), "a str or a Path"))
        image_file, label_file = (folder / name for name in _IDX_FILES[split])
        pixels, labels = read_idx(image_file), read_idx(label_file)
        if len(pixels) != len(labels):
            raise ValueError(
                f"{image_file} holds {len(pixels)} images but {label_file} holds "
                f"{len(labels)} labels"
            )
        source = str(folder)
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)
    return ImageSet(
        images=images,
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=CLASS_NAMES,
        split=split,
        source=source,
    )


def _load_subset(split: str, file: Path):
    """Read one split of the shipped ``.npz`` subset and check what it holds."""
    if not file.exists():
        raise FileNotFoundError(f"The Fashion-MNIST subset {file} is missing. {_REBUILD_HINT}")
    try:
        with np.load(file) as archive:
            pixels = archive[f"{split}_images"]
            labels = archive[f"{split}_labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise RuntimeError(
            f"The Fashion-MNIST subset {file} cannot be read ({error}). {_REBUILD_HINT}"
        ) from error
    _check_arrays(pixels, labels, file)
    return pixels, labels


def _check_arrays(pixels: np.ndarray, labels: np.ndarray, file: Path) -> None:
    """Raise RuntimeError unless ``pixels``/``labels`` look like Fashion-MNIST."""
    problems = []
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[1:] != (28, 28):
        problems.append(f"images have dtype {pixels.dtype} and shape {pixels.shape}")
    if labels.ndim != 1 or len(labels) != len(pixels):
        problems.append(f"labels have shape {labels.shape} for {len(pixels)} images")
    elif len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        problems.append(f"labels range over {labels.min()}..{labels.max()}, not 0..9")
    if problems:
        raise RuntimeError(
            f"The Fashion-MNIST subset {file} is corrupt: {'; '.join(problems)}. "
            f"{_REBUILD_HINT}"
        )


def read_idx(file) -> np.ndarray:
    """Read a gzip'd (or plain) IDX file of unsigned bytes into a numpy array.

    The IDX format (LeCun et al. 1998, used by MNIST and Fashion-MNIST) is a 4-byte magic
    number ``0x00 0x00 0x08 ndim`` (``0x08`` = unsigned byte), then ``ndim`` big-endian
    uint32 sizes, then the data in C order.
    """
    file = Path(check_type(file, "file", (str, os.PathLike), "a str or a Path"))
    if not file.exists():
        raise FileNotFoundError(
            f"{file} does not exist; the full Fashion-MNIST data set comes with Debian's "
            "package dataset-fashion-mnist (files under /usr/share/datasets/fashion-mnist)"
        )
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{file} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int(size) for size in np.frombuffer(raw[4:header_end], dtype=">u4"))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{file} holds {data.size} values but its header says {shape}")
    return data.reshape(shape).copy()


def synthetic_input(shape, *, seed: int = 0, dtype=torch.float32, device=None) -> torch.Tensor:
    """A seeded standard-normal tensor of ``shape``, for timing a model.

    Speed depends on the shape of the input, not on its values, so random data measures
    latency as well as real images do.
    """
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    shape = check_positive_ints(shape, "shape")
    check_int(seed, "seed")
    check_type(dtype, "dtype", torch.dtype)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


#: Two colour photographs that ship with matplotlib (``matplotlib.cbook.get_sample_data``):
#: a portrait of Grace Hopper and a present in blue wrapping.
SAMPLE_PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def load_photo(name: str) -> torch.Tensor:
    """One of matplotlib's sample photographs (a name in :data:`SAMPLE_PHOTOS`) as a
    ``(3, H, W)`` float tensor in ``[0, 1]`` (an RGBA picture is composited over white)."""
    import matplotlib.pyplot as plt
    from matplotlib import cbook

    check_choice(name, "name", SAMPLE_PHOTOS)
    with cbook.get_sample_data(name) as file:
        image = np.asarray(plt.imread(file), dtype=np.float32)
    if image.max() > 1.5:                                   # JPEG: 0..255
        image = image / 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3] * image[..., 3:] + (1 - image[..., 3:])
    return torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)


def photo_crops(per_photo: int, *, seed: int, size: int = 224, photos=SAMPLE_PHOTOS) -> torch.Tensor:
    """``per_photo`` random square crops of each photo, resized to ``size × size``: a seeded,
    offline stand-in for natural images, shape ``(len(photos) · per_photo, 3, size, size)``,
    values in ``[0, 1]``, the crops of the first photo first.

    Each crop's side is a uniform fraction between ½ and all of the photo's shorter side, at
    a uniform position, flipped left–right with probability ½, and resized with
    antialiasing. All draws come from one generator seeded with ``seed``, in order, so two
    calls with different seeds give different crops of the same scenes: strongly
    correlated inputs, enough to compare a compressed model with its original, not to
    estimate accuracy."""
    check_int(per_photo, "per_photo", minimum=1)
    check_int(seed, "seed")
    check_int(size, "size", minimum=1)
    generator = torch.Generator().manual_seed(seed)

    def uniform() -> float:
        return torch.rand((), generator=generator).item()

    crops = []
    for name in photos:
        photo = load_photo(name)
        _, h, w = photo.shape
        for _ in range(per_photo):
            side = int(min(h, w) * (0.5 + 0.5 * uniform()))
            top = int(torch.randint(0, h - side + 1, (), generator=generator))
            left = int(torch.randint(0, w - side + 1, (), generator=generator))
            crop = photo[:, top:top + side, left:left + side]
            if uniform() < 0.5:
                crop = crop.flip(-1)
            crops.append(torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bilinear",
                                                         antialias=True, align_corners=False)[0])
    return torch.stack(crops).clamp(0, 1)
