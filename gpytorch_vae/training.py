"""Training loops with progress output, seeds and checkpoints: :func:`fit_svi` (Pyro SVI) and :func:`fit_geco`."""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from tqdm.auto import tqdm

from .objectives import ScaledLossOptimizer

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def _run_epochs(
    step: Callable[[torch.Tensor, torch.Tensor], dict[str, float]],
    batches: Batches,
    epochs: int,
    state: Callable[[], dict],
    load_state: Callable[[dict], None],
    checkpoint: str | None,
    resume: bool,
    progress: bool,
    callback: Callable[[int, float], None] | None,
    device,
) -> list[float]:
    """The loop shared by the trainers: ``step(x, y)`` returns ``{"loss": ..., other logged values}``; the mean of
    each over the epoch goes to the progress bar. Checkpoints hold ``state()`` plus the epoch and torch's RNG state."""
    start = 0
    if resume and checkpoint and os.path.exists(checkpoint):
        saved = torch.load(checkpoint, weights_only=False)
        load_state(saved)
        start = saved["epoch"]
        torch.set_rng_state(saved["rng_state"])
    history = []
    bar = tqdm(range(start, epochs), disable=not progress, desc="epochs", mininterval=2.0)
    for epoch in bar:
        logs = [step(x.to(device), y.to(device)) for x, y in batches()]
        means = {key: sum(log[key] for log in logs) / len(logs) for key in logs[0]}
        history.append(means["loss"])
        bar.set_postfix({key: f"{value:.4g}" for key, value in means.items()})
        if callback is not None:
            callback(epoch, means["loss"])
        if checkpoint:
            torch.save({**state(), "epoch": epoch + 1, "rng_state": torch.get_rng_state()}, checkpoint)
    return history


def fit_svi(
    vae,
    batches: Batches,
    num_data: int | None,
    epochs: int,
    lr: float = 1e-3,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    loss_scale: float = 1.0,
    device: torch.device | str | None = None,
) -> list[float]:
    """Train a :class:`~gpytorch_vae.models.GPVAE` (or any module with ``model``/``guide`` taking ``(x, y,
    num_data)``) with :class:`~pyro.infer.SVI`, :class:`~pyro.infer.TraceMeanField_ELBO` (analytic KL terms) and Adam.

    :param batches: called once per epoch, yields ``(x, y)`` minibatches.
    :param num_data: :math:`N` for the :math:`b/N` scaling (``None``: every batch is a whole dataset).
    :param checkpoint: path of a checkpoint written after every epoch (the module's ``state_dict``, optimiser state,
        epoch, torch's RNG state). Parameters must belong to modules (``pyro.module`` / :class:`~pyro.nn.PyroModule`).
    :param resume: continue from ``checkpoint`` if it exists.
    :param callback: called as ``callback(epoch, mean_loss)`` after each epoch.
    :param loss_scale: multiplies the whole loss (e.g. ``1 / B`` to average over ``B`` sequences per batch).
    :param device: moves every batch there.
    :return: the mean loss per epoch (of this call).
    """
    optimizer = pyro.optim.Adam({"lr": lr})
    model, guide = vae.model, vae.guide
    if loss_scale != 1.0:
        model, guide = poutine.scale(model, scale=loss_scale), poutine.scale(guide, scale=loss_scale)
    svi = SVI(model, guide, optimizer, loss=TraceMeanField_ELBO())

    def state() -> dict:
        return {"model": vae.state_dict(), "optimizer": optimizer.get_state()}

    def load_state(saved: dict) -> None:
        # Restore the modules, then let pyro.module re-register their own parameters: loading the param store would
        # put copies in it, and SVI would then update the copies while the modules keep the old values.
        vae.load_state_dict(saved["model"])
        pyro.get_param_store().clear()
        optimizer.set_state(saved["optimizer"])

    def step(x, y) -> dict[str, float]:
        return {"loss": svi.step(x, y, num_data)}

    return _run_epochs(step, batches, epochs, state, load_state, checkpoint, resume, progress, callback, device)


def fit_geco(
    vae,
    geco,
    batches: Batches,
    num_data: int | None,
    epochs: int,
    lr: float = 1e-3,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    device: torch.device | str | None = None,
) -> list[float]:
    r"""Train a :class:`~gpytorch_vae.models.GPVAE` with :class:`~gpytorch_vae.models.GECO`: minimise
    :math:`\mathrm{KL} + \lambda\,C` with Adam, where KL is the analytic KL part of the ELBO
    (:meth:`~gpytorch_vae.models.GPVAE.elbo_terms`, e.g. :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\|p^l(\mathbf
    u))`) and :math:`C` the batch-mean reconstruction constraint at one posterior sample; :math:`\lambda` is updated
    after each step. The loss is scaled by :attr:`GECO.loss_exponent` and Adam stepped through
    :class:`~gpytorch_vae.objectives.ScaledLossOptimizer`, so the updates are those of the unscaled objective at
    any :math:`\lambda`. The progress bar shows the KL, the batch MSE and :math:`\log_{10}\lambda`. Arguments as
    for :func:`fit_svi`; checkpoints also hold the GECO state.
    """
    parameters = [p for p in vae.parameters() if p.requires_grad]
    optimizer = ScaledLossOptimizer(torch.optim.Adam(parameters, lr=lr))

    def state() -> dict:
        return {"model": vae.state_dict(), "geco": geco.state_dict(), "optimizer": optimizer.state_dict()}

    def load_state(saved: dict) -> None:
        vae.load_state_dict(saved["model"])
        geco.load_state_dict(saved["geco"])
        optimizer.load_state_dict(saved["optimizer"])

    def step(x, y) -> dict[str, float]:
        terms = vae.elbo_terms(x, y, num_data)
        constraint = geco.constraint(y, terms["decoded"], vae.observation_dims)
        loss = geco.loss(terms["kl"], constraint)  # divided by 2 ** geco.loss_exponent
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(geco.loss_exponent)
        geco.update()
        return {
            "kl": terms["kl"].item(),
            "mse": constraint.item() + geco.kappa2,
            "log10_lambda": geco.log_lagrange_multiplier.item() / math.log(10.0),
            "loss": loss.item() * 2.0**geco.loss_exponent,
        }

    return _run_epochs(step, batches, epochs, state, load_state, checkpoint, resume, progress, callback, device)
