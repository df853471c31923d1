"""A minimal SVI training loop with progress output, seeds and checkpoints."""

from __future__ import annotations

import os
from typing import Callable, Iterable

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from tqdm.auto import tqdm


def fit_svi(
    vae,
    batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
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
    """Train a :class:`~gpytorch_vae.models.GPVAE` with :class:`~pyro.infer.SVI` and
    :class:`~pyro.infer.TraceMeanField_ELBO` (analytic KL terms) and Adam.

    :param batches: called once per epoch, yields ``(x, y)`` minibatches.
    :param num_data: :math:`N` for the :math:`b/N` scaling (``None``: every batch is a whole dataset).
    :param checkpoint: path of a checkpoint written after every epoch (parameters, optimiser state, epoch, torch's
        RNG state).
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
    start = 0
    if resume and checkpoint and os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=False)
        vae.load_state_dict(state["model"])
        pyro.get_param_store().set_state(state["param_store"])
        optimizer.set_state(state["optimizer"])
        start = state["epoch"]
        torch.set_rng_state(state["rng_state"])
    history = []
    bar = tqdm(range(start, epochs), disable=not progress, desc="epochs", mininterval=2.0)
    for epoch in bar:
        losses = [svi.step(x.to(device), y.to(device), num_data) for x, y in batches()]
        mean_loss = sum(losses) / len(losses)
        history.append(mean_loss)
        bar.set_postfix(loss=f"{mean_loss:.3f}")
        if callback is not None:
            callback(epoch, mean_loss)
        if checkpoint:
            torch.save(
                {
                    "model": vae.state_dict(),
                    "param_store": pyro.get_param_store().get_state(),
                    "optimizer": optimizer.get_state(),
                    "epoch": epoch + 1,
                    "rng_state": torch.get_rng_state(),
                },
                checkpoint,
            )
    return history
