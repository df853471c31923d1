"""A parameter-free stand-in for q(u) when q(u) is computed from data rather than learned."""

from __future__ import annotations

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.variational import _VariationalDistribution


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
