"""``benchmarks/structure.py`` (issue 33's import targets): it finds cycles and back arrows where they are, and the
package has none."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def structure():
    spec = importlib.util.spec_from_file_location("structure_script", ROOT / "benchmarks" / "structure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(root: pathlib.Path, files: dict) -> pathlib.Path:
    for name, text in files.items():
        path = root / "toy" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "toy"


def test_a_cycle_and_its_back_arrow_are_found(structure, tmp_path):
    package = write(tmp_path, {
        "__init__.py": "from .top import f\n",
        "base.py": "X = 1\n",
        "models/__init__.py": "from ..base import X\n",
        "models/core.py": "def g():\n    from toy.losses import h  # a function-level import counts\n",
        "losses.py": "from .models import core\n",
        "top.py": "import toy.losses\nfrom . import base\n",
    })  # fmt: skip
    result = structure.structure(package)
    assert result["rooms"] == 4  # base, losses, models, top; the root __init__ is not a room
    assert result["arrow_list"] == {"base": [], "losses": ["models"], "models": ["base", "losses"],
                                    "top": ["base", "losses"]}  # fmt: skip
    assert result["cycles"] == 1 and result["cycle_rooms"] == [["losses", "models"]]
    assert result["arrows_back_up"] == 1 and result["back_arrows"] == ["models -> losses"]
    assert result["floors"] == 3  # base; {losses, models}; top
    assert result["lines"] == 8


def test_the_package_has_no_cycle_and_no_arrow_back_up(structure):
    result = structure.structure(ROOT / "gpytorch_vae")
    assert result["cycles"] == 0 and result["arrows_back_up"] == 0, result["back_arrows"]
