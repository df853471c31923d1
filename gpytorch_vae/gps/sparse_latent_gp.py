"""A ready-made ApproximateGP using the SVGP-VAE strategy."""

from __future__ import annotations

from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.means import Mean, ZeroMean
from gpytorch.models import ApproximateGP
from torch import Tensor

from ..variational import AmortizedHybridVariationalStrategy


class SparseLatentGP(ApproximateGP):
    r"""An :class:`~gpytorch.models.ApproximateGP` with
    :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`, for any GPyTorch kernel.

    The GP batch shape (e.g. ``[L]`` latent channels) comes from the kernel's ``batch_shape``; one GP per channel.
    Subclass :class:`~gpytorch.models.ApproximateGP` yourself when ``forward`` must do more (e.g. GP-LVM look-ups).

    :param inducing_points: :math:`\mathbf U`, ``(m, D)`` or ``(*batch, m, D)``.
    :param covar_module: the kernel.
    :param mean_module: the prior mean (default: zero, with the kernel's batch shape).
    :param learn_inducing_locations: whether :math:`\mathbf U` is learned.
    :param jitter_val: jitter added to :math:`\mathbf K_{mm}`.
    :param statistics_reducer: combines the ranks' statistics in data-parallel training (see
        :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy`).
    """

    def __init__(
        self,
        inducing_points: Tensor,
        covar_module: Kernel,
        mean_module: Mean | None = None,
        learn_inducing_locations: bool = True,
        jitter_val: float | None = None,
        statistics_reducer=None,
    ):
        strategy = AmortizedHybridVariationalStrategy(
            self,
            inducing_points,
            learn_inducing_locations=learn_inducing_locations,
            jitter_val=jitter_val,
            statistics_reducer=statistics_reducer,
        )
        super().__init__(strategy)
        self.covar_module = covar_module
        self.mean_module = ZeroMean(batch_shape=covar_module.batch_shape) if mean_module is None else mean_module

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def set_latent_data(self, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None = None) -> None:
        """Shortcut for ``self.variational_strategy.set_latent_data``."""
        self.variational_strategy.set_latent_data(x, y, noise, num_data)
