"""The GP-VAE: encoder, latent prior, decoder and likelihood; one pass that every objective uses, and Pyro's
model/guide as a thin adapter over it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import gpytorch
import pyro
import torch
from pyro.params import param_with_module_name
from torch import Tensor

from .. import settings
from ..likelihoods import BernoulliLikelihood, ObservationLikelihood
from ..priors.base import LatentPosterior, LatentPrior, PosteriorSite, flat_latent_site
from ..variational.noise import StandardNormalNoise
from .inputs import ObservationInputs, PosteriorWithInputs


def register_module(name: str, module: torch.nn.Module) -> None:
    """Make Pyro's global param store hold ``module``'s own trainable parameters under ``name$$$<parameter>``
    (what :class:`~pyro.infer.SVI` optimises). Unlike :func:`pyro.module`, an entry of the same name that holds
    another tensor (a model built earlier in the process) is replaced, so a second model trains instead of silently
    sharing the first one's parameters; frozen parameters (``requires_grad=False``, e.g. a fixed lengthscale) stay
    out, without a warning."""
    store = pyro.get_param_store()
    for param_name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        full_name = param_with_module_name(name, param_name)
        if full_name in store and store[full_name] is not param:
            del store[full_name]
        pyro.param(full_name, param)


def named_hyperparameter_priors(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module, object, Callable]]:
    """``(name, module, prior, closure)`` of every GPyTorch prior registered in ``module``'s GPyTorch submodules
    (kernels, means, likelihoods, ...), as :meth:`gpytorch.Module.named_priors` gives them, each once: one walk over
    the modules, into the outermost GPyTorch modules only (they list their own submodules' priors)."""
    found, outer = [], None
    for name, child in module.named_modules():
        if outer is not None and name.startswith(outer):
            continue  # inside a GPyTorch module already listed
        if isinstance(child, gpytorch.Module) and child is not module:
            outer = name + "."
            for prior_name, parent, prior, closure, _ in child.named_priors():
                found.append((f"{name}.{prior_name}", parent, prior, closure))
    return found


def hyperparameter_log_prior(module: torch.nn.Module) -> Tensor | None:
    r""":math:`\sum\log p(\theta)` over the GPyTorch priors registered in ``module`` (``None`` when there is none),
    the term GPyTorch's marginal log likelihoods add."""
    priors = named_hyperparameter_priors(module)
    if not priors:
        return None
    terms = [prior.log_prob(closure(parent)).sum() for _, parent, prior, closure in priors]
    dtype = terms[0].dtype
    return torch.stack([t if t.dtype == dtype else t.to(dtype) for t in terms]).sum()


@dataclass
class Imputation:
    r"""Imputed observations (:meth:`GPVAE.impute`), each ``(*batch, b, *obs)`` like the observations, observed
    entries kept as they were.

    :ivar mean: missing entries: the likelihood's mean decoded from the posterior mean of the latent codes (e.g. pixel
        probabilities); the point imputation.
    :ivar variance: per-entry predictive variance of the missing entries, :math:`\mathbb E_z[\mathrm{Var}(y\mid z)]
        + \mathrm{Var}_z[\mathbb E(y\mid z)]` over ``num_samples`` posterior draws of the codes (with none: the
        likelihood's variance at the mean code); 0 at observed entries.
    :ivar samples: ``(K, *batch, b, *obs)``: ``K`` multiple imputations, each drawn as a code from the posterior
        marginals, decoded, and an observation from the likelihood (``None`` when ``num_samples`` is 0).
    :ivar mask: True where observed.
    :ivar predictive_mean: missing entries: the predictive mean :math:`\mathbb E_z[\mathbb E(y\mid z)]` over the
        ``num_samples`` draws of the codes (``None`` without samples), e.g. the predictive probability of a pixel.
    :ivar sample_means: ``(K, *batch, b, *obs)``: the likelihood's mean :math:`\mathbb E(y\mid z_k)` at each of the
        ``K`` draws of the codes behind ``samples``, at every entry (``None`` without samples): the components of the
        predictive mixture, e.g. for its quantiles.
    """

    mean: Tensor
    variance: Tensor
    samples: Tensor | None
    mask: Tensor
    predictive_mean: Tensor | None = None
    sample_means: Tensor | None = None


@dataclass
class GPVAEOutput:
    """One pass of a :class:`GPVAE` over a batch: the latent ``posterior`` of the batch, a reparameterised draw ``z``
    ``(*batch, L, b)``, the decoder's ``output`` for it ``(*batch, b, *obs)`` (e.g. logits or means), and the
    ``observations`` as the model took them (in the encoder's dtype) with their ``mask`` (True where observed), if
    any."""

    posterior: LatentPosterior
    z: Tensor
    output: Tensor
    observation_dims: int
    observations: Tensor
    mask: Tensor | None = None


class GPVAE(torch.nn.Module):
    r"""A VAE whose latent codes have a GP prior over auxiliary inputs (Pearce 2020; Jazbec et al. 2021).

    The encoder maps each observation :math:`\mathbf y_i` to :math:`\tilde q(\mathbf z_i\mid\mathbf y_i) =
    \mathcal N(\tilde{\mathbf y}_i, \mathrm{diag}(\tilde{\boldsymbol\sigma}_i^2))`, the *latent dataset*; the
    ``latent_prior`` turns it into the posterior over the latent codes (:meth:`posterior`), from which a code is
    drawn and decoded (:meth:`forward`); the ``likelihood`` scores the observations. The objectives
    (:class:`~gpytorch_vae.objectives.ELBO`, :class:`~gpytorch_vae.objectives.GECOObjective`) use :meth:`forward`;
    :meth:`model` and :meth:`guide` give the same ELBO to Pyro's :class:`~pyro.infer.SVI` (derivation:
    ``docs/objective.md``).

    **Shapes.** One data set of ``b`` points: auxiliary data ``x`` ``(b, D)``, observations ``y`` ``(b, *obs)``.
    ``B`` data sets each its own GP (e.g. ``B`` sequences of ``T`` steps, one GP per sequence): ``x`` ``(B, 1, T,
    D)`` (the 1 lines the data sets up with the latent channels ``(B, L)``; ``(B, T, D)`` is refused with a message)
    and ``y`` ``(B, T, *obs)``; pass ``num_data=None`` (each batch is its data sets in whole). **Missing entries**
    are NaN in ``y`` or False in an observation ``mask`` ``(*batch, b, *obs)``; see :meth:`observations`.

    **Dtypes.** The networks run in their own dtype (e.g. float32), the GP parts in the latent prior's
    (``gp_dtype``, e.g. float64: the prior is converted at construction). Each value is cast once, where it passes
    to the next owner, and only when the dtypes differ: observations to the encoder's dtype in :meth:`observations`,
    the latent dataset (means and variances together) to the GP dtype in :meth:`latent_dataset`, latent codes to the
    decoder's dtype in :meth:`decode`.

    :param encoder: module mapping ``y`` ``(*batch, b, *obs)`` (missing entries zero-filled; also the mask for an
        encoder with ``takes_mask``) to ``(mean, log_var)``, each ``(*batch, b, L)``.
    :param decoder: module mapping ``z`` ``(*batch, b, L)`` to the likelihood's parameter ``(*batch, b, *obs)``.
    :param latent_prior: a :class:`~gpytorch_vae.priors.LatentPrior`.
    :param latent_dim: :math:`L`.
    :param likelihood: an :class:`~gpytorch_vae.likelihoods.ObservationLikelihood`, e.g.
        :class:`~gpytorch_vae.likelihoods.GaussianLikelihood` with a learned noise; default: a
        :class:`~gpytorch_vae.likelihoods.BernoulliLikelihood`.
    :param observation_dims: number of trailing dimensions of one observation (1 for vectors, 2 or 3 for images);
        default: inferred from the encoder's output (``y.dim()`` minus the batch dimensions of the means).
    :param min_variance, max_variance: clipping range of the encoder variances (they act as GP noise).
    :param gp_dtype: dtype of the GP computations (e.g. ``torch.float64``); the latent prior is converted to it.
        Default: the prior's own (the encoder's for a prior without parameters).
    :param features: for conditional networks (CVAE): maps the auxiliary data ``x`` ``(*batch, b, D)`` to features
        ``(*batch, b, c)`` passed as second argument to the encoder and the decoder.
    :param inputs: an :class:`~gpytorch_vae.models.ObservationInputs` that computes the latent prior's inputs from
        the auxiliary data *and* the observations (e.g. a representation network, SPRITES); default: ``x`` itself.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        decoder: torch.nn.Module,
        latent_prior: LatentPrior,
        latent_dim: int,
        likelihood: ObservationLikelihood | None = None,
        observation_dims: int | None = None,
        min_variance: float = 1e-3,
        max_variance: float = 10.0,
        gp_dtype: torch.dtype | None = None,
        features: Callable[[Tensor], Tensor] | None = None,
        inputs: ObservationInputs | None = None,
    ):
        super().__init__()
        likelihood = BernoulliLikelihood() if likelihood is None else likelihood
        if not isinstance(likelihood, ObservationLikelihood):
            raise TypeError(f"likelihood must be an ObservationLikelihood, got {type(likelihood).__name__}")
        if not isinstance(latent_prior, LatentPrior):
            raise TypeError(f"latent_prior must be a LatentPrior, got {type(latent_prior).__name__}")
        if int(latent_dim) < 1 or (observation_dims is not None and int(observation_dims) < 1):
            raise ValueError(f"latent_dim and observation_dims must be positive, got {latent_dim}, {observation_dims}")
        self.encoder = encoder
        self.decoder = decoder
        self.latent_prior = latent_prior if gp_dtype is None else latent_prior.to(gp_dtype)
        self.likelihood = likelihood
        self.inputs = inputs
        self.latent_dim = int(latent_dim)
        self.observation_dims = None if observation_dims is None else int(observation_dims)
        self.set_variance_range(min_variance, max_variance)
        self._gp_dtype = gp_dtype
        self.features = features

    def set_variance_range(self, min_variance: float | None = None, max_variance: float | None = None) -> None:
        """Set the clipping range of the encoder variances (``None``: keep the current bound), checked: ``0 <
        min_variance < max_variance``, finite."""
        low = self.min_variance if min_variance is None else float(min_variance)
        high = self.max_variance if max_variance is None else float(max_variance)
        if not (0 < low < high < math.inf):
            raise ValueError(f"need 0 < min_variance < max_variance < inf, got {low} and {high}")
        self._variance_range = (low, high)

    @property
    def min_variance(self) -> float:
        return self._variance_range[0]

    @property
    def max_variance(self) -> float:
        return self._variance_range[1]

    @max_variance.setter
    def max_variance(self, value: float) -> None:
        self.set_variance_range(max_variance=value)

    @min_variance.setter
    def min_variance(self, value: float) -> None:
        self.set_variance_range(min_variance=value)

    @property
    def gp_dtype(self) -> torch.dtype | None:
        """The dtype of the GP computations: the one given at construction, else the latent prior's."""
        return self._gp_dtype or self.latent_prior.dtype

    # ------------------------------------------------------------------ building blocks
    def _network_args(self, x: Tensor | None) -> tuple:
        if self.features is None:
            return ()
        if x is None:
            raise ValueError("conditional networks need the auxiliary data x")
        return (self.features(x),)

    def observations(self, y: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The observations and their mask as the model takes them, the one entry point of ``y``: a floating tensor
        ``(*batch, b, *obs)`` cast to the encoder's dtype (the one cast of the observations), and the mask (True
        where observed) checked and broadcast to it. NaN marks a missing entry: without a ``mask``, one is made of
        the entries that are not NaN (``~isnan(y)``) when ``y`` holds NaN; with a ``mask``, NaN where it says
        observed is refused. Missing entries are zero-filled, so that NaN reaches no computation (nor gradient):
        NaN holes train exactly as zero-filled data with the same mask. One host sync (whether ``y`` holds NaN where
        it counts). Integer data (e.g. uint8 images) is refused, as its scale is the caller's to choose.

        :return: ``(y, mask)``, ``mask`` ``None`` when every entry is observed and none was given."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(
                f"y has dtype {y.dtype}: convert the observations to floating point at the scale the likelihood "
                f"expects (e.g. uint8 images / 255.0 for a Bernoulli or Gaussian likelihood)"
            )
        if y.dim() < 2:
            raise ValueError(
                f"y must have shape (*batch, b, *obs) with at least one observation dim, got {tuple(y.shape)}"
            )
        if mask is not None:
            mask = self._checked_mask(mask, y)
        dtype = _floating_dtype(self.encoder)
        if dtype is not None and dtype != y.dtype:
            y = y.to(dtype)
        missing = torch.isnan(y)
        if mask is None:
            if bool(missing.any()):  # the one host sync: NaN marks what is missing
                mask = ~missing
        elif bool((missing & mask).any()):
            _refuse_observed_nan(missing & mask)
        if mask is not None:
            y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y, mask

    def _encode(self, y: Tensor, x: Tensor | None, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        expected = getattr(self.encoder, "observation_shape", None)  # e.g. MLPEncoder's: its input width
        if expected is not None and tuple(y.shape[max(y.dim() - len(expected), 0) :]) != tuple(expected):
            raise ValueError(f"observations of shape {tuple(y.shape)} do not end in the shape of one observation the "
                             f"encoder takes, {tuple(expected)}: expected y of shape (*batch, b, "
                             f"{', '.join(str(s) for s in expected)})")  # fmt: skip
        mask_args = (mask,) if mask is not None and getattr(self.encoder, "takes_mask", False) else ()
        try:
            mean, log_var = self.encoder(y, *mask_args, *(() if self.features is None else self._network_args(x)))
        except RuntimeError as error:
            raise RuntimeError(
                f"the encoder failed on observations of shape {tuple(y.shape)} ({error}): check that they have the "
                f"shape (*batch, b, *obs) the encoder was built for"
            ) from error
        if mean.size(-1) != self.latent_dim or mean.shape != log_var.shape:
            raise ValueError(
                f"the encoder gave means {tuple(mean.shape)} and log-variances {tuple(log_var.shape)}; expected both "
                f"(*batch, b, L) with L = latent_dim = {self.latent_dim}"
            )
        if settings.debug.on(mean) and not bool(torch.isfinite(mean).all() & torch.isfinite(log_var).all()):
            # the observations are checked only here, off the hot path: they are what makes a finite encoder fail
            if not bool(torch.isfinite(y).all()):
                raise ValueError(f"the observations y {tuple(y.shape)} hold NaN or inf values")
            raise ValueError("the encoder gave NaN or inf means or log-variances for finite observations")
        self._check_observation_dims(y, mean)
        return mean, log_var

    def _check_observation_dims(self, y: Tensor, mean: Tensor) -> None:
        inferred = y.dim() - (mean.dim() - 1)
        if inferred < 1 or y.shape[: mean.dim() - 1] != mean.shape[:-1]:
            raise ValueError(f"the encoder's means {tuple(mean.shape)} do not match observations {tuple(y.shape)} "
                             f"(*batch, b, *obs)")  # fmt: skip
        if self.observation_dims is not None and inferred != self.observation_dims:
            raise ValueError(
                f"observations {tuple(y.shape)} with means {tuple(mean.shape)} have {inferred} observation dims, but "
                f"observation_dims is {self.observation_dims}"
            )
        self._inferred_observation_dims = inferred

    def event_dims(self) -> int:
        """The number of trailing dimensions of one observation (given, or inferred when the encoder last ran)."""
        dims = self.observation_dims or getattr(self, "_inferred_observation_dims", None)
        if dims is None:
            raise ValueError("the number of observation dims is not known yet: pass observation_dims to GPVAE")
        return dims

    def latent_dataset(self, y: Tensor, x: Tensor | None = None, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Encoder means :math:`\tilde{\mathbf y}` and clipped variances :math:`\tilde{\boldsymbol\sigma}^2`,
        each ``(*batch, L, b)`` in the GP dtype (``x`` is used by conditional networks only). Missing entries (NaN in
        ``y``, or False in ``mask``: :meth:`observations`) are set to zero, and the mask is passed to an encoder that
        takes it (``encoder.takes_mask``, e.g. :class:`~gpytorch_vae.nn.MaskedEncoder`)."""
        return self._latent_dataset(*self.observations(y, mask), x)

    def _latent_dataset(self, y: Tensor, mask: Tensor | None, x: Tensor | None) -> tuple[Tensor, Tensor]:
        mean, log_var = self._encode(y, x, mask)
        low, high = self._variance_range
        # clip in log space: exp() of a large log-variance overflows, and clamp's zero gradient times inf is NaN
        var = log_var.clamp(math.log(low), math.log(high)).exp()
        dtype = self._gp_dtype or self.latent_prior.dtype
        if dtype is None or dtype == mean.dtype:
            return mean.mT, var.mT
        # the one cast of the latent dataset to the GP dtype: means and variances together
        both = torch.stack([mean, var]).to(dtype)
        return both[0].mT, both[1].mT

    def prior_inputs(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """The latent prior's inputs of a batch: ``inputs(x, y)`` with an
        :class:`~gpytorch_vae.models.ObservationInputs` (``y`` as :meth:`observations` gives it), else ``x``."""
        return x if self.inputs is None else self.inputs(x, self.observations(y, mask)[0])

    def posterior(self, x: Tensor, y: Tensor, num_data: int | None, mask: Tensor | None = None) -> LatentPosterior:
        """The latent posterior of a batch ``(x, y)`` of a data set of ``num_data`` points (``None``: the batch is
        the whole data set): encoder, latent dataset, ``latent_prior.condition``. ``mask``: an observation mask
        ``(*batch, b, *obs)``, True where observed; an observation with nothing observed carries no data, its latent
        code comes from the prior given the others."""
        return self._posterior(x, *self.observations(y, mask), num_data)

    def _posterior(self, x: Tensor, y: Tensor, mask: Tensor | None, num_data: int | None) -> LatentPosterior:
        mean, var = self._latent_dataset(y, mask, x)
        if isinstance(x, Tensor) and x.dim() > 2:
            self._check_inputs(x, mean.shape)
        observed = None if mask is None else self._observed(mask)
        inputs = x if self.inputs is None else self.inputs(x, y)
        return self.latent_prior.condition(inputs, mean, var, num_data, observed)

    def _observed(self, mask: Tensor) -> Tensor | None:
        """``(*batch, 1, b)``: whether an observation has any entry observed (``None`` when all have)."""
        observed = mask.flatten(mask.dim() - self.event_dims()).any(-1).unsqueeze(-2)
        return None if bool(observed.all()) else observed

    @staticmethod
    def _check_inputs(x: Tensor, shape: torch.Size | None) -> None:
        """Auxiliary data ``x`` of a batch whose latent codes have the ``shape`` ``(*batch, L, b)``: ``(b, D)``
        shared by the data sets of the batch, or ``(*batch, 1, b, D)``; ``(*batch, b, D)`` would broadcast against
        the channels."""
        batch = () if shape is None else shape[:-2]
        if not isinstance(x, Tensor) or x.dim() < 3 or not batch:
            return
        try:
            fits = torch.broadcast_shapes(x.shape[:-2], (*batch, 1)) == (*batch, 1)
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"x {tuple(x.shape)} does not fit observations batched as {tuple(batch)} data sets of b = "
                f"{shape[-1]} points each: pass x of shape (*batch, 1, b, D), one GP per data set (e.g. "
                f"x.unsqueeze(-3) for x (B, b, D)), or (b, D) shared by all"
            )

    @staticmethod
    def _checked_mask(mask: Tensor | None, y: Tensor) -> Tensor | None:
        if mask is None:
            return None
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor (True where observed), got {getattr(mask, 'dtype', mask)}")
        try:
            return mask.expand(y.shape)
        except RuntimeError:
            shapes = f"mask {tuple(mask.shape)} does not broadcast to the observations {tuple(y.shape)}"
            raise ValueError(shapes) from None

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Decoder output for latent codes ``z`` ``(*batch, L, b)``: logits or means ``(*batch, b, *obs)``; ``z`` is
        cast to the decoder's dtype (a decoder without parameters takes ``z``'s)."""
        dtype = _floating_dtype(self.decoder)
        z = z.mT if dtype is None or dtype == z.dtype else z.mT.to(dtype)
        return self.decoder(z, *(() if self.features is None else self._network_args(x)))

    def forward(
        self, x: Tensor, y: Tensor, num_data: int | None, mask: Tensor | None = None,
        noise: StandardNormalNoise | None = None,
    ) -> GPVAEOutput:  # fmt: skip
        """One pass over a batch: :meth:`posterior` (with the observation ``mask``, if any), a reparameterised draw
        of the latent codes (per-point noise from ``noise``, default torch's generator), :meth:`decode`."""
        y, mask = self.observations(y, mask)
        posterior = self._posterior(x, y, mask, num_data)
        z = posterior.rsample(noise=noise)
        return GPVAEOutput(posterior, z, self.decode(z, x=x), self.observation_dims or self._inferred_observation_dims,
                           y, mask)  # fmt: skip

    # ------------------------------------------------------------------ GPyTorch priors on hyperparameters
    def hyperparameter_log_prior(self) -> Tensor | None:
        """:func:`hyperparameter_log_prior` of this model (kernel, likelihood, ...; ``None`` without priors)."""
        return hyperparameter_log_prior(self)

    # ------------------------------------------------------------------ Pyro model and guide
    def _register(self) -> None:
        for name, child in self.named_children():
            register_module(name, child)

    def guide(self, x: Tensor, y: Tensor, num_data: int | None = None, mask: Tensor | None = None) -> Tensor:
        r"""``z ~ q(z | x, y)``: site ``z`` draws from :meth:`posterior` and carries the ELBO's KL part
        (:class:`~gpytorch_vae.priors.PosteriorSite`)."""
        self._register()
        return pyro.sample("z", PosteriorSite(self.posterior(x, y, num_data, mask)))

    def model(self, x: Tensor, y: Tensor, num_data: int | None = None, mask: Tensor | None = None) -> Tensor:
        r"""Site ``z`` (flat: the prior is in the guide's KL term), site ``y ~ p(y | z)`` (observed, in a
        :func:`pyro.plate` over the points and the batch dims; masked entries add nothing) and, with GPyTorch priors
        on hyperparameters, the factor ``hyperparameter_priors`` weighted like the KL (:math:`b/N`)."""
        self._register()
        y, mask = self.observations(y, mask)
        event_dims = self.event_dims()
        data_shape = y.shape[: y.dim() - event_dims]
        latent_shape = torch.Size([*data_shape[:-1], self.latent_dim, data_shape[-1]])
        z = pyro.sample("z", flat_latent_site(latent_shape))
        # under vectorised particles a global site's batch ends in one singleton per data plate: drop them, so that
        # the points come from z's event and the particle dim lines up with the plates of y
        lead = z.shape[: z.dim() - len(latent_shape)]
        if len(lead) >= len(data_shape) and all(size == 1 for size in lead[len(lead) - len(data_shape) :]):
            z = z.reshape(*lead[: len(lead) - len(data_shape)], *latent_shape)
        output = self.decode(z, x=x)
        with _data_plates(data_shape):
            y = pyro.sample("y", self.likelihood.pyro_distribution(output, event_dims, mask), obs=y)
        log_prior = self.hyperparameter_log_prior()
        if log_prior is not None:
            pyro.factor("hyperparameter_priors", prior_weight(data_shape[-1], num_data) * log_prior)
        return y

    # ------------------------------------------------------------------ inference at test time
    @torch.no_grad()
    def encode_all(self, y: Tensor, x: Tensor | None = None, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """:meth:`latent_dataset` of a whole data set ``(N, *obs)``, encoded ``batch_size`` rows at a time (no
        gradients): means and variances ``(L, N)``."""
        xs = [None] * len(y.split(batch_size)) if x is None else x.split(batch_size)
        parts = [self.latent_dataset(y_b, x_b) for y_b, x_b in zip(y.split(batch_size), xs)]
        return tuple(torch.cat(p, dim=-1) for p in zip(*parts))

    @torch.no_grad()
    def condition_on_observations(self, batches: Iterable[tuple[Tensor, Tensor]],
                  inputs_context: Iterable[tuple[Tensor, Tensor]] | None = None) -> LatentPosterior:  # fmt: skip
        r"""The latent posterior given context data, ``(x, y)`` or ``(x, y, mask)`` batches (e.g. all training data
        at test time, :math:`b = N`): each batch is encoded, then the latent prior conditions on all of them
        (:meth:`~gpytorch_vae.priors.LatentPrior.condition_on_batches`; the sparse prior streams, in
        :math:`O(m^2)` memory). ``posterior.predict(x_new)`` gives the latent marginals at new inputs, which
        :meth:`decode` turns into observations. With :class:`~gpytorch_vae.models.ObservationInputs`, ``predict``
        maps new auxiliary data through what ``inputs_context`` batches give (default: ``batches``, then read twice:
        pass re-iterable batches, e.g. a list or a DataLoader), e.g. the context frames of new objects."""
        if self.inputs is None:
            return self.latent_prior.condition_on_batches(self._latent_batch(*batch) for batch in batches)
        if inputs_context is None and iter(batches) is batches:  # a one-shot iterator: keep it for the second pass
            batches = list(batches)
        posterior = self.latent_prior.condition_on_batches(self._latent_batch(*batch) for batch in batches)
        context = batches if inputs_context is None else inputs_context
        inputs_of = self.inputs.condition_on_observations((x, self.observations(*rest)[0]) for x, *rest in context)
        return PosteriorWithInputs(posterior, inputs_of)

    def _latent_batch(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> tuple:
        """``(inputs, mean, var)``, or with missing entries ``(inputs, mean, var, observed)``: what a prior conditions
        on (``inputs``: :meth:`prior_inputs`)."""
        y, mask = self.observations(y, mask)
        mean, var = self._latent_dataset(y, mask, x)
        self._check_inputs(x, mean.shape)
        inputs = x if self.inputs is None else self.inputs(x, y)
        if mask is None:
            return inputs, mean, var
        return inputs, mean, var, mask.flatten(mask.dim() - self.event_dims()).any(-1).unsqueeze(-2)

    @torch.no_grad()
    def impute(self, x: Tensor, y: Tensor, mask: Tensor | None = None, num_samples: int = 0,
               posterior: LatentPosterior | None = None) -> Imputation:  # fmt: skip
        r"""Impute the missing entries of observations ``y`` ``(*batch, b, *obs)`` at their inputs ``x`` (``(b, D)``,
        or ``(*batch, 1, b, D)`` for a batch of data sets each its own GP). Missing entries are NaN in ``y``, or
        where ``mask`` (True where observed) is false; see :meth:`observations`. The latent marginals at ``x`` come
        from ``posterior`` (default: the posterior of this batch as a whole data set, e.g. a batch of sequences each
        its own GP; for one long series, condition on all of it with :meth:`condition_on_observations` and pass that
        posterior) and are decoded (:class:`Imputation`: the mean imputation, per-entry predictive variance,
        ``num_samples`` multiple imputations and the likelihood's mean at each draw). Observations with nothing
        observed get latent codes from the GP alone."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        y, mask = self.observations(y, mask)
        if mask is None:
            mask = torch.ones_like(y, dtype=torch.bool)
        if posterior is None:
            posterior = self._posterior(x, y, mask, None)
        elif isinstance(x, Tensor) and x.dim() > 2:
            self._check_inputs(x, getattr(posterior, "shape", None))
        q = posterior.predict(x)  # marginals (*batch, L, b)
        output = self.decode(q.mean, x=x)
        mean = self.likelihood.mean(output).to(y)
        variance = self.likelihood(output).variance.to(y)
        samples = predictive = means = None
        if num_samples:
            codes = q.mean + q.variance.sqrt() * torch.randn(num_samples, *q.mean.shape, dtype=q.mean.dtype,
                                                             device=q.mean.device)  # fmt: skip
            outputs = self.decode(codes, x=x)
            distribution = self.likelihood(outputs)
            samples = torch.where(mask, y, distribution.sample().to(y))
            means = distribution.mean.to(y)
            variance = distribution.variance.to(y).mean(0) + (means.var(0) if num_samples > 1 else 0.0)
            predictive = torch.where(mask, y, means.mean(0))
        return Imputation(torch.where(mask, y, mean), torch.where(mask, torch.zeros_like(variance), variance),
                          samples, mask, predictive, means)  # fmt: skip

    @torch.no_grad()
    def posterior_latent_mean(self, x: Tensor, y: Tensor) -> Tensor:
        """Posterior mean of the latent codes of a whole data set ``(x, y)`` in one batch, ``(*batch, b, L)``."""
        return self.posterior(x, y, None).mean.mT


def _floating_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating parameter (``None`` without one): the dtype a network runs in."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return None


def _refuse_observed_nan(bad: Tensor) -> None:
    """Raise the error for NaN at entries a mask calls observed (``bad``: where), naming how many and the first."""
    first = tuple(int(i) for i in bad.nonzero()[0])
    raise ValueError(
        f"{int(bad.sum())} entries of y are NaN where mask says observed (first at index {first}): mark a missing "
        f"entry False in mask (NaN is taken as missing when no mask is given), or fill in the observed value"
    )


def prior_weight(num_points: int, num_data: int | None) -> float:
    r"""The weight :math:`b/N` of the batch's share of global terms (the sparse prior's KL, the hyperparameters'
    log prior): 1 when the batch is the whole data set."""
    return 1.0 if num_data is None else num_points / num_data


def _data_plates(data_shape: torch.Size):
    """Nested :func:`pyro.plate` s over the data dims ``(*batch, b)``: ``points`` (dim -1) and ``batch_k``."""
    import contextlib

    stack = contextlib.ExitStack()
    for k, size in enumerate(reversed(data_shape)):
        name = "points" if k == 0 else f"batch_{len(data_shape) - 1 - k}"
        stack.enter_context(pyro.plate(name, size, dim=-1 - k))
    return stack
