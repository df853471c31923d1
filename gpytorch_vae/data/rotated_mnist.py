"""The rotated-MNIST benchmark of Casale et al. (2018), as used by the SVGP-VAE and FGP-VAE papers (Table 1).

The protocol is ``docs/protocols/rotated_mnist.md``: 400 digit-3 instances of the MNIST training split,
each rotated by the 16 multiples of 22.5 degrees with :func:`scipy.ndimage.rotate` (cubic spline, no clipping). The
draws use Python's :mod:`random` in the authors' call order, so the splits match theirs. The 400 source digits ship
with the package (``rotated_mnist_digits.npz``, uint8), so that no download is needed; :func:`select_source_digits`
recomputes them from the MNIST IDX files.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from torch.utils.data import Dataset

ANGLES_DEG = np.linspace(0.0, 360.0, 17)[:-1]
TEST_ANGLE_DEG = 157.5
DIGIT = 3
NUM_THREES = 6131  # digit-3 images in the MNIST training split
NUM_INSTANCES = 400
POOL = 360  # instances 0..359 form the train/test pool, 360..399 the eval set
NUM_PCA = 8


@dataclass(frozen=True)
class BenchmarkDraws:
    """The random draws of the protocol, made with ``random.seed(0)`` in the authors' order."""

    ids: list[int]  # which of the 6131 threes (file order) are instances 0..399
    test_angle_deg: float
    idx_train: list[int]  # rows kept of the 5400-image train pool (in this order)
    idx_test: list[int]  # rows kept of the 360 test images (in this order)


def benchmark_draws(seed: int = 0) -> BenchmarkDraws:
    """Replays the protocol's calls to :mod:`random` (on a private generator: the global state is left alone)."""
    rng = random.Random(seed)
    ids = rng.sample(range(NUM_THREES), NUM_INSTANCES)
    test_angle = float(rng.sample(list(ANGLES_DEG), 1)[0])
    idx_train = rng.sample(range(POOL * (len(ANGLES_DEG) - 1)), 4050)
    idx_test = rng.sample(range(POOL), 270)
    return BenchmarkDraws(ids, test_angle, idx_train, idx_test)


def select_source_digits(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The 400 source digits ``(400, 28, 28)`` uint8 from the MNIST training images and labels."""
    threes = images[labels == DIGIT]
    if len(threes) != NUM_THREES:
        raise ValueError(f"expected the MNIST training split ({NUM_THREES} threes), got {len(threes)} threes")
    return threes[benchmark_draws().ids]


def source_digits() -> np.ndarray:
    """The 400 source digits shipped with the package, ``(400, 28, 28)`` uint8."""
    with resources.files(__package__).joinpath("rotated_mnist_digits.npz").open("rb") as f:
        return np.load(f)["digits"]


def pca_components(images: np.ndarray, k: int = NUM_PCA) -> np.ndarray:
    """Scores of a PCA(k) of the flattened images ``(n, k)``; each axis's sign makes its largest loading positive
    (PCA signs are arbitrary; the scores only initialise GP-LVM vectors and inducing points)."""
    flat = images.reshape(len(images), -1)
    centred = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:k]
    axes = axes * np.sign(axes[np.arange(k), np.abs(axes).argmax(1)])[:, None]
    return centred @ axes.T


@dataclass(frozen=True)
class ImageSplit(Dataset):
    """Images ``(n, 28, 28)`` float64 and auxiliary rows ``(n, 10)``: ``[instance_id, angle_rad, pca_1..pca_8]``.

    A :class:`torch.utils.data.Dataset` of ``(aux, image)`` pairs (float64 auxiliary row for the GP, float32 image
    for the networks); an index may be a list or tensor of rows, which gives a whole batch at once (use a
    :class:`~torch.utils.data.BatchSampler` as ``sampler`` with ``batch_size=None``).
    """

    images: np.ndarray
    aux: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(self.aux[index]), torch.as_tensor(self.images[index], dtype=torch.float32)

    def tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All auxiliary rows (float64) and images (float32) as tensors."""
        return (
            torch.tensor(self.aux, device=device),
            torch.tensor(self.images, dtype=torch.float32, device=device),
        )


class RotatedMNIST:
    """All 400 x 16 rotated images and the protocol's splits.

    :param digits: the source digits ``(400, 28, 28)`` uint8 (default: those shipped with the package).
    """

    def __init__(self, digits: np.ndarray | None = None):
        digits = source_digits() if digits is None else np.asarray(digits)
        if digits.shape != (NUM_INSTANCES, 28, 28):
            raise ValueError(f"expected digits of shape {(NUM_INSTANCES, 28, 28)}, got {digits.shape}")
        self.draws = benchmark_draws()
        try:
            from scipy import ndimage
        except ImportError as error:  # scipy is an optional dependency of the library
            raise ImportError("rotated MNIST needs scipy (scipy.ndimage.rotate): pip install scipy") from error
        unrotated = digits.astype(np.float64) / 255.0
        self.sources = unrotated  # (400, 28, 28) in [0, 1]
        self.pca = pca_components(unrotated)
        # (400, 16, 28, 28): scipy's defaults (order 3, mode 'constant'), reshape=False, no clipping
        self.images = np.stack(
            [np.stack([ndimage.rotate(img, angle, reshape=False) for angle in ANGLES_DEG]) for img in unrotated]
        )
        self.test_angle_index = int(np.flatnonzero(ANGLES_DEG == self.draws.test_angle_deg)[0])

    def select(self, ids: np.ndarray, angle_indices: np.ndarray) -> ImageSplit:
        """The images and auxiliary rows of ``(ids[k], angle_indices[k])`` pairs."""
        ids, angle_indices = np.asarray(ids), np.asarray(angle_indices)
        aux = np.concatenate(
            [ids[:, None].astype(np.float64), np.deg2rad(ANGLES_DEG[angle_indices])[:, None], self.pca[ids]], axis=1
        )
        return ImageSplit(self.images[ids, angle_indices], aux)

    def _grid(self, ids, angle_indices) -> tuple[np.ndarray, np.ndarray]:
        """Id-major pairs of the given ids and angles."""
        i, a = np.meshgrid(np.asarray(ids), np.asarray(angle_indices), indexing="ij")
        return i.ravel(), a.ravel()

    @property
    def train_angle_indices(self) -> np.ndarray:
        return np.delete(np.arange(len(ANGLES_DEG)), self.test_angle_index)

    def train(self) -> ImageSplit:
        """The 4050 training images: rows ``idx_train`` of ids 0..359 x the 15 other angles (id-major)."""
        ids, angles = self._grid(range(POOL), self.train_angle_indices)
        rows = self.draws.idx_train
        return self.select(ids[rows], angles[rows])

    def test(self) -> ImageSplit:
        """The 270 test images: rows ``idx_test`` of ids 0..359 at 157.5 degrees."""
        ids = np.asarray(self.draws.idx_test)
        return self.select(ids, np.full(len(ids), self.test_angle_index))

    def eval(self) -> ImageSplit:
        """The eval set: ids 360..399 at all 16 angles, id-major (640 images, never trained on)."""
        return self.select(*self._grid(range(POOL, NUM_INSTANCES), range(len(ANGLES_DEG))))


def load_rotated_mnist(data_dir: str | None = None) -> RotatedMNIST:
    """The benchmark from the digits shipped with the package, or, when ``data_dir`` or ``$GPYTORCH_VAE_DATA`` is
    given, from the MNIST IDX files found there (downloaded if absent and the network allows)."""
    from .mnist import DATA_ENV, load_mnist

    if data_dir is None and not os.environ.get(DATA_ENV):
        return RotatedMNIST()
    return RotatedMNIST(select_source_digits(*load_mnist("train", data_dir)))


@dataclass(frozen=True)
class FactorizedSplits:
    """The FGP-VAE protocol's splits (``docs/protocols/fgp_vae.md``)."""

    train: ImageSplit  # ids 0..359, 11 random of the 15 training angles each, id-major (3960)
    test: ImageSplit  # ids 0..269 at 157.5 degrees (270)
    unseen_context: ImageSplit  # ids 360..399, 11 random of the 15 other angles each (440)
    unseen_target: ImageSplit  # ids 360..399 at 157.5 degrees (40)


def factorized_splits(data: RotatedMNIST, angles_kept: int = 11, seed: int = 0) -> FactorizedSplits:
    """Train on ids 0..359 (no shuffling; ``angles_kept`` of the 15 training angles of each digit, drawn with
    ``numpy.random.default_rng(seed)``), test on ids 0..269 at 157.5 deg, extrapolate to ids 360..399 (never
    trained on) from ``angles_kept`` random other angles each."""
    rng = np.random.default_rng(seed)
    others = data.train_angle_indices

    def kept(ids) -> ImageSplit:
        chosen = [np.sort(rng.choice(others, angles_kept, replace=False)) for _ in ids]
        return data.select(np.repeat(np.asarray(ids), angles_kept), np.concatenate(chosen))

    def at_test_angle(ids) -> ImageSplit:
        ids = np.asarray(ids)
        return data.select(ids, np.full(len(ids), data.test_angle_index))

    train = kept(range(POOL))
    unseen = range(POOL, NUM_INSTANCES)
    return FactorizedSplits(train, at_test_angle(range(270)), kept(unseen), at_test_angle(unseen))


# ---------------------------------------------------------------------- several digit classes (the scaling study)
MNIST_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)  # training split, file order


@functools.lru_cache(maxsize=1)
def rotation_matrices() -> np.ndarray:
    """The 16 rotations of :func:`scipy.ndimage.rotate` (cubic spline, zero fill, no reshape) as linear maps of the
    flattened 28 x 28 image, ``(16, 784, 784)`` float64: the spline filter and the interpolation are linear, so the
    map's columns are the rotated unit images (2 s to build; equal to rotating an image directly to 1e-14). With them
    a batch of rotated images is one matrix product, whatever the size of the data set."""
    from scipy import ndimage

    unit = np.eye(784).reshape(784, 28, 28)
    return np.stack([
        np.stack([ndimage.rotate(image, angle, reshape=False) for image in unit]).reshape(784, 784).T
        for angle in ANGLES_DEG
    ])  # fmt: skip


@functools.lru_cache(maxsize=1)
def _float32_rotation_matrices() -> torch.Tensor:
    return torch.as_tensor(rotation_matrices(), dtype=torch.float32)


class GeneratedImageSplit(Dataset):
    """A split whose images are rotated when asked for (:func:`rotation_matrices`): it stores the source digits
    and the ``(instance, angle)`` pairs, never the ``N x 784`` images. Same interface as :class:`ImageSplit`
    (``aux``, ``len``, indexing with a list of rows)."""

    def __init__(self, sources: np.ndarray, pca: np.ndarray, ids: np.ndarray, angle_indices: np.ndarray):
        self.sources, self.ids, self.angle_indices = sources, np.asarray(ids), np.asarray(angle_indices)
        angles = np.deg2rad(ANGLES_DEG[self.angle_indices])[:, None]
        self.aux = np.concatenate([self.ids[:, None].astype(np.float64), angles, pca[self.ids]], axis=1)

    def __len__(self) -> int:
        return len(self.ids)

    def rotated(self, rows) -> np.ndarray:
        """Images ``(len(rows), 28, 28)`` float64 of the given rows."""
        rows = np.atleast_1d(np.asarray(rows))
        maps = rotation_matrices()
        flat = self.sources[self.ids[rows]].reshape(len(rows), 784)
        angles = self.angle_indices[rows]
        out = np.empty_like(flat)
        for angle in np.unique(angles):  # one matrix product per angle in the batch
            chosen = angles == angle
            out[chosen] = flat[chosen] @ maps[angle].T
        return out.reshape(len(rows), 28, 28)

    def rotated_tensor(self, rows, device=None) -> torch.Tensor:
        """Images of the given rows as float32 tensors, rotated in float32 (what the networks take; 1e-7 from
        :meth:`rotated`, a few milliseconds per batch of 256)."""
        rows = np.atleast_1d(np.asarray(rows))
        maps = _float32_rotation_matrices()
        flat = torch.as_tensor(self.sources[self.ids[rows]].reshape(len(rows), 784), dtype=torch.float32)
        angles = torch.as_tensor(self.angle_indices[rows])
        out = torch.empty_like(flat)
        for angle in angles.unique().tolist():
            chosen = angles == angle
            out[chosen] = flat[chosen] @ maps[angle].T
        return out.reshape(len(rows), 28, 28).to(device)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(self.aux[index]), self.rotated_tensor(index)

    @property
    def images(self) -> np.ndarray:
        """All images (materialised: only for small splits, e.g. for a figure)."""
        return self.rotated(np.arange(len(self)))

    def tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.aux, device=device), torch.tensor(self.images, dtype=torch.float32, device=device)


class MultiClassRotatedMNIST:
    """The rotated-MNIST data sets of the scaling study (SVGP-VAE Fig. 7; ``docs/protocols/scaling.md``): 400
    instances of each of the digit ``classes`` (e.g. ``"36"``), N_train = 4050 x len(classes).

    Draws with Python's ``random`` seeded with 0, in the authors' order: 400 indices per class (into that class's
    images in file order), the test angle, the training rows, the test rows (without the eval shuffle that the
    authors' digit-3 files do not have either: with one class the sets equal :class:`RotatedMNIST`'s). Instance ids
    are class-block-major; the last 40 instances of each class form the eval set; PCA(8) of all unrotated sources.

    :param classes: the digit classes, in order (a string or a sequence of ints).
    :param images: the MNIST training images (default: read from ``data_dir`` / ``$GPYTORCH_VAE_DATA``; for ``"3"``
        alone the digits shipped with the package).
    :param labels: their labels (the same default).
    """

    def __init__(self, classes="3", images: np.ndarray | None = None, labels: np.ndarray | None = None,
                 data_dir: str | None = None):  # fmt: skip
        self.classes = [int(c) for c in classes]
        if len(set(self.classes)) != len(self.classes) or not all(0 <= c <= 9 for c in self.classes):
            raise ValueError(f"classes must be distinct digits 0-9, got {classes!r}")
        n = len(self.classes)
        rng = random.Random(0)
        picks = [rng.sample(list(range(MNIST_CLASS_COUNTS[c])), NUM_INSTANCES) for c in self.classes]
        self.test_angle_deg = float(rng.sample(list(ANGLES_DEG), 1)[0])
        self.idx_train = rng.sample(list(range(POOL * (len(ANGLES_DEG) - 1) * n)), 4050 * n)
        self.idx_test = rng.sample(list(range(POOL * n)), 270 * n)
        self.picks = picks
        if self.classes == [DIGIT] and images is None and data_dir is None and not os.environ.get(_data_env()):
            sources = source_digits()
        else:
            if images is None:
                from .mnist import load_mnist

                images, labels = load_mnist("train", data_dir)
            sources = np.concatenate([images[labels == c][pick] for c, pick in zip(self.classes, picks)])
        self.sources = sources.astype(np.float64) / 255.0
        self.pca = pca_components(self.sources)
        self.test_angle_index = int(np.flatnonzero(ANGLES_DEG == self.test_angle_deg)[0])
        blocks = np.arange(n)[:, None] * NUM_INSTANCES
        self.pool_ids = (blocks + np.arange(POOL)).ravel()
        self.eval_ids = (blocks + np.arange(POOL, NUM_INSTANCES)).ravel()

    def _split(self, ids, angles) -> GeneratedImageSplit:
        return GeneratedImageSplit(self.sources, self.pca, ids, angles)

    def train(self) -> GeneratedImageSplit:
        """Rows ``idx_train`` of the pool (block order) x the 15 other angles, id-major."""
        others = np.delete(np.arange(len(ANGLES_DEG)), self.test_angle_index)
        ids, angles = np.repeat(self.pool_ids, len(others)), np.tile(others, len(self.pool_ids))
        return self._split(ids[self.idx_train], angles[self.idx_train])

    def test(self) -> GeneratedImageSplit:
        """Rows ``idx_test`` of the pool at the test angle."""
        ids = self.pool_ids[self.idx_test]
        return self._split(ids, np.full(len(ids), self.test_angle_index))

    def eval(self) -> GeneratedImageSplit:
        """The eval instances at all 16 angles, id-major."""
        return self._split(np.repeat(self.eval_ids, 16), np.tile(np.arange(16), len(self.eval_ids)))


def _data_env() -> str:
    from .mnist import DATA_ENV

    return DATA_ENV
