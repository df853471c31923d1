"""A kernel divided by the square roots of its diagonals."""

from __future__ import annotations

from gpytorch.kernels import Kernel
from linear_operator import to_dense
from torch import Tensor


class NormalizedKernel(Kernel):
    r""":math:`k(\mathbf x, \mathbf x') / \sqrt{k(\mathbf x, \mathbf x)\,k(\mathbf x', \mathbf x')}` for a base
    kernel :math:`k`: with a linear base kernel the cosine of the angle between the inputs (SVGP-VAE SPRITES:
    ``--object_kernel_normalize``), so :math:`k(\mathbf x, \mathbf x) = 1`. GPyTorch has no such wrapper (its
    :class:`~gpytorch.kernels.CosineKernel` is a periodic kernel), hence this one; it adds no parameters.

    :param base_kernel: the kernel to normalise (its ``active_dims`` select its columns).
    """

    has_lengthscale = False

    def __init__(self, base_kernel: Kernel, **kwargs):
        super().__init__(**kwargs)
        self.base_kernel = base_kernel

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if last_dim_is_batch:
            raise NotImplementedError("NormalizedKernel does not support last_dim_is_batch")
        if diag:
            return (
                self.base_kernel(x1, x2, diag=True)
                / (self.base_kernel(x1, diag=True) * self.base_kernel(x2, diag=True)).sqrt()
            )
        k12 = to_dense(self.base_kernel(x1, x2))
        d1, d2 = self.base_kernel(x1, diag=True), self.base_kernel(x2, diag=True)
        return k12 / (d1[..., :, None] * d2[..., None, :]).sqrt()
