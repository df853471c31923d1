"""The SVGP-VAE hybrid strategy: Titsias-optimal q(u) from a minibatch, used in the Hensman bound."""

from __future__ import annotations

from typing import Iterable, Union

import torch
from gpytorch import settings
from gpytorch.distributions import MultivariateNormal
from gpytorch.module import Module
from gpytorch.variational import _VariationalDistribution
from gpytorch.variational._variational_strategy import _VariationalStrategy
from linear_operator.operators import RootLinearOperator
from pyro.distributions import MultivariateNormal as PyroMultivariateNormal
from torch import Tensor

from .amortized_hybrid_posterior import AmortizedHybridPosterior
from .diagnostics import check_memory
from .latent_data import LatentBatch, check_channels
from .latent_statistics import StatisticsReducer, WhitenedLatentStatistics
from .prior_terms import WhitenedPriorTerms

Conditioning = Union[LatentBatch, WhitenedLatentStatistics]


def _same_points(x: Tensor, stored: Tensor) -> bool:
    return x is stored or (x.shape == stored.shape and x.dtype == stored.dtype and bool(torch.equal(x, stored)))


class AmortizedVariationalDistribution(_VariationalDistribution):
    r"""The variational distribution of an amortized strategy: it has no parameters, and calling it returns the
    strategy's current :math:`q(\mathbf u)`, computed from the latent data.

    GPyTorch's base class reads ``dtype``/``device`` from the first parameter, which this class does not have;
    they come from the strategy's inducing points instead.
    """

    def __init__(self, strategy, num_inducing_points: int):
        super().__init__(num_inducing_points=num_inducing_points)
        object.__setattr__(self, "_strategy", strategy)  # not a submodule: avoid a module cycle

    @property
    def dtype(self) -> torch.dtype:
        return self._strategy.inducing_points.dtype

    @property
    def device(self) -> torch.device:
        return self._strategy.inducing_points.device

    def forward(self) -> MultivariateNormal:
        return self._strategy.variational_distribution

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        """Nothing to initialise: :math:`q(\\mathbf u)` is a function of the latent data."""


class AmortizedHybridVariationalStrategy(_VariationalStrategy):
    r"""SVGP-VAE's amortized sparse GP (Jazbec et al. 2021, Sec. 3.4) as a GPyTorch variational strategy.

    :math:`q(\mathbf u)` over :math:`\mathbf u = f(\mathbf U)` is not a free parameter. It is the batch-Titsias
    optimum (Eq. 9) of the current *latent dataset* :math:`\{\mathbf X_b, \tilde{\mathbf y}_b,
    \tilde{\boldsymbol\sigma}^2_b\}` (encoder means and variances), with :math:`c = N/b`:

    .. math::
        \boldsymbol\Sigma_b = \mathbf K_{mm} + c\,\mathbf K_{mb}\mathbf D_b\mathbf K_{bm},\quad
        \boldsymbol\mu_b = c\,\mathbf K_{mm}\boldsymbol\Sigma_b^{-1}\mathbf K_{mb}\mathbf D_b\tilde{\mathbf y}_b,\quad
        \mathbf A_b = \mathbf K_{mm}\boldsymbol\Sigma_b^{-1}\mathbf K_{mm},

    :math:`\mathbf D_b = \mathrm{diag}(\tilde{\boldsymbol\sigma}_b^{-2})`, computed in whitened form (see
    :func:`~gpytorch_vae.variational.latent_statistics.whitened_titsias_posterior`).

    **Stateless core.** :meth:`condition` (a latent batch) and :meth:`condition_on_statistics` (statistics
    accumulated by :meth:`latent_statistics` / :meth:`accumulate_statistics`, e.g. over a whole data set at test
    time) return an :class:`~gpytorch_vae.variational.AmortizedHybridPosterior` that predicts, gives :math:`q(\mathbf
    u)`, the KL and the bound. They read nothing but the model's parameters and their arguments.

    **Convenience layer (GPyTorch style).** :meth:`set_latent_data` (or :meth:`condition_on_batches`) stores the
    latent data; then :attr:`variational_distribution`, calling the model (:math:`q_S(\mathbf f(\mathbf X_r))` of
    Eq. 3), :meth:`kl_divergence` and :meth:`hensman_bound` use the posterior of the stored data. Caching follows
    GPyTorch's strategies in training mode: calling the model computes the posterior once and the calls after it
    (e.g. :class:`gpytorch.mlls.VariationalELBO`'s :meth:`kl_divergence`) reuse it, until the next call of the model
    or new latent data. In eval mode nothing is cached (:math:`q(\mathbf u)` is a function of data that changes at
    every batch, and a stale amortized posterior would be silently wrong).

    Shapes: with GP batch shape ``(*batch)`` (e.g. ``[L]`` latent channels from the kernel, or ``[B, L]`` for ``B``
    independent datasets) the latent targets and noise are ``(*batch, b)`` and ``x`` is ``(..., b, D)``,
    broadcastable to ``(*batch, b, D)`` (``(b, D)`` for data shared by all channels, ``(B, 1, b, D)`` for ``B``
    datasets).

    :param model: the :class:`~gpytorch.models.ApproximateGP` this strategy belongs to.
    :param inducing_points: :math:`\mathbf U`, ``(m, D)`` or ``(*batch, m, D)``.
    :param learn_inducing_locations: whether :math:`\mathbf U` is a parameter.
    :param jitter_val: jitter added to :math:`\mathbf K_{mm}` (default: GPyTorch's ``variational_cholesky_jitter`` of
        ``compute_dtype``: 1e-6 in float64, against 1e-4 in float32; with a long lengthscale and small encoder
        variances the KL depends strongly on it, so a float32 model keeps float64's jitter).
    :param compute_dtype: dtype of everything after the kernel evaluation (the Cholesky factors, Eq. 9, the KL and
        the bound): float64 by default, also for a float32 model, whose kernel still runs in float32. Eq. 9 adds
        :math:`c\,\boldsymbol\Phi\mathbf D\boldsymbol\Phi^\top` (entries up to :math:`(N/b)/\tilde\sigma^2`) to
        :math:`\mathbf I`, and in float32 the KL can be several times off (tested). The posterior objects of the
        stateless core hold and return ``compute_dtype`` tensors; the convenience layer returns the model's dtype.
        ``None``: the model's dtype throughout.
    :param statistics_reducer: a :class:`~gpytorch_vae.variational.StatisticsReducer` that combines the statistics
        of the ranks' shards of a training batch (e.g. :class:`gpytorch_vae.distributed.StatisticsAllReduce`): in
        training mode every rank then gets the posterior of the union batch. In eval mode, each process conditions
        on what it is given (no collective), unless :meth:`accumulate_statistics` is told otherwise. Default: none.
    """

    def __init__(
        self,
        model,
        inducing_points: Tensor,
        learn_inducing_locations: bool = True,
        jitter_val: float | None = None,
        compute_dtype: torch.dtype | None = torch.float64,
        statistics_reducer: StatisticsReducer | None = None,
    ):
        distribution = AmortizedVariationalDistribution(self, inducing_points.size(-2))
        super().__init__(model, inducing_points, distribution, learn_inducing_locations, jitter_val=jitter_val)
        self.compute_dtype = compute_dtype
        self.statistics_reducer = statistics_reducer
        if jitter_val is None:  # GPyTorch's default for the dtype the factorisations run in
            self.jitter_val = settings.variational_cholesky_jitter.value(self._dtype)
        self.variational_params_initialized.fill_(1)
        if statistics_reducer is not None and not isinstance(statistics_reducer, StatisticsReducer):
            raise TypeError(f"statistics_reducer must be a StatisticsReducer, got {type(statistics_reducer).__name__}")
        self._conditioning: Conditioning | None = None
        self._statistics_num_data: int | None = None
        self._posterior_memo: AmortizedHybridPosterior | None = None  # training mode: from the last model call
        self._memory_checked_for: tuple | None = None  # the shapes of the last memory estimate

    def _reduces(self, reduce: bool | None = None) -> bool:
        """Whether statistics are combined over the ranks: ``reduce``, or by default in training mode."""
        return self.statistics_reducer is not None and (self.training if reduce is None else bool(reduce))

    # ------------------------------------------------------------------ stateless core
    def prior_terms(self, x: Tensor, **kwargs) -> WhitenedPriorTerms:
        r"""The whitened prior terms of :math:`\mathbf U` and the GP inputs ``x``: one evaluation of the model's prior
        on :math:`[\mathbf U; \mathbf X]`, one Cholesky factorisation of :math:`\mathbf K_{mm}`. Terms that would not
        fit in memory are refused before allocating (estimated when the shapes change, not at every step)."""
        batch_shape = torch.broadcast_shapes(self.inducing_points.shape[:-2], x.shape[:-2])
        shapes = (batch_shape, self.inducing_points.size(-2), x.size(-2), self.compute_dtype or self.inducing_points.dtype)
        if shapes != self._memory_checked_for:
            check_memory(self.model, *shapes)
            self._memory_checked_for = shapes
        return WhitenedPriorTerms.compute(
            self.model, x, self.inducing_points, self.jitter_val, self.compute_dtype, **kwargs
        )

    @property
    def _dtype(self) -> torch.dtype:
        return self.compute_dtype or self.inducing_points.dtype

    def _cast(self, x: Tensor, y: Tensor, noise: Tensor) -> tuple[Tensor, ...]:
        """GP inputs to the model's dtype, latent data to the compute dtype (no cast when they already match)."""
        like = self.inducing_points
        dtype, device = self.compute_dtype or like.dtype, like.device
        x = x if x.dtype == like.dtype and x.device == device else x.to(like)
        y = y if y.dtype == dtype and y.device == device else y.to(device=device, dtype=dtype)
        noise = noise if noise.dtype == dtype and noise.device == device else noise.to(device=device, dtype=dtype)
        return x, y, noise

    def _model_dtype(self, value):
        """A tensor or MultivariateNormal in the model's dtype (the convenience layer's outputs)."""
        dtype = self.inducing_points.dtype
        if isinstance(value, MultivariateNormal):
            return (
                value
                if value.mean.dtype == dtype
                else MultivariateNormal(value.mean.to(dtype), value.lazy_covariance_matrix.to(dtype))
            )
        return value.to(dtype)

    def condition(
        self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None, observed: Tensor | None = None,
        checked: bool = False,
    ) -> AmortizedHybridPosterior:  # fmt: skip
        r"""The posterior given a minibatch of the latent dataset (Eq. 9 with :math:`c = N/b`).

        :param x: GP inputs :math:`\mathbf X_b`, ``(..., b, D)``.
        :param y: encoder means :math:`\tilde{\mathbf y}_b`, ``(*batch, b)``.
        :param noise: encoder variances :math:`\tilde{\boldsymbol\sigma}^2_b`, ``(*batch, b)``, positive.
        :param num_data: :math:`N`, the size of the whole dataset (default :math:`b`).
        :param observed: optional boolean mask broadcastable to ``y``: points where it is false carry no data (zero
            precision), e.g. the padding of data sets of unequal sizes batched together.
        :param checked: whether the caller has checked the latent data (:func:`check_latent_data`,
            :func:`check_num_data`; a latent prior has): they are not checked again.
        """
        batch = LatentBatch.create(*self._cast(x, y, noise), num_data, self.inducing_points.size(-1), observed,
                                   checked)  # fmt: skip
        terms = self.prior_terms(batch.x)
        check_channels(batch.y, terms.chol.shape[:-2])
        if self.statistics_reducer is None or not self._reduces():
            return AmortizedHybridPosterior(terms, self.prior_terms, latent_batch=batch, scale=batch.scale)
        local = WhitenedLatentStatistics.from_interpolation(terms.interp, batch.y - terms.data_mean, batch.noise)
        reduced = self.statistics_reducer(local)  # the union batch of all ranks: c = N / b with b = sum_r b_r
        return AmortizedHybridPosterior(
            terms,
            self.prior_terms,
            latent_batch=batch,
            statistics=reduced,
            scale=batch.num_data / reduced.num_points,
            statistics_reduced=True,
        )

    def latent_statistics(self, x: Tensor, y: Tensor, noise: Tensor, observed: Tensor | None = None,
                          ) -> WhitenedLatentStatistics:  # fmt: skip
        """Whitened sufficient statistics of one batch of latent data under the current hyperparameters (in the
        compute dtype); points where ``observed`` is false add nothing (as in :meth:`condition`)."""
        batch = LatentBatch.create(*self._cast(x, y, noise), None, self.inducing_points.size(-1), observed)
        terms = self.prior_terms(batch.x)
        check_channels(batch.y, terms.chol.shape[:-2])
        return WhitenedLatentStatistics.from_interpolation(terms.interp, batch.y - terms.data_mean, batch.noise)

    def accumulate_statistics(
        self, batches: Iterable[tuple[Tensor, Tensor, Tensor]], reduce: bool | None = None
    ) -> WhitenedLatentStatistics:
        r"""The summed statistics of ``(x, y, noise)`` (or ``(x, y, noise, observed)``) batches (e.g. a
        :class:`~torch.utils.data.DataLoader` through the encoder), in :math:`O(m^2)` memory. Run it under
        :func:`torch.no_grad` at test time. With a statistics reducer, ``reduce=True`` sums them over the ranks too
        (each rank streams its share of the data); the default does so in training mode only."""
        total = None
        for batch in batches:  # (x, y, noise) or (x, y, noise, observed)
            stats = self.latent_statistics(*batch)
            total = stats if total is None else total + stats
        if total is None:
            raise ValueError("no batches to accumulate: the iterable of (x, y, noise) batches was empty")
        return self.statistics_reducer(total) if self._reduces(reduce) else total

    def condition_on_statistics(
        self, statistics: WhitenedLatentStatistics, num_data: int | None = None
    ) -> AmortizedHybridPosterior:
        r"""The posterior given accumulated statistics (:math:`c = N/n`; default 1, all data seen: the same
        :math:`q(\mathbf u)` as one batch of all the data with :math:`b = N`)."""
        num_data = statistics.num_points if num_data is None else int(num_data)
        if num_data < statistics.num_points:
            raise ValueError(f"num_data ({num_data}) must be at least the {statistics.num_points} points summarised")
        scale = num_data / statistics.num_points
        terms = self.prior_terms(self.inducing_points[..., :0, :])
        return AmortizedHybridPosterior(terms, self.prior_terms, statistics=statistics, scale=scale)

    # ------------------------------------------------------------------ convenience layer: stored latent data
    def set_latent_data(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None) -> None:
        r"""Store a minibatch of the latent dataset; :attr:`variational_distribution`, the model's predictions,
        :meth:`kl_divergence` and :meth:`hensman_bound` then condition on it (Eq. 9 with :math:`c = N/b`).
        Arguments as for :meth:`condition` (checked here)."""
        self._conditioning = LatentBatch.create(*self._cast(x, y, noise), num_data, self.inducing_points.size(-1))
        self._posterior_memo = None

    def set_latent_statistics(self, stats: WhitenedLatentStatistics, num_data: int | None = None) -> None:
        r"""Store accumulated statistics to condition on (:math:`c = N/n`, default 1: all data seen)."""
        num_data = stats.num_points if num_data is None else int(num_data)
        self._conditioning, self._statistics_num_data = stats, num_data
        self._posterior_memo = None

    def condition_on_batches(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]]) -> WhitenedLatentStatistics:
        r"""Streaming conditioning: :meth:`accumulate_statistics` of ``(x, y, noise)`` batches, stored as with
        :meth:`set_latent_statistics` (the same :math:`q(\mathbf u)` as one batch of all the data with
        :math:`b = N`). Returns the statistics."""
        total = self.accumulate_statistics(batches)
        self.set_latent_statistics(total)
        return total

    def current_posterior(self) -> AmortizedHybridPosterior:
        """The posterior of the stored latent data or statistics: in training mode the one the last call of the model
        computed (if any since the data were stored), else computed anew."""
        if self.training and self._posterior_memo is not None:
            return self._posterior_memo
        return self._fresh_posterior()

    def train(self, mode: bool = True):
        self._posterior_memo = None
        return super().train(mode)

    def _fresh_posterior(self) -> AmortizedHybridPosterior:
        conditioning = self._conditioning
        if conditioning is None:
            raise RuntimeError(
                "AmortizedHybridVariationalStrategy has no latent data: call set_latent_data(x, y, noise, num_data) "
                "or condition_on_batches(...) first, or use condition(...) to get a posterior object"
            )
        if isinstance(conditioning, LatentBatch):
            return self.condition(conditioning.x, conditioning.y, conditioning.noise, conditioning.num_data)
        return self.condition_on_statistics(conditioning, self._statistics_num_data)

    @property
    def whitened_variational_distribution(self) -> PyroMultivariateNormal:
        r""":math:`q(\mathbf v) = \mathcal N(\mathbf m_w, \mathbf B^{-1})`, :math:`\mathbf v = \mathbf L^{-1}(\mathbf u
        - \mathbf m_U)`, of the stored latent data, as a Pyro distribution."""
        return self.current_posterior().whitened_posterior

    @property
    def whitened_prior_distribution(self) -> PyroMultivariateNormal:
        r""":math:`p(\mathbf v) = \mathcal N(\mathbf 0, \mathbf I)` with the batch shape of the stored latent data."""
        return self.current_posterior().whitened_prior

    @property
    def prior_distribution(self) -> MultivariateNormal:
        r""":math:`p(\mathbf u) = \mathcal N(m(\mathbf U), \mathbf K_{mm})` (with jitter), recomputed at each call."""
        terms = self.prior_terms(self.inducing_points[..., :0, :])
        return self._model_dtype(MultivariateNormal(terms.inducing_mean, RootLinearOperator(terms.chol)))

    @property
    def variational_distribution(self) -> MultivariateNormal:
        r""":math:`q_S(\mathbf u) = \mathcal N(\boldsymbol\mu_b, \mathbf A_b)` of Eq. 9 for the stored latent data."""
        return self._model_dtype(self.current_posterior().variational_distribution)

    def kl_divergence(self) -> Tensor:
        r""":math:`\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))` per GP, shape ``(*batch)``, for the stored data."""
        return self._model_dtype(self.current_posterior().kl_divergence())

    def expected_log_likelihood(self) -> Tensor:
        """:meth:`AmortizedHybridPosterior.expected_log_likelihood` for the stored latent batch."""
        return self._model_dtype(self.current_posterior().expected_log_likelihood())

    def hensman_bound(self) -> Tensor:
        """:meth:`AmortizedHybridPosterior.hensman_bound` (Eq. 7) for the stored latent batch."""
        return self._model_dtype(self.current_posterior().hensman_bound())

    # ------------------------------------------------------------------ GPyTorch's call protocol
    def forward(
        self,
        x: Tensor,
        inducing_points: Tensor,
        inducing_values: Tensor,
        variational_inducing_covar: Tensor | None = None,
        diag: bool = True,
        **kwargs,
    ) -> MultivariateNormal:
        r""":math:`q(\mathbf f_X)` for a whitened :math:`q(\mathbf v) = \mathcal N(` ``inducing_values``,
        :math:`\mathbf S\mathbf S^\top)`, with :math:`\mathbf S` = ``variational_inducing_covar`` (a lower Cholesky
        root; ``None`` gives the prior conditional :math:`p(\mathbf f_X\mid\mathbf v)`). In training mode only the
        marginals are computed (as GPyTorch's strategies do), in eval mode the full covariance."""
        terms = WhitenedPriorTerms.compute(
            self.model, x, inducing_points, self.jitter_val, self.compute_dtype, **kwargs
        )
        predictive = terms.predictive(inducing_values, variational_inducing_covar, diag=diag and self.training)
        return self._model_dtype(predictive)

    def __call__(self, x: Tensor, prior: bool = False, diag: bool = True, **kwargs) -> MultivariateNormal:
        if prior:
            return self.model.forward(x, **kwargs)
        posterior = self._fresh_posterior()
        self._posterior_memo = posterior if self.training else None
        q_v = posterior.whitened_posterior
        batch = posterior.latent_batch
        if not kwargs and batch is not None and _same_points(x, batch.x):
            # predicting at the stored batch's inputs (e.g. VariationalELBO on the batch): the posterior already holds
            # their prior terms, so the kernel is evaluated and K_mm factorised once per step
            terms = posterior.prior_terms
            return self._model_dtype(terms.predictive(q_v.loc, q_v.scale_tril, diag=diag and self.training))
        return Module.__call__(self, x, self.inducing_points, q_v.loc, q_v.scale_tril, diag=diag, **kwargs)

    def conditional(self, x: Tensor, whitened_inducing_values: Tensor, diag: bool = True) -> MultivariateNormal:
        r"""The prior conditional :math:`p(\mathbf f_X \mid \mathbf u)` at whitened inducing values
        :math:`\mathbf v = \mathbf L^{-1}(\mathbf u - \mathbf m_U)` (marginals only when ``diag``)."""
        return self._model_dtype(self.prior_terms(x).predictive(whitened_inducing_values, None, diag=diag))
