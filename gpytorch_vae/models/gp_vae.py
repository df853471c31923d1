"""The GP-VAE as a Pyro model/guide pair, with a direct path to the same ELBO."""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Iterable

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import Tensor

from ..priors.base import LatentPosterior, LatentPrior

LIKELIHOODS = ("bernoulli", "gaussian")


@contextlib.contextmanager
def frozen_parameters_allowed():
    """Silence Pyro's warning that a parameter with ``requires_grad=False`` (e.g. a fixed kernel lengthscale) was
    not registered in the param store: here that is intended (it stays fixed), and Pyro's advice (``train(False)``)
    would change the modules' behaviour."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not registered in the param store because requires_grad=False")
        yield


def register_module(name: str, module: torch.nn.Module) -> None:
    """:func:`pyro.module`, with frozen parameters left out of the param store quietly
    (:func:`frozen_parameters_allowed`)."""
    with frozen_parameters_allowed():
        pyro.module(name, module)


class GPVAE(PyroModule):
    r"""A VAE whose latent codes have a GP prior over auxiliary inputs (Pearce 2020; Jazbec et al. 2021).

    Guide: the encoder maps each observation :math:`\mathbf y_i` to :math:`\tilde q(\mathbf z_i\mid\mathbf y_i) =
    \mathcal N(\tilde{\mathbf y}_i, \mathrm{diag}(\tilde{\boldsymbol\sigma}_i^2))`, the *latent dataset*; the
    ``latent_prior`` turns it into the posterior over latent codes and samples :math:`\mathbf z`. Model: the
    ``latent_prior`` samples :math:`\mathbf z` from the prior, the decoder gives the likelihood of
    :math:`\mathbf y`. With :class:`~pyro.infer.TraceMeanField_ELBO` the SVI loss is minus
    :math:`\sum_{i\in b}\mathbb E_q[\log p(\mathbf y_i\mid\mathbf z_i)] - \mathrm{KL}`, which equals Eq. 10 of the
    SVGP-VAE paper in expectation (:class:`~gpytorch_vae.priors.SparseLatentPrior`) and Eq. 2 exactly
    (:class:`~gpytorch_vae.priors.ExactLatentPrior`); the derivation is in ``docs/objective.md``.
    :meth:`elbo_terms` computes the same ELBO without Pyro's tracing (the same random draws, the analytic KL).

    **Dtypes.** The networks run in their own dtype (e.g. float32); the GP parts in ``gp_dtype`` (e.g. float64).
    The boundary is here and nowhere else: :meth:`latent_dataset` casts the encoder's outputs to ``gp_dtype``, and
    :meth:`decode` casts latent codes to the decoder's dtype.

    :param encoder: module mapping ``y`` ``(*batch, b, *obs)`` to ``(mean, log_var)``, each ``(*batch, b, L)``.
    :param decoder: module mapping ``z`` ``(*batch, b, L)`` to the likelihood's parameter ``(*batch, b, *obs)``:
        logits (Bernoulli) or means (Gaussian).
    :param latent_prior: a :class:`~gpytorch_vae.priors.LatentPrior`.
    :param latent_dim: :math:`L`.
    :param likelihood: ``"bernoulli"`` or ``"gaussian"``.
    :param observation_scale: :math:`\sigma_y` of the Gaussian likelihood.
    :param observation_dims: number of trailing dimensions of one observation (1 for vectors, 2 or 3 for images).
    :param min_variance, max_variance: clipping range of the encoder variances (they act as GP noise).
    :param gp_dtype: dtype of the GP computations (e.g. ``torch.float64``); default: the encoder's.
    :param condition: for conditional networks (CVAE): maps the auxiliary data ``x`` ``(*batch, b, D)`` to features
        ``(*batch, b, c)`` passed as second argument to the encoder and the decoder.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        decoder: torch.nn.Module,
        latent_prior: LatentPrior,
        latent_dim: int,
        likelihood: str = "bernoulli",
        observation_scale: float = 1.0,
        observation_dims: int = 1,
        min_variance: float = 1e-3,
        max_variance: float = 10.0,
        gp_dtype: torch.dtype | None = None,
        condition: Callable[[Tensor], Tensor] | None = None,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not 0 < min_variance < max_variance:
            raise ValueError(f"need 0 < min_variance < max_variance, got {min_variance} and {max_variance}")
        if int(latent_dim) < 1 or int(observation_dims) < 1:
            raise ValueError(f"latent_dim and observation_dims must be positive, got {latent_dim}, {observation_dims}")
        self.encoder = encoder
        self.decoder = decoder
        self.latent_prior = latent_prior
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.observation_scale = float(observation_scale)
        self.observation_dims = int(observation_dims)
        self.min_variance = float(min_variance)
        self.max_variance = float(max_variance)
        self.gp_dtype = gp_dtype
        self.condition_features = condition

    def _network_args(self, x: Tensor | None) -> tuple:
        if self.condition_features is None:
            return ()
        if x is None:
            raise ValueError("conditional networks need the auxiliary data x")
        return (self.condition_features(x),)

    def _check_observations(self, y: Tensor) -> None:
        if y.dim() < self.observation_dims + 1:
            raise ValueError(
                f"y must have shape (*batch, b, *obs) with {self.observation_dims} observation dims, got "
                f"{tuple(y.shape)}"
            )

    # ------------------------------------------------------------------ building blocks
    def latent_dataset(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Encoder means :math:`\tilde{\mathbf y}` and clipped variances :math:`\tilde{\boldsymbol\sigma}^2`,
        each ``(*batch, L, b)`` in the GP dtype (``x`` is used by conditional networks only)."""
        self._check_observations(y)
        mean, log_var = self.encoder(y, *self._network_args(x))
        if mean.size(-1) != self.latent_dim:
            raise ValueError(f"the encoder gave {mean.size(-1)} latent channels, latent_dim is {self.latent_dim}")
        # clip in log space: exp() of a large log-variance overflows, and clamp's zero gradient times inf is NaN
        var = log_var.clamp(math.log(self.min_variance), math.log(self.max_variance)).exp()
        dtype = self.gp_dtype or mean.dtype
        return mean.mT.to(dtype), var.mT.to(dtype)

    @torch.no_grad()
    def encode_all(self, y: Tensor, x: Tensor | None = None, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """:meth:`latent_dataset` of a whole data set ``(N, *obs)``, encoded ``batch_size`` rows at a time (no
        gradients): means and variances ``(L, N)``."""
        xs = [None] * len(y.split(batch_size)) if x is None else x.split(batch_size)
        parts = [self.latent_dataset(y_b, x_b) for y_b, x_b in zip(y.split(batch_size), xs)]
        return tuple(torch.cat(p, dim=-1) for p in zip(*parts))

    def decode(self, z: Tensor, dtype: torch.dtype | None = None, x: Tensor | None = None) -> Tensor:
        """Decoder output for latent codes ``z`` ``(*batch, L, b)``: logits or means ``(*batch, b, *obs)``. ``z`` is
        cast to ``dtype`` (default: that of the decoder's first parameter)."""
        if dtype is None:
            dtype = next(self.decoder.parameters(), z).dtype
        return self.decoder(z.mT.to(dtype), *self._network_args(x))

    def likelihood_from_output(self, out: Tensor, event_dims: int) -> dist.TorchDistribution:
        """The likelihood given the decoder output (logits or means), an event over the trailing ``event_dims``."""
        if self.likelihood == "bernoulli":
            base = dist.Bernoulli(logits=out)
        else:
            base = dist.Normal(out, self.observation_scale)
        return base.to_event(event_dims)

    def observation_distribution(self, z: Tensor, y: Tensor, x: Tensor | None = None) -> dist.TorchDistribution:
        """:math:`p(\\mathbf y\\mid\\mathbf z)` for the whole batch ``y``, one event (leading sample dims of ``z``
        stay batch dims)."""
        return self.likelihood_from_output(self.decode(z, y.dtype, x), y.dim())

    def _latent_shape(self, y: Tensor) -> torch.Size:
        data_shape = y.shape[: y.dim() - self.observation_dims]  # (*batch, b)
        return torch.Size([*data_shape[:-1], self.latent_dim, data_shape[-1]])

    # ------------------------------------------------------------------ Pyro model and guide
    def model(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        r"""``z ~ prior`` (sites of the latent prior), ``y ~ p(y | z)`` (site ``y``, observed)."""
        register_module("decoder", self.decoder)
        register_module("latent_prior", self.latent_prior)
        z = self.latent_prior.model(x, self._latent_shape(y), num_data)
        return pyro.sample("y", self.observation_distribution(z, y, x), obs=y)

    def guide(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        r"""``z ~ q(z | x, y)``: encoder -> latent dataset -> latent prior's posterior."""
        register_module("encoder", self.encoder)
        register_module("latent_prior", self.latent_prior)
        mean, var = self.latent_dataset(y, x)
        return self.latent_prior.guide(x, mean, var, num_data)

    # ------------------------------------------------------------------ the ELBO without Pyro's tracing
    def elbo_terms(
        self, x: Tensor, y: Tensor, num_data: int | None = None, reconstruction: bool = True
    ) -> dict[str, Tensor]:
        r"""The objective's parts for one batch, computed directly: encoder, latent dataset, the prior's posterior
        (:meth:`~gpytorch_vae.priors.LatentPrior.condition`), one reparameterised sample drawn exactly as the guide
        draws it, decoder. The SVI loss of :class:`~pyro.infer.TraceMeanField_ELBO` on :meth:`model` /
        :meth:`guide` equals ``-elbo`` at the same random state (tested to float tolerance).

        * ``reconstruction``: :math:`\log p(\mathbf y\mid\mathbf z)` at one posterior sample, an unbiased estimate
          of :math:`\sum_i\mathbb E_q[\log p(\mathbf y_i\mid\mathbf z_i)]`;
        * ``kl``: the analytic KL part (for the sparse prior :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|\,
          p^l(\mathbf u))`);
        * ``elbo`` = reconstruction - kl (its expectation is Eq. 10 / Eq. 2), ``z`` (the sample) and ``decoded`` (the
          likelihood's mean, e.g. for a GECO reconstruction constraint).

        With ``reconstruction=False`` the likelihood is not evaluated (no ``reconstruction`` and ``elbo``): what GECO
        needs, ``kl`` and ``decoded``, for less work. ``kl_shared`` says whether ``kl`` belongs to the union batch of
        several ranks (the sparse prior with a statistics reducer) rather than to this batch.
        """
        mean, var = self.latent_dataset(y, x)
        posterior = self.latent_prior.condition(x, mean, var, num_data)
        z = posterior.rsample()
        out = self.decode(z, y.dtype, x)
        kl = posterior.kl_divergence()
        terms = {"kl": kl, "z": z, "decoded": out.sigmoid() if self.likelihood == "bernoulli" else out,
                 "kl_shared": getattr(posterior, "kl_shared", False)}  # fmt: skip
        if reconstruction:
            log_likelihood = self.likelihood_from_output(out, y.dim()).log_prob(y)
            terms.update(reconstruction=log_likelihood, elbo=log_likelihood - kl.to(log_likelihood))
        return terms

    def forward(
        self, x: Tensor, y: Tensor, num_data: int | None = None, reconstruction: bool = True
    ) -> dict[str, Tensor]:
        """:meth:`elbo_terms`: calling the model gives its ELBO's parts, so that
        :class:`~torch.nn.parallel.DistributedDataParallel` can wrap it."""
        with frozen_parameters_allowed():  # PyroModule.__call__ registers each submodule read inside with pyro.module
            return self.elbo_terms(x, y, num_data, reconstruction)

    # ------------------------------------------------------------------ inference at test time
    @torch.no_grad()
    def condition(self, batches: Iterable[tuple[Tensor, Tensor]]) -> LatentPosterior:
        r"""The latent posterior given context data, ``(x, y)`` batches (e.g. all training data at test time,
        :math:`b = N`): each batch is encoded, then the latent prior conditions on all of them
        (:meth:`~gpytorch_vae.priors.LatentPrior.condition_on_batches`; the sparse prior streams, in
        :math:`O(m^2)` memory). ``posterior.predict(x_new)`` gives the latent marginals at new inputs, which
        :meth:`decode` turns into observations."""
        return self.latent_prior.condition_on_batches((x, *self.latent_dataset(y, x)) for x, y in batches)

    @torch.no_grad()
    def posterior_latent_mean(self, x: Tensor, y: Tensor) -> Tensor:
        """Posterior mean of the latent codes of a whole data set ``(x, y)`` in one batch, ``(*batch, b, L)``."""
        mean, var = self.latent_dataset(y, x)
        return self.latent_prior.condition(x, mean, var).mean.mT

    def condition_on_data(self, batches: Iterable[tuple[Tensor, Tensor]]) -> LatentPosterior:
        """Deprecated alias of :meth:`condition` (which returns the posterior; nothing is stored)."""
        warnings.warn("GPVAE.condition_on_data is deprecated: use GPVAE.condition", DeprecationWarning, stacklevel=2)
        return self.condition(batches)
