"""Library-wide settings (context managers in the style of :mod:`gpytorch.settings`)."""

from __future__ import annotations

import torch


class validate_values:
    """Whether the API boundary checks tensor *values* (NaN/inf in latent data, non-positive noise), besides shapes.

    Shapes are always checked. Value checks need the values on the host: they run for CPU tensors, and for
    accelerator tensors only when this setting is on (it forces a device sync per call). Default: on for CPU only.

    >>> with gpytorch_vae.settings.validate_values(True):  # also check CUDA tensors
    ...     strategy.set_latent_data(x, y, noise)
    """

    _state: bool | None = None  # None: CPU tensors only

    def __init__(self, state: bool | None = True):
        self.state = state

    def __enter__(self):
        self.prev = validate_values._state
        validate_values._state = self.state

    def __exit__(self, *args):
        validate_values._state = self.prev
        return False

    @classmethod
    def applies_to(cls, tensor: torch.Tensor) -> bool:
        """Whether values of ``tensor`` are checked under the current setting."""
        if cls._state is None:
            return tensor.device.type == "cpu"
        return cls._state


class compile_gp:
    """Whether the pure-tensor core of the SVGP-VAE step (:func:`gpytorch_vae.variational.fused.sample_and_kl`: Eq. 9,
    the draws and the KL, after the kernel evaluation) runs under :func:`torch.compile`. Off by default (compiling
    takes seconds per batch shape); the examples turn it on with ``--compile``.

    >>> gpytorch_vae.settings.compile_gp.set(True)  # or: with gpytorch_vae.settings.compile_gp(True): ...
    """

    _state = False

    def __init__(self, state: bool = True):
        self.state = bool(state)

    def __enter__(self):
        self.prev = compile_gp._state
        compile_gp._state = self.state

    def __exit__(self, *args):
        compile_gp._state = self.prev
        return False

    @classmethod
    def on(cls) -> bool:
        return cls._state

    @classmethod
    def set(cls, state: bool) -> None:
        cls._state = bool(state)
