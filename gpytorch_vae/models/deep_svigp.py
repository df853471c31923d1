"""Deep SVIGP (Hensman et al. 2013 with a neural likelihood): the non-amortized baseline of the SVGP-VAE paper."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.means import ZeroMean
from gpytorch.models import ApproximateGP
from gpytorch.variational import CholeskyVariationalDistribution, VariationalStrategy
from pyro.nn import PyroModule
from torch import Tensor

from .gp_vae import _register


class SVIGPLatentGP(ApproximateGP):
    r"""``num_channels`` independent SVGPs with free :math:`q(\mathbf u_l) = \mathcal N(\mathbf m_l, \mathbf S_l)`
    (GPyTorch's whitened :class:`~gpytorch.variational.VariationalStrategy` and
    :class:`~gpytorch.variational.CholeskyVariationalDistribution`, :math:`\mathbf m = \mathbf 0`,
    :math:`\mathbf S = \mathbf I` at the start), sharing one kernel and one set of inducing inputs.
    """

    def __init__(self, inducing_points: Tensor, covar_module: Kernel, num_channels: int):
        q_u = CholeskyVariationalDistribution(inducing_points.size(-2), batch_shape=torch.Size([num_channels]))
        super().__init__(VariationalStrategy(self, inducing_points, q_u, learn_inducing_locations=True))
        self.covar_module = covar_module
        self.mean_module = ZeroMean()

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


class DeepSVIGP(PyroModule):
    r"""A decoder on top of an SVGP: :math:`\mathbf y_i \sim \mathcal N(g(\mathbf f(\mathbf x_i)), \sigma^2\mathbf I)`
    with :math:`f_l \sim \mathcal{GP}`, no encoder. The Pyro model/guide pair uses GPyTorch's own Pyro integration
    (:meth:`~gpytorch.models.ApproximateGP.pyro_model` / ``pyro_guide``), so with
    :class:`~pyro.infer.TraceMeanField_ELBO` the SVI loss is minus

    .. math::
        \sum_{i\in b}\mathbb E_{q(\mathbf f_i)}[\log\mathcal N(\mathbf y_i\mid g(\mathbf f_i), \sigma^2\mathbf I)]
        - \frac bN\sum_l\mathrm{KL}(q(\mathbf u_l)\,\|\,p(\mathbf u_l)).

    :param gp: an :class:`SVIGPLatentGP` (or any :class:`~gpytorch.models.ApproximateGP` with batch ``[L]``).
    :param decoder: maps ``f`` ``(b, L)`` to the mean observation ``(b, *obs)``.
    :param input_map: optional module mapping auxiliary data to GP inputs.
    :param noise: initial observation noise variance :math:`\sigma^2` (learned).
    """

    def __init__(self, gp: ApproximateGP, decoder: torch.nn.Module, input_map=None, noise: float = 0.1):
        super().__init__()
        self.gp = gp
        self.decoder = decoder
        self.input_map = input_map
        self.raw_noise = torch.nn.Parameter(torch.tensor(math.log(math.expm1(noise))))

    @property
    def noise(self) -> Tensor:
        return torch.nn.functional.softplus(self.raw_noise)

    def gp_inputs(self, x: Tensor) -> Tensor:
        x = x if self.input_map is None else self.input_map(x)
        return x.to(self.gp.variational_strategy.inducing_points)

    def _beta(self, x: Tensor, num_data: int | None) -> float:
        return 1.0 if num_data is None else x.size(-2) / num_data

    def model(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        _register("deep_svigp", self)
        f_dist = self.gp.pyro_model(self.gp_inputs(x), beta=self._beta(x, num_data), name_prefix="gp")
        # p(f) comes without the channel batch of q(u) (the kernel is shared): expand it (the site is masked anyway)
        shape = (*self.gp.variational_strategy._variational_distribution.batch_shape, -1)
        f_dist = dist.Normal(f_dist.mean.expand(shape), f_dist.stddev.expand(shape)).mask(False).to_event(2)
        f = pyro.sample("gp.f", f_dist)
        mean = self.decoder(f.mT).to(y)
        return pyro.sample("y", dist.Normal(mean, self.noise.sqrt().to(y)).to_event(y.dim()), obs=y)

    def guide(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        _register("deep_svigp", self)
        # GPyTorch's pyro_guide reads the memoised q(u) before the call that clears the memo (in training mode):
        # clear it first, or the u site reuses the previous step's (freed) graph
        self.gp.variational_strategy._clear_cache()
        f_dist = self.gp.pyro_guide(self.gp_inputs(x), beta=self._beta(x, num_data), name_prefix="gp")
        return pyro.sample("gp.f", f_dist.to_event(len(f_dist.batch_shape)))  # one event (L, b)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Marginal means and variances of :math:`q(\\mathbf f(\\mathbf x))`, each ``(L, n)``."""
        was_training = self.gp.training
        self.gp.eval()
        try:
            q_f = self.gp(self.gp_inputs(x))
            return q_f.mean, q_f.variance
        finally:
            self.gp.train(was_training)
