"""A synthetic GP-VAE data set: observations are a fixed nonlinear image of GP-distributed latents."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SyntheticGPData:
    """``x`` ``(N, 1)`` inputs, ``z`` ``(N, L)`` true latents, ``y`` ``(N, K)`` observations."""

    x: Tensor
    z: Tensor
    y: Tensor


def make_synthetic_gp_data(
    num_points: int = 400,
    latent_dim: int = 2,
    obs_dim: int = 16,
    lengthscale: float = 1.5,
    x_max: float = 20.0,
    noise_scale: float = 0.05,
    seed: int = 0,
) -> SyntheticGPData:
    r"""Draw :math:`z^l \sim GP(0, k_{RBF})` on sorted uniform inputs in ``[0, x_max]`` and
    :math:`\mathbf y_i = \tanh(\mathbf A\mathbf z_i + \mathbf c) + \varepsilon_i` with fixed random
    :math:`\mathbf A, \mathbf c` and Gaussian noise. Deterministic given ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(num_points, generator=g, dtype=torch.float64) * x_max).values.unsqueeze(-1)
    sq = (x - x.mT).square()
    k = torch.exp(-0.5 * sq / lengthscale**2) + 1e-6 * torch.eye(num_points, dtype=torch.float64)
    chol = torch.linalg.cholesky(k)
    z = (chol @ torch.randn(num_points, latent_dim, generator=g, dtype=torch.float64)).float()
    a = torch.randn(latent_dim, obs_dim, generator=g) / latent_dim**0.5
    c = 0.3 * torch.randn(obs_dim, generator=g)
    y = torch.tanh(z @ a + c) + noise_scale * torch.randn(num_points, obs_dim, generator=g)
    return SyntheticGPData(x.float(), z, y)
