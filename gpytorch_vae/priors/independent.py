"""The plain VAE's latent prior, N(0, I), with the CVAE's per-group averaging at test time."""

from __future__ import annotations

import torch
from gpytorch.distributions import MultivariateNormal
from torch import Tensor

from ..variational.group_layout import GroupLayout
from ..variational.latent_data import check_inputs, check_latent_data, check_num_data
from ..variational.noise import StandardNormalNoise
from .base import (
    LatentPosterior,
    LatentPrior,
    marginal_distribution,
    noise_or_default,
)


class IndependentLatentPosterior(LatentPosterior):
    r""":math:`\mathbf z_i\sim\tilde q(\mathbf z_i\mid\mathbf y_i)` (the encoder's distribution); KL part
    :math:`\sum_i\mathrm{KL}(\tilde q(\mathbf z_i\mid\mathbf y_i)\,\|\,\mathcal N(\mathbf 0, \mathbf I))`.

    :meth:`predict` has no GP to carry information to new inputs: with ``group_column`` it gives, at a point of a
    group seen in the conditioning data, the average of that group's latent codes (the CVAE protocol: mean
    :math:`\frac1n\sum\tilde{\mathbf y}_i`, variance :math:`\frac1{n^2}\sum\tilde{\boldsymbol\sigma}_i^2`, the law
    of the average of one draw per point), and the prior :math:`\mathcal N(\mathbf 0, \mathbf I)` elsewhere.
    """

    def __init__(self, x: Tensor, mean: Tensor, var: Tensor, group_column: int | None = None,
                 observed: Tensor | None = None):  # fmt: skip
        self.x, self.encoder_mean, self.var, self.group_column = x, mean, var, group_column
        self.observed = observed

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        shape = torch.Size(sample_shape) + self.encoder_mean.shape
        eps = noise_or_default(noise)(shape, -1, self.encoder_mean.dtype, self.encoder_mean.device)
        return self.encoder_mean + self.var.sqrt() * eps

    @property
    def mean(self) -> Tensor:
        return self.encoder_mean

    def kl_divergence(self) -> Tensor:
        return 0.5 * (self.var + self.encoder_mean.square() - 1.0 - self.var.log()).sum()

    def predict(self, x: Tensor) -> MultivariateNormal:
        check_inputs(x, self.x.size(-1), self.encoder_mean.shape[:-1])
        shape = (*self.encoder_mean.shape[:-1], x.size(-2))
        mean, var = self.encoder_mean.new_zeros(shape), self.encoder_mean.new_ones(shape)
        if self.group_column is not None:
            if self.x.dim() != 2 or x.dim() != 2:
                raise ValueError("group averaging needs one data set: x of shape (N, D) and (r, D)")
            layout = GroupLayout.create(self.x[:, self.group_column])
            weight = torch.ones_like(self.encoder_mean) if self.observed is None else self.observed.to(mean)
            count = layout.pad_points(weight).sum(-1).clamp_min(1.0)  # (..., L, P): points with data per group
            group_mean = layout.pad_points(self.encoder_mean * weight).sum(-1) / count  # (..., L, P)
            group_var = layout.pad_points(self.var * weight).sum(-1) / count.square()
            index, seen = layout.locate(x[:, self.group_column].to(layout.group_ids))
            mean = torch.where(seen, group_mean[..., index], mean)
            var = torch.where(seen, group_var[..., index], var)
        return marginal_distribution(mean, var)


class IndependentLatentPrior(LatentPrior):
    r"""The plain VAE: :math:`p(\mathbf z_i) = \mathcal N(\mathbf 0, \mathbf I)`, guide
    :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`; the auxiliary inputs are ignored in training.

    :param group_column: optional column of ``x`` holding a group id (e.g. the digit of rotated MNIST): at test time
        a point of a seen group gets the average latent code of the group (the CVAE's conditional generation).
    """

    def __init__(self, group_column: int | None = None):
        super().__init__()
        self.group_column = group_column

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None,
                  observed: Tensor | None = None) -> IndependentLatentPosterior:  # fmt: skip
        r"""Points where ``observed`` is false get the prior, :math:`\mathcal N(\mathbf 0, \mathbf I)` (KL 0), and
        are left out of the group averages."""
        check_latent_data(x, mean, var, observed)
        check_num_data(num_data, mean.size(-1))
        if observed is not None:
            observed = observed.expand_as(mean)
            mean, var = torch.where(observed, mean, 0.0), torch.where(observed, var, 1.0)
        return IndependentLatentPosterior(x, mean, var, self.group_column, observed)
