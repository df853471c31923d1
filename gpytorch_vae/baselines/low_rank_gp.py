"""Casale et al.'s (2018) low-rank exact GP over the view x object kernel (GPPVAE)."""

from __future__ import annotations

import math

import torch
from gpytorch.kernels import ProductKernel
from gpytorch.likelihoods import GaussianLikelihood
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor


class LowRankViewObjectGP(torch.nn.Module):
    r"""Exact GP over latents indexed by (object, view) with :math:`\mathbf K = \mathbf V\mathbf V^\top`, plus noise.

    With views on a grid of :math:`Q` angles, :math:`\mathbf K_{\mathrm{view}} = \mathbf R\mathbf R^\top` (Cholesky,
    :math:`Q\times Q`) and the view x object kernel :math:`k = k_{\mathrm{view}}(\theta,\theta')\,
    \mathbf w^\top\mathbf w'` is :math:`\mathbf v_n^\top\mathbf v_{n'}` with
    :math:`\mathbf v_n = \mathbf R_{a_n}\otimes\mathbf w_{\mathrm{id}_n}` (:math:`H = QD` features). Per channel,
    with :math:`\mathbf A = \mathbf I_H + \mathbf V^\top\mathbf V/\sigma^2`
    (Woodbury and the matrix determinant lemma, :math:`O(NH^2)`, never an :math:`N\times N` matrix):

    .. math::
        \log\mathcal N(\mathbf z\mid\mathbf 0, \mathbf V\mathbf V^\top + \sigma^2\mathbf I) = -\tfrac12\Big[N\log 2\pi
        + N\log\sigma^2 + \log|\mathbf A| + \frac{\mathbf z^\top\mathbf z}{\sigma^2} - \frac{\mathbf z^\top\mathbf V
        \mathbf A^{-1}\mathbf V^\top\mathbf z}{\sigma^4}\Big].

    Written by hand because GPyTorch's low-rank operators do not exploit this Kronecker-row structure.

    :param kernel: a :func:`~gpytorch_vae.kernels.view_object_kernel` (its view factor is evaluated on the grid).
    :param input_map: :class:`~gpytorch_vae.kernels.ObjectViewInputs` holding the GP-LVM vectors.
    :param angles: the grid of view angles ``(Q,)``.
    :param noise: initial :math:`\sigma^2` (a :class:`~gpytorch.likelihoods.GaussianLikelihood` holds it).
    :param jitter: added to the diagonal of :math:`\mathbf K_{\mathrm{view}}` before the Cholesky.
    """

    def __init__(self, kernel: ProductKernel, input_map, angles: Tensor, noise: float = 0.1, jitter: float = 1e-8):
        super().__init__()
        self.kernel = kernel
        self.input_map = input_map
        dtype = input_map.object_vectors.dtype
        self.register_buffer("angles", torch.as_tensor(angles, dtype=dtype))
        self.likelihood = GaussianLikelihood().to(dtype)
        self.likelihood.noise = torch.tensor(noise, dtype=dtype)
        self.jitter = jitter

    @property
    def noise(self) -> Tensor:
        return self.likelihood.noise.squeeze()

    def angle_index(self, angle: Tensor) -> Tensor:
        """Index of each angle on the grid (error if off the grid)."""
        distance = (angle[..., None] - self.angles).abs()
        index = distance.argmin(-1)
        if (distance.gather(-1, index[..., None]) > 1e-6).any():
            raise ValueError("GPPVAE's low-rank GP needs every angle on the grid it was built with")
        return index

    def features(self, aux: Tensor) -> Tensor:
        r""":math:`\mathbf V` ``(N, Q D)`` of auxiliary rows ``[id, angle, ...]``."""
        inputs = self.input_map(aux)  # (N, 1 + D): angle, w
        grid = self.angles[:, None]
        view = self.kernel.kernels[0](grid).to_dense()
        root = psd_safe_cholesky(view + self.jitter * torch.eye(len(grid), dtype=view.dtype, device=view.device))
        rows = root[self.angle_index(inputs[:, 0])]  # (N, Q)
        return (rows[:, :, None] * inputs[:, None, 1:]).flatten(1)

    def _woodbury(self, features: Tensor) -> Tensor:
        r"""Cholesky factor of :math:`\mathbf A = \mathbf I_H + \mathbf V^\top\mathbf V/\sigma^2`."""
        inner = torch.eye(features.size(1), dtype=features.dtype, device=features.device)
        return torch.linalg.cholesky(inner + features.mT @ features / self.noise)

    def log_marginal_likelihood(self, z: Tensor, aux: Tensor) -> Tensor:
        r""":math:`\sum_l\log\mathcal N(\mathbf z_l\mid\mathbf 0, \mathbf K + \sigma^2\mathbf I)` for ``z``
        ``(L, N)``."""
        features = self.features(aux)
        chol = self._woodbury(features)
        n, noise = z.size(-1), self.noise
        projected = torch.cholesky_solve((z @ features).mT, chol)  # A^{-1} V^T z, (H, L)
        quadratic = (z.square().sum(-1) - ((z @ features).mT * projected).sum(0) / noise) / noise
        log_det = n * noise.log() + 2.0 * chol.diagonal().log().sum()
        return -0.5 * (quadratic + log_det + n * math.log(2 * math.pi)).sum()

    def predict(self, z: Tensor, aux: Tensor, aux_new: Tensor) -> tuple[Tensor, Tensor]:
        r"""Posterior of the noise-free latent function at ``aux_new`` given ``z`` ``(L, N)`` at ``aux``: means
        :math:`\mathbf K_{*}(\mathbf K + \sigma^2\mathbf I)^{-1}\mathbf z` ``(L, N_new)`` and variances
        :math:`\mathbf v_*^\top\mathbf A^{-1}\mathbf v_*` ``(N_new,)`` (the same for every channel)."""
        features, new = self.features(aux), self.features(aux_new)
        chol = self._woodbury(features)
        noise = self.noise
        solved = (z - torch.cholesky_solve((z @ features).mT, chol).mT @ features.mT / noise) / noise
        variance = (new.mT * torch.cholesky_solve(new.mT, chol)).sum(0)
        return (solved @ features) @ new.mT, variance
