"""Pearce's (2020) GP-VAE latent prior: the exact GP posterior of each batch's latent dataset."""

from __future__ import annotations

import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.utils.cholesky import psd_safe_cholesky
from pyro import distributions as dist
from torch import Tensor

from ..gps.exact_latent_gp import ExactGPPosterior
from .base import LatentPosterior, LatentPrior, Site, marginal_distribution, pyro_site


def as_pyro(mvn: MultivariateNormal) -> dist.MultivariateNormal:
    """A GPyTorch :class:`~gpytorch.distributions.MultivariateNormal` as a Pyro one over one event (its batch too),
    through a (jitter-safe) Cholesky factor."""
    base = dist.MultivariateNormal(mvn.mean, scale_tril=psd_safe_cholesky(mvn.covariance_matrix))
    return base.to_event(len(base.batch_shape))


class ExactLatentPosterior(LatentPosterior):
    r"""Site ``z`` :math:`\sim q(\mathbf z)`, the exact GP posterior of the latent dataset (one event over all
    channels and points); KL part :math:`\sum_l\mathrm{KL}(q^l(\mathbf z)\,\|\,p^l(\mathbf z))`.

    :param posterior: the :class:`~gpytorch_vae.gps.ExactGPPosterior` of the batch.
    :param gp_inputs: maps auxiliary inputs to GP inputs (for :meth:`predict`).
    """

    def __init__(self, posterior: ExactGPPosterior, gp_inputs):
        self.posterior = posterior
        self.gp_inputs = gp_inputs
        self.q = as_pyro(posterior.at_data)

    def draw(self, site: Site) -> Tensor:
        return site("z", self.q, 1.0)

    @property
    def mean(self) -> Tensor:
        return self.posterior.at_data.mean

    def kl_divergence(self) -> Tensor:
        return torch.distributions.kl_divergence(self.q, as_pyro(self.posterior.prior))

    def predict(self, x: Tensor) -> MultivariateNormal:
        q_f = self.posterior.predict(self.gp_inputs(x))
        return marginal_distribution(q_f.mean, q_f.variance)


class ExactLatentPrior(LatentPrior):
    r"""Pearce's GP-VAE latent prior over an :class:`~gpytorch_vae.gps.ExactLatentGP`.

    Model :math:`\mathbf z\sim p(\mathbf z) = \mathcal N(\mathbf m, \mathbf K_{XX})`, guide :math:`\mathbf z\sim
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

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> ExactLatentPosterior:
        return ExactLatentPosterior(self.gp.condition(self.gp_inputs(x), mean, var, num_data), self.gp_inputs)

    def model(self, x: Tensor, latent_shape: torch.Size, num_data: int | None = None) -> Tensor:
        posterior = self.posterior_from_guide(x)
        if posterior is not None:
            prior = posterior.posterior.prior
        else:
            prior = self.gp.forward(self.gp_inputs(x))
            if prior.batch_shape != latent_shape[:-1]:
                prior = prior.expand(torch.Size(latent_shape[:-1]))
        return pyro_site("z", as_pyro(prior))
