"""Pearce's (2020) exact latent GP: exact GP regression on the latent dataset with heteroscedastic noise."""

from __future__ import annotations

import contextlib
import inspect
from functools import cached_property

import torch
from gpytorch import settings
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.means import Mean, ZeroMean
from gpytorch.models import ExactGP
from gpytorch.models.exact_prediction_strategies import DefaultPredictionStrategy, prediction_strategy
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

from ..variational.diagnostics import not_positive_definite
from ..variational.latent_data import LatentBatch, check_channels

#: whether GPyTorch's exact prediction takes the test blocks (1.15) rather than the joint prior (1.11-1.14)
_TEST_BLOCKS_SIGNATURE = len(inspect.signature(DefaultPredictionStrategy.exact_prediction).parameters) > 3


@contextlib.contextmanager
def _exact_settings(gp: ExactLatentGP, x: Tensor):
    """Cholesky at any size, gradients through the prediction caches (to the latent data), no debug checks; a
    covariance that cannot be factorised gets the library's message, naming the likely cause (e.g. a negative
    outputscale)."""
    with settings.detach_test_caches(False), settings.max_cholesky_size(float("inf")), settings.debug(False):
        try:
            yield
        except NotPSDError as error:
            jitter = settings.cholesky_jitter.value(x.dtype)
            message = not_positive_definite(gp, x, "latent inputs", jitter, "gpytorch.settings.cholesky_jitter")
            raise ValueError(message) from error


class ExactGPPosterior:
    r"""The exact GP posterior of one latent dataset :math:`\{\mathbf X, \tilde{\mathbf y}, \tilde{\boldsymbol
    \sigma}^2\}`, made by :meth:`ExactLatentGP.condition`. It holds GPyTorch's exact prediction strategy (built
    as :class:`~gpytorch.models.ExactGP` builds it, without storing anything in the model), so the Cholesky
    factor of :math:`\mathbf K_{XX} + \mathrm{diag}(\tilde{\boldsymbol\sigma}^2)` is computed once per latent
    dataset. Valid for the hyperparameters it was computed with.

    :param gp: the :class:`ExactLatentGP`.
    :param x: GP inputs, expanded to the GP batch, ``(*batch, b, D)``.
    :param y: latent targets ``(*batch, b)``.
    :param noise: their variances ``(*batch, b)``.
    """

    def __init__(self, gp: ExactLatentGP, x: Tensor, y: Tensor, noise: Tensor):
        self.gp, self.x, self.y, self.noise = gp, x, y, noise
        self.prior = gp.forward(x)
        self.likelihood = FixedNoiseGaussianLikelihood(noise=noise, learn_additional_noise=False)
        with _exact_settings(self.gp, self.x):
            self.strategy = prediction_strategy((x,), self.prior, y, self.likelihood)

    def log_marginal_likelihood(self) -> Tensor:
        r""":math:`\log Z = \log\mathcal N(\tilde{\mathbf y}\mid\mathbf m, \mathbf K_{XX} + \mathrm{diag}
        (\tilde{\boldsymbol\sigma}^2))` per GP, shape ``(*batch)``."""
        with _exact_settings(self.gp, self.x):
            return self.likelihood(self.prior).log_prob(self.y)

    def predict(self, x_new: Tensor) -> MultivariateNormal:
        r"""The posterior of the noise-free latent function at GP inputs ``x_new`` ``(..., r, D)`` (full covariance),
        computed as :meth:`gpytorch.models.ExactGP.__call__` does in eval mode."""
        x_new = x_new.expand(*self.x.shape[:-2], *x_new.shape[-2:])
        n = self.x.size(-2)
        joint = self.gp.forward(torch.cat([self.x, x_new], dim=-2))
        covar = joint.lazy_covariance_matrix
        with _exact_settings(self.gp, self.x):
            if _TEST_BLOCKS_SIGNATURE:  # GPyTorch >= 1.15
                test_mean, test_test, test_train = joint.mean[..., n:], covar[..., n:, n:], covar[..., n:, :n]
                mean, covar = self.strategy.exact_prediction(test_mean, test_test, test_train)
            else:  # GPyTorch 1.11-1.14 take the joint prior
                mean, covar = self.strategy.exact_prediction(joint.mean, covar)
        return MultivariateNormal(mean, covar)

    @cached_property
    def at_data(self) -> MultivariateNormal:
        r""":math:`q(\mathbf z)` at the latent inputs (Pearce's Eq. 1)."""
        return self.predict(self.x)


class ExactLatentGP(ExactGP):
    r"""Exact GP posterior of a latent dataset, the GP part of Pearce's GP-VAE (SVGP-VAE paper Eqs. 1-2).

    Give it a kernel (and mean), or subclass it like an :class:`~gpytorch.models.ExactGP`. For the latent dataset
    :math:`\{\mathbf X, \tilde{\mathbf y}, \tilde{\boldsymbol\sigma}^2\}` of one channel, with
    :math:`\mathbf C = \mathbf K_{XX} + \mathrm{diag}(\tilde{\boldsymbol\sigma}^2)`,

    .. math::
        q(\mathbf z) = \mathcal N\big(\mathbf m + \mathbf K_{XX}\mathbf C^{-1}(\tilde{\mathbf y} - \mathbf m),\;
        \mathbf K_{XX} - \mathbf K_{XX}\mathbf C^{-1}\mathbf K_{XX}\big), \qquad
        \log Z = \log\mathcal N(\tilde{\mathbf y}\mid\mathbf m, \mathbf C),

    computed by GPyTorch's exact prediction strategy with a
    :class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood` holding the encoder variances.

    **Stateless core**: :meth:`condition` returns an :class:`ExactGPPosterior`. **Convenience layer**:
    :meth:`set_latent_data` stores the latent data (also as the ``ExactGP``'s training data), then
    :meth:`posterior`, :meth:`log_marginal_likelihood` and :meth:`prior` use it. Unlike a plain ``ExactGP``,
    the posterior is available in training mode too, keeps gradients with respect to the latent data
    (``detach_test_caches`` off), uses Cholesky at any size and is recomputed at each call (the latent data
    change with every batch).

    Shapes as for :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`: ``y``/``noise``
    ``(*batch, b)``, ``x`` ``(..., b, D)`` broadcastable to the GP batch.

    :param covar_module: the kernel (optional when a subclass sets it).
    :param mean_module: the prior mean (default: zero with the kernel's batch shape).
    """

    def __init__(self, covar_module: Kernel | None = None, mean_module: Mean | None = None):
        likelihood = FixedNoiseGaussianLikelihood(noise=torch.ones(1), learn_additional_noise=False)
        super().__init__(None, None, likelihood)
        if covar_module is not None:
            self.covar_module = covar_module
            self.mean_module = ZeroMean(batch_shape=covar_module.batch_shape) if mean_module is None else mean_module
        self._latent_batch: LatentBatch | None = None

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    @staticmethod
    def _checked(x: Tensor, y: Tensor, noise: Tensor, num_data: int | None, checked: bool = False) -> LatentBatch:
        batch = LatentBatch.create(x, y, noise, num_data, checked=checked)
        if batch.num_data != batch.num_points:
            raise ValueError(
                f"the exact latent GP needs the whole dataset in one batch: num_data ({batch.num_data}) != b "
                f"({batch.num_points})"
            )
        return batch

    def condition(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None,
                  checked: bool = False) -> ExactGPPosterior:  # fmt: skip
        """The exact posterior of the latent dataset (``num_data`` is accepted for a common interface; it must be
        ``b``). ExactGP does not broadcast inputs over batch dimensions (e.g. latent channels): ``x`` is expanded.
        ``checked``: as for :meth:`AmortizedHybridVariationalStrategy.condition
        <gpytorch_vae.variational.AmortizedHybridVariationalStrategy.condition>`."""
        batch = self._checked(x, y, noise, num_data, checked)
        check_channels(batch.y, self.covar_module.batch_shape)
        return ExactGPPosterior(self, batch.x.expand(*y.shape[:-1], *x.shape[-2:]), batch.y, batch.noise)

    # ------------------------------------------------------------------ convenience layer
    def set_latent_data(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None) -> None:
        """Store the latent dataset (and set it as the ``ExactGP``'s training data)."""
        self._latent_batch = self._checked(x, y, noise, num_data)
        self.set_train_data(inputs=x.expand(*y.shape[:-1], *x.shape[-2:]), targets=y, strict=False)
        self.likelihood.noise = noise

    def _stored(self) -> ExactGPPosterior:
        if self._latent_batch is None:
            raise RuntimeError("ExactLatentGP has no latent data: call set_latent_data(x, y, noise) first")
        batch = self._latent_batch
        return self.condition(batch.x, batch.y, batch.noise)

    def prior(self, x: Tensor | None = None) -> MultivariateNormal:
        r"""The GP prior :math:`p(\mathbf z) = \mathcal N(\mathbf m, \mathbf K_{XX})` at ``x`` (default: the latent
        inputs)."""
        return self._stored().prior if x is None else self.forward(x)

    def log_marginal_likelihood(self) -> Tensor:
        """:meth:`ExactGPPosterior.log_marginal_likelihood` of the stored latent data."""
        return self._stored().log_marginal_likelihood()

    def posterior(self, x: Tensor | None = None) -> MultivariateNormal:
        r"""The exact posterior :math:`q(\mathbf z)` at ``x`` (default: the latent inputs, Pearce's Eq. 1)."""
        posterior = self._stored()
        return posterior.at_data if x is None else posterior.predict(x)
