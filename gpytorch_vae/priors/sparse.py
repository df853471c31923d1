"""SVGP-VAE's latent prior: an amortized sparse GP per latent channel (Jazbec et al. 2021, Eq. 10)."""

from __future__ import annotations

import warnings
from typing import Iterable

import torch
from gpytorch.distributions import MultivariateNormal
from pyro.distributions import Normal
from torch import Tensor

from ..variational import AmortizedHybridPosterior, WhitenedPriorTerms, whitened_prior
from .base import LatentPosterior, LatentPrior, Site, marginal_distribution, pyro_site


class SparseLatentPosterior(LatentPosterior):
    r"""The SVGP-VAE posterior of one latent batch: sites ``inducing_values`` (whitened :math:`\mathbf v\sim
    q_S(\mathbf v)`, Eq. 9, its KL scaled by :math:`b/N`) and ``z`` (:math:`z_i\mid\mathbf v\sim p(f(\mathbf x_i)
    \mid\mathbf v)`, marginals).

    :param posterior: the strategy's :class:`~gpytorch_vae.variational.AmortizedHybridPosterior` of the batch.
    :param gp_inputs: maps auxiliary inputs to GP inputs (for :meth:`predict`).
    :param kl_scale: :math:`b/N`.
    """

    def __init__(self, posterior: AmortizedHybridPosterior, gp_inputs, kl_scale: float = 1.0):
        self.posterior = posterior
        self.gp_inputs = gp_inputs
        self.kl_scale = float(kl_scale)

    @property
    def kl_shared(self) -> bool:
        """Whether the KL is that of a union batch of several ranks (the same on all of them)."""
        return self.posterior.sample_slice is not None

    @property
    def prior_terms(self):
        """The prior terms of the inducing points and the batch inputs (for the model's sites)."""
        return self.posterior.prior_terms

    @property
    def event_dims(self) -> int:
        return len(self.posterior.batch_shape) + 1

    def draw(self, site: Site) -> Tensor:
        q_v = self.posterior.whitened_posterior
        v = site("inducing_values", q_v.to_event(len(q_v.batch_shape)), self.kl_scale)
        return site("z", self.posterior.data_conditional(v).to_event(self.event_dims), 1.0)

    def rsample(self) -> Tensor:
        """The draws of :meth:`draw`, through the fused core (:meth:`AmortizedHybridPosterior.rsample_data`)."""
        return self.posterior.rsample_data()

    @property
    def mean(self) -> Tensor:
        return self.posterior.data_marginals().loc

    def kl_divergence(self) -> Tensor:
        r""":math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|\,p^l(\mathbf u))` (the ``z`` site adds 0)."""
        return self.kl_scale * self.posterior.kl_divergence().sum()

    def predict(self, x: Tensor) -> MultivariateNormal:
        r""":math:`q_S(\mathbf z(\mathbf x_*))` of Eq. 3, marginals."""
        q_f = self.posterior.predict(self.gp_inputs(x), diag=True)
        return marginal_distribution(q_f.mean, q_f.variance)


def sparse_prior_sites(terms: WhitenedPriorTerms, latent_shape: torch.Size, kl_scale: float = 1.0) -> Tensor:
    r"""The model's sites of the sparse prior: ``inducing_values`` :math:`\mathbf v\sim\mathcal N(\mathbf 0,
    \mathbf I)` (scaled by ``kl_scale``) and ``z`` :math:`\sim p(\mathbf f\mid\mathbf v)` (marginals) at the inputs
    of ``terms``; returns latent codes of shape ``latent_shape`` ``(*batch, L, b)``."""
    gp_shape = torch.Size(latent_shape[:-1])
    p_v = whitened_prior(gp_shape, terms.chol.size(-1), terms.chol)
    v = pyro_site("inducing_values", p_v.to_event(len(gp_shape)), kl_scale)
    mean, variance = terms.marginals(v, None)
    return pyro_site("z", Normal(mean, variance.sqrt()).to_event(len(latent_shape)))


class SparseLatentPrior(LatentPrior):
    r"""SVGP-VAE latent prior over an :class:`~gpytorch.models.ApproximateGP` whose strategy is
    :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`.

    Model: :math:`\mathbf v \sim \mathcal N(\mathbf 0,\mathbf I)` (scaled by :math:`b/N`), :math:`z_i\mid\mathbf v
    \sim p(f(\mathbf x_i)\mid\mathbf v)`. Guide: :math:`\mathbf v\sim q_S(\mathbf v)` (Eq. 9, whitened, scaled by
    :math:`b/N`), the same conditional for :math:`z_i`. The ELBO is
    :math:`\sum_i\mathbb E_{q_S}[\log p(\mathbf y_i\mid\mathbf z_i)] - \frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|
    \,p^l(\mathbf u))`, the expectation of Eq. 10 (derivation: ``docs/objective.md``). At test time
    :meth:`condition_on_batches` accumulates the whitened statistics of any number of batches in :math:`O(m^2)`
    memory.

    :param gp: the latent GP (e.g. :class:`~gpytorch_vae.gps.SparseLatentGP`).
    :param input_map: optional module mapping auxiliary data to GP inputs.
    """

    def __init__(self, gp, input_map: torch.nn.Module | None = None):
        super().__init__(input_map)
        self.gp = gp

    @property
    def strategy(self):
        return self.gp.variational_strategy

    def gp_inputs(self, x: Tensor) -> Tensor:
        return super().gp_inputs(x).to(self.strategy.inducing_points)

    @staticmethod
    def _kl_scale(batch_size: int, num_data: int | None) -> float:
        return 1.0 if num_data is None else batch_size / num_data

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> SparseLatentPosterior:
        posterior = self.strategy.condition(self.gp_inputs(x), mean, var, num_data)
        # b of the union batch when the strategy combines several ranks' shards, else this batch's
        return SparseLatentPosterior(posterior, self.gp_inputs, self._kl_scale(posterior.num_points, num_data))

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]]) -> SparseLatentPosterior:
        """Streaming conditioning on all the batches (:math:`b = N`) through their whitened statistics."""
        stats = self.strategy.accumulate_statistics((self.gp_inputs(x), mean, var) for x, mean, var in batches)
        return SparseLatentPosterior(self.strategy.condition_on_statistics(stats), self.gp_inputs)

    def model(self, x: Tensor, latent_shape: torch.Size, num_data: int | None = None) -> Tensor:
        posterior = self.posterior_from_guide(x)
        terms = posterior.prior_terms if posterior is not None else self.strategy.prior_terms(self.gp_inputs(x))
        return sparse_prior_sites(terms, latent_shape, self._kl_scale(latent_shape[-1], num_data))

    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        r"""Deprecated: use ``condition_on_batches(...).predict(x_new)``. Marginals of :math:`q_S(\mathbf z)` at
        ``x_new`` given the latent data stored in the strategy."""
        warnings.warn(
            "SparseLatentPrior.predict is deprecated: use posterior = prior.condition(...) or "
            "prior.condition_on_batches(...), then posterior.predict(x_new)",
            DeprecationWarning,
            stacklevel=2,
        )
        q_f = self.strategy.current_posterior().predict(self.gp_inputs(x_new), diag=True)
        return q_f.mean, q_f.variance
