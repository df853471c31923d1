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


#: the steps a run needs for compiling the papers' convolutional networks to pay for itself on a CPU: compiling
#: takes about 100 s on a cold cache and saves about 17 ms of a 50 ms step (SVGP-VAE on rotated MNIST, one thread;
#: ``docs/benchmarks.md``), so about 6,000 steps (375 epochs of 16 steps)
AUTO_COMPILE_MIN_STEPS = 6000


def compile_networks(*modules: torch.nn.Module, enabled: bool | None = None, device_type: str = "cpu",
                     steps: int | None = None, min_steps: int | float = AUTO_COMPILE_MIN_STEPS,
                     **options) -> bool:  # fmt: skip
    """Compile each module in place (:meth:`torch.nn.Module.compile`: parameters, ``state_dict`` keys and
    checkpoints are unchanged) with inductor and ``options`` (default ``dynamic=False``: one graph per batch
    shape, e.g. full and last batch).

    :param enabled: ``True``: compile, or raise if no compiler is available; ``False``: leave eager; ``None``
        (default, "auto"): compile where a compiler is available and the run is long enough to pay for the
        compilation (``steps >= min_steps``; ``steps=None``: assume it is), else stay eager (warning once when no
        compiler is available).
    :param steps: the training steps the run will take.
    :param min_steps: the steps from which compiling pays (default :data:`AUTO_COMPILE_MIN_STEPS`, measured; pass
        ``math.inf`` for networks that compiling does not speed up).
    :return: whether the modules were compiled.
    """
    if enabled is False or (enabled is None and steps is not None and steps < min_steps):
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
    # inductor's own use of a deprecated torch helper warns at every compilation: noise for the user, filtered once
    warnings.filterwarnings("ignore", message=r".*torch\._prims_common\.check.* is deprecated", category=FutureWarning)
    for module in modules:
        module.compile(**options)
    return True
