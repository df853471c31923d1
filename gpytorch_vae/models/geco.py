"""GECO: constrained optimisation of the KL term under a reconstruction constraint (Rezende & Viola 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class GECO(torch.nn.Module):
    r"""Generalized ELBO with Constrained Optimization (Rezende & Viola 2018, Alg. 1), as used by the SVGP-VAE and
    FGP-VAE papers on rotated MNIST.

    Minimise :math:`\mathrm{KL} + \lambda\,\bar C` where :math:`C` is a constraint that should be :math:`\le 0`
    (e.g. :math:`\mathrm{MSE}_i - \kappa^2`, averaged over the batch). With the moving average
    :math:`C_{ma} \leftarrow \alpha C_{ma} + (1-\alpha) C` (initialised with the first value) the loss is

    .. math::
        \mathcal L = \mathrm{KL} + \lambda\,\big(C + \mathrm{sg}(C_{ma} - C)\big),

    whose value uses the smoothed constraint and whose gradient is that of :math:`C`. After each optimiser step,
    :meth:`update` sets :math:`\lambda \leftarrow \lambda\exp(C_{ma})`, clamped to
    ``[lambda_min, lambda_max]``: a constraint that is never met would otherwise grow :math:`\lambda` without bound
    (the papers' reference code does not bound it). State is kept in buffers, so it is checkpointed with
    ``state_dict``.

    :param kappa2: :math:`\kappa^2`, the tolerated reconstruction error (0.020 in the rotated-MNIST protocol); only
        used by :meth:`constraint`.
    :param alpha: moving-average factor (0.99).
    :param lambda_init: initial :math:`\lambda` (1.0).
    :param lambda_min, lambda_max: bounds for :math:`\lambda`.
    """

    def __init__(
        self,
        kappa2: float = 0.02,
        alpha: float = 0.99,
        lambda_init: float = 1.0,
        lambda_min: float = 1e-6,
        lambda_max: float = 1e6,
    ):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError("alpha must be in [0, 1)")
        if not 0.0 < lambda_min <= lambda_init <= lambda_max:
            raise ValueError("need 0 < lambda_min <= lambda_init <= lambda_max")
        self.kappa2 = float(kappa2)
        self.alpha = float(alpha)
        self.lambda_min = float(lambda_min)
        self.lambda_max = float(lambda_max)
        self.register_buffer("lagrange_multiplier", torch.tensor(float(lambda_init)))
        self.register_buffer("constraint_ma", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def constraint(self, y: Tensor, decoded: Tensor, observation_dims: int) -> Tensor:
        r"""Batch mean of :math:`C_i = \mathrm{mean}_{pixels}(\mathbf y_i - \hat{\mathbf y}_i)^2 - \kappa^2`."""
        per_example = (y - decoded).square().flatten(start_dim=y.dim() - observation_dims).mean(-1)
        return per_example.mean() - self.kappa2

    def loss(self, kl: Tensor, constraint: Tensor) -> Tensor:
        """The GECO loss for one batch; updates the moving average of the constraint."""
        value = constraint.detach().to(self.constraint_ma)
        if bool(self.initialized):
            self.constraint_ma.mul_(self.alpha).add_((1.0 - self.alpha) * value)
        else:
            self.constraint_ma.copy_(value)
            self.initialized.fill_(True)
        smoothed = constraint + (self.constraint_ma.to(constraint) - constraint).detach()
        return kl + self.lagrange_multiplier.to(constraint) * smoothed

    @torch.no_grad()
    def update(self) -> None:
        r""":math:`\lambda \leftarrow \mathrm{clamp}(\lambda\exp(C_{ma}))`; call after each optimiser step."""
        log_lambda = self.lagrange_multiplier.log() + self.constraint_ma
        log_lambda = log_lambda.clamp(math.log(self.lambda_min), math.log(self.lambda_max))
        self.lagrange_multiplier.copy_(log_lambda.exp())
