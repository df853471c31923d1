"""Healing MNIST (after Fortuin et al., AISTATS 2020): sequences of rotating, binarized MNIST digits with pixels or
whole frames missing, the imputation benchmark of ``docs/protocols/healing_mnist.md``.

One sequence per source image: :data:`NUM_FRAMES` frames at the times ``0..9``, frame ``t`` the source image rotated
by :math:`\\theta_t` degrees with :func:`scipy.ndimage.rotate` (``reshape=False``, ``order=1``, pixels / 255) and
binarized (``> 0.5``). The angles of a sequence are one draw from a zero-mean GP over the frame times
(:func:`gp_angles`); the missing pixels are drawn by one of the :data:`MECHANISMS` (:func:`draw_missing`).

Generation is chunked (:data:`CHUNK` sequences at a time, so memory stays bounded at any size) and its results are
cached as bit-packed uint8 ``.npy`` files in a cache folder, written atomically and memory-mapped when read back; the
full training set takes about 60 MB per array. Every draw runs through its stream in sequence order, so the chunk
size does not change the numbers and the ``quick`` set is exactly the first sequences of the ``full`` set.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import TMP_SUFFIX, atomic_write
from .mnist import load_mnist

NUM_FRAMES = 10
FRAME_SHAPE = (28, 28)
NUM_PIXELS = FRAME_SHAPE[0] * FRAME_SHAPE[1]
LENGTHSCALE = 3.0  # of the angles' RBF kernel, in frames
ANGLE_SD_DEG = 60.0
JITTER = 1e-6
SPLIT_SEEDS = {"train": 0, "test": 1}
SIZES = {"full": {"train": 60000, "test": 10000}, "quick": {"train": 6000, "test": 1000}}
MECHANISMS = ("random", "mnar", "frames")
MASK_SEED_OFFSET = 100
RANDOM_MISSING = 0.6
MNAR_MISSING = (0.4, 0.8)  # where the true pixel is 0, where it is 1
HIDDEN_FRAMES = 4  # of the frames 1..T-2, for the "frames" mechanism
#: the protocol's parameter of each mechanism (see :func:`draw_missing`)
PROTOCOL_MISSINGNESS = {"random": RANDOM_MISSING, "mnar": MNAR_MISSING, "frames": HIDDEN_FRAMES}
CHUNK = 1000  # sequences generated at a time
CACHE_ENV = "GPYTORCH_VAE_HEALING_MNIST_CACHE"
CACHE_VERSION = 1


def _check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(repr(v) for v in valid)}")


def angle_covariance() -> np.ndarray:
    r"""The angles' covariance :math:`\mathbf K + 10^{-6}\mathbf I` over the frame times ``0..9``, in degrees squared:
    :math:`K_{tt'} = 60^2 \exp(-(t - t')^2 / (2 \cdot 3^2))`."""
    times = np.arange(NUM_FRAMES, dtype=np.float64)
    sq_dist = (times[:, None] - times[None, :]) ** 2
    return ANGLE_SD_DEG**2 * np.exp(-0.5 * sq_dist / LENGTHSCALE**2) + JITTER * np.eye(NUM_FRAMES)


def gp_angles(num_sequences: int, seed: int) -> np.ndarray:
    """The rotation angles ``(num_sequences, 10)`` in degrees: ``z = numpy.random.default_rng(seed).standard_normal(
    (num_sequences, 10))`` (one call), then row ``i`` is ``L @ z[i]`` with ``L`` the lower Cholesky factor of
    :func:`angle_covariance`, as ``(z[:, None, :] * L).sum(-1)`` (row by row, so that no matrix-product blocking can
    make a row depend on ``num_sequences``). Row ``i`` (sequence ``i``, "the ``i``-th draw") uses the standard
    normals ``10 i`` to ``10 i + 9`` of the stream, so the first rows of a longer draw are the draw of fewer sequences,
    bit for bit.

    :param num_sequences: how many sequences.
    :param seed: the seed (the protocol's: 0 for the training sequences, 1 for the test sequences).
    """
    chol = np.linalg.cholesky(angle_covariance())
    normals = np.random.default_rng(seed).standard_normal((num_sequences, NUM_FRAMES))
    return (normals[:, None, :] * chol).sum(-1)


def rotate_frames(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """The binarized frames ``(n, 10, 784)`` bool of source images ``(n, 28, 28)`` uint8 and angles ``(n, 10)``:
    frame ``t`` of sequence ``i`` is ``scipy.ndimage.rotate(images[i] / 255, angles[i, t], reshape=False, order=1)
    > 0.5`` (every frame rotated from the source image)."""
    try:
        from scipy import ndimage
    except ImportError as error:  # scipy is an optional dependency of the library
        raise ImportError("Healing MNIST needs scipy (scipy.ndimage.rotate): pip install scipy") from error
    sources = np.asarray(images, dtype=np.float64) / 255.0
    frames = np.empty((len(sources), NUM_FRAMES, *FRAME_SHAPE), dtype=bool)
    for i, source in enumerate(sources):
        for t in range(NUM_FRAMES):
            frames[i, t] = ndimage.rotate(source, angles[i, t], reshape=False, order=1) > 0.5
    return frames.reshape(len(sources), NUM_FRAMES, NUM_PIXELS)


def missingness_parameter(mechanism: str, parameter=None):
    """The parameter of ``mechanism`` checked and in canonical form (``None``: the protocol's, from
    :data:`PROTOCOL_MISSINGNESS`): ``"random"`` a probability; ``"mnar"`` a pair of probabilities (where the true pixel
    is 0, where it is 1); ``"frames"`` how many of the inner frames ``1..8`` are hidden."""
    _check_choice("mechanism", mechanism, MECHANISMS)
    if parameter is None:
        return PROTOCOL_MISSINGNESS[mechanism]
    if mechanism == "frames":
        if isinstance(parameter, bool) or not float(parameter).is_integer() or not 0 <= parameter <= NUM_FRAMES - 2:
            raise ValueError(f"the 'frames' mechanism hides a whole number of the frames 1..8, got {parameter!r}")
        return int(parameter)
    rates = (parameter,) if mechanism == "random" else tuple(np.ravel(parameter))
    if len(rates) != (1 if mechanism == "random" else 2) or not all(0.0 <= float(r) <= 1.0 for r in rates):
        expected = "a probability" if mechanism == "random" else "two probabilities (pixel 0, pixel 1)"
        raise ValueError(f"the {mechanism!r} mechanism's missingness must be {expected}, got {parameter!r}")
    return float(rates[0]) if mechanism == "random" else tuple(float(r) for r in rates)


def draw_missing(mechanism: str, frames: np.ndarray, rng: np.random.Generator, parameter=None) -> np.ndarray:
    """The missingness ``m`` (True = missing) of the frames ``(n, 10, 784)`` bool, drawn from ``rng``; ``parameter``
    as in :func:`missingness_parameter` (default the protocol's):

    - ``"random"``: ``rng.random((n, 10, 784)) < parameter`` (protocol: 0.6);
    - ``"mnar"``: ``rng.random((n, 10, 784)) < p``, ``p = parameter[0]`` where the frame's pixel is 0 and
      ``parameter[1]`` where it is 1 (protocol: 0.4 and 0.8);
    - ``"frames"``: ``keys = rng.random((n, 8))``; sequence ``i`` misses the frames ``1 + argsort(keys[i])[:k]``
      entirely, ``k = parameter`` (protocol: 4; the ``k`` of frames 1..8 with the smallest keys: a uniform choice).

    Drawing the sequences in several consecutive calls on one generator gives the same masks as one call.
    """
    parameter = missingness_parameter(mechanism, parameter)
    n = len(frames)
    if mechanism == "random":
        return rng.random(frames.shape) < parameter
    if mechanism == "mnar":
        return rng.random(frames.shape) < np.where(frames, parameter[1], parameter[0])
    keys = rng.random((n, NUM_FRAMES - 2))
    hidden = 1 + np.argsort(keys, axis=1, kind="stable")[:, :parameter]
    missing_frames = np.zeros((n, NUM_FRAMES), dtype=bool)
    missing_frames[np.arange(n)[:, None], hidden] = True
    return np.repeat(missing_frames[:, :, None], frames.shape[-1], axis=2)


def _unpack(packed: np.ndarray) -> np.ndarray:
    """Bit-packed ``(..., 98)`` uint8 to ``(..., 784)`` bool."""
    return np.unpackbits(packed, axis=-1, count=NUM_PIXELS).view(bool)


def _write_npy(f, shape: tuple, dtype, chunks: Iterator[np.ndarray]) -> None:
    """An ``.npy`` file of ``shape`` written chunk by chunk (consecutive blocks of rows)."""
    dtype = np.dtype(dtype)
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                             "shape": shape})  # fmt: skip
    rows = 0
    for chunk in chunks:
        f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
        rows += len(chunk)
    if rows != shape[0]:
        raise RuntimeError(f"generated {rows} rows, expected {shape[0]}")


def _collect(shape: tuple, dtype, chunks: Iterator[np.ndarray]) -> np.ndarray:
    array, start = np.empty(shape, dtype=dtype), 0
    for chunk in chunks:
        array[start : start + len(chunk)] = chunk
        start += len(chunk)
    return array


def open_cached(path: str, shape: tuple, dtype) -> np.ndarray:
    """The ``.npy`` file ``path`` memory-mapped, checked to hold ``shape`` and ``dtype``; a truncated, damaged or
    foreign file raises a :class:`ValueError` that names it and says to delete it."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"{path} cannot be read as a Healing MNIST cache file ({error}): it is truncated or damaged; delete it and "
            f"it will be generated again"
        ) from None
    found = (array.shape, array.dtype) if isinstance(array, np.ndarray) else ("not an array", type(array).__name__)
    if found != (tuple(shape), np.dtype(dtype)):
        raise ValueError(
            f"{path} holds {found[0]} {found[1]}, expected {tuple(shape)} {np.dtype(dtype)}: it is not this "
            f"generator's cache file (or it is truncated); delete it and it will be generated again"
        )
    return array


class _Store:
    """Where generated arrays live: ``.npy`` files in ``folder`` named ``<stem>_<name>.npy`` (generated under an
    exclusive lock of the folder, so that concurrent processes generate once, and memory-mapped), or, without
    folder, memory."""

    LOCK = ".lock"

    def __init__(self, folder: str | None, stem: str):
        self.folder, self.stem, self.memory = folder, stem, {}

    def path(self, name: str) -> str:
        return os.path.join(self.folder, f"{self.stem}_{name}.npy")

    @contextlib.contextmanager
    def _locked(self):
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, self.LOCK), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            for stale in glob.glob(os.path.join(self.folder, "*" + TMP_SUFFIX)):  # writes killed midway
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
            yield

    def get(self, name: str, shape: tuple, dtype, chunks: Callable[[], Iterator[np.ndarray]]) -> np.ndarray:
        """The array ``name``: from the cache if there, else made from ``chunks()`` (and cached)."""
        if self.folder is None:
            if name not in self.memory:
                self.memory[name] = _collect(shape, dtype, chunks())
            return self.memory[name]
        path = self.path(name)
        if not os.path.exists(path):
            with self._locked():
                if not os.path.exists(path):  # not made by another process meanwhile
                    atomic_write(path, lambda f: _write_npy(f, shape, dtype, chunks()))
        return open_cached(path, shape, dtype)


def default_cache_dir() -> str:
    """``$GPYTORCH_VAE_HEALING_MNIST_CACHE``, else ``~/.cache/gpytorch_vae/healing_mnist``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "gpytorch_vae", "healing_mnist")


class HealingMNIST(Dataset):
    """One split of Healing MNIST with one missingness mechanism, as a :class:`torch.utils.data.Dataset` of
    sequences. An index may be an int, a list or a LongTensor of rows (a whole batch at once, e.g. through
    :class:`~gpytorch_vae.data.RowBatches`) and gives ``(x, y, mask)``:

    - ``x``: the GP inputs, the frame times ``0..9``, float64 ``(*rows, 1, 10, 1)`` (one GP per sequence, broadcast
      over the latent channels);
    - ``y``: the frames, float32 ``(*rows, 10, 784)``, missing pixels set to 0;
    - ``mask``: bool ``(*rows, 10, 784)``, **True where observed**. (The protocol's ``m`` is the opposite, 1 =
      missing: see :meth:`missing_mask`.)

    The sources are the first ``SIZES[size][split]`` images of the MNIST split (``full``: 60,000 / 10,000,
    ``quick``: 6,000 / 1,000), read with :func:`~gpytorch_vae.data.load_mnist` (``data_dir`` or
    ``$GPYTORCH_VAE_DATA``) only when the cache lacks them. Sequence ``i``'s angles are row ``i`` of
    :func:`gp_angles` ``(n, seed)``, the seed 0 for ``"train"`` and 1 for ``"test"``. The mask of each mechanism is
    drawn after the angles and frames exist, by :func:`draw_missing` on a fresh ``numpy.random.default_rng(seed +
    100)`` made for that mechanism (it shares no state with the angles' generator), run through the sequences in
    order; the ``"mnar"`` draw reads the frames.

    Generated arrays are cached in ``cache_dir`` (default: :func:`default_cache_dir`) as
    ``healing_mnist_v1_mnist-<split>_seed<seed>_n<n>_{frames,labels,missing-<mechanism>-<parameter>}.npy`` (the
    mechanism's parameter is part of the name: another rate draws another mask), each made once
    (other mechanisms' masks when first asked for), checked on opening; stale ``*.tmp`` files of killed writes are
    removed from the folder.

    :param split: ``"train"`` or ``"test"``.
    :param size: ``"quick"`` or ``"full"``.
    :param mechanism: ``"random"``, ``"mnar"`` or ``"frames"``.
    :param missingness: the mechanism's parameter (:func:`missingness_parameter`): the probability of a missing
        pixel (``"random"``), the pair of probabilities where the true pixel is 0 and 1 (``"mnar"``), or how many
        inner frames are hidden (``"frames"``); default the protocol's 0.6, (0.4, 0.8) and 4.
    :param data_dir: the folder of the MNIST IDX files (see :func:`~gpytorch_vae.data.load_mnist`).
    :param cache_dir: the cache folder.
    :param seed: the angles' seed (the masks' is ``seed + 100``); default the protocol's seed of ``split``.
    """

    num_frames = NUM_FRAMES
    frame_shape = FRAME_SHAPE

    def __init__(self, split: str = "train", size: str = "quick", mechanism: str = "random",
                 data_dir: str | None = None, cache_dir: str | None = None, seed: int | None = None,
                 missingness=None):  # fmt: skip
        _check_choice("split", split, tuple(SPLIT_SEEDS))
        _check_choice("size", size, tuple(SIZES))
        n = SIZES[size][split]

        def sources():
            images, labels = load_mnist(split, data_dir)
            if len(images) < n:
                raise ValueError(
                    f"the MNIST {split} split has {len(images)} images, fewer than the {n} of size {size!r}"
                )
            return images[:n], labels[:n]

        self.size = size
        self._build(split, mechanism, missingness, seed, f"mnist-{split}", n, sources,
                    cache_dir or default_cache_dir())  # fmt: skip

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, split: str = "train", mechanism: str = "random",
                    cache_dir: str | None = None, seed: int | None = None, missingness=None) -> HealingMNIST:  # fmt: skip
        """The same generator on given source images (e.g. a few synthetic ones for a test), kept in memory unless
        ``cache_dir`` is given (then cached there under a hash of the images and labels).

        :param images: uint8 ``(n, 28, 28)`` source images (pixel values 0..255).
        :param labels: ``(n,)`` integer labels.
        :param split: ``"train"`` or ``"test"``: the seed (and nothing else).
        """
        images, labels = np.ascontiguousarray(images), np.ascontiguousarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != FRAME_SHAPE or not len(images):
            raise ValueError(f"images must be uint8 of shape (n, 28, 28), n >= 1, got {images.dtype} {images.shape}")
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}")
        _check_choice("split", split, tuple(SPLIT_SEEDS))
        key = hashlib.md5(images.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()[:12]
        self = cls.__new__(cls)
        self.size = None
        self._build(split, mechanism, missingness, seed, f"arrays-{key}", len(images), lambda: (images, labels),
                    cache_dir)  # fmt: skip
        return self

    def _build(self, split: str, mechanism: str, missingness, seed: int | None, source: str, n: int, sources,
               cache_dir) -> None:  # fmt: skip
        self.missingness = missingness_parameter(mechanism, missingness)
        self.split, self.mechanism = split, mechanism
        self.seed = SPLIT_SEEDS[split] if seed is None else int(seed)
        self.cache_dir = cache_dir
        self.angles = gp_angles(n, self.seed)
        self.times = torch.arange(NUM_FRAMES, dtype=torch.float64)
        store = _Store(cache_dir, f"healing_mnist_v{CACHE_VERSION}_{source}_seed{self.seed}_n{n}")
        loaded = []

        def source_arrays():
            if not loaded:
                loaded.append(sources())
            return loaded[0]

        def frame_chunks():
            images = source_arrays()[0]
            for start in range(0, n, CHUNK):
                stop = min(start + CHUNK, n)
                yield np.packbits(rotate_frames(images[start:stop], self.angles[start:stop]), axis=-1)

        def missing_chunks():
            rng = np.random.default_rng(self.seed + MASK_SEED_OFFSET)
            for start in range(0, n, CHUNK):
                frames = _unpack(self._frames[start : start + CHUNK])
                yield np.packbits(draw_missing(mechanism, frames, rng, self.missingness), axis=-1)

        packed = (n, NUM_FRAMES, -(-NUM_PIXELS // 8))
        self._labels = store.get("labels", (n,), np.int64, lambda: iter([source_arrays()[1]]))
        self._frames = store.get("frames", packed, np.uint8, frame_chunks)
        parameter = "-".join(f"{p:g}" for p in np.ravel(self.missingness))
        self._missing = store.get(f"missing-{mechanism}-{parameter}", packed, np.uint8, missing_chunks)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def labels(self) -> np.ndarray:
        """The digit labels ``(n,)`` int64."""
        return np.array(self._labels, dtype=np.int64)

    @staticmethod
    def _rows(rows) -> np.ndarray:
        index = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"rows must be integers (an int, a list or a LongTensor), got {index.dtype}")
        return index

    def full_frames(self, rows) -> torch.Tensor:
        """The complete binarized frames of ``rows``, float32 ``(*rows, 10, 784)`` (for evaluation only)."""
        return torch.from_numpy(_unpack(self._frames[self._rows(rows)]).astype(np.float32))

    def missing_mask(self, rows) -> torch.Tensor:
        """The protocol's ``m`` of ``rows``: bool ``(*rows, 10, 784)``, True where MISSING (the opposite of the
        ``mask`` that indexing gives)."""
        return torch.from_numpy(_unpack(self._missing[self._rows(rows)]))

    def __getitem__(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = self._rows(rows)
        frames = _unpack(self._frames[index])
        observed = ~_unpack(self._missing[index])
        x = self.times.view(1, NUM_FRAMES, 1).expand(*index.shape, 1, NUM_FRAMES, 1).contiguous()
        return x, torch.from_numpy((frames & observed).astype(np.float32)), torch.from_numpy(observed)
