"""Shared by the benchmark scripts: the experiment set-ups of ``examples/experiments`` on the import path, machine
information, and result files (a Markdown table on stdout, JSON on disk)."""

from __future__ import annotations

import os
import pathlib
import platform
import sys

import torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from gpytorch_vae.training import write_json  # noqa: E402


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "cpu")
    return {
        "device": device,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def markdown_table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append("-" if value is None else format(value, formats.get(column, "")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(path: str, payload: dict) -> None:
    write_json(path, payload)
    print(f"wrote {path}")
