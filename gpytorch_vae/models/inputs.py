"""Inputs of the latent prior computed from the auxiliary data and the observations (e.g. a representation
network): an ordinary part of a :class:`~gpytorch_vae.models.GPVAE`, in training and at test time."""

from __future__ import annotations

import abc
from typing import Callable, Iterable

import torch
from gpytorch.distributions import MultivariateNormal
from torch import Tensor

from ..priors.base import LatentPosterior
from ..variational.noise import StandardNormalNoise


class ObservationInputs(torch.nn.Module, abc.ABC):
    r"""Maps a batch's auxiliary data ``x`` ``(*batch, b, D)`` *and* observations ``y`` ``(*batch, b, *obs)`` to
    the latent prior's inputs ``(*batch, b, D')`` (:meth:`forward`, in training). At test time the observations of
    new points are not known: :meth:`condition_on_observations` reads context ``(x, y)`` batches once and returns the map of new
    auxiliary data alone (e.g. an object's vector from its context observations). :meth:`GPVAE.condition_on_observations
    <gpytorch_vae.models.GPVAE.condition_on_observations>` uses both, so
    ``vae.condition_on_observations(context).predict(x_new)`` works as for any
    other model."""

    @abc.abstractmethod
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """The prior's inputs of a batch whose observations are known."""

    @abc.abstractmethod
    def condition_on_observations(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Callable[[Tensor], Tensor]:
        """From context ``(x, y)`` batches, the map of auxiliary data (context or new) to the prior's inputs."""


class PosteriorWithInputs(LatentPosterior):
    """A latent posterior whose :meth:`predict` first maps new auxiliary data through ``inputs_of`` (what an
    :class:`ObservationInputs` made of the context); everything else is the wrapped posterior's."""

    def __init__(self, posterior: LatentPosterior, inputs_of: Callable[[Tensor], Tensor]):
        self.posterior, self.inputs_of = posterior, inputs_of

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        return self.posterior.rsample(sample_shape, noise)

    @property
    def mean(self) -> Tensor:
        return self.posterior.mean

    @property
    def shape(self) -> torch.Size:
        return self.posterior.shape

    def kl_divergence(self) -> Tensor:
        return self.posterior.kl_divergence()

    def predict(self, x: Tensor) -> MultivariateNormal:
        return self.posterior.predict(self.inputs_of(x))
