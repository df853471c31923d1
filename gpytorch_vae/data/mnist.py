"""MNIST IDX files: find them (argument, ``GPYTORCH_VAE_DATA``), download them where the network allows, read them.

The IDX format is a big-endian header (magic number, dimensions) followed by the raw uint8 array; it is read here with
numpy alone so that the library does not need torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request

import numpy as np

DATA_ENV = "GPYTORCH_VAE_DATA"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {array.size} values")
    return array.reshape(shape)


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def _candidate_dirs(data_dir: str | None) -> list[str]:
    roots = [d for d in (data_dir, os.environ.get(DATA_ENV)) if d]
    # accept the folder itself, ``<root>/mnist`` and torchvision's ``<root>/MNIST/raw``
    return [os.path.join(r, *sub) for r in roots for sub in ((), ("mnist",), ("MNIST", "raw"))]


def _download(name: str, folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    errors = []
    for mirror in MIRRORS:
        try:
            urllib.request.urlretrieve(mirror + name, target + ".part")
        except OSError as error:  # no network, mirror down: try the next one
            errors.append(f"{mirror}: {error}")
            continue
        if _md5(target + ".part") == FILES[name]:
            os.replace(target + ".part", target)
            return target
        errors.append(f"{mirror}: checksum mismatch")
    raise RuntimeError("; ".join(errors))


def find_mnist_file(name: str, data_dir: str | None = None, download: bool = True) -> str:
    """Path of one of the four MNIST files, looked up in ``data_dir`` and ``$GPYTORCH_VAE_DATA`` (and their ``mnist/``
    and ``MNIST/raw/`` sub-folders), else downloaded into the first of them (or ``~/.cache/gpytorch_vae``)."""
    if name not in FILES:
        raise ValueError(f"unknown MNIST file {name!r}; expected one of {sorted(FILES)}")
    candidates = _candidate_dirs(data_dir)
    for folder in candidates:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    folder = candidates[0] if candidates else os.path.join(os.path.expanduser("~"), ".cache", "gpytorch_vae")
    searched = ", ".join(candidates) or "(no data_dir given and $" + DATA_ENV + " unset)"
    if not download:
        raise FileNotFoundError(f"MNIST file {name} not found in {searched}")
    try:
        return _download(name, folder)
    except RuntimeError as error:
        raise FileNotFoundError(
            f"MNIST file {name} not found in {searched} and could not be downloaded ({error}). Put the four files "
            f"{', '.join(FILES)} into a folder and pass it as data_dir (--data-dir) or set ${DATA_ENV}."
        ) from None


def load_mnist(split: str = "train", data_dir: str | None = None, download: bool = True):
    """``(images, labels)`` of the ``"train"`` (60000) or ``"test"`` (10000) split: uint8 ``(n, 28, 28)`` and
    ``(n,)``."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(find_mnist_file(f"{prefix}-images-idx3-ubyte.gz", data_dir, download))
    labels = read_idx(find_mnist_file(f"{prefix}-labels-idx1-ubyte.gz", data_dir, download))
    return images, labels
