"""The wheel built from the repository holds what users need (LICENSE, ``py.typed``, the shipped digits) and its
metadata's version is the package's ``__version__`` (one source)."""

import importlib.util
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

import gpytorch_vae

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build the wheel")
def test_the_wheel_holds_the_license_the_type_marker_and_the_data(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
             str(ROOT)]  # fmt: skip
    result = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("gpytorch_vae-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "gpytorch_vae/py.typed" in names
    assert "gpytorch_vae/data/rotated_mnist_digits.npz" in names
    assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names)
    assert re.search(r"^Version: (.+)$", text, flags=re.M).group(1) == gpytorch_vae.__version__
    assert not any(n.startswith(("examples/", "tests/", "benchmarks/", "docs/")) for n in names)
