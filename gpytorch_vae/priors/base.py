r"""The interface every latent prior implements: condition on a latent dataset, get a posterior, predict.

A *latent dataset* is what the encoder makes of a batch: auxiliary inputs ``x`` ``(*batch, b, D)``, means ``mean``
and variances ``var`` ``(*batch, L, b)`` of :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`. A :class:`LatentPrior`
turns it into a :class:`LatentPosterior` (:meth:`LatentPrior.condition`), which

* draws latent codes at the batch inputs, site by site (:meth:`LatentPosterior.draw`): through Pyro in the guide,
  directly (:meth:`LatentPosterior.rsample`) in the direct ELBO, the same draws in the same order;
* gives the analytic KL part of the ELBO (:meth:`LatentPosterior.kl_divergence`), what
  :class:`~pyro.infer.TraceMeanField_ELBO` computes from the sites;
* predicts latent marginals at new auxiliary inputs (:meth:`LatentPosterior.predict`), the test-time interface
  shared by every prior and baseline: condition on context, predict at new inputs.

The prior's own Pyro sites (:meth:`LatentPrior.model`) sample the same site names from the prior.
"""

from __future__ import annotations

import abc
from typing import Callable, Iterable

import pyro
import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from pyro import poutine
from pyro.distributions import TorchDistribution
from torch import Tensor

#: ``site(name, distribution, scale) -> value``: how a posterior's or prior's sample sites are drawn.
Site = Callable[[str, TorchDistribution, float], Tensor]


def pyro_site(name: str, fn: TorchDistribution, scale: float = 1.0) -> Tensor:
    """A Pyro sample statement, its log density (and KL) scaled by ``scale``."""
    if scale == 1.0:
        return pyro.sample(name, fn)
    with poutine.scale(scale=scale):
        return pyro.sample(name, fn)


def rsample_site(name: str, fn: TorchDistribution, scale: float = 1.0) -> Tensor:
    """A reparameterised draw, as :func:`pyro.sample` makes it (the same random numbers in the same order)."""
    return fn.rsample()


def marginal_distribution(mean: Tensor, variance: Tensor) -> MultivariateNormal:
    """Independent marginals as a GPyTorch :class:`~gpytorch.distributions.MultivariateNormal` (diagonal
    covariance), the form GPyTorch's strategies use for marginal predictions."""
    return MultivariateNormal(mean, DiagLinearOperator(variance))


class LatentPosterior(abc.ABC):
    """The posterior of a latent prior given one latent dataset (see the module docstring). It holds what it was
    computed from and is valid for the parameters it was computed with."""

    @abc.abstractmethod
    def draw(self, site: Site) -> Tensor:
        """Latent codes ``(*batch, L, b)`` at the conditioning inputs, drawn site by site through ``site``."""

    def rsample(self) -> Tensor:
        """A reparameterised sample of the latent codes at the conditioning inputs (the guide's draws)."""
        return self.draw(rsample_site)

    @property
    @abc.abstractmethod
    def mean(self) -> Tensor:
        """Posterior means ``(*batch, L, b)`` of the latent codes at the conditioning inputs."""

    @abc.abstractmethod
    def kl_divergence(self) -> Tensor:
        r"""The analytic KL part of the ELBO of this batch: :math:`\sum_{\text{sites}}\text{scale}\cdot
        \mathrm{KL}(q\,\|\,p)`, a scalar."""

    @abc.abstractmethod
    def predict(self, x: Tensor) -> MultivariateNormal:
        r"""Marginals of the latent codes at new auxiliary inputs ``x`` ``(*batch, r, D)``: a
        :class:`~gpytorch.distributions.MultivariateNormal` with batch ``(*batch, L)``, event ``r`` and diagonal
        covariance."""


class LatentPrior(torch.nn.Module, abc.ABC):
    """A prior over latent codes indexed by auxiliary inputs, given to :class:`~gpytorch_vae.models.GPVAE`.

    Subclasses implement :meth:`condition` and :meth:`model`; :meth:`guide`, :meth:`kl_divergence`,
    :meth:`posterior_mean` and :meth:`condition_on_batches` follow. Within one Pyro step the model reuses the
    posterior the guide computed for the same inputs and parameters (:meth:`posterior_from_guide`), so that the
    prior terms are computed once.

    :param input_map: optional module mapping auxiliary data to GP inputs (e.g. GP-LVM look-ups,
        :class:`~gpytorch_vae.kernels.ObjectViewInputs`); its parameters are learned with the rest.
    """

    def __init__(self, input_map: torch.nn.Module | None = None):
        super().__init__()
        self.input_map = input_map
        self._guide_memo: tuple[Tensor, tuple[int, ...], LatentPosterior] | None = None

    def gp_inputs(self, x: Tensor) -> Tensor:
        """The GP inputs for auxiliary data ``x`` (``input_map(x)``, or ``x`` itself)."""
        return x if self.input_map is None else self.input_map(x)

    @abc.abstractmethod
    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> LatentPosterior:
        r"""The posterior given the latent dataset ``(x, mean, var)``, a minibatch of ``num_data`` points
        (default: the whole data set)."""

    @abc.abstractmethod
    def model(self, x: Tensor, latent_shape: torch.Size, num_data: int | None = None) -> Tensor:
        """The prior's Pyro sample sites at ``x``; returns latent codes of shape ``latent_shape`` ``(*batch, L, b)``."""

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]]) -> LatentPosterior:
        """The posterior given all of ``(x, mean, var)`` batches (test time: :math:`b = N`). This default
        concatenates them; priors with sufficient statistics accumulate in bounded memory instead."""
        parts = list(batches)
        if not parts:
            raise ValueError("no batches to condition on: the iterable of (x, mean, var) batches was empty")
        xs, means, variances = zip(*parts)
        return self.condition(torch.cat(xs, dim=-2), torch.cat(means, dim=-1), torch.cat(variances, dim=-1))

    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        """The posterior's Pyro sample sites; returns latent codes ``(*batch, L, b)``."""
        posterior = self.condition(x, mean, var, num_data)
        self._guide_memo = (x, self._parameter_versions(), posterior)
        return posterior.draw(pyro_site)

    def posterior_from_guide(self, x: Tensor) -> LatentPosterior | None:
        """The posterior the guide made for these very inputs ``x`` (the same tensor) with unchanged parameters,
        else ``None``; each one is handed out once (Pyro runs the guide, then the model, every step)."""
        memo, self._guide_memo = self._guide_memo, None
        if memo is None or memo[0] is not x or memo[1] != self._parameter_versions():
            return None
        return memo[2]

    def _parameter_versions(self) -> tuple[int, ...]:
        # PyTorch's version counter of each parameter (what autograd uses to detect in-place changes) moves with
        # every optimiser step, so a posterior of older parameters is never reused
        return tuple(p._version for p in self.parameters())

    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        """:meth:`LatentPosterior.kl_divergence` of the posterior given the latent dataset."""
        return self.condition(x, mean, var, num_data).kl_divergence()

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Posterior means ``(*batch, L, b)`` of the latent codes at ``x`` given the whole latent dataset."""
        return self.condition(x, mean, var).mean
