"""Pearce's (2020) GP-VAE latent prior: the exact GP posterior of each batch's latent dataset."""

from __future__ import annotations

import math

import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.utils.cholesky import psd_safe_cholesky
from pyro import distributions as dist
from torch import Tensor

from ..gps.exact_latent_gp import ExactGPPosterior
from ..variational.latent_data import check_inputs, check_latent_data, check_num_data
from ..variational.noise import StandardNormalNoise
from .base import (
    LatentPosterior,
    LatentPrior,
    marginal_distribution,
    unobserved_as_noise,
)


def as_pyro(mvn: MultivariateNormal) -> dist.MultivariateNormal:
    """A GPyTorch :class:`~gpytorch.distributions.MultivariateNormal` as a Pyro one over one event (its batch too),
    through a (jitter-safe) Cholesky factor."""
    base = dist.MultivariateNormal(mvn.mean, scale_tril=psd_safe_cholesky(mvn.covariance_matrix))
    return base.to_event(len(base.batch_shape))


class ExactLatentPosterior(LatentPosterior):
    r""":math:`\mathbf z\sim q(\mathbf z)`, the exact GP posterior of the latent dataset (jointly over the points of
    each data set); KL part :math:`\sum_l\mathrm{KL}(q^l(\mathbf z)\,\|\,p^l(\mathbf z))`.

    The KL is computed from the identity :math:`\log q = \log\tilde q + \log p - \log Z` (the class docstring of
    :class:`ExactLatentPrior`): :math:`\mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log\tilde q(\mathbf z)] - \log Z`, whose
    terms need only :math:`\mathbf C = \mathbf K_{XX} + \mathrm{diag}(\tilde{\boldsymbol\sigma}^2)`, well conditioned
    by the encoder variances, and never a factor of the noise-free :math:`\mathbf K_{XX}` (which a smooth kernel
    makes nearly singular: its jittered Cholesky factor made the KL jump by orders of magnitude in single steps).

    :param posterior: the :class:`~gpytorch_vae.gps.ExactGPPosterior` of the batch.
    :param gp_inputs: maps auxiliary inputs to GP inputs (for :meth:`predict`).
    """

    def __init__(self, posterior: ExactGPPosterior, gp_inputs, input_dim: int | None = None):
        self.posterior = posterior
        self.gp_inputs = gp_inputs
        self.input_dim = input_dim
        self.q = as_pyro(posterior.at_data)

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """A joint draw per data set (whole data sets are never split over ranks, so ``noise`` is not used)."""
        return self.q.rsample(torch.Size(sample_shape))

    @property
    def mean(self) -> Tensor:
        return self.posterior.at_data.mean

    @property
    def shape(self) -> torch.Size:
        return self.posterior.y.shape

    def kl_divergence(self) -> Tensor:
        r""":math:`\sum\big(\mathbb E_q[\log\tilde q(\mathbf z)] - \log Z\big)` over channels and data sets, with
        :math:`\mathbb E_q[\log\tilde q] = \sum_i\log\mathcal N(\tilde y_i\mid\mu_i, \tilde\sigma_i^2) -
        v_i / (2\tilde\sigma_i^2)` (:math:`\mu_i, v_i`: the marginals of :math:`q`)."""
        posterior, q = self.posterior, self.posterior.at_data
        y, noise = posterior.y, posterior.noise
        expected = -0.5 * ((2 * math.pi * noise).log() + ((y - q.mean).square() + q.variance) / noise)
        return (expected.sum(-1) - posterior.log_marginal_likelihood()).sum()

    def predict(self, x: Tensor) -> MultivariateNormal:
        check_inputs(x, self.input_dim, self.shape[:-1])
        q_f = self.posterior.predict(self.gp_inputs(x))
        return marginal_distribution(q_f.mean, q_f.variance)


class ExactLatentPrior(LatentPrior):
    r"""Pearce's GP-VAE latent prior over an :class:`~gpytorch_vae.gps.ExactLatentGP`.

    Prior :math:`\mathbf z\sim p(\mathbf z) = \mathcal N(\mathbf m, \mathbf K_{XX})`, posterior :math:`\mathbf z\sim
    q(\mathbf z)` (exact posterior of the latent dataset). Eq. 2 equals :math:`\mathbb E_q[\log p(\mathbf Y\mid
    \mathbf Z)] - \mathrm{KL}(q\,\|\,p)` exactly, because :math:`\log q = \log\tilde q + \log p - \log Z`. Every
    batch must be a whole data set (e.g. one video per GP).

    :param gp: the :class:`~gpytorch_vae.gps.ExactLatentGP`.
    :param input_map: optional module mapping auxiliary data to GP inputs.
    """

    def __init__(self, gp, input_map: torch.nn.Module | None = None):
        super().__init__(input_map)
        self.gp = gp

    def gp_inputs(self, x: Tensor) -> Tensor:
        like = next(self.gp.parameters(), None)
        inputs = super().gp_inputs(x)
        return inputs if like is None else inputs.to(like)

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None,
                  observed: Tensor | None = None) -> ExactLatentPosterior:  # fmt: skip
        """Points where ``observed`` is false get the variance :data:`~gpytorch_vae.priors.base.UNOBSERVED_VARIANCE`
        (no data, to float64 rounding: GPyTorch's exact prediction takes finite noise)."""
        check_latent_data(x, mean, var, observed)
        check_num_data(num_data, mean.size(-1))
        mean, var = unobserved_as_noise(mean, var, observed)
        posterior = self.gp.condition(self.gp_inputs(x), mean, var, num_data, checked=True)
        return ExactLatentPosterior(posterior, self.gp_inputs, x.size(-1) if self.input_map is None else None)
