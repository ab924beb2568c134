"""lrlib.data: the shipped Fashion-MNIST subset, the IDX reader and synthetic inputs."""

import gzip
import struct

import numpy as np
import pytest
import torch

from lrlib import data


@pytest.fixture(scope="module")
def train():
    return data.fashion_mnist("train")


@pytest.fixture(scope="module")
def test():
    return data.fashion_mnist("test")


def test_subset_sizes_shapes_and_dtypes(train, test):
    assert train.images.shape == (12000, 1, 28, 28)
    assert test.images.shape == (2000, 1, 28, 28)
    for split in (train, test):
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert float(split.images.min()) == 0.0 and float(split.images.max()) == 1.0
        assert len(split) == len(split.labels)


def test_subset_is_class_balanced(train, test):
    assert torch.bincount(train.labels, minlength=10).tolist() == [1200] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [200] * 10


def test_class_names_in_label_order(train):
    assert train.class_names == data.CLASS_NAMES
    assert len(data.CLASS_NAMES) == 10
    assert data.CLASS_NAMES[0] == "T-shirt/top" and data.CLASS_NAMES[9] == "Ankle boot"


def test_subset_images_are_real_and_distinct(train, test):
    # Real photos: mean pixel of Fashion-MNIST is about 0.29; and no test image is a
    # training image (the two splits come from different files).
    assert 0.2 < float(train.images.mean()) < 0.4
    train_keys = {bytes(img.numpy().tobytes()) for img in (train.images[:, 0] * 255).byte()}
    test_keys = {bytes(img.numpy().tobytes()) for img in (test.images[:, 0] * 255).byte()}
    assert len(train_keys & test_keys) < 5  # the original has a handful of duplicates at most


def test_subset_matches_full_data_set_when_available(test):
    """The subset's images are exactly the original images at the recorded indices."""
    if not (data.DEBIAN_PATH / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    full = data.fashion_mnist("test", path=data.DEBIAN_PATH)
    with np.load(data.SUBSET_PATH) as archive:
        index = archive["test_source_index"]
    assert len(full) == 10000
    assert torch.equal(full.images[index], test.images)
    assert torch.equal(full.labels[index], test.labels)


def test_loader_batches_and_seeded_shuffle(test):
    loader = test.loader(256)
    images, labels = next(iter(loader))
    assert images.shape == (256, 1, 28, 28) and labels.shape == (256,)
    assert sum(len(y) for _, y in loader) == 2000
    first = [y for _, y in test.loader(100, shuffle=True, seed=3)]
    again = [y for _, y in test.loader(100, shuffle=True, seed=3)]
    other = [y for _, y in test.loader(100, shuffle=True, seed=4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                        ("32", TypeError), (True, TypeError)])
def test_loader_rejects_bad_batch_size(test, bad, error):
    with pytest.raises(error, match=f"batch_size must be a positive int, got {bad!r}"):
        test.loader(bad)


@pytest.mark.parametrize("bad, error", [("valid", ValueError), ("Train", ValueError),
                                        ("", ValueError), (None, TypeError)])
def test_wrong_split_lists_the_allowed_ones(bad, error):
    with pytest.raises(error, match=r"split must be one of \('train', 'test'\), got " + repr(bad)):
        data.fashion_mnist(bad)


def test_missing_subset_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools/make_dataset.py"):
        data._load_subset("train", tmp_path / "nothing.npz")


def test_corrupt_subset_says_how_to_rebuild(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(data.SUBSET_PATH.read_bytes()[:5000])  # a truncated archive
    with pytest.raises(RuntimeError, match="tools/make_dataset.py"):
        data._load_subset("train", broken)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, train_images=np.zeros((3, 5, 5), np.uint8), train_labels=np.zeros(3, np.uint8))
    with pytest.raises(RuntimeError, match="corrupt.*shape"):
        data._load_subset("train", wrong)
    no_split = tmp_path / "no_split.npz"
    np.savez(no_split, other=np.zeros(1))
    with pytest.raises(RuntimeError, match="cannot be read"):
        data._load_subset("test", no_split)


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_full_path_loading(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 8, 7], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(data.read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), pixels)
    loaded = data.fashion_mnist("test", path=tmp_path)
    assert loaded.images.shape == (7, 1, 28, 28)
    assert torch.allclose(loaded.images[:, 0] * 255, torch.from_numpy(pixels).float())
    assert loaded.labels.tolist() == labels.tolist()


def test_read_idx_rejects_non_idx_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.gz"
    with gzip.open(junk, "wb") as stream:
        stream.write(b"not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(junk)
    short = tmp_path / "short.gz"
    _write_idx(short, np.zeros((4, 3), np.uint8))
    raw = gzip.decompress(short.read_bytes())[:-2]
    short.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(short)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.read_idx(tmp_path / "absent.gz")


def test_full_path_with_mismatched_counts(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        data.fashion_mnist("train", path=tmp_path)


def test_synthetic_input_is_seeded_and_shaped():
    a = data.synthetic_input((2, 1, 28, 28), seed=1)
    b = data.synthetic_input((2, 1, 28, 28), seed=1)
    c = data.synthetic_input((2, 1, 28, 28), seed=2)
    assert a.shape == (2, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert data.synthetic_input(5, dtype=torch.float64).dtype == torch.float64
    assert abs(float(data.synthetic_input((100_000,)).std()) - 1.0) < 0.02


@pytest.mark.parametrize("bad, error, match", [
    ((), ValueError, r"shape must be a non-empty .*got \(\)"),
    ((0, 3), ValueError, r"shape\[0\] must be a positive int, got 0"),
    ((-1,), ValueError, r"shape\[0\] must be a positive int, got -1"),
    ((2.0, 3), TypeError, r"shape\[0\] must be a positive int, got 2.0"),
    ("abc", TypeError, "shape must be a sequence of positive ints, got 'abc'"),
    (True, TypeError, "shape must be a sequence of positive ints, got True"),
])
def test_synthetic_input_rejects_bad_shapes(bad, error, match):
    with pytest.raises(error, match=match):
        data.synthetic_input(bad)


def test_synthetic_input_rejects_bad_dtypes():
    with pytest.raises(ValueError, match="dtype must be a floating-point torch.dtype, got torch.int64"):
        data.synthetic_input((2,), dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype, got 'float32'"):
        data.synthetic_input((2,), dtype="float32")


def test_make_dataset_tool_rebuilds_the_shipped_subset(tmp_path):
    """tools/make_dataset.py is deterministic: it rebuilds exactly the shipped arrays."""
    if not (data.DEBIAN_PATH / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "make_dataset.py"
    spec = importlib.util.spec_from_file_location("make_dataset", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "subset.npz"
    assert module.main(["--output", str(output)]) == 0
    with np.load(output) as rebuilt, np.load(data.SUBSET_PATH) as shipped:
        assert sorted(rebuilt.files) == sorted(shipped.files)
        for key in shipped.files:
            assert np.array_equal(rebuilt[key], shipped[key]), key


def test_photo_crops_are_seeded_offline_images_of_the_two_sample_photos():
    crops = data.photo_crops(3, seed=1, size=32)
    assert crops.shape == (6, 3, 32, 32) and crops.dtype == torch.float32
    assert 0 <= crops.min() and crops.max() <= 1
    assert torch.equal(crops, data.photo_crops(3, seed=1, size=32))
    assert not torch.equal(crops, data.photo_crops(3, seed=2, size=32))
    # the first photo's crops come first: the portrait is darker than the present on white
    assert crops[:3].mean() < crops[3:].mean()
    with pytest.raises(ValueError, match="per_photo"):
        data.photo_crops(0, seed=1)
