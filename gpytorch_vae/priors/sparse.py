"""SVGP-VAE's latent prior: an amortized sparse GP per latent channel (Jazbec et al. 2021, Eq. 10)."""

from __future__ import annotations

from typing import Iterable

import torch
from gpytorch.distributions import MultivariateNormal
from torch import Tensor

from ..variational import AmortizedHybridPosterior
from ..variational.latent_data import check_inputs, check_latent_data, check_num_data
from ..variational.noise import StandardNormalNoise
from .base import LatentPosterior, LatentPrior, marginal_distribution


class SparseLatentPosterior(LatentPosterior):
    r"""The SVGP-VAE posterior of one latent batch: :math:`\mathbf v\sim q_S(\mathbf v)` (Eq. 9, whitened), then
    :math:`z_i\mid\mathbf v\sim p(f(\mathbf x_i)\mid\mathbf v)` (marginals); KL part :math:`\frac bN\sum_l
    \mathrm{KL}(q_S^l(\mathbf u)\,\|\,p^l(\mathbf u))`.

    :param posterior: the strategy's :class:`~gpytorch_vae.variational.AmortizedHybridPosterior` of the batch.
    :param gp_inputs: maps auxiliary inputs to GP inputs (for :meth:`predict`).
    :param kl_scale: :math:`b/N`.
    """

    def __init__(self, posterior: AmortizedHybridPosterior, gp_inputs, kl_scale: float = 1.0, input_dim=None):
        self.posterior = posterior
        self.gp_inputs = gp_inputs
        self.kl_scale = float(kl_scale)
        self.input_dim = input_dim

    @property
    def kl_shared(self) -> bool:
        return self.posterior.statistics_reduced

    @property
    def prior_terms(self):
        """The prior terms of the inducing points and the batch inputs."""
        return self.posterior.prior_terms

    @property
    def shape(self) -> torch.Size:
        return self.posterior.latent_batch.y.shape

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """:meth:`AmortizedHybridPosterior.rsample_data` (the fused core when nothing is computed yet)."""
        return self.posterior.rsample_data(torch.Size(sample_shape), noise)

    @property
    def mean(self) -> Tensor:
        return self.posterior.data_marginals().loc

    def kl_divergence(self) -> Tensor:
        r""":math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|\,p^l(\mathbf u))`."""
        return self.kl_scale * self.posterior.kl_divergence().sum()

    def predict(self, x: Tensor) -> MultivariateNormal:
        r""":math:`q_S(\mathbf z(\mathbf x_*))` of Eq. 3, marginals."""
        check_inputs(x, self.input_dim, self.posterior.batch_shape)
        q_f = self.posterior.predict(self.gp_inputs(x), diag=True)
        return marginal_distribution(q_f.mean, q_f.variance)


class SparseLatentPrior(LatentPrior):
    r"""SVGP-VAE latent prior over an :class:`~gpytorch.models.ApproximateGP` whose strategy is
    :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`.

    The posterior of a batch draws :math:`\mathbf v\sim q_S(\mathbf v)` (Eq. 9, whitened, its KL scaled by
    :math:`b/N`) and :math:`z_i\mid\mathbf v\sim p(f(\mathbf x_i)\mid\mathbf v)`. The ELBO is
    :math:`\sum_i\mathbb E_{q_S}[\log p(\mathbf y_i\mid\mathbf z_i)] - \frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|
    \,p^l(\mathbf u))`, the expectation of Eq. 10 (derivation: ``docs/objective.md``). At test time
    :meth:`condition_on_batches` accumulates the whitened statistics of any number of batches in :math:`O(m^2)`
    memory.

    :param gp: the latent GP (e.g. :class:`~gpytorch_vae.gps.SparseLatentGP`).
    :param input_map: optional module mapping auxiliary data to GP inputs.
    """

    def __init__(self, gp, input_map: torch.nn.Module | None = None):
        super().__init__(input_map)
        self.gp = gp

    @property
    def strategy(self):
        return self.gp.variational_strategy

    def _input_dim(self) -> int | None:
        return self.strategy.inducing_points.size(-1) if self.input_map is None else None

    def gp_inputs(self, x: Tensor) -> Tensor:
        """The GP inputs of auxiliary data ``x``, in the dtype and on the device of the inducing points."""
        x = x if self.input_map is None else self.input_map(x)
        like = self.gp.variational_strategy.inducing_points
        return x if x.dtype == like.dtype and x.device == like.device else x.to(like)

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None,
                  observed: Tensor | None = None) -> SparseLatentPosterior:  # fmt: skip
        """Points where ``observed`` is false carry no data (zero precision in Eq. 9's statistics)."""
        check_latent_data(x, mean, var, observed)
        num_data = check_num_data(num_data, mean.size(-1))
        inputs = x if self.input_map is None else self.input_map(x)  # cast by the strategy, with the latent data
        posterior = self.gp.variational_strategy.condition(inputs, mean, var, num_data, observed, checked=True)
        # b of the union batch when the strategy combines several ranks' shards, else this batch's
        kl_scale = 1.0 if num_data is None else posterior.num_points / num_data
        return SparseLatentPosterior(posterior, self.gp_inputs, kl_scale, x.size(-1))

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, ...]],
                             reduce: bool | None = None) -> SparseLatentPosterior:  # fmt: skip
        """Streaming conditioning on all the batches (:math:`b = N`) through their whitened statistics
        (``reduce``: see :meth:`AmortizedHybridVariationalStrategy.accumulate_statistics
        <gpytorch_vae.variational.AmortizedHybridVariationalStrategy.accumulate_statistics>`)."""
        input_dims = []

        def checked(x, mean, var, observed=None):
            check_latent_data(x, mean, var, observed)
            input_dims.append(x.size(-1))
            return self.gp_inputs(x), mean, var, observed

        stats = self.strategy.accumulate_statistics((checked(*batch) for batch in batches), reduce=reduce)
        posterior = self.strategy.condition_on_statistics(stats)
        return SparseLatentPosterior(posterior, self.gp_inputs, 1.0, input_dims[0] if input_dims else None)
