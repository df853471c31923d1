"""Tests import the experiment set-ups from ``examples/experiments`` (not part of the installed library)."""

import pathlib
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
