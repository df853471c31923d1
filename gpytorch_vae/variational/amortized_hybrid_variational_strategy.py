"""The SVGP-VAE hybrid strategy: Titsias-optimal q(u) from a minibatch, used in the Hensman bound."""

from __future__ import annotations

import math
from typing import Iterable

from gpytorch.distributions import MultivariateNormal
from gpytorch.module import Module
from gpytorch.variational._variational_strategy import _VariationalStrategy
from linear_operator.operators import RootLinearOperator
from pyro.distributions import MultivariateNormal as PyroMultivariateNormal
from torch import Tensor

from .amortized_variational_distribution import AmortizedVariationalDistribution
from .latent_data import LatentBatch, validate_latent_data
from .latent_statistics import (
    WhitenedLatentStatistics,
    whitened_kl_divergence,
    whitened_prior,
    whitened_titsias_posterior,
)
from .prior_terms import WhitenedPriorTerms


class AmortizedHybridVariationalStrategy(_VariationalStrategy):
    r"""SVGP-VAE's amortized sparse GP (Jazbec et al. 2021, Sec. 3.4) as a GPyTorch variational strategy.

    :math:`q(\mathbf u)` over :math:`\mathbf u = f(\mathbf U)` is not a free parameter. It is the batch-Titsias
    optimum (Eq. 9) of the current *latent dataset* :math:`\{\mathbf X_b, \tilde{\mathbf y}_b,
    \tilde{\boldsymbol\sigma}^2_b\}` (encoder means and variances), with :math:`c = N/b`:

    .. math::
        \boldsymbol\Sigma_b = \mathbf K_{mm} + c\,\mathbf K_{mb}\mathbf D_b\mathbf K_{bm},\quad
        \boldsymbol\mu_b = c\,\mathbf K_{mm}\boldsymbol\Sigma_b^{-1}\mathbf K_{mb}\mathbf D_b\tilde{\mathbf y}_b,\quad
        \mathbf A_b = \mathbf K_{mm}\boldsymbol\Sigma_b^{-1}\mathbf K_{mm},

    :math:`\mathbf D_b = \mathrm{diag}(\tilde{\boldsymbol\sigma}_b^{-2})`. Everything is computed in whitened form
    (see :func:`~gpytorch_vae.variational.latent_statistics.whitened_titsias_posterior`), anew at every call:
    nothing about :math:`q(\mathbf u)` is cached, in train or eval mode. Calling the model gives
    :math:`q_S(\mathbf f(\mathbf X_r))` of Eq. 3, :meth:`kl_divergence` gives
    :math:`\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))` and :meth:`hensman_bound` the minibatch estimate of Eq. 7.

    Shapes: with GP batch shape ``(*batch)`` (e.g. ``[L]`` latent channels from the kernel, or ``[B, L]`` for ``B``
    independent datasets) the latent targets and noise are ``(*batch, b)`` and ``x`` is ``(..., b, D)``,
    broadcastable to ``(*batch, b, D)`` (``(b, D)`` for data shared by all channels, ``(B, 1, b, D)`` for ``B``
    datasets).

    :param model: the :class:`~gpytorch.models.ApproximateGP` this strategy belongs to.
    :param inducing_points: :math:`\mathbf U`, ``(m, D)`` or ``(*batch, m, D)``.
    :param learn_inducing_locations: whether :math:`\mathbf U` is a parameter.
    :param jitter_val: jitter added to :math:`\mathbf K_{mm}` (default: GPyTorch's ``variational_cholesky_jitter``).
    """

    def __init__(
        self,
        model,
        inducing_points: Tensor,
        learn_inducing_locations: bool = True,
        jitter_val: float | None = None,
    ):
        distribution = AmortizedVariationalDistribution(self, inducing_points.size(-2))
        super().__init__(model, inducing_points, distribution, learn_inducing_locations, jitter_val=jitter_val)
        self.variational_params_initialized.fill_(1)
        self._latent_batch: LatentBatch | None = None
        self._latent_statistics: tuple[WhitenedLatentStatistics, float] | None = None

    # ------------------------------------------------------------------ latent data
    def set_latent_data(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None) -> None:
        r"""Condition on a minibatch of the latent dataset (Eq. 9 with :math:`c = N/b`).

        :param x: auxiliary inputs :math:`\mathbf X_b`, ``(..., b, D)``.
        :param y: encoder means :math:`\tilde{\mathbf y}_b`, ``(*batch, b)``.
        :param noise: encoder variances :math:`\tilde{\boldsymbol\sigma}^2_b`, ``(*batch, b)``, positive.
        :param num_data: :math:`N`, the size of the whole dataset (default :math:`b`).
        """
        self._latent_batch = LatentBatch.create(x, y, noise, num_data, like=self.inducing_points)
        self._latent_statistics = None

    def latent_statistics(self, x: Tensor, y: Tensor, noise: Tensor) -> WhitenedLatentStatistics:
        """Whitened sufficient statistics of one batch of latent data under the current hyperparameters."""
        validate_latent_data(x, y, noise)
        like = self.inducing_points
        terms = self._prior_terms(x.to(like))
        return WhitenedLatentStatistics.from_interpolation(terms.interp, y.to(like) - terms.data_mean, noise.to(like))

    def set_latent_statistics(self, stats: WhitenedLatentStatistics, num_data: int | None = None) -> None:
        r"""Condition on precomputed statistics (:math:`c = N/n`, default 1: all data seen)."""
        num_data = stats.num_points if num_data is None else int(num_data)
        self._latent_statistics = (stats, num_data / stats.num_points)
        self._latent_batch = None

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]]) -> WhitenedLatentStatistics:
        r"""Streaming conditioning: accumulate the statistics of ``(x, y, noise)`` batches (e.g. from a
        :class:`~torch.utils.data.DataLoader` through the encoder) in :math:`O(m^2)` memory and condition on all of
        them at once, which gives the same :math:`q(\mathbf u)` as one batch of all the data with :math:`b = N`.
        Run it under :func:`torch.no_grad` at test time. Returns the accumulated statistics."""
        total = None
        for x, y, noise in batches:
            stats = self.latent_statistics(x, y, noise)
            total = stats if total is None else total + stats
        if total is None:
            raise ValueError("condition_on_batches received no batches")
        self.set_latent_statistics(total)
        return total

    def clear_latent_data(self) -> None:
        self._latent_batch = None
        self._latent_statistics = None

    # ------------------------------------------------------------------ distributions
    def _prior_terms(self, x: Tensor, **kwargs) -> WhitenedPriorTerms:
        return WhitenedPriorTerms.compute(self.model, x, self.inducing_points, self.jitter_val, **kwargs)

    def _whitened_posterior(self) -> tuple[PyroMultivariateNormal, WhitenedPriorTerms | None]:
        """The whitened :math:`q(\\mathbf v)` and, when conditioned on a batch, the prior terms at its inputs."""
        if self._latent_statistics is not None:
            stats, scale = self._latent_statistics
            return whitened_titsias_posterior(stats, scale), None
        batch = self._latent_batch
        if batch is None:
            raise RuntimeError(
                "AmortizedHybridVariationalStrategy has no latent data: call set_latent_data(x, y, noise, num_data) "
                "or condition_on_batches(...) first"
            )
        terms = self._prior_terms(batch.x)
        stats = WhitenedLatentStatistics.from_interpolation(terms.interp, batch.y - terms.data_mean, batch.noise)
        return whitened_titsias_posterior(stats, batch.scale), terms

    @property
    def whitened_variational_distribution(self) -> PyroMultivariateNormal:
        r""":math:`q(\mathbf v) = \mathcal N(\mathbf m_w, \mathbf B^{-1})`, :math:`\mathbf v = \mathbf L^{-1}(\mathbf u
        - \mathbf m_U)`, as a Pyro distribution."""
        return self._whitened_posterior()[0]

    @property
    def whitened_prior_distribution(self) -> PyroMultivariateNormal:
        r""":math:`p(\mathbf v) = \mathcal N(\mathbf 0, \mathbf I)` with the GP batch shape."""
        if self._latent_statistics is not None:
            batch_shape = self._latent_statistics[0].projected_targets.shape[:-1]
        elif self._latent_batch is not None:
            batch_shape = self._latent_batch.y.shape[:-1]
        else:
            raise RuntimeError("AmortizedHybridVariationalStrategy has no latent data: call set_latent_data first")
        return whitened_prior(batch_shape, self.inducing_points.size(-2), self.inducing_points)

    @property
    def prior_distribution(self) -> MultivariateNormal:
        r""":math:`p(\mathbf u) = \mathcal N(m(\mathbf U), \mathbf K_{mm})` (with jitter), recomputed at each call."""
        terms = self._prior_terms(self.inducing_points[..., :0, :])
        return MultivariateNormal(terms.inducing_mean, RootLinearOperator(terms.chol))

    @property
    def variational_distribution(self) -> MultivariateNormal:
        r""":math:`q_S(\mathbf u) = \mathcal N(\boldsymbol\mu_b, \mathbf A_b)` of Eq. 9, unwhitened:
        :math:`\boldsymbol\mu_b = \mathbf m_U + \mathbf L\mathbf m_w`, :math:`\mathbf A_b = (\mathbf L\mathbf S)
        (\mathbf L\mathbf S)^\top`."""
        q_white, terms = self._whitened_posterior()
        terms = self._prior_terms(self.inducing_points[..., :0, :]) if terms is None else terms
        mean = terms.inducing_mean + (terms.chol @ q_white.loc.unsqueeze(-1)).squeeze(-1)
        return MultivariateNormal(mean, RootLinearOperator(terms.chol @ q_white.scale_tril))

    def kl_divergence(self) -> Tensor:
        r""":math:`\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))` per GP, shape ``(*batch)``, in whitened form."""
        return whitened_kl_divergence(self.whitened_variational_distribution)

    # ------------------------------------------------------------------ predictions and bounds
    def forward(
        self,
        x: Tensor,
        inducing_points: Tensor,
        inducing_values: Tensor,
        variational_inducing_covar: Tensor | None = None,
        diag: bool = True,
        **kwargs,
    ) -> MultivariateNormal:
        r""":math:`q(\mathbf f_X)` for a whitened :math:`q(\mathbf v) = \mathcal N(` ``inducing_values``,
        :math:`\mathbf S\mathbf S^\top)`, with :math:`\mathbf S` = ``variational_inducing_covar`` (a lower Cholesky
        root; ``None`` gives the prior conditional :math:`p(\mathbf f_X\mid\mathbf v)`)."""
        terms = WhitenedPriorTerms.compute(self.model, x, inducing_points, self.jitter_val, **kwargs)
        return terms.predictive(inducing_values, variational_inducing_covar, diag=diag and self.training)

    def __call__(self, x: Tensor, prior: bool = False, diag: bool = True, **kwargs) -> MultivariateNormal:
        if prior:
            return self.model.forward(x, **kwargs)
        q_white = self.whitened_variational_distribution
        return Module.__call__(self, x, self.inducing_points, q_white.loc, q_white.scale_tril, diag=diag, **kwargs)

    def conditional(self, x: Tensor, whitened_inducing_values: Tensor, diag: bool = True) -> MultivariateNormal:
        r"""The prior conditional :math:`p(\mathbf f_X \mid \mathbf u)` at whitened inducing values
        :math:`\mathbf v = \mathbf L^{-1}(\mathbf u - \mathbf m_U)` (marginals only when ``diag``)."""
        return self._prior_terms(x).predictive(whitened_inducing_values, None, diag=diag)

    def expected_log_likelihood(self) -> Tensor:
        r""":math:`\sum_{i\in b}\mathbb E_{q_S(f_i)}[\log\mathcal N(\tilde y_i\mid f_i, \tilde\sigma_i^2)]` for the
        current latent batch, per GP: the data term of Eq. 7 on the minibatch."""
        return self._expected_log_likelihood(*self._batch_posterior())

    def hensman_bound(self) -> Tensor:
        r"""Minibatch estimate of the Hensman bound (Eq. 7), per GP:
        :math:`\mathcal L_H \approx \frac{N}{b}\sum_{i\in b}\mathbb E_{q_S}[\log\mathcal N(\tilde y_i\mid f_i,
        \tilde\sigma_i^2)] - \mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))`. With :math:`b = N` it is exact, and
        with :math:`\mathbf U = \mathbf X` it equals the log marginal likelihood of the latent dataset."""
        q_white, terms = self._batch_posterior()
        data_term = self._latent_batch.scale * self._expected_log_likelihood(q_white, terms)
        return data_term - whitened_kl_divergence(q_white)

    def _batch_posterior(self) -> tuple[PyroMultivariateNormal, WhitenedPriorTerms]:
        q_white, terms = self._whitened_posterior()
        if terms is None:
            raise RuntimeError("the Hensman bound needs a latent batch (set_latent_data), not accumulated statistics")
        return q_white, terms

    def _expected_log_likelihood(self, q_white: PyroMultivariateNormal, terms: WhitenedPriorTerms) -> Tensor:
        batch = self._latent_batch
        mean, variance = terms.marginals(q_white.loc, q_white.scale_tril)
        sq_err = (batch.y - mean).square() + variance
        return -0.5 * (math.log(2 * math.pi) + batch.noise.log() + sq_err / batch.noise).sum(-1)
