"""The Cauchy kernel of the GP-VAE imputation paper (Fortuin et al. 2020)."""

from __future__ import annotations

from gpytorch.kernels import Kernel
from torch import Tensor


class CauchyKernel(Kernel):
    r""":math:`k(x, x') = \big(1 + \lVert x - x'\rVert^2 / \ell^2\big)^{-1}`, the kernel the GP-VAE imputation paper
    uses over time (the rational quadratic kernel with :math:`\alpha = 1` and lengthscale :math:`\ell/\sqrt 2`;
    written out so that it broadcasts over batch shapes alike in every GPyTorch version this library supports). Times
    a :class:`~gpytorch.kernels.ScaleKernel` for an amplitude.
    """

    has_lengthscale = True

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        squared = self.covar_dist(x1.div(self.lengthscale), x2.div(self.lengthscale), square_dist=True, diag=diag,
                                  **params)  # fmt: skip
        return 1.0 / (1.0 + squared)
