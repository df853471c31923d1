r"""Observation likelihoods :math:`p(\mathbf y_i\mid\mathbf z_i)`: what the decoder's output parameterises.

A likelihood turns the decoder's output for a batch, ``(*batch, b, *obs)``, into a distribution over the
observations of the same shape, and gives the reconstruction term of the ELBO, :math:`\sum_i\log p(\mathbf y_i\mid
\mathbf z_i)`, optionally under an observation mask (entries where the mask is false are missing: they add nothing).
They are :class:`gpytorch.Module` s, so their parameters (e.g. a learned noise) train with the model and GPyTorch
priors registered on them enter the objective (:class:`~gpytorch_vae.objectives.ELBO`).

* :class:`BernoulliLikelihood`: the decoder gives logits (binary or [0, 1] data);
* :class:`GaussianLikelihood`: the decoder gives means; the noise variance is fixed or learned, shared or one per
  channel (``noise_shape``);
* :class:`DistributionLikelihood`: any callable that maps the decoder's output to a
  :class:`torch.distributions.Distribution` (or a Pyro one) over the observations.
"""

from __future__ import annotations

import math
from typing import Callable

import gpytorch
import pyro.distributions as dist
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.priors import Prior
from torch import Tensor
from torch.distributions import Distribution


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


class ObservationLikelihood(gpytorch.Module):
    r"""Base class: :meth:`forward` maps the decoder's output to a distribution whose ``batch_shape + event_shape``
    is the shape of the observations. Subclasses implement :meth:`forward`; everything else follows."""

    def forward(self, output: Tensor) -> Distribution:  # pragma: no cover - abstract
        """The distribution of the observations given the decoder's ``output``."""
        raise NotImplementedError

    def __call__(self, output: Tensor) -> Distribution:
        return self.forward(output)

    def check(self, output: Tensor, y: Tensor) -> Distribution:
        """The distribution for ``output``, checked against observations ``y`` of shape ``(*batch, b, *obs)``: a clear
        error names both shapes when the decoder's output does not describe observations of ``y``'s shape."""
        distribution = self(output)
        shape = distribution.batch_shape + distribution.event_shape
        if shape != y.shape:
            raise ValueError(
                f"the decoder's output {_shape(output)} gives a {type(self).__name__} over {tuple(shape)}, but the "
                f"observations have shape {_shape(y)}: the decoder must output one value per observed entry "
                f"(*batch, b, *obs)"
            )
        return distribution

    def total_log_prob(self, output: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        r""":math:`\sum_i\log p(\mathbf y_i\mid\mathbf z_i)` of the whole batch (a scalar), over the observed entries
        when ``mask`` is given: the reconstruction term of the ELBO."""
        return self._log_density(output, y, mask).sum()

    def _log_density(self, output: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        distribution = self.check(output, y)
        log_density = distribution.log_prob(y)  # y.shape without the distribution's event dims
        if mask is not None:
            mask = _as_mask(mask, y)
            event_dims = len(distribution.event_shape)
            entry_mask = mask.flatten(mask.dim() - event_dims).all(-1) if event_dims else mask
            log_density = torch.where(entry_mask, log_density, torch.zeros_like(log_density))
        return log_density

    def log_prob(self, output: Tensor, y: Tensor, observation_dims: int, mask: Tensor | None = None) -> Tensor:
        r""":math:`\log p(\mathbf y_i\mid\mathbf z_i)` of each observation, ``(*batch, b)``: the log densities of
        ``y`` summed over its ``observation_dims`` trailing dimensions, over the observed entries only when ``mask``
        (boolean, broadcastable to ``y``; true where observed) is given. A mask needs a distribution whose entries
        are independent (its event dimensions, if any, are masked as a whole)."""
        log_density = self._log_density(output, y, mask)
        summed = observation_dims - (y.dim() - log_density.dim())
        return log_density.sum(tuple(range(-summed, 0))) if summed > 0 else log_density

    def mean(self, output: Tensor) -> Tensor:
        """The mean of the observations given the decoder's ``output`` (e.g. probabilities for logits): what a
        reconstruction or a generated image shows."""
        return self(output).mean

    def pyro_distribution(self, output: Tensor, observation_dims: int, mask: Tensor | None = None):
        """The distribution of one batch as a Pyro distribution with the observation dimensions as its event (the
        points and leading dimensions stay batch dimensions, for :func:`pyro.plate`), masked per entry."""
        base = self(output)
        extra = observation_dims - len(base.event_shape)
        if mask is not None:
            mask = mask.expand(*base.batch_shape) if mask.dim() == len(base.batch_shape) else mask
            return dist.MaskedDistribution(base, mask).to_event(extra)
        return dist.Independent(base, extra) if extra else base


def _as_mask(mask: Tensor, y: Tensor) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True where observed), got {getattr(mask, 'dtype', mask)}")
    try:
        return mask.expand_as(y)
    except RuntimeError:
        raise ValueError(f"mask {_shape(mask)} does not broadcast to the observations {_shape(y)}") from None


class BernoulliLikelihood(ObservationLikelihood):
    r""":math:`y \sim \mathrm{Bernoulli}(\sigma(\text{output}))` per entry: the decoder gives logits."""

    def forward(self, output: Tensor) -> Distribution:
        return dist.Bernoulli(logits=output, validate_args=False)  # [0, 1]-valued targets are allowed

    def mean(self, output: Tensor) -> Tensor:
        r""":math:`\sigma(\text{output})`, the Bernoulli's mean (as its ``mean``, without building it)."""
        return torch.sigmoid(output)


class GaussianLikelihood(ObservationLikelihood):
    r""":math:`y \sim \mathcal N(\text{output}, \sigma^2)` per entry: the decoder gives means.

    :param noise: :math:`\sigma^2`, the initial (or fixed) noise variance.
    :param learn_noise: whether :math:`\sigma^2` is learned (a parameter constrained above ``min_noise``).
    :param noise_shape: the shape of :math:`\sigma^2`, broadcast against the trailing dimensions of one observation:
        ``()`` (default) one variance for everything, e.g. ``(3, 1, 1)`` one per channel of ``(3, H, W)`` images or
        ``(3,)`` of channels-last images ``(H, W, 3)``.
    :param noise_prior: optional GPyTorch prior on :math:`\sigma^2` (it enters the objective).
    :param min_noise: lower bound of a learned :math:`\sigma^2` (GPyTorch's ``GreaterThan`` constraint).
    """

    def __init__(
        self,
        noise: float = 1.0,
        learn_noise: bool = False,
        noise_shape: tuple[int, ...] = (),
        noise_prior: Prior | None = None,
        min_noise: float = 1e-6,
    ):
        super().__init__()
        if not (math.isfinite(noise) and noise > 0):
            raise ValueError(f"noise must be a positive finite variance, got {noise}")
        if learn_noise and noise <= min_noise:
            raise ValueError(f"noise ({noise}) must be above min_noise ({min_noise}) when it is learned")
        self.learn_noise = bool(learn_noise)
        initial = torch.full(tuple(noise_shape), float(noise), dtype=torch.float64)
        if self.learn_noise:
            self.register_parameter("raw_noise", torch.nn.Parameter(torch.zeros_like(initial)))
            self.register_constraint("raw_noise", GreaterThan(min_noise))
            self.noise = initial
            if noise_prior is not None:
                self.register_prior("noise_prior", noise_prior, lambda m: m.noise, lambda m, v: m._set_noise(v))
        else:
            if noise_prior is not None:
                raise ValueError("a noise_prior needs learn_noise=True (a fixed noise has no prior to enter)")
            self.register_buffer("fixed_noise", initial)
        self._fixed_scale: tuple | None = None  # (key, sigma in the decoder's dtype): see scale

    @property
    def noise(self) -> Tensor:
        r""":math:`\sigma^2` (float64 when fixed)."""
        if self.learn_noise:
            return self.raw_noise_constraint.transform(self.raw_noise)
        return self.fixed_noise

    @noise.setter
    def noise(self, value) -> None:
        self._set_noise(value)

    def _set_noise(self, value) -> None:
        value = torch.as_tensor(value, dtype=self.noise_dtype)
        if self.learn_noise:
            self.initialize(raw_noise=self.raw_noise_constraint.inverse_transform(value.expand_as(self.raw_noise)))
        else:
            self.fixed_noise.copy_(value.expand_as(self.fixed_noise))

    @property
    def noise_dtype(self) -> torch.dtype:
        return (self.raw_noise if self.learn_noise else self.fixed_noise).dtype

    def scale(self, like: Tensor) -> Tensor:
        r""":math:`\sigma` in the dtype and on the device of ``like`` (the decoder's output). A fixed noise is kept
        in float64 and cast once, until it or the dtype changes, not at every call; a learned one is cast at each
        call (its parameter trains in float64)."""
        if self.learn_noise:
            scale = self.noise.sqrt()
            return scale if scale.dtype == like.dtype and scale.device == like.device else scale.to(like)
        noise = self.fixed_noise
        key = (like.dtype, like.device, noise.data_ptr(), noise._version)
        if self._fixed_scale is None or self._fixed_scale[0] != key:
            self._fixed_scale = (key, noise.sqrt().to(like))
        return self._fixed_scale[1]

    def forward(self, output: Tensor) -> Distribution:
        return dist.Normal(output, self.scale(output), validate_args=False)

    def mean(self, output: Tensor) -> Tensor:
        """``output`` itself, the Gaussian's mean (as its ``mean``, without building it)."""
        return output


class DistributionLikelihood(ObservationLikelihood):
    r"""Any distribution: ``fn(output)`` returns a :class:`torch.distributions.Distribution` (or a Pyro one) whose
    ``batch_shape + event_shape`` is the observations' shape, e.g. ``lambda out: torch.distributions.Laplace(out,
    0.1)`` or a Student-t. Learned parameters of the distribution belong in a module passed as ``fn``.

    :param fn: the map from decoder output to distribution (a module is registered, so its parameters train).
    """

    def __init__(self, fn: Callable[[Tensor], Distribution]):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable (decoder output -> distribution), got {type(fn).__name__}")
        self.fn = fn

    def forward(self, output: Tensor) -> Distribution:
        distribution = self.fn(output)
        if not isinstance(distribution, Distribution):
            raise TypeError(f"the likelihood's fn returned {type(distribution).__name__}, not a torch Distribution")
        return distribution
