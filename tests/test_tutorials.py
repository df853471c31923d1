"""The tutorials of docs/tutorials run as they are (each one a user's script, issue #20).

With ``GPYTORCH_VAE_TUTORIAL_OUTPUTS`` set to a folder, each tutorial's output is kept there with the hash of its
source, and the documentation build shows it instead of running the tutorial again (``.ci/run`` does this).
"""

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(script, tmp_path):
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
    outputs = os.environ.get("GPYTORCH_VAE_TUTORIAL_OUTPUTS")
    if outputs:
        folder = pathlib.Path(outputs)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{script.stem}.txt").write_text(result.stdout)
        (folder / f"{script.stem}.sha256").write_text(hashlib.sha256(script.read_bytes()).hexdigest())
