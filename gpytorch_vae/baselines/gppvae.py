"""GPPVAE (Casale et al. 2018): a VAE with an exact low-rank GP prior over all latents, trained with the Taylor
trick."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from gpytorch.distributions import MultivariateNormal
from torch import Tensor

from ..models.gp_vae import GPVAE
from ..objectives.base import Objective, ObjectiveTerms
from ..priors.base import marginal_distribution
from .low_rank_gp import LowRankViewObjectGP


class LowRankGPPosterior:
    """The exact low-rank GP posterior of the latents given the encoder means of the context data, made by
    :meth:`GPPVAE.condition_on_observations`; :meth:`predict` gives the marginals of the noise-free latent function at new inputs,
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
    def condition_on_observations(self, batches: Iterable[tuple[Tensor, Tensor]]) -> LowRankGPPosterior:
        """The GP posterior given context data, ``(x, y)`` batches: encoder means of all of them, then the exact
        low-rank GP."""
        xs, means = [], []
        for x, y in batches:
            xs.append(self.to_gp(x))
            means.append(self.to_gp(self.vae.latent_dataset(y)[0]))
        return LowRankGPPosterior(self.gp, torch.cat(xs), torch.cat(means, dim=-1))

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Decoded means of latent codes ``z`` ``(L, r)``."""
        return self.vae.decode(z, x)

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
        y = self.vae.observations(y)[0]
        reconstruction = self.vae.likelihood.total_log_prob(self.vae.decode(z), y)
        entropy = torch.distributions.Normal(mean, var.sqrt()).entropy().sum()
        return z, reconstruction + entropy.to(reconstruction)


class GPPVAEObjective(Objective):
    r"""The GPPVAE regime as an objective for :func:`~gpytorch_vae.training.fit`: ``vae_epochs`` of a plain VAE
    (:math:`\mathcal N(\mathbf 0,\mathbf I)` prior), then ``gp_epochs`` training only the GP parameters (kernel,
    GP-LVM vectors, noise) on the encodings, then joint epochs with the Taylor trick. Its :meth:`batches` is the data
    ``fit`` iterates (called with the epoch index: it sets the phase and, after the VAE phase, draws the epoch's
    Taylor anchor); batches are consecutive rows of ``x``/``y`` (sort by object and angle so that they hold whole
    objects). The loss is minus the objective per image.

    :param model: the :class:`GPPVAE`.
    :param x: the whole training set's auxiliary rows.
    :param y: the whole training set's images.
    """

    def __init__(self, model: GPPVAE, x: Tensor, y: Tensor, vae_epochs: int, gp_epochs: int, batch_size: int = 256):
        super().__init__(model, len(x))
        self.x, self.y, self.vae_epochs, self.gp_epochs, self.batch_size = x, y, vae_epochs, gp_epochs, batch_size
        self.ranks = None
        self.phase, self.anchor = "vae", None

    def optimizer(self, lr: float = 1e-3, gp_lr: float = 1e-2) -> Callable:
        """The factory of GPPVAE's Adam: the networks at ``lr``, the GP parameters at ``gp_lr`` (two parameter groups
        of one Adam: per parameter the same updates as two optimisers)."""
        from ..training.fit import adam

        def factory(_parameters):
            optimizer = adam([p for p in self.model.vae.parameters() if p.requires_grad], lr=lr)
            optimizer.add_param_group({"params": [p for p in self.model.gp.parameters() if p.requires_grad],
                                       "lr": gp_lr})  # fmt: skip
            return optimizer

        return factory

    def batches(self, epoch: int):
        """The batches of ``epoch`` (``(rows, images)``), after setting its phase and anchor."""
        self.phase = "vae" if epoch < self.vae_epochs else "gp" if epoch < self.vae_epochs + self.gp_epochs else "joint"
        if self.phase != "vae":
            self.anchor = self.model.taylor_anchor(self.x, self.y)
        offsets = range(0, self.num_data, self.batch_size)
        return ((torch.arange(i, min(i + self.batch_size, self.num_data)), self.y[i : i + self.batch_size])
                for i in offsets)  # fmt: skip

    def forward(self, rows: Tensor, y_batch: Tensor) -> ObjectiveTerms:
        model = self.model
        if self.phase == "vae":
            out = model.vae(self.x[rows], y_batch, self.num_data)
            reconstruction = model.vae.likelihood.total_log_prob(out.output, out.observations)
            kl = out.posterior.kl_divergence()
            return ObjectiveTerms((-reconstruction + kl.to(reconstruction)) / len(rows))
        anchor, gradient = self.anchor
        loss = -model.gp.log_marginal_likelihood(anchor, model.to_gp(self.x)) / self.num_data
        if self.phase == "joint":
            z, terms = model.batch_terms(y_batch)
            taylor = (gradient[:, rows] * z).sum()
            loss = loss - (terms + taylor.to(terms)) / len(rows)
        return ObjectiveTerms(loss)


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
    **fit_options,
) -> list[float]:
    r"""Train a :class:`GPPVAE` in its regime (:class:`GPPVAEObjective`) with Adam: the networks at ``lr``, the GP
    parameters at ``gp_lr`` (one Adam with two parameter groups: per parameter the same updates as two). Returns the
    mean loss per epoch of this call; ``fit_options`` go to :func:`~gpytorch_vae.training.fit` (``checkpoint``,
    ``resume``, ``progress``, ``callbacks``, ...)."""
    from ..training.fit import fit

    objective = GPPVAEObjective(model, x, y, vae_epochs, gp_epochs, batch_size)
    total = vae_epochs + gp_epochs + joint_epochs
    return fit(objective, objective.batches, epochs=total, optimizer=objective.optimizer(lr, gp_lr),
               **fit_options).losses  # fmt: skip
