"""The rotated-MNIST convolutional encoder and decoder (SVGP-VAE protocol), optionally conditioned (CVAE)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _image_batch(images: Tensor) -> tuple[Tensor, torch.Size]:
    """``(*lead, H, W)`` -> ``(n, 1, H, W)`` and the leading shape."""
    lead = images.shape[:-2]
    return images.reshape(-1, 1, *images.shape[-2:]), lead


def _constant_channels(condition: Tensor, height: int, width: int) -> Tensor:
    """``(n, c)`` -> ``(n, c, height, width)`` constant images."""
    return condition[:, :, None, None].expand(-1, -1, height, width)


class ConvEncoder(nn.Module):
    """3 x [Conv2d(8, 3x3, stride 2, no padding), ELU] (28 -> 13 -> 6 -> 2), flatten (32), Linear(32 -> 2L): the
    mean and log-variance of :math:`\\tilde q(\\mathbf z\\mid\\mathbf y)`.

    With ``condition_dim = c > 0`` (CVAE), the condition enters as ``c`` constant input channels and is
    concatenated to the 32 features before the linear layer.
    """

    def __init__(self, latent_dim: int, condition_dim: int = 0, filters: int = 8):
        super().__init__()
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim
        layers, channels = [], 1 + condition_dim
        for _ in range(3):
            layers += [nn.Conv2d(channels, filters, 3, stride=2), nn.ELU()]
            channels = filters
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(filters * 2 * 2 + condition_dim, 2 * latent_dim)

    def forward(self, images: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``images`` ``(*lead, 28, 28)`` (and ``condition`` ``(*lead, c)``) -> mean, log-variance ``(*lead, L)``."""
        x, lead = _image_batch(images)
        x = x.to(self.head.weight)
        if self.condition_dim:
            condition = condition.reshape(-1, self.condition_dim).to(x)
            x = torch.cat([x, _constant_channels(condition, *x.shape[-2:])], dim=1)
        h = self.features(x)
        if self.condition_dim:
            h = torch.cat([h, condition], dim=-1)
        mean, log_var = self.head(h).chunk(2, dim=-1)
        return mean.reshape(*lead, -1), log_var.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Linear(L -> 128), reshape 8 x 4 x 4, Upsample x2, Conv(8, 3x3, same), ELU, Upsample x2, Conv(8, 3x3, valid),
    ELU (16 -> 14), Upsample x2, Conv(1, 3x3, same), ELU: the 28 x 28 mean image.

    With ``condition_dim = c > 0`` (CVAE) the linear layer takes ``[z, condition]`` and the condition is appended
    again as ``c`` constant 4 x 4 channels after the reshape.
    """

    def __init__(self, latent_dim: int, condition_dim: int = 0, filters: int = 8):
        super().__init__()
        self.condition_dim = condition_dim
        self.filters = filters
        self.linear = nn.Linear(latent_dim + condition_dim, filters * 4 * 4)
        up = nn.Upsample(scale_factor=2)
        self.body = nn.Sequential(
            up, nn.Conv2d(filters + condition_dim, filters, 3, padding=1), nn.ELU(),
            up, nn.Conv2d(filters, filters, 3), nn.ELU(),
            up, nn.Conv2d(filters, 1, 3, padding=1), nn.ELU(),
        )  # fmt: skip

    def forward(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """``z`` ``(*lead, L)`` (and ``condition`` broadcastable to ``(*lead, c)``) -> images ``(*lead, 28, 28)``."""
        lead = z.shape[:-1]
        h = z.reshape(-1, z.size(-1)).to(self.linear.weight)
        if self.condition_dim:
            condition = condition.to(h).expand(*lead, self.condition_dim).reshape(-1, self.condition_dim)
            h = torch.cat([h, condition], dim=-1)
        h = self.linear(h).reshape(-1, self.filters, 4, 4)
        if self.condition_dim:
            h = torch.cat([h, _constant_channels(condition, 4, 4)], dim=1)
        return self.body(h).reshape(*lead, 28, 28)
