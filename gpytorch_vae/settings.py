"""Library-wide settings (context managers in the style of :mod:`gpytorch.settings`)."""

from __future__ import annotations

import torch


class debug:
    """Whether the library runs its checks that need tensor *values* on the host (NaN or inf in latent data and
    inputs, non-positive noise, a prior covariance or Eq. 9's matrix that cannot be factorised), as
    :class:`gpytorch.settings.debug` does for GPyTorch. Shapes are always checked, and so is the loss in training.

    Each value check is a host sync. Default: on for CPU tensors (where a sync costs little), off for accelerator
    tensors; ``debug(True)`` checks every tensor, ``debug(False)`` none.

    >>> with gpytorch_vae.settings.debug(True):  # also check CUDA tensors
    ...     posterior = prior.condition(x, mean, var)
    """

    _state: bool | None = None  # None: CPU tensors only

    def __init__(self, state: bool | None = True):
        self.state = state

    def __enter__(self):
        self.prev = debug._state
        debug._state = self.state

    def __exit__(self, *args):
        debug._state = self.prev
        return False

    @classmethod
    def on(cls, tensor: torch.Tensor) -> bool:
        """Whether values of ``tensor`` are checked under the current setting."""
        if cls._state is None:
            return tensor.device.type == "cpu"
        return cls._state


class compile_gp:
    """Whether the pure-tensor core of the SVGP-VAE step (:func:`gpytorch_vae.variational.latent_statistics.sample_and_kl`: Eq. 9,
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
