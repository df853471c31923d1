"""Trainers: :func:`fit_svi` (the ELBO, through Pyro or directly) and :func:`fit_geco` (GECO)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor

from .. import distributed
from ..objectives import ScaledLossOptimizer
from .loop import NONFINITE, guarded_step, run_epochs


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of ``module`` that require gradients (frozen ones, e.g. a fixed lengthscale, stay out)."""
    return [p for p in module.parameters() if p.requires_grad]


def adam(parameters, lr: float = 1e-3) -> torch.optim.Adam:
    """:class:`torch.optim.Adam` with its fused implementation where the parameters' devices support it (CPU and
    CUDA: one kernel for all parameters, about 4x faster than the default for the rotated-MNIST models on one CPU
    thread), else the default one. The update is Adam's either way."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


def _check(lr: float, on_nonfinite: str, max_grad_norm: float | None) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if on_nonfinite not in NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE}, got {on_nonfinite!r}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")


def _module(model):
    """The model itself, or the one a :class:`~torch.nn.parallel.DistributedDataParallel` wraps."""
    return getattr(model, "module", model)


def svi_step(
    vae,
    optimizer: torch.optim.Optimizer,
    num_data: int | None,
    loss_scale: float = 1.0,
    direct: bool = False,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
) -> Callable[[Tensor, Tensor], dict | None]:
    """One training step of :func:`fit_svi` as a function of a batch ``(x, y)``: the loss, a guarded backward and
    optimiser step; returns the logged values (``None`` for a skipped step). With ``direct`` and several ranks
    (:mod:`gpytorch_vae.distributed`; ``vae`` may be a :class:`~torch.nn.parallel.DistributedDataParallel`), each
    rank's loss is :func:`~gpytorch_vae.distributed.rank_loss`, so the averaged gradients are the union batch's."""
    elbo = TraceMeanField_ELBO()
    module = _module(vae)

    def step(x, y):
        if direct:
            local, shared = distributed.svi_parts(vae(x, y, num_data))
            loss = loss_scale * distributed.rank_loss(local, shared)
            value = loss_scale * (distributed.all_reduce_sum(local) + shared.detach())
        else:
            loss = loss_scale * elbo.differentiable_loss(module.model, module.guide, x, y, num_data)
            value = loss.detach()
        if not guarded_step(loss, optimizer, max_grad_norm, on_nonfinite):
            return None
        return {"loss": value.item()}

    return step


def geco_step(
    vae,
    geco,
    optimizer: ScaledLossOptimizer,
    num_data: int | None,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
) -> Callable[[Tensor, Tensor], dict | None]:
    """One training step of :func:`fit_geco` as a function of a batch ``(x, y)`` (see :func:`svi_step`). On several
    ranks the constraint is that of the union batch: its value (for GECO's moving average and lambda) is summed over
    the ranks, each rank differentiates its own points' part."""
    module = _module(vae)

    def step(x, y):
        terms = vae(x, y, num_data, reconstruction=False)
        per_example = geco.per_example_error(y, terms["decoded"], module.observation_dims)
        # the union batch's error sum and size in one collective
        totals = distributed.all_reduce_sum(
            torch.stack([per_example.sum().detach(), per_example.new_tensor(per_example.numel())])
        )
        count = totals[1]
        constraint = per_example.sum() / count - geco.kappa2 * per_example.numel() / count  # this rank's part
        value = totals[0] / count - geco.kappa2
        kl, shared = terms["kl"], terms.get("kl_shared", False)
        rank_kl = kl if shared else distributed.world_size() * kl
        loss = geco.loss(rank_kl, distributed.world_size() * constraint, value=value)  # / 2 ** loss_exponent
        exponent = geco.loss_exponent
        if not guarded_step(loss, optimizer, max_grad_norm, on_nonfinite, lambda: optimizer.step(exponent)):
            return None
        geco.update()
        kl_value = kl.detach() if shared else distributed.all_reduce_sum(kl)
        return {
            "kl": kl_value.item(),
            "mse": value.item() + geco.kappa2,
            "log10_lambda": geco.log_lagrange_multiplier.item() / math.log(10.0),
            "loss": (kl_value * 2.0**-exponent + (loss - rank_kl * 2.0**-exponent).detach()).item() * 2.0**exponent,
        }

    return step


def fit_svi(
    vae,
    batches,
    num_data: int | None,
    epochs: int,
    lr: float = 1e-3,
    loss_scale: float = 1.0,
    direct: bool = False,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
    **loop_options,
) -> list[float]:
    """Maximise the ELBO of a :class:`~gpytorch_vae.models.GPVAE` (or any module with ``model``/``guide`` taking
    ``(x, y, num_data)``) with Adam.

    The loss is Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` (analytic KL terms) of ``model``/``guide``, or with
    ``direct=True`` minus :meth:`~gpytorch_vae.models.GPVAE.elbo_terms` (the same value and gradients at the same
    random state, without Pyro's tracing). Each step is guarded (:func:`~gpytorch_vae.training.guarded_step`): a
    non-finite loss raises :class:`~gpytorch_vae.training.NonFiniteLossError` before anything changes, or is skipped.

    :param batches: ``(x, y)`` minibatches: an iterable (e.g. a :class:`~torch.utils.data.DataLoader`) or a callable
        giving one per epoch.
    :param num_data: :math:`N` for the :math:`b/N` scaling (``None``: every batch is a whole dataset).
    :param loss_scale: multiplies the whole loss (e.g. ``1 / B`` to average over ``B`` sequences per batch).
    :param max_grad_norm: clip the gradients to this total norm (default: no clipping).
    :param on_nonfinite: ``"raise"`` or ``"skip"``.
    :param loop_options: passed to :func:`~gpytorch_vae.training.run_epochs` (``checkpoint``, ``resume``,
        ``progress``, ``callback``, ``device``, ``extra_state``, ``is_writer``, ``history``, ``divergence_factor``;
        the loss is watched for divergence).
    :return: the mean loss per epoch (of this call).
    """
    _check(lr, on_nonfinite, max_grad_norm)
    optimizer = adam(trainable_parameters(vae), lr=lr)
    step = svi_step(vae, optimizer, num_data, loss_scale, direct, max_grad_norm, on_nonfinite)
    loop_options.setdefault("divergence_key", "loss")
    loop_options.setdefault("is_writer", distributed.rank() == 0)

    def state() -> dict:
        return {"model": _module(vae).state_dict(), "optimizer": optimizer.state_dict()}

    def load_state(saved: dict) -> None:
        _module(vae).load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])

    return run_epochs(step, batches, epochs, state, load_state, **loop_options)


def fit_geco(
    vae,
    geco,
    batches,
    num_data: int | None,
    epochs: int,
    lr: float = 1e-3,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
    **loop_options,
) -> list[float]:
    r"""Train a :class:`~gpytorch_vae.models.GPVAE` with :class:`~gpytorch_vae.objectives.GECO`: minimise
    :math:`\mathrm{KL} + \lambda\,C` with Adam, where KL is the analytic KL part of the ELBO
    (:meth:`~gpytorch_vae.models.GPVAE.elbo_terms`, e.g. :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\|p^l(\mathbf
    u))`) and :math:`C` the batch-mean reconstruction constraint at one posterior sample; :math:`\lambda` is updated
    after each step. The loss is scaled by :attr:`GECO.loss_exponent <gpytorch_vae.objectives.GECO.loss_exponent>`
    and Adam stepped through :class:`~gpytorch_vae.objectives.ScaledLossOptimizer`, so the updates are those of the
    unscaled objective at any :math:`\lambda`. The progress output shows the KL, the batch MSE and
    :math:`\log_{10}\lambda`. Arguments as for :func:`fit_svi` (``max_grad_norm`` applies to the gradients of the
    scaled loss; the batch MSE is watched for divergence); checkpoints also hold the GECO state.
    """
    _check(lr, on_nonfinite, max_grad_norm)
    optimizer = ScaledLossOptimizer(adam(trainable_parameters(vae), lr=lr))
    step = geco_step(vae, geco, optimizer, num_data, max_grad_norm, on_nonfinite)
    loop_options.setdefault("divergence_key", "mse")  # GECO's loss grows with lambda by design
    loop_options.setdefault("is_writer", distributed.rank() == 0)

    def state() -> dict:
        return {"model": _module(vae).state_dict(), "geco": geco.state_dict(), "optimizer": optimizer.state_dict()}

    def load_state(saved: dict) -> None:
        _module(vae).load_state_dict(saved["model"])
        geco.load_state_dict(saved["geco"])
        optimizer.load_state_dict(saved["optimizer"])

    return run_epochs(step, batches, epochs, state, load_state, **loop_options)
