"""Crash-safe files: checkpoints and results are written to a temporary file and renamed over the target."""

from __future__ import annotations

import os

import torch

from ..io import atomic_write, write_json  # noqa: F401  (re-exported: gpytorch_vae.training.write_json)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


def save_checkpoint(state: dict, path: str) -> None:
    """:func:`torch.save` of ``state`` to ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str, map_location=None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; a missing, empty, truncated or foreign file raises
    :class:`CheckpointError` naming it."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist (resume=False starts a new run)")
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
