"""Crash-safe file writes and run folders: a temporary file in the target's folder, flushed to disk, then renamed
over the target; files follow the umask; strict JSON; one run per folder at a time."""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import tempfile
from typing import Any, Callable, Mapping

#: The suffix of a file being written before its atomic rename into place.
TMP_SUFFIX = ".tmp"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder, flush it to disk, then
    :func:`os.replace` it over ``path``: a kill at any moment leaves either the old file or the new one, never a
    partial one. The file gets the permissions of a new file under the umask (``mkstemp`` would give 0600). A full
    disk raises :class:`OSError` (``ENOSPC``) naming the file, and the previous file stays."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=TMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _disk_full(error, folder):
            raise OSError(errno.ENOSPC, f"no space left on the device to write {path}; the previous version of the "
                          f"file (if any) was kept: free some space and resume") from error  # fmt: skip
        raise


def _disk_full(error: BaseException, folder: str) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a short write as "[enforce fail at inline_container.cc] . unexpected pos"
    if isinstance(error, RuntimeError) and "unexpected pos" in str(error):
        try:
            return os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize < 64 * 2**20
        except OSError:
            return True
    return False


def strict_json_value(obj: Any) -> Any:
    """``obj`` with every non-finite float written as a string (``"inf"``, ``"-inf"``, ``"nan"``), which strict JSON
    can hold (it has no ``Infinity`` or ``NaN`` token)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Mapping):
        return {key: strict_json_value(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json_value(value) for value in obj]
    return obj


def write_json(path: str, obj: Any, indent: int | None = 2) -> None:
    """:func:`json.dump` to ``path``, atomically, as strict JSON (:func:`strict_json_value`)."""
    text = json.dumps(strict_json_value(obj), indent=indent, allow_nan=False)
    atomic_write(path, lambda f: f.write(text), mode="w")


class RunFolderBusy(RuntimeError):
    """Another process is using the run folder."""


class RunFolder:
    """The output folder of one run: created and checked writable before any work, locked so that a second run on
    the same folder is refused while the first lives (the lock is an ``flock`` on ``.lock``, released by the system
    when its process dies, so a dead run's lock is taken over), and rid of temporary files that killed writes left.
    Use it as a context manager around the run.

    :param path: the folder.
    """

    LOCK = ".lock"

    def __init__(self, path: str):
        self.path = path
        self._lock = None

    def __enter__(self) -> RunFolder:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        import fcntl

        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise NotADirectoryError(
                f"the run folder {self.path} is a file, not a folder: pass a folder for the run's outputs"
            )
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-probe.", delete=True)
            probe.close()
        except OSError as error:
            raise PermissionError(f"cannot write in the run folder {self.path} ({error.strerror}): choose a "
                                  f"writable folder") from error  # fmt: skip
        lock = open(os.path.join(self.path, self.LOCK), "a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            lock.close()
            raise RunFolderBusy(f"run folder {self.path} is in use by another run (process {owner}): wait for it, or "
                                f"choose another folder") from None  # fmt: skip
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        for stale in glob.glob(os.path.join(self.path, "*" + TMP_SUFFIX)):  # killed atomic writes of earlier runs
            os.remove(stale)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
