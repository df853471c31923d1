"""Crash-safe file writes: a temporary file in the target's folder, flushed to disk, then renamed over the target."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


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


def write_json(path: str, obj: Any, indent: int = 2) -> None:
    """:func:`json.dump` to ``path``, atomically."""
    text = json.dumps(obj, indent=indent)
    atomic_write(path, lambda f: f.write(text), mode="w")
