"""The posterior of an amortized hybrid strategy given one latent dataset: q(u) of Eq. 9 and what follows from it."""

from __future__ import annotations

import math
from typing import Callable

import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import RootLinearOperator
from pyro.distributions import MultivariateNormal as PyroMultivariateNormal
from pyro.distributions import Normal
from torch import Tensor

from .. import settings
from .latent_data import LatentBatch
from .latent_statistics import (
    WhitenedLatentStatistics,
    check_cholesky_info,
    run_sample_and_kl,
    sample_and_kl,
    whitened_kl_divergence,
    whitened_prior,
    whitened_titsias_posterior,
)
from .noise import STANDARD_NORMAL, StandardNormalNoise
from .prior_terms import WhitenedPriorTerms


class AmortizedHybridPosterior:
    r"""SVGP-VAE's :math:`q_S(\mathbf u)` for one latent dataset, and everything computed from it: the predictive
    :math:`q_S(\mathbf f(\mathbf X_*))` (Eq. 3), :math:`\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))`, the minibatch
    Hensman bound (Eq. 7) and the prior conditional :math:`p(\mathbf f\mid\mathbf v)` at the batch inputs.

    Made by :meth:`AmortizedHybridVariationalStrategy.condition
    <gpytorch_vae.variational.AmortizedHybridVariationalStrategy.condition>` (a latent batch) or
    :meth:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy.condition_on_statistics` (accumulated
    statistics, e.g. all training data at test time); it holds the results, so nothing is computed twice within a
    training step. Like GPyTorch's prediction strategies it is valid for the hyperparameters and inducing points it
    was computed with: make a new one after an optimiser step. Everything is whitened, :math:`\mathbf v =
    \mathbf L^{-1}(\mathbf u - \mathbf m_U)` with :math:`\mathbf K_{mm} = \mathbf L\mathbf L^\top`.

    :param prior_terms: the prior terms of :math:`\mathbf U` and, for a batch, of its inputs :math:`\mathbf X_b`.
    :param compute_prior_terms: gives the prior terms of new inputs (the strategy's ``prior_terms``).
    :param latent_batch: the latent batch conditioned on (``None`` for statistics).
    :param statistics: the statistics conditioned on (computed from ``latent_batch`` when ``None``).
    :param scale: :math:`c = N/b`.
    :param statistics_reduced: whether ``statistics`` are those of a union batch of several ranks (distributed
        training), of which ``latent_batch`` is this rank's shard.
    """

    def __init__(
        self,
        prior_terms: WhitenedPriorTerms,
        compute_prior_terms: Callable[[Tensor], WhitenedPriorTerms],
        latent_batch: LatentBatch | None = None,
        statistics: WhitenedLatentStatistics | None = None,
        scale: float = 1.0,
        statistics_reduced: bool = False,
    ):
        if latent_batch is None and statistics is None:
            raise ValueError("an AmortizedHybridPosterior needs a latent batch or statistics")
        self.prior_terms = prior_terms
        self.compute_prior_terms = compute_prior_terms
        self.latent_batch = latent_batch
        self._statistics = statistics
        self.scale = float(scale)
        self.statistics_reduced = bool(statistics_reduced)
        self._whitened: PyroMultivariateNormal | None = None
        self._kl: Tensor | None = None

    @property
    def statistics(self) -> WhitenedLatentStatistics:
        r"""The whitened statistics :math:`(\mathbf P, \mathbf r)` conditioned on."""
        if self._statistics is None:
            batch, terms = self.latent_batch, self.prior_terms
            self._statistics = WhitenedLatentStatistics.from_interpolation(
                terms.interp, batch.y - terms.data_mean, batch.noise
            )
        return self._statistics

    @property
    def whitened_posterior(self) -> PyroMultivariateNormal:
        r""":math:`q(\mathbf v) = \mathcal N(\mathbf m_w, \mathbf S\mathbf S^\top)` of Eq. 9 in whitened form."""
        if self._whitened is None:
            self._whitened = whitened_titsias_posterior(self.statistics, self.scale)
        return self._whitened

    # ------------------------------------------------------------------ q(u)
    @property
    def num_points(self) -> int:
        """The number of latent points conditioned on (of the union batch, with a statistics reducer)."""
        if self._statistics is not None:
            return self._statistics.num_points
        return (self._batch() if self.latent_batch is None else self.latent_batch).num_points

    @property
    def batch_shape(self) -> torch.Size:
        """The GP batch shape, e.g. ``[L]`` or ``[B, L]``."""
        return self.whitened_posterior.batch_shape

    @property
    def whitened_prior(self) -> PyroMultivariateNormal:
        r""":math:`p(\mathbf v) = \mathcal N(\mathbf 0, \mathbf I)` with the posterior's batch shape."""
        loc = self.whitened_posterior.loc
        return whitened_prior(self.batch_shape, loc.size(-1), loc)

    @property
    def variational_distribution(self) -> MultivariateNormal:
        r""":math:`q_S(\mathbf u) = \mathcal N(\boldsymbol\mu_b, \mathbf A_b)` of Eq. 9, unwhitened:
        :math:`\boldsymbol\mu_b = \mathbf m_U + \mathbf L\mathbf m_w`, :math:`\mathbf A_b = (\mathbf L\mathbf S)
        (\mathbf L\mathbf S)^\top`."""
        terms, q_v = self.prior_terms, self.whitened_posterior
        mean = terms.inducing_mean + (terms.chol @ q_v.loc.unsqueeze(-1)).squeeze(-1)
        return MultivariateNormal(mean, RootLinearOperator(terms.chol @ q_v.scale_tril))

    @property
    def prior_distribution(self) -> MultivariateNormal:
        r""":math:`p(\mathbf u) = \mathcal N(\mathbf m_U, \mathbf K_{mm})` (with jitter)."""
        return MultivariateNormal(self.prior_terms.inducing_mean, RootLinearOperator(self.prior_terms.chol))

    def kl_divergence(self) -> Tensor:
        r""":math:`\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))` per GP, shape ``(*batch)``, in whitened form."""
        if self._kl is None:
            q_v = self.whitened_posterior
            self._kl = whitened_kl_divergence(q_v.loc, q_v.scale_tril)
        return self._kl

    def rsample_data(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        r"""A reparameterised draw of :math:`\mathbf z` at the batch inputs, ``(*sample_shape, *batch, b)``:
        :math:`\mathbf v\sim q(\mathbf v)`, then :math:`z_i\mid\mathbf v\sim p(f_i\mid\mathbf v)` with the per-point
        noise from ``noise`` (:mod:`gpytorch_vae.variational.noise`). When :math:`q(\mathbf v)` has not been computed
        yet, everything from the statistics to the draw and the KL runs as one function of tensors
        (:func:`~gpytorch_vae.variational.latent_statistics.sample_and_kl`, compiled under
        :class:`gpytorch_vae.settings.compile_gp`); the draws are the same either way."""
        batch = self._batch() if self.latent_batch is None else self.latent_batch
        noise = STANDARD_NORMAL if noise is None else noise
        sample_shape = torch.Size(sample_shape)
        terms = self.prior_terms
        if self._whitened is not None or self._statistics is not None:
            v = self.whitened_posterior.rsample(sample_shape)
            mean, variance = terms.marginals(v, None)
            return mean + variance.sqrt() * noise(mean.shape, -1, mean.dtype, mean.device)
        gp_shape = sample_shape + torch.broadcast_shapes(terms.interp.shape[:-2], batch.y.shape[:-1])
        options = dict(dtype=batch.y.dtype, device=batch.y.device)
        eps_v = torch.empty(*gp_shape, terms.interp.size(-2), **options).normal_()
        eps_z = noise((*gp_shape, batch.num_points), -1, **options)
        z, kl, loc, scale_tril, info = (run_sample_and_kl if settings.compile_gp._state else sample_and_kl)(
            terms.interp, terms.data_mean, terms.data_variance, batch.y, batch.noise, self.scale, terms.jitter,
            eps_v, eps_z,
        )  # fmt: skip
        if settings.debug.on(info):
            check_cholesky_info(info)
        self._whitened = PyroMultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)
        self._kl = kl
        return z

    # ------------------------------------------------------------------ predictions
    def predict(self, x: Tensor, diag: bool = False) -> MultivariateNormal:
        r""":math:`q_S(\mathbf f(\mathbf X_*))` (Eq. 3) at GP inputs ``x`` ``(..., r, D)``; marginals only with
        ``diag``."""
        q_v = self.whitened_posterior
        return self.compute_prior_terms(x).predictive(q_v.loc, q_v.scale_tril, diag=diag)

    def conditional(self, x: Tensor, whitened_values: Tensor, diag: bool = True) -> MultivariateNormal:
        r"""The prior conditional :math:`p(\mathbf f(\mathbf X_*)\mid\mathbf v)` at whitened inducing values."""
        return self.compute_prior_terms(x).predictive(whitened_values, None, diag=diag)

    def _batch(self) -> LatentBatch:
        if self.latent_batch is None:
            raise RuntimeError("this posterior was conditioned on statistics: the batch terms need a latent batch")
        return self.latent_batch

    def data_marginals(self) -> Normal:
        r""":math:`q_S(f_i)` at the batch inputs, marginals ``(*batch, b)``."""
        self._batch()
        q_v = self.whitened_posterior
        mean, variance = self.prior_terms.marginals(q_v.loc, q_v.scale_tril)
        return Normal(mean, variance.sqrt())

    # ------------------------------------------------------------------ bounds
    def expected_log_likelihood(self) -> Tensor:
        r""":math:`\sum_{i\in b}\mathbb E_{q_S(f_i)}[\log\mathcal N(\tilde y_i\mid f_i, \tilde\sigma_i^2)]` per GP:
        the data term of Eq. 7 on the minibatch."""
        batch = self._batch()
        q_f = self.data_marginals()
        sq_err = (batch.y - q_f.loc).square() + q_f.scale.square()
        return -0.5 * (math.log(2 * math.pi) + batch.noise.log() + sq_err / batch.noise).sum(-1)

    def hensman_bound(self) -> Tensor:
        r"""Minibatch estimate of the Hensman bound (Eq. 7), per GP:
        :math:`\mathcal L_H \approx \frac{N}{b}\sum_{i\in b}\mathbb E_{q_S}[\log\mathcal N(\tilde y_i\mid f_i,
        \tilde\sigma_i^2)] - \mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))`. With :math:`b = N` it is exact, and
        with :math:`\mathbf U = \mathbf X` it equals the log marginal likelihood of the latent dataset."""
        return self._batch().scale * self.expected_log_likelihood() - self.kl_divergence()
