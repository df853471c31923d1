"""torch.compile for the networks, where a compiler is available."""

from __future__ import annotations

import functools
import os
import shutil
import warnings

import torch


@functools.lru_cache(maxsize=None)
def compiler_available(device_type: str = "cpu") -> tuple[bool, str]:
    """Whether :func:`torch.compile` (inductor) can build kernels for ``device_type``, and why not. On CPU inductor
    writes C++ and needs a compiler (``$CXX``, ``g++``, ``c++`` or ``clang++``); on CUDA it needs Triton."""
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "torch.compile on CUDA needs Triton (pip install triton)"
        return True, ""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return True, ""
    return False, "torch.compile on CPU needs a C++ compiler (g++ or clang++, or $CXX)"


def compile_networks(*modules: torch.nn.Module, enabled: bool | None = None, device_type: str = "cpu", **options):
    """Compile each module in place (:meth:`torch.nn.Module.compile`: parameters, ``state_dict`` keys and
    checkpoints are unchanged) with inductor and ``options`` (default ``dynamic=False``: one graph per batch
    shape, e.g. full and last batch).

    :param enabled: ``True``: compile, or raise if no compiler is available; ``False``: leave eager; ``None``
        (default): compile where a compiler is available, else warn once and stay eager.
    :return: whether the modules were compiled.
    """
    if enabled is False:
        return False
    available, reason = compiler_available(device_type)
    if not available:
        if enabled:
            raise RuntimeError(f"cannot compile the networks: {reason}")
        warnings.warn(
            f"{reason}; the networks run eagerly (pass enabled=False to silence this; the examples: --compile off)",
            stacklevel=2,
        )
        return False
    options.setdefault("dynamic", False)
    for module in modules:
        module.compile(**options)
    return True
