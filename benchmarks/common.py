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


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "cpu")
    return {
        "cpu_model": cpu_model(),
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


def load_runs(runs_dir: str, name: str, seeds) -> list[tuple[dict, dict]]:
    """``(metrics, history)`` of the finished runs ``RUNS_DIR/NAME_sSEED`` (those without ``metrics.json`` are left
    out; ``history`` is ``{}`` where the run wrote none)."""
    import json

    found = []
    for seed in seeds:
        folder = os.path.join(runs_dir, f"{name}_s{seed}")
        if not os.path.exists(os.path.join(folder, "metrics.json")):
            continue
        with open(os.path.join(folder, "metrics.json")) as f:
            metrics = json.load(f)
        history = {}
        if os.path.exists(os.path.join(folder, "history.json")):
            with open(os.path.join(folder, "history.json")) as f:
                history = json.load(f)
        found.append((metrics, history))
    return found


def curve_at(history: dict, epoch: int, key: str = "mse_sample") -> float | None:
    """The test MSE that a run's evaluation trace recorded at ``epoch`` (``None`` if it has no such point)."""
    for point in history.get("evaluation", []):
        if point["epoch"] == epoch:
            return point.get(key)
    return None
