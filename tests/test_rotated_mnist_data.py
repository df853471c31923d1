"""Rotated-MNIST data: IDX reader, data lookup and the benchmark generator (issue #4)."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from external_data import MNIST_DIR, REFERENCE_ARRAYS, needs_mnist, needs_reference_arrays

from gpytorch_vae.data import mnist
from gpytorch_vae.data.rotated_mnist import (
    ANGLES_DEG,
    RotatedMNIST,
    benchmark_draws,
    select_source_digits,
    source_digits,
)


@pytest.fixture(scope="module")
def benchmark():
    return RotatedMNIST()


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


class TestIdx:
    @pytest.mark.parametrize("compress", [True, False])
    def test_roundtrip(self, tmp_path, compress):
        array = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
        path = str(tmp_path / ("a.idx.gz" if compress else "a.idx"))
        write_idx(path, array, compress)
        np.testing.assert_array_equal(mnist.read_idx(path), array)

    def test_bad_magic_and_truncated(self, tmp_path):
        (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
        with pytest.raises(ValueError, match="magic"):
            mnist.read_idx(str(tmp_path / "bad"))
        (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
        with pytest.raises(ValueError, match="header says"):
            mnist.read_idx(str(tmp_path / "short"))

    def test_lookup_order_env_and_subfolders(self, tmp_path, monkeypatch):
        raw = tmp_path / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
        monkeypatch.setenv(mnist.DATA_ENV, str(tmp_path))
        found = mnist.find_mnist_file("t10k-labels-idx1-ubyte.gz", download=False)
        assert found == str(raw / "t10k-labels-idx1-ubyte.gz")

    def test_missing_files_without_network_give_a_clear_error(self, tmp_path, monkeypatch):
        monkeypatch.delenv(mnist.DATA_ENV, raising=False)

        def offline(*args, **kwargs):
            raise OSError("network unreachable")

        monkeypatch.setattr(mnist.urllib.request, "urlopen", offline)
        with pytest.raises(FileNotFoundError) as error:
            mnist.load_mnist("train", str(tmp_path))
        message = str(error.value)
        assert "train-images-idx3-ubyte.gz" in message and "GPYTORCH_VAE_DATA" in message and "network" in message
        with pytest.raises(FileNotFoundError, match="not found"):
            mnist.find_mnist_file("train-images-idx3-ubyte.gz", str(tmp_path), download=False)
        with pytest.raises(ValueError, match="split"):
            mnist.load_mnist("validation", str(tmp_path))


class TestGenerator:
    def test_draws_follow_the_protocol(self):
        draws = benchmark_draws()
        assert draws.test_angle_deg == 157.5
        assert len(set(draws.ids)) == 400 and len(draws.idx_train) == 4050 and len(draws.idx_test) == 270

    def test_splits(self, benchmark):
        train, test, evaluation = benchmark.train(), benchmark.test(), benchmark.eval()
        assert (len(train), len(test), len(evaluation)) == (4050, 270, 640)
        assert train.images.shape == (4050, 28, 28) and train.aux.shape == (4050, 10)
        test_angle = np.deg2rad(157.5)
        assert not np.isclose(train.aux[:, 1], test_angle).any() and np.allclose(test.aux[:, 1], test_angle)
        assert set(test.aux[:, 0]) <= set(train.aux[:, 0]) and train.aux[:, 0].max() < 360
        assert set(evaluation.aux[:, 0]) == set(range(360, 400))
        # no clipping: cubic-spline overshoot is kept
        assert train.images.min() < -0.1 and train.images.max() > 1.1
        # the unrotated image is the source digit
        np.testing.assert_allclose(benchmark.images[:, 0], source_digits() / 255.0, atol=1e-12)
        assert len(ANGLES_DEG) == 16

    def test_shipped_digits_are_tiny_uint8(self):
        digits = source_digits()
        assert digits.dtype == np.uint8 and digits.shape == (400, 28, 28)
        path = Path(mnist.__file__).with_name("rotated_mnist_digits.npz")
        assert os.path.getsize(path) < 1_000_000

    @needs_mnist
    def test_shipped_digits_equal_the_idx_selection(self):
        images, labels = mnist.load_mnist("train", str(MNIST_DIR), download=False)
        np.testing.assert_array_equal(select_source_digits(images, labels), source_digits())
        with pytest.raises(ValueError, match="threes"):
            select_source_digits(images[:100], labels[:100])

    @needs_reference_arrays
    def test_matches_the_reference_arrays(self, benchmark):
        reference = np.load(REFERENCE_ARRAYS)
        for name, split in (("test", benchmark.test()), ("eval", benchmark.eval())):
            np.testing.assert_allclose(split.images, reference[f"{name}_images"], atol=1e-12, rtol=0)
            np.testing.assert_array_equal(split.aux[:, :2], reference[f"{name}_aux"][:, :2])
            # PCA scores: equal up to the sign of each axis and solver differences
            ours, theirs = split.aux[:, 2:], reference[f"{name}_aux"][:, 2:]
            signs = np.sign((ours * theirs).sum(0))
            np.testing.assert_allclose(ours * signs, theirs, atol=1e-2, rtol=0)


class TestMultiClass:
    """The scaling study's data sets (several digit classes), rotated by precomputed linear maps."""

    def test_rotation_maps_equal_scipy_rotate(self):
        from scipy import ndimage

        from gpytorch_vae.data.rotated_mnist import rotation_matrices

        image = np.random.default_rng(0).random((28, 28))
        maps = rotation_matrices()
        for index in (1, 5, 14):
            direct = ndimage.rotate(image, ANGLES_DEG[index], reshape=False)
            np.testing.assert_allclose((maps[index] @ image.ravel()).reshape(28, 28), direct, atol=1e-12, rtol=0)

    def test_one_class_equals_the_digit_3_benchmark(self, benchmark):
        from gpytorch_vae.data import MultiClassRotatedMNIST

        data = MultiClassRotatedMNIST("3")
        assert data.test_angle_deg == 157.5
        for name in ("train", "test", "eval"):
            ours, theirs = getattr(data, name)(), getattr(benchmark, name)()
            np.testing.assert_array_equal(ours.aux[:, :2], theirs.aux[:, :2])
            np.testing.assert_allclose(ours.aux[:, 2:], theirs.aux[:, 2:], atol=1e-10)
            rows = np.arange(0, len(ours), 37)
            np.testing.assert_allclose(ours.rotated(rows), theirs.images[rows], atol=1e-12, rtol=0)
            aux, images = ours[rows]
            assert images.dtype == torch.float32
            np.testing.assert_allclose(images.numpy(), theirs.images[rows], atol=1e-5, rtol=0)
            np.testing.assert_array_equal(aux.numpy(), ours.aux[rows])

    def test_two_classes_from_given_images(self):
        from gpytorch_vae.data import MultiClassRotatedMNIST
        from gpytorch_vae.data.rotated_mnist import MNIST_CLASS_COUNTS

        labels = np.repeat([3, 6], [MNIST_CLASS_COUNTS[3], MNIST_CLASS_COUNTS[6]])
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels  # the class is readable from the image
        data = MultiClassRotatedMNIST("36", images=images, labels=labels)
        train, test, evaluation = data.train(), data.test(), data.eval()
        assert (len(train), len(test), len(evaluation)) == (8100, 540, 1280)
        ids = train.aux[:, 0].astype(int)
        assert ids.max() < 800 and not set(ids) & set(range(360, 400)) and not set(ids) & set(range(760, 800))
        assert set(evaluation.aux[:, 0].astype(int)) == set(range(360, 400)) | set(range(760, 800))
        # instances 0..399 are threes, 400..799 sixes
        np.testing.assert_array_equal(data.sources[:, 0, 0] * 255, np.repeat([3.0, 6.0], 400))
        assert set(ids) & set(range(400)) and set(ids) & set(range(400, 800))

    @pytest.mark.parametrize("classes", ["33", "3a", [10]])
    def test_bad_classes(self, classes):
        from gpytorch_vae.data import MultiClassRotatedMNIST

        with pytest.raises(ValueError):
            MultiClassRotatedMNIST(classes)
