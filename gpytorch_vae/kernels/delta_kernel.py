"""The delta kernel over group ids (FGP-VAE)."""

from __future__ import annotations

from gpytorch.kernels import Kernel
from torch import Tensor


class DeltaKernel(Kernel):
    r""":math:`k(g, g') = \mathbb 1[g = g']` on a group-id column (use ``active_dims`` to pick it): points of one
    group are perfectly correlated, different groups independent. Times another kernel it makes the prior
    block-diagonal over groups (FGP-VAE, Jazbec, Pearce and Fortuin). GPyTorch has no such kernel (its
    ``IndexKernel`` learns a task covariance), hence this one; it has no parameters."""

    has_lengthscale = False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("DeltaKernel does not support last_dim_is_batch")
        g1, g2 = x1[..., 0], x2[..., 0]
        if diag:
            return (g1 == g2).to(x1.dtype)
        return (g1[..., :, None] == g2[..., None, :]).to(x1.dtype)
