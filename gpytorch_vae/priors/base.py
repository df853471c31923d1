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
import math
import numbers
import warnings
from typing import Callable, Iterable

import pyro
import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from pyro import poutine
from pyro.distributions import TorchDistribution
from torch import Tensor

from ..settings import validate_values
from ..variational.noise import STANDARD_NORMAL, StandardNormalNoise

#: ``site(name, distribution, scale) -> value``: version 0.2's way of drawing sample sites (deprecated).
Site = Callable[[str, TorchDistribution, float], Tensor]


def marginal_distribution(mean: Tensor, variance: Tensor) -> MultivariateNormal:
    """Independent marginals as a GPyTorch :class:`~gpytorch.distributions.MultivariateNormal` (diagonal
    covariance), the form GPyTorch's strategies use for marginal predictions."""
    return MultivariateNormal(mean, DiagLinearOperator(variance))


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_num_data(num_data, num_points: int) -> int | None:
    """``num_data`` as an ``int`` (``None`` stays ``None``): a positive integer of at least the batch's
    ``num_points``, else a :class:`ValueError` saying what came."""
    if num_data is None:
        return None
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Real):
        raise TypeError(f"num_data must be an integer (the size N of the whole data set), got {num_data!r}")
    if not math.isfinite(num_data) or num_data != int(num_data):
        raise ValueError(f"num_data must be a whole number (the size N of the whole data set), got {num_data!r}")
    if int(num_data) < num_points:
        raise ValueError(f"num_data ({int(num_data)}) must be at least the batch size b = {num_points}")
    return int(num_data)


def check_inputs(x: Tensor, input_dim: int | None = None, name: str = "x") -> None:
    """Auxiliary inputs ``(..., r, D)``: a floating tensor with ``D == input_dim`` (when given) and finite values
    (checked as :class:`gpytorch_vae.settings.validate_values` says)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., n, D) (points in rows), got {_shape(x)}")
    if input_dim is not None and x.size(-1) != input_dim:
        raise ValueError(f"{name} must have D = {input_dim} columns (as in training), got {_shape(x)}")
    if validate_values.applies_to(x) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} {_shape(x)} holds NaN or inf values")


def check_latent_data(x: Tensor, mean: Tensor, var: Tensor, observed: Tensor | None = None) -> None:
    r"""The checks every prior's :meth:`~LatentPrior.condition` makes: ``x`` ``(*batch, b, D)``, ``mean`` and ``var``
    of one shape ``(*batch, L, b)`` whose leading dims broadcast with ``x``'s; finite means, finite positive variances
    (where ``observed``, a boolean mask broadcastable to ``mean``, is true). Values are checked as
    :class:`gpytorch_vae.settings.validate_values` says (CPU tensors by default)."""
    for name, t in (("mean", mean), ("var", var)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_inputs(x)
    if mean.dim() < 2 or mean.shape != var.shape:
        raise ValueError(f"mean and var must have the same shape (*batch, L, b), got {_shape(mean)} and {_shape(var)}")
    if mean.size(-1) != x.size(-2):
        raise ValueError(f"mean {_shape(mean)} has b = {mean.size(-1)} points but x {_shape(x)} has {x.size(-2)} rows")
    try:
        torch.broadcast_shapes(x.shape[:-2], mean.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the batch dims of x {_shape(x)} and mean {_shape(mean)} do not broadcast: expected x (*batch, b, D) "
            f"and mean (*batch, L, b)"
        ) from None
    if observed is not None and (
        observed.dtype != torch.bool or torch.broadcast_shapes(observed.shape, mean.shape) != mean.shape
    ):
        raise ValueError(f"observed must be a boolean mask broadcastable to mean {_shape(mean)}, got {observed.dtype} "
                         f"{_shape(observed)}")  # fmt: skip
    if validate_values.applies_to(mean):
        seen = (lambda t: t) if observed is None else (lambda t: t[observed.expand_as(t)])
        if not bool(torch.isfinite(seen(mean)).all()):
            raise ValueError(f"mean {_shape(mean)} holds NaN or inf values (check the encoder's outputs)")
        good = (seen(var) > 0) & torch.isfinite(seen(var))
        if not bool(good.all()):
            bad = seen(var)[~good].flatten()[0].item()
            raise ValueError(f"var {_shape(var)} must be finite and strictly positive, found {bad} (clip the encoder "
                             f"variances)")  # fmt: skip


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

    def draw(self, site: Site) -> Tensor:
        """Deprecated (version 0.2's site-by-site draws): ``rsample()``; through Pyro, ``GPVAE.guide``."""
        warnings.warn("LatentPosterior.draw is deprecated: use rsample()", DeprecationWarning, stacklevel=2)
        return site("z", PosteriorSite(self), 1.0)


class LatentPrior(torch.nn.Module, abc.ABC):
    """A prior over latent codes indexed by auxiliary inputs, given to :class:`~gpytorch_vae.models.GPVAE`.

    Subclasses implement :meth:`condition` (calling :func:`check_latent_data` first); :meth:`condition_on_batches`
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

    # ------------------------------------------------------------------ deprecated Pyro fragments of version 0.2
    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        """Deprecated: the guide's site ``z`` (use :meth:`GPVAE.guide <gpytorch_vae.models.GPVAE.guide>`)."""
        warnings.warn("LatentPrior.guide is deprecated: use GPVAE.guide", DeprecationWarning, stacklevel=2)
        return pyro.sample("z", PosteriorSite(self.condition(x, mean, var, num_data)))

    def model(self, x: Tensor, latent_shape: torch.Size, num_data: int | None = None) -> Tensor:
        """Deprecated: the model's site ``z`` (use :meth:`GPVAE.model <gpytorch_vae.models.GPVAE.model>`)."""
        warnings.warn("LatentPrior.model is deprecated: use GPVAE.model", DeprecationWarning, stacklevel=2)
        return pyro.sample("z", flat_latent_site(torch.Size(latent_shape)))


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


def pyro_site(name: str, fn: TorchDistribution, scale: float = 1.0) -> Tensor:
    """Deprecated: a Pyro sample statement, its log density scaled by ``scale``."""
    warnings.warn("pyro_site is deprecated: use pyro.sample under poutine.scale", DeprecationWarning, stacklevel=2)
    if scale == 1.0:
        return pyro.sample(name, fn)
    with poutine.scale(scale=scale):
        return pyro.sample(name, fn)


def rsample_site(name: str, fn: TorchDistribution, scale: float = 1.0) -> Tensor:
    """Deprecated: a reparameterised draw of ``fn``."""
    warnings.warn("rsample_site is deprecated: use fn.rsample()", DeprecationWarning, stacklevel=2)
    return fn.rsample()


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
