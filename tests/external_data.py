"""Data that is not in the repository, found through the library's environment variables (the developers' checkout
also looks in ``../shared/data``); tests that need it skip with a message naming the variable to set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def external_data(variable: str, shared: str, what: str) -> tuple[Path | None, pytest.MarkDecorator]:
    """The path in ``$variable`` (else ``../shared/data/<shared>``) if it exists, and a ``skipif`` mark for tests
    that need it."""
    value = os.environ.get(variable)
    path = Path(value) if value else SHARED_DATA / shared
    found = path if path.exists() else None
    return found, pytest.mark.skipif(found is None, reason=f"needs {what}: set {variable}=<path>")


MNIST_DIR, needs_mnist = external_data(
    "GPYTORCH_VAE_DATA",
    "mnist",
    "the MNIST IDX files (a folder holding train-images-idx3-ubyte.gz and the other three)",
)
SPRITES_DIR, needs_sprites = external_data(
    "GPYTORCH_VAE_SPRITES", "sprites", "the SPRITES sheets of YingzhenLi/Sprites (the folder holding body/ ... shoes/)"
)
REFERENCE_ARRAYS, needs_reference_arrays = external_data(
    "GPYTORCH_VAE_REFERENCE_ARRAYS",
    "rotated_mnist_reference/test_eval_digit3.npz",
    "the SVGP-VAE reference code's rotated-MNIST test and eval arrays (test_eval_digit3.npz)",
)
