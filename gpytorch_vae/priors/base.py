r"""The interface every latent prior implements: condition on a latent dataset, get a posterior, sample, predict.

A *latent dataset* is what the encoder makes of a batch: auxiliary inputs ``x`` ``(*batch, b, D)``, means ``mean``
and variances ``var`` ``(*batch, L, b)`` of :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`. A :class:`LatentPrior`
turns it into a :class:`LatentPosterior` (:meth:`LatentPrior.condition`), which

* draws latent codes at the batch inputs (:meth:`LatentPosterior.rsample`, reparameterised);
* gives the analytic KL part of the ELBO of the batch (:meth:`LatentPosterior.kl_divergence`);
* predicts latent marginals at new auxiliary inputs (:meth:`LatentPosterior.predict`), the test-time interface
  shared by every prior and baseline: condition on context, predict at new inputs.

Every objective (:mod:`gpytorch_vae.objectives`) and the Pyro model/guide of :class:`~gpytorch_vae.models.GPVAE`
use these three calls and nothing else, so there is one computation of the objective.
"""

from __future__ import annotations

import abc
from typing import Iterable

import pyro
import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from pyro.distributions import TorchDistribution
from torch import Tensor

from ..variational.noise import STANDARD_NORMAL, StandardNormalNoise


def marginal_distribution(mean: Tensor, variance: Tensor) -> MultivariateNormal:
    """Independent marginals as a GPyTorch :class:`~gpytorch.distributions.MultivariateNormal` (diagonal
    covariance), the form GPyTorch's strategies use for marginal predictions."""
    return MultivariateNormal(mean, DiagLinearOperator(variance))


class LatentPosterior(abc.ABC):
    """The posterior of a latent prior given one latent dataset (see the module docstring). It holds what it was
    computed from and is valid for the parameters it was computed with."""

    @abc.abstractmethod
    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """A reparameterised draw of the latent codes ``(*sample_shape, *batch, L, b)`` at the conditioning inputs.
        ``noise`` is where the per-point noise comes from (:mod:`gpytorch_vae.variational.noise`; default: torch's
        global generator)."""

    @property
    @abc.abstractmethod
    def mean(self) -> Tensor:
        """Posterior means ``(*batch, L, b)`` of the latent codes at the conditioning inputs."""

    @property
    def shape(self) -> torch.Size:
        """The shape ``(*batch, L, b)`` of the latent codes at the conditioning inputs."""
        return self.mean.shape

    @abc.abstractmethod
    def kl_divergence(self) -> Tensor:
        r"""The analytic KL part of the ELBO of this batch (a scalar), e.g. :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(
        \mathbf u)\,\|\,p^l(\mathbf u))` for the sparse prior."""

    @property
    def kl_shared(self) -> bool:
        """Whether :meth:`kl_divergence` belongs to the union batch of several ranks (the same on every rank) rather
        than to this batch alone."""
        return False

    @abc.abstractmethod
    def predict(self, x: Tensor) -> MultivariateNormal:
        r"""Marginals of the latent codes at new auxiliary inputs ``x`` ``(*batch, r, D)``: a
        :class:`~gpytorch.distributions.MultivariateNormal` with batch ``(*batch, L)``, event ``r`` and diagonal
        covariance."""


class LatentPrior(torch.nn.Module, abc.ABC):
    """A prior over latent codes indexed by auxiliary inputs, given to :class:`~gpytorch_vae.models.GPVAE`.

    Subclasses implement :meth:`condition` (calling :func:`~gpytorch_vae.variational.check_latent_data` first); :meth:`condition_on_batches`
    and :meth:`kl_divergence` follow.

    :param input_map: optional module mapping auxiliary data to GP inputs (e.g. GP-LVM look-ups,
        :class:`~gpytorch_vae.kernels.ObjectViewInputs`); its parameters are learned with the rest.
    """

    def __init__(self, input_map: torch.nn.Module | None = None):
        super().__init__()
        self.input_map = input_map

    def gp_inputs(self, x: Tensor) -> Tensor:
        """The GP inputs for auxiliary data ``x`` (``input_map(x)``, or ``x`` itself)."""
        return x if self.input_map is None else self.input_map(x)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype of the prior's floating parameters and buffers (``None`` for a prior without any): latent data
        are cast to it when conditioned on."""
        for t in (*self.parameters(), *self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None

    @abc.abstractmethod
    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None,
                  observed: Tensor | None = None) -> LatentPosterior:  # fmt: skip
        r"""The posterior given the latent dataset ``(x, mean, var)``, a minibatch of ``num_data`` points
        (``None``: the batch is the whole data set). ``observed``: an optional boolean mask broadcastable to
        ``mean`` ``(*batch, L, b)``; a point where it is false carries no data (an observation with nothing
        observed): its latent code comes from the prior and its neighbours alone."""

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, ...]]) -> LatentPosterior:
        """The posterior given all of ``(x, mean, var)`` (or ``(x, mean, var, observed)``) batches (test time:
        :math:`b = N`). This default concatenates them; priors with sufficient statistics accumulate in bounded
        memory instead."""
        parts = list(batches)
        if not parts:
            raise ValueError("no batches to condition on: the iterable of (x, mean, var) batches was empty")
        xs, means, variances = (torch.cat(t, dim=-2 if i == 0 else -1) for i, t in enumerate(list(zip(*parts))[:3]))
        observed = None
        masks = [part[3] if len(part) > 3 else None for part in parts]
        if any(mask is not None for mask in masks):
            every = [torch.ones_like(p[1], dtype=torch.bool) if m is None else m.expand_as(p[1])
                     for p, m in zip(parts, masks)]  # fmt: skip
            observed = torch.cat(every, dim=-1)
        return self.condition(xs, means, variances, None, observed)

    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        """:meth:`LatentPosterior.kl_divergence` of the posterior given the latent dataset."""
        return self.condition(x, mean, var, num_data).kl_divergence()

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Posterior means ``(*batch, L, b)`` of the latent codes at ``x`` given the whole latent dataset."""
        return self.condition(x, mean, var).mean


# ---------------------------------------------------------------------- Pyro sites
class PosteriorSite(TorchDistribution):
    r"""The guide's sample site ``z`` of a GP-VAE: draws from a :class:`LatentPosterior` (reparameterised), and as
    its "log density" carries the ELBO's analytic KL part (:meth:`LatentPosterior.kl_divergence`), whatever the
    value. With the model's flat site ``z`` (:func:`flat_latent_site`, log density 0) every Pyro ELBO
    (:class:`~pyro.infer.Trace_ELBO`, :class:`~pyro.infer.TraceMeanField_ELBO`, vectorised particles) computes
    :math:`\mathbb E_q[\log p(\mathbf y\mid\mathbf z)] - \mathrm{KL}`: the objective of
    :class:`~gpytorch_vae.objectives.ELBO`, from the same three calls. (The prior's density is inside the KL term;
    it is not evaluated separately, as it cannot be for the sparse prior, whose KL is that of the inducing values.)

    :param posterior: the latent posterior of the batch.
    :param noise: where its per-point noise comes from (default: torch's generator).
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, posterior: LatentPosterior, noise: StandardNormalNoise | None = None,
                 batch_shape: torch.Size = torch.Size()):  # fmt: skip
        self.posterior, self.noise = posterior, noise
        super().__init__(batch_shape=torch.Size(batch_shape), event_shape=posterior.shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> PosteriorSite:
        return PosteriorSite(self.posterior, self.noise, torch.Size(batch_shape))

    @property
    def support(self):
        return pyro.distributions.constraints.independent(pyro.distributions.constraints.real, len(self.event_shape))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self.posterior.rsample(torch.Size(sample_shape) + self.batch_shape, self.noise)

    def log_prob(self, value: Tensor) -> Tensor:
        kl = self.posterior.kl_divergence()
        return kl.expand(value.shape[: value.dim() - len(self.event_shape)])


def flat_latent_site(latent_shape: torch.Size) -> TorchDistribution:
    """The model's sample site ``z`` of a GP-VAE: flat (:class:`~pyro.distributions.ImproperUniform`, log density 0)
    over codes of ``latent_shape``; the prior enters through the guide's :class:`PosteriorSite`."""
    return pyro.distributions.ImproperUniform(pyro.distributions.constraints.real, torch.Size(), latent_shape)


def noise_or_default(noise: StandardNormalNoise | None) -> StandardNormalNoise:
    return STANDARD_NORMAL if noise is None else noise


#: the variance given to points without data where a prior needs a finite one (the exact GP-VAE): their precision is
#: below 1e-10 of any encoder variance's, so they change the posterior and the KL by less than float64 rounding
UNOBSERVED_VARIANCE = 1e10


def unobserved_as_noise(mean: Tensor, var: Tensor, observed: Tensor | None) -> tuple[Tensor, Tensor]:
    """The latent data with the points without data set to mean 0 and variance :data:`UNOBSERVED_VARIANCE`."""
    if observed is None:
        return mean, var
    observed = observed.expand_as(mean)
    return torch.where(observed, mean, 0.0), torch.where(observed, var, UNOBSERVED_VARIANCE)
