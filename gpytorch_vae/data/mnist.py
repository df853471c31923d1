"""MNIST IDX files: find them (argument, ``GPYTORCH_VAE_DATA``), download them where the network allows, read them.

The IDX format is a big-endian header (magic number, dimensions) followed by the raw uint8 array; it is read here with
numpy alone so that the library does not need torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request

import numpy as np

from ..io import atomic_write

#: The environment variable naming the folder with the MNIST IDX files (and other downloaded data).
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
    """Read an IDX file (optionally gzip-compressed) into a numpy array; every failure names the file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:  # truncated or not gzip at all
        raise ValueError(
            f"{path} cannot be read as a gzip-compressed IDX file ({error}); delete it and fetch it again"
        ) from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {array.size} values (truncated?)")
    return array.reshape(shape)


def md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _roots(data_dir: str | None) -> list[str]:
    """The folders named by ``data_dir`` and ``$GPYTORCH_VAE_DATA``; a named folder that does not exist is an error
    (nothing is created where the user did not ask for it)."""
    roots = []
    for origin, root in (("data_dir", data_dir), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if not root:
            continue
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"{origin} = {root!r} is not an existing folder; create it (and put the MNIST files in it) or fix the "
                f"path"
            )
        roots.append(root)
    return roots


def _candidate_dirs(data_dir: str | None) -> list[str]:
    # accept the folder itself, ``<root>/mnist`` and torchvision's ``<root>/MNIST/raw``
    return [os.path.join(r, *sub) for r in _roots(data_dir) for sub in ((), ("mnist",), ("MNIST", "raw"))]


def _download(name: str, folder: str, timeout: float) -> str:
    """Fetch ``name`` into ``folder`` from the first mirror that answers within ``timeout`` seconds, MD5-checked,
    through a temporary file (a partial download never takes the file's name)."""
    target = os.path.join(folder, name)
    errors = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + name, timeout=timeout) as response:
                atomic_write(target, lambda f: shutil.copyfileobj(response, f))
        except OSError as error:  # no network, mirror down, timeout, read-only folder: try the next one
            errors.append(f"{mirror}: {error}")
            continue
        if md5(target) == FILES[name]:
            return target
        os.remove(target)
        errors.append(f"{mirror}: checksum mismatch")
    raise RuntimeError("; ".join(errors))


def find_mnist_file(name: str, data_dir: str | None = None, download: bool = True, timeout: float = 30.0) -> str:
    """Path of one of the four MNIST files, looked up in ``data_dir`` and ``$GPYTORCH_VAE_DATA`` (and their ``mnist/``
    and ``MNIST/raw/`` sub-folders), else downloaded into the first of them (or ``~/.cache/gpytorch_vae``), each
    mirror given ``timeout`` seconds."""
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
        if not candidates:
            os.makedirs(folder, exist_ok=True)  # the default cache folder
        return _download(name, folder, timeout)
    except (RuntimeError, OSError) as error:
        raise FileNotFoundError(
            f"MNIST file {name} not found in {searched} and could not be downloaded into {folder} ({error}). Put the "
            f"four files {', '.join(FILES)} into a folder and pass it as data_dir (the examples: --data-dir) or set "
            f"${DATA_ENV}."
        ) from None


def verified(path: str) -> str:
    """``path`` if its MD5 is that of the official MNIST file of its name, else an error naming the file."""
    name = os.path.basename(path)
    digest = md5(path)
    if name in FILES and digest != FILES[name]:
        raise ValueError(
            f"{path} is not the official MNIST file (MD5 {digest}, expected {FILES[name]}): it is damaged or a "
            f"different file; delete it to download it again, or replace it"
        )
    return path


def load_mnist(split: str = "train", data_dir: str | None = None, download: bool = True, verify: bool = True):
    """``(images, labels)`` of the ``"train"`` (60000) or ``"test"`` (10000) split: uint8 ``(n, 28, 28)`` and
    ``(n,)``. With ``verify`` (default) each file's MD5 is checked against the official one."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    check = verified if verify else (lambda path: path)
    images = read_idx(check(find_mnist_file(f"{prefix}-images-idx3-ubyte.gz", data_dir, download)))
    labels = read_idx(check(find_mnist_file(f"{prefix}-labels-idx1-ubyte.gz", data_dir, download)))
    return images, labels
