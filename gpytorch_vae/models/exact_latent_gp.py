"""Pearce's (2020) exact latent GP: exact GP regression on the latent dataset with heteroscedastic noise."""

from __future__ import annotations

import torch
from gpytorch import settings
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.means import Mean, ZeroMean
from gpytorch.models import ExactGP
from torch import Tensor

from ..variational.latent_data import validate_latent_data


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
    :class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood` holding the encoder variances. Unlike a plain
    ``ExactGP``, :meth:`posterior` conditions in training mode too, keeps gradients with respect to the latent data
    (``detach_test_caches`` off), uses Cholesky at any size and recomputes everything at each call.

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

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def set_latent_data(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None) -> None:
        """Condition on the latent dataset (``num_data`` is accepted for a common interface; it must be ``b``)."""
        validate_latent_data(x, y, noise)
        if num_data is not None and int(num_data) != y.size(-1):
            raise ValueError("the exact latent GP needs the whole dataset in one batch (num_data == b)")
        # ExactGP does not broadcast inputs over batch dimensions (e.g. latent channels): expand explicitly.
        x = x.expand(*y.shape[:-1], *x.shape[-2:])
        self.set_train_data(inputs=x, targets=y, strict=False)
        self.likelihood.noise = noise

    def _require_data(self) -> tuple[Tensor, Tensor]:
        if self.train_targets is None:
            raise RuntimeError("ExactLatentGP has no latent data: call set_latent_data(x, y, noise) first")
        return self.train_inputs[0], self.train_targets

    def prior(self, x: Tensor | None = None) -> MultivariateNormal:
        r"""The GP prior :math:`p(\mathbf z) = \mathcal N(\mathbf m, \mathbf K_{XX})` at ``x`` (default: the latent
        inputs)."""
        x = self._require_data()[0] if x is None else x
        return self.forward(x)

    def log_marginal_likelihood(self) -> Tensor:
        r""":math:`\log Z = \log\mathcal N(\tilde{\mathbf y}\mid\mathbf m, \mathbf K_{XX} + \mathrm{diag}
        (\tilde{\boldsymbol\sigma}^2))` per GP, shape ``(*batch)``."""
        x, y = self._require_data()
        with settings.max_cholesky_size(float("inf")):
            return self.likelihood(self.forward(x)).log_prob(y)

    def posterior(self, x: Tensor | None = None) -> MultivariateNormal:
        r"""The exact posterior :math:`q(\mathbf z)` at ``x`` (default: the latent inputs, Pearce's Eq. 1)."""
        train_x, _ = self._require_data()
        x = train_x if x is None else x.expand(*train_x.shape[:-2], *x.shape[-2:])
        was_training = self.training
        self.prediction_strategy = None  # never reuse caches: the latent data changes with every batch
        self.train(False)
        try:
            with settings.detach_test_caches(False), settings.max_cholesky_size(float("inf")), settings.debug(False):
                return ExactGP.__call__(self, x)
        finally:
            self.prediction_strategy = None
            self.train(was_training)
