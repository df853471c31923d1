r"""Latent priors of a GP-VAE as Pyro model/guide fragments.

Each class turns a latent dataset (auxiliary inputs ``x``, encoder means ``mean`` and variances ``var``, both
``(*batch, L, b)``) into Pyro sample sites, returning latent codes ``z`` of shape ``(*batch, L, b)``:

* :class:`SparseLatentPrior` (SVGP-VAE, Eq. 10): sites ``inducing_values`` (whitened :math:`\mathbf v`, scaled by
  :math:`b/N`) and ``z`` (the prior conditional :math:`p(\mathbf z\mid\mathbf v)` in model and guide alike).
* :class:`ExactLatentPrior` (Pearce, Eq. 2): site ``z``, :math:`p(\mathbf z)` in the model and the exact GP
  posterior :math:`q(\mathbf z)` in the guide.
* :class:`IndependentLatentPrior` (VAE): site ``z``, :math:`\mathcal N(\mathbf 0, \mathbf I)` in the model and
  the encoder's :math:`\tilde q(\mathbf z\mid\mathbf y)` in the guide.

The GP couples all points of a batch, so each site is one event over the whole batch (no data plate). Each class
also gives the analytic KL part of the objective (:meth:`kl_divergence`), which is what
:class:`~pyro.infer.TraceMeanField_ELBO` computes from the sites; see ``docs/objective.md``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from pyro import poutine
from torch import Tensor

from ..variational.latent_statistics import whitened_prior


def _normal_event(mean: Tensor, variance: Tensor, event_dims: int) -> dist.TorchDistribution:
    """Diagonal Gaussian over the trailing ``event_dims`` dims (leading ones, e.g. vectorised particles, batch)."""
    return dist.Normal(mean, variance.sqrt()).to_event(event_dims)


class _GPLatentPrior(torch.nn.Module):
    """Holds the latent GP and an optional map from auxiliary data to GP inputs (e.g. GP-LVM look-ups)."""

    def __init__(self, gp, input_map: torch.nn.Module | None = None):
        super().__init__()
        self.gp = gp
        self.input_map = input_map

    def gp_inputs(self, x: Tensor) -> Tensor:
        """The GP inputs for auxiliary data ``x`` (``input_map(x)``, or ``x`` itself)."""
        return x if self.input_map is None else self.input_map(x)


class SparseLatentPrior(_GPLatentPrior):
    r"""SVGP-VAE latent prior over an :class:`~gpytorch.models.ApproximateGP` whose strategy is
    :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`.

    Model: :math:`\mathbf v \sim \mathcal N(\mathbf 0,\mathbf I)` (scaled by :math:`b/N`), :math:`z_i\mid\mathbf v
    \sim p(f(\mathbf x_i)\mid\mathbf v)`. Guide: :math:`\mathbf v\sim q_S(\mathbf v)` (Eq. 9, whitened, scaled by
    :math:`b/N`), the same conditional for :math:`z_i`. The ELBO is
    :math:`\sum_i\mathbb E_{q_S}[\log p(\mathbf y_i\mid\mathbf z_i)] - \frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|
    \,p^l(\mathbf u))`, the expectation of Eq. 10.

    :param gp: the latent GP (e.g. :class:`~gpytorch_vae.models.SparseLatentGP`).
    :param input_map: optional module mapping auxiliary data to GP inputs (e.g.
        :class:`~gpytorch_vae.kernels.ObjectViewInputs`); its parameters are learned with the rest.
    """

    @property
    def strategy(self):
        return self.gp.variational_strategy

    def _scale(self, batch_size: int, num_data: int | None) -> float:
        return 1.0 if num_data is None else batch_size / num_data

    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        self.strategy.set_latent_data(self.gp_inputs(x), mean, var, num_data)
        q_v, terms = self.strategy._whitened_posterior()
        with poutine.scale(scale=self._scale(mean.size(-1), num_data)):
            v = pyro.sample("inducing_values", q_v.to_event(len(q_v.batch_shape)))
        return pyro.sample("z", _normal_event(*terms.marginals(v, None), mean.dim()))

    def model(self, x: Tensor, batch_shape: torch.Size, num_data: int | None = None) -> Tensor:
        like = self.strategy.inducing_points
        terms = self.strategy._prior_terms(self.gp_inputs(x).to(like))
        gp_shape = torch.Size(batch_shape[:-1])
        p_v = whitened_prior(gp_shape, terms.chol.size(-1), like)
        with poutine.scale(scale=self._scale(batch_shape[-1], num_data)):
            v = pyro.sample("inducing_values", p_v.to_event(len(gp_shape)))
        return pyro.sample("z", _normal_event(*terms.marginals(v, None), len(batch_shape)))

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        r"""Mean of :math:`q_S(\mathbf z)` at ``x`` given the whole latent dataset (:math:`b = N`)."""
        self.strategy.set_latent_data(self.gp_inputs(x), mean, var)
        q_white, terms = self.strategy._whitened_posterior()
        return terms.marginals(q_white.loc, None)[0]

    def predict(self, x_new: Tensor) -> tuple[Tensor, Tensor]:
        r"""Marginal means and variances of :math:`q_S(\mathbf z(\mathbf x_{new}))` (Eq. 3), each ``(*batch, r)``,
        given the latent data or statistics last set (e.g. by :meth:`GPVAE.condition_on_data`)."""
        was_training = self.gp.training
        self.gp.eval()
        try:
            q_f = self.gp(self.gp_inputs(x_new).to(self.strategy.inducing_points))
            return q_f.mean, q_f.variance
        finally:
            self.gp.train(was_training)

    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        r""":math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|\,p^l(\mathbf u))` summed over all GPs."""
        self.strategy.set_latent_data(self.gp_inputs(x), mean, var, num_data)
        return self._scale(mean.size(-1), num_data) * self.strategy.kl_divergence().sum()


class ExactLatentPrior(_GPLatentPrior):
    r"""Pearce's GP-VAE latent prior over an :class:`~gpytorch_vae.models.ExactLatentGP`.

    Model :math:`\mathbf z\sim p(\mathbf z) = \mathcal N(\mathbf m, \mathbf K_{XX})`, guide :math:`\mathbf z\sim
    q(\mathbf z)` (exact posterior of the latent dataset). Eq. 2 equals :math:`\mathbb E_q[\log p(\mathbf Y\mid
    \mathbf Z)] - \mathrm{KL}(q\,\|\,p)` exactly, because :math:`\log q = \log\tilde q + \log p - \log Z`.

    :param gp: the :class:`~gpytorch_vae.models.ExactLatentGP`.
    :param input_map: optional module mapping auxiliary data to GP inputs.
    """

    @staticmethod
    def _as_pyro(mvn) -> dist.MultivariateNormal:
        base = dist.MultivariateNormal(mvn.mean, scale_tril=psd_safe_cholesky(mvn.covariance_matrix))
        return base.to_event(len(base.batch_shape))

    def _posterior(self, x: Tensor, mean: Tensor, var: Tensor):
        like = next(self.gp.parameters())
        self.gp.set_latent_data(self.gp_inputs(x).to(like), mean.to(like), var.to(like))
        return self.gp.posterior()

    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        return pyro.sample("z", self._as_pyro(self._posterior(x, mean, var)))

    def model(self, x: Tensor, batch_shape: torch.Size, num_data: int | None = None) -> Tensor:
        like = next(self.gp.parameters())
        prior = self.gp.forward(self.gp_inputs(x).to(like))
        prior = prior.expand(torch.Size(batch_shape[:-1])) if prior.batch_shape != batch_shape[:-1] else prior
        return pyro.sample("z", self._as_pyro(prior))

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Mean of the exact posterior :math:`q(\\mathbf z)` at ``x``."""
        return self._posterior(x, mean, var).mean

    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        r""":math:`\sum_l \mathrm{KL}(q^l(\mathbf z)\,\|\,p^l(\mathbf z))`."""
        q = self._posterior(x, mean, var)
        return torch.distributions.kl_divergence(self._as_pyro(q), self._as_pyro(self.gp.prior()))


class IndependentLatentPrior(torch.nn.Module):
    r"""The plain VAE: :math:`p(\mathbf z_i) = \mathcal N(\mathbf 0, \mathbf I)`, guide
    :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`; the auxiliary inputs are ignored."""

    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        return pyro.sample("z", _normal_event(mean, var, mean.dim()))

    def model(self, x: Tensor, batch_shape: torch.Size, num_data: int | None = None) -> Tensor:
        zeros = torch.zeros(batch_shape, dtype=x.dtype, device=x.device)
        return pyro.sample("z", _normal_event(zeros, torch.ones_like(zeros), zeros.dim()))

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """The encoder means."""
        return mean

    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        return 0.5 * (var + mean.square() - 1.0 - var.log()).sum()
