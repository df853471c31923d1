"""The view x object kernel of rotated MNIST (Casale et al. 2018), over inputs ``(angle, w)`` with a GP-LVM vector
``w`` per object."""

from __future__ import annotations

import math

import torch
from gpytorch.kernels import LinearKernel, PeriodicKernel, ProductKernel, ScaleKernel
from gpytorch.models.gplvm import PointLatentVariable
from torch import Tensor


def _value(v: float, dtype: torch.dtype) -> Tensor:
    """GPyTorch's setters turn Python floats into default-dtype tensors: give them the parameter's dtype."""
    return torch.tensor(v, dtype=dtype)


def fixed_periodic_kernel(lengthscale: float = 1.0, dtype: torch.dtype | None = None, **kwargs) -> PeriodicKernel:
    r""":math:`\exp(-2\sin^2(|\theta-\theta'|/2)/l^2)` (period :math:`2\pi`, unit amplitude) with nothing learned:
    FGP-VAE's local kernel (:math:`l = 1`). ``kwargs`` go to :class:`~gpytorch.kernels.PeriodicKernel`."""
    dtype = dtype or torch.get_default_dtype()
    kernel = PeriodicKernel(**kwargs).to(dtype)
    kernel.period_length = _value(2.0 * math.pi, dtype)
    kernel.lengthscale = _value(lengthscale**2, dtype)
    for parameter in kernel.parameters():
        parameter.requires_grad_(False)
    return kernel


def view_object_kernel(
    object_dim: int, lengthscale: float = 1.0, outputscale: float = 1.0, dtype: torch.dtype | None = None
) -> ProductKernel:
    r"""The kernel on :math:`\mathbf x = (\theta, \mathbf w)` (``object_dim + 1`` columns, the angle first):

    .. math::
        k(\mathbf x, \mathbf x') = a^2\exp\!\Big(-\frac{2\sin^2(|\theta-\theta'|/2)}{l^2}\Big)\;
        \mathbf w^\top\mathbf w',

    a periodic view kernel (period :math:`2\pi`) times a linear object kernel without bias and with unit variance.
    Built from GPyTorch kernels: :class:`~gpytorch.kernels.PeriodicKernel` computes
    :math:`\exp(-2\sin^2(\pi|\theta-\theta'|/p)/\ell)`, so :math:`p = 2\pi` (fixed) and :math:`\ell = l^2`
    (its ``lengthscale`` is *not* squared); :class:`~gpytorch.kernels.ScaleKernel` holds :math:`a^2`;
    :class:`~gpytorch.kernels.LinearKernel` has its variance fixed at 1. Learned: :math:`a^2` and :math:`\ell`.

    :param object_dim: dimension of the GP-LVM vectors :math:`\mathbf w`.
    :param lengthscale: initial :math:`l` (the protocol's :math:`l`, so ``PeriodicKernel.lengthscale`` = ``l**2``).
    :param outputscale: initial :math:`a^2`.
    :param dtype: dtype of the kernel's parameters (set before the values, so that :math:`2\pi` is exact in it).
    """
    dtype = dtype or torch.get_default_dtype()
    periodic = fixed_periodic_kernel(lengthscale, dtype, active_dims=torch.tensor([0]))
    periodic.raw_lengthscale.requires_grad_(True)
    view = ScaleKernel(periodic).to(dtype)
    view.outputscale = _value(outputscale, dtype)
    linear = LinearKernel(active_dims=torch.arange(1, object_dim + 1)).to(dtype)
    linear.variance = _value(1.0, dtype)
    linear.raw_variance.requires_grad_(False)
    return ProductKernel(view, linear)


class ObjectViewInputs(torch.nn.Module):
    r"""Maps auxiliary rows ``[object_id, angle, ...]`` to GP inputs :math:`(\theta, \mathbf w_{\mathrm{id}})`, with
    one learned GP-LVM vector per object held by GPyTorch's
    :class:`~gpytorch.models.gplvm.PointLatentVariable`.

    :param object_vectors: initial :math:`\mathbf W`, ``(num_objects, object_dim)`` (e.g. PCA scores).
    """

    def __init__(self, object_vectors: Tensor):
        super().__init__()
        object_vectors = torch.as_tensor(object_vectors)
        self.object_latent = PointLatentVariable(*object_vectors.shape, torch.nn.Parameter(object_vectors.clone()))

    @property
    def object_vectors(self) -> Tensor:
        return self.object_latent()

    def forward(self, aux: Tensor) -> Tensor:
        """``aux`` ``(..., n, >=2)`` (column 0: integer object id, column 1: angle) -> ``(..., n, 1 + object_dim)``."""
        vectors = self.object_vectors
        ids = aux[..., 0].round().long()
        if ids.numel() and (ids.min() < 0 or ids.max() >= vectors.size(0)):
            raise IndexError(f"object ids must lie in [0, {vectors.size(0) - 1}]")
        return torch.cat([aux[..., 1:2].to(vectors), vectors[ids]], dim=-1)
