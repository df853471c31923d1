"""Small encoder/decoder networks used by the examples (the moving-ball protocol's MLPs and the like)."""

from __future__ import annotations

import torch
from torch import Tensor


class MLPEncoder(torch.nn.Module):
    r"""``in_dim -> hidden (tanh) -> 2L``: the mean and log-variance of :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`.

    Returns ``(mean, log_var)``, each ``(..., L)``, as :class:`~gpytorch_vae.models.GPVAE` expects.
    """

    def __init__(self, in_dim: int, hidden: int, latent_dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2 * latent_dim)
        )

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_var = self.net(y).chunk(2, dim=-1)
        return mean, log_var


class MLPDecoder(torch.nn.Sequential):
    """``L -> hidden (tanh) -> out_dim``: logits (Bernoulli) or means (Gaussian) of the observation."""

    def __init__(self, latent_dim: int, hidden: int, out_dim: int):
        super().__init__(torch.nn.Linear(latent_dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, out_dim))
