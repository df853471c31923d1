"""What a run costs: the resident-set high-water mark of a phase (Linux)."""

from __future__ import annotations


def reset_peak_rss() -> bool:
    """Reset this process's resident-set high-water mark (Linux >= 4.0: ``/proc/self/clear_refs``), so that
    :func:`peak_rss_mb` reports a phase's own peak; ``False`` where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """The resident-set high-water mark (``VmHWM``) since the last :func:`reset_peak_rss`, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
