"""GPPVAE (Casale et al. 2018): a VAE with an exact low-rank GP prior over all latents, trained with the Taylor
trick."""

from __future__ import annotations

import warnings
from typing import Iterable

import torch
from gpytorch.distributions import MultivariateNormal
from torch import Tensor

from ..models.gp_vae import GPVAE
from ..priors.base import marginal_distribution
from ..training import adam, guarded_step, run_epochs
from .low_rank_gp import LowRankViewObjectGP


class LowRankGPPosterior:
    """The exact low-rank GP posterior of the latents given the encoder means of the context data, made by
    :meth:`GPPVAE.condition`; :meth:`predict` gives the marginals of the noise-free latent function at new inputs,
    ``(L, r)``."""

    def __init__(self, gp: LowRankViewObjectGP, x: Tensor, mean: Tensor):
        self.gp, self.x, self.latent_mean = gp, x, mean

    def predict(self, x: Tensor) -> MultivariateNormal:
        mean, variance = self.gp.predict(self.latent_mean, self.x, x.to(self.latent_mean))
        return marginal_distribution(mean, variance.expand_as(mean))


class GPPVAE(torch.nn.Module):
    r"""Casale et al.'s GP prior VAE. The latents of all :math:`N` images have the prior
    :math:`\prod_l\mathcal N(\mathbf z_l\mid\mathbf 0,\mathbf K + \sigma^2\mathbf I)` (a
    :class:`~gpytorch_vae.models.low_rank_gp.LowRankViewObjectGP`), the encoder gives a mean-field
    :math:`q(\mathbf Z\mid\mathbf Y)`, the decoder a Gaussian likelihood; the ELBO is

    .. math::
        \sum_n\big(\mathbb E_q[\log p(\mathbf y_n\mid\mathbf z_n)] + \mathrm H[q(\mathbf z_n)]\big)
        + \mathbb E_q[\log p(\mathbf Z)].

    The GP term couples all :math:`N` latents. The Taylor trick (:func:`fit_gppvae`): once per epoch encode all
    images, draw :math:`\tilde{\mathbf Z}`, and use the first-order expansion
    :math:`\log p(\mathbf Z)\approx\log p(\tilde{\mathbf Z}) + \sum_n\mathbf g_n^\top(\mathbf z_n -
    \tilde{\mathbf z}_n)`, :math:`\mathbf g_n = \partial\log p(\tilde{\mathbf Z})/\partial\tilde{\mathbf z}_n`, so that
    each minibatch gets the full-data GP gradient for its own latents.

    :param vae: a :class:`~gpytorch_vae.models.GPVAE` with an
        :class:`~gpytorch_vae.models.IndependentLatentPrior` and a Gaussian likelihood (pre-trained as a plain VAE).
    :param gp: the low-rank GP.
    """

    def __init__(self, vae: GPVAE, gp: LowRankViewObjectGP):
        super().__init__()
        self.vae = vae
        self.gp = gp

    def to_gp(self, t: Tensor) -> Tensor:
        """``t`` in the GP's dtype and device."""
        return t.to(self.gp.angles)

    @torch.no_grad()
    def condition(self, batches: Iterable[tuple[Tensor, Tensor]]) -> LowRankGPPosterior:
        """The GP posterior given context data, ``(x, y)`` batches: encoder means of all of them, then the exact
        low-rank GP."""
        xs, means = [], []
        for x, y in batches:
            xs.append(self.to_gp(x))
            means.append(self.to_gp(self.vae.latent_dataset(y)[0]))
        return LowRankGPPosterior(self.gp, torch.cat(xs), torch.cat(means, dim=-1))

    def decode(self, z: Tensor, dtype: torch.dtype | None = None, x: Tensor | None = None) -> Tensor:
        """Decoded means of latent codes ``z`` ``(L, r)``."""
        return self.vae.decode(z, dtype)

    def encode_all(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder means and variances ``(L, N)`` of all images, in the GP dtype."""
        return tuple(self.to_gp(t) for t in self.vae.encode_all(y))

    def taylor_anchor(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\tilde{\mathbf Z}` (one draw from :math:`q`) and
        :math:`\mathbf g = \partial\log p(\tilde{\mathbf Z})/\partial\tilde{\mathbf Z}` (GP parameters held fixed),
        each ``(L, N)``."""
        mean, var = self.encode_all(y)
        anchor = (mean + var.sqrt() * torch.randn_like(mean)).requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(self.gp.log_marginal_likelihood(anchor, self.to_gp(x)), anchor)
        return anchor.detach(), gradient

    def batch_terms(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r"""A reparameterised draw :math:`\mathbf z_b` ``(L, b)`` and :math:`\sum_{n\in b}(\log p(\mathbf y_n\mid
        \mathbf z_n) + \mathrm H[q(\mathbf z_n)])` (one-sample estimate)."""
        mean, var = self.vae.latent_dataset(y)
        z = mean + var.sqrt() * torch.randn_like(mean)
        reconstruction = self.vae.observation_distribution(z, y).log_prob(y)
        entropy = torch.distributions.Normal(mean, var.sqrt()).entropy().sum()
        return z, reconstruction + entropy.to(reconstruction)

    @torch.no_grad()
    def predict(self, x_train: Tensor, y_train: Tensor, x_new: Tensor) -> tuple[Tensor, Tensor]:
        """Deprecated: ``condition([(x_train, y_train)]).predict(x_new)``. Means ``(L, N_new)``, variances
        ``(N_new,)``."""
        warnings.warn("GPPVAE.predict is deprecated: use condition(batches).predict(x_new)", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        mean, _ = self.encode_all(y_train)
        return self.gp.predict(mean, self.to_gp(x_train), self.to_gp(x_new))


def fit_gppvae(
    model: GPPVAE,
    x: Tensor,
    y: Tensor,
    vae_epochs: int = 100,
    gp_epochs: int = 100,
    joint_epochs: int = 0,
    lr: float = 1e-3,
    gp_lr: float = 1e-2,
    batch_size: int = 256,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
    **loop_options,
) -> list[float]:
    r"""The GPPVAE regime: ``vae_epochs`` of a plain VAE (:math:`\mathcal N(\mathbf 0,\mathbf I)` prior), then
    ``gp_epochs`` training only the GP parameters (kernel, GP-LVM vectors, noise; lr ``gp_lr``) on the encodings,
    then ``joint_epochs`` training everything with the Taylor trick. Minibatches in the order of ``x``/``y`` (sort by
    object and angle so that they hold whole objects). Checkpoints after every epoch; returns the mean loss per
    epoch (minus the objective, per image). ``loop_options`` go to :func:`~gpytorch_vae.training.run_epochs`."""
    num_data = len(x)
    networks = [p for name, p in model.vae.named_parameters() if p.requires_grad]
    net_optimizer = adam(networks, lr=lr)
    gp_optimizer = adam([p for p in model.gp.parameters() if p.requires_grad], lr=gp_lr)
    state = {"epoch": 0, "phase": "vae", "anchor": None}

    def batches():  # called once at the start of each epoch
        epoch = state["epoch"]
        state["phase"] = "vae" if epoch < vae_epochs else "gp" if epoch < vae_epochs + gp_epochs else "joint"
        if state["phase"] != "vae":
            state["anchor"] = model.taylor_anchor(x, y)
        state["epoch"] += 1
        offsets = range(0, num_data, batch_size)
        return ((torch.arange(i, min(i + batch_size, num_data)), y[i : i + batch_size]) for i in offsets)

    def step(rows: Tensor, y_batch: Tensor) -> dict[str, float]:
        current = state["phase"]
        if current == "vae":
            loss = -model.vae.elbo_terms(x[rows], y_batch, num_data)["elbo"] / len(rows)
            optimizers = [net_optimizer]
        else:
            anchor, gradient = state["anchor"]
            loss = -model.gp.log_marginal_likelihood(anchor, model.to_gp(x)) / num_data
            optimizers = [gp_optimizer]
            if current == "joint":
                z, terms = model.batch_terms(y_batch)
                taylor = (gradient[:, rows] * z).sum()
                loss = loss - (terms + taylor.to(terms)) / len(rows)
                optimizers.append(net_optimizer)
        joint = _Joint(optimizers)
        if not guarded_step(loss, joint, max_grad_norm, on_nonfinite):
            return None
        return {"loss": loss.item()}

    def checkpoint_state() -> dict:
        return {"model": model.state_dict(), "optimizer": net_optimizer.state_dict(), "gp_optimizer":
                gp_optimizer.state_dict()}  # fmt: skip

    def load_state(saved: dict) -> None:
        model.load_state_dict(saved["model"])
        net_optimizer.load_state_dict(saved["optimizer"])
        gp_optimizer.load_state_dict(saved["gp_optimizer"])
        state["epoch"] = saved["epoch"]

    total = vae_epochs + gp_epochs + joint_epochs
    return run_epochs(step, batches, total, checkpoint_state, load_state, **loop_options)


class _Joint:
    """Several optimisers stepped as one (for :func:`~gpytorch_vae.training.guarded_step`)."""

    def __init__(self, optimizers):
        self.optimizers = optimizers
        self.param_groups = [group for optimizer in optimizers for group in optimizer.param_groups]

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad()

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()
