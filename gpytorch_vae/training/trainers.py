"""Version 0.2's trainers, kept as thin wrappers of :func:`~gpytorch_vae.training.fit` (deprecated)."""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

from ..objectives import ELBO, GECOObjective, ScaledLossOptimizer
from ..objectives.elbo import PyroELBO
from .fit import Callback, adam, fit, train_step, trainable_parameters

__all__ = ["adam", "fit_geco", "fit_svi", "geco_step", "svi_step", "trainable_parameters"]


def _module(model):
    """The model itself, or the one a :class:`~torch.nn.parallel.DistributedDataParallel` wraps."""
    return getattr(model, "module", model)


def _ranks():
    from .. import distributed

    return distributed.Ranks() if distributed.is_distributed() else None


class _EpochCallback(Callback):
    """Version 0.2's ``callback(epoch, mean_loss)``."""

    def __init__(self, fn: Callable[[int, float], None]):
        self.fn = fn

    def on_log(self, state, logs) -> None:
        self.fn(state.epoch - 1, logs["loss"])


def _fit(objective, batches, epochs, lr, max_grad_norm, on_nonfinite, loop_options) -> list[float]:
    callback = loop_options.pop("callback", None)
    history = loop_options.pop("history", None)
    extra_state = loop_options.pop("extra_state", None)
    loop_options.pop("divergence_key", None)
    result = fit(objective, batches, epochs=epochs, lr=lr, max_grad_norm=max_grad_norm, on_nonfinite=on_nonfinite,
                 callbacks=[] if callback is None else [_EpochCallback(callback)], state=extra_state,
                 **loop_options)  # fmt: skip
    if history is not None:
        history.clear()
        history.update(result.history)
    return result.losses


def fit_svi(vae, batches, num_data: int | None, epochs: int, lr: float = 1e-3, loss_scale: float = 1.0,
            direct: bool = False, max_grad_norm: float | None = None, on_nonfinite: str = "raise",
            **loop_options) -> list[float]:  # fmt: skip
    """Deprecated: ``fit(ELBO(vae, num_data), batches, epochs=...)`` (``direct=False``: ``PyroELBO``, Pyro's
    :class:`~pyro.infer.TraceMeanField_ELBO` on ``vae.model``/``vae.guide``). Returns the mean loss per epoch of
    this call."""
    warnings.warn("fit_svi is deprecated: use gpytorch_vae.training.fit(ELBO(vae, num_data), data, epochs=...)",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    vae = _module(vae)
    objective = (ELBO if direct else PyroELBO)(vae, num_data, loss_scale=loss_scale, ranks=_ranks() if direct else None)
    return _fit(objective, batches, epochs, lr, max_grad_norm, on_nonfinite, loop_options)


def fit_geco(vae, geco, batches, num_data: int | None, epochs: int, lr: float = 1e-3,
             max_grad_norm: float | None = None, on_nonfinite: str = "raise",
             **loop_options) -> list[float]:  # fmt: skip
    """Deprecated: ``fit(GECOObjective(vae, num_data, geco), batches, epochs=...)``."""
    warnings.warn("fit_geco is deprecated: use gpytorch_vae.training.fit(GECOObjective(vae, num_data, geco), ...)",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    objective = GECOObjective(_module(vae), num_data, geco=geco, ranks=_ranks())
    return _fit(objective, batches, epochs, lr, max_grad_norm, on_nonfinite, loop_options)


def _step(objective, optimizer, max_grad_norm, on_nonfinite) -> Callable[[Tensor, Tensor], dict | None]:
    def step(x, y):
        terms = train_step(objective, optimizer, (x, y), max_grad_norm, on_nonfinite)
        return None if terms is None else terms.logs()

    return step


def svi_step(vae, optimizer: torch.optim.Optimizer, num_data: int | None, loss_scale: float = 1.0,
             direct: bool = False, max_grad_norm: float | None = None,
             on_nonfinite: str = "raise") -> Callable[[Tensor, Tensor], dict | None]:  # fmt: skip
    """Deprecated: one step of :class:`~gpytorch_vae.objectives.ELBO` (``direct``) or
    :class:`~gpytorch_vae.objectives.PyroELBO` as a function of a batch ``(x, y)``."""
    warnings.warn("svi_step is deprecated: use gpytorch_vae.training.fit", DeprecationWarning, stacklevel=2)
    objective = (ELBO if direct else PyroELBO)(_module(vae), num_data, loss_scale=loss_scale)
    return _step(objective, optimizer, max_grad_norm, on_nonfinite)


def geco_step(vae, geco, optimizer: ScaledLossOptimizer, num_data: int | None, max_grad_norm: float | None = None,
              on_nonfinite: str = "raise") -> Callable[[Tensor, Tensor], dict | None]:  # fmt: skip
    """Deprecated: one step of :class:`~gpytorch_vae.objectives.GECOObjective` as a function of a batch ``(x, y)``."""
    warnings.warn("geco_step is deprecated: use gpytorch_vae.training.fit", DeprecationWarning, stacklevel=2)
    objective = GECOObjective(_module(vae), num_data, geco=geco)
    return _step(objective, objective.prepare_optimizer(optimizer), max_grad_norm, on_nonfinite)
