"""Crash-safe files: checkpoints and results are written to a temporary file and renamed over the target."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder, flush it to disk, then
    :func:`os.replace` it over ``path``: a kill at any moment leaves either the old file or the new one, never a
    partial one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(state: dict, path: str) -> None:
    """:func:`torch.save` of ``state`` to ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str, map_location=None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; a missing, empty, truncated or foreign file raises
    :class:`CheckpointError` naming it."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist (drop --resume to start a new run)")
    size = os.path.getsize(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError, OSError... for bad files
        raise CheckpointError(
            f"checkpoint {path} ({size} bytes) cannot be read ({type(error).__name__}: {error}); it is damaged or not "
            f"a checkpoint of this library. Delete it (or move it away) to start afresh, or resume from a copy."
        ) from error
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint of this library (no 'epoch' entry)")
    return state


def write_json(path: str, obj: Any, indent: int = 2) -> None:
    """:func:`json.dump` to ``path``, atomically."""
    text = json.dumps(obj, indent=indent)
    atomic_write(path, lambda f: f.write(text), mode="w")
