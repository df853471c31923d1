"""The SPRITES networks of the SVGP-VAE paper (Sec. 4.3; ``docs/protocols/sprites.md``): encoder, decoder and the
representation network's frame network."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class _SamePad(nn.Module):
    """TensorFlow's "same" padding of a 3x3 convolution with stride 2 on an even size: one row and column at the
    bottom and right only."""

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, 1, 0, 1))


def _images_in(images: Tensor) -> tuple[Tensor, torch.Size]:
    """``(*lead, H, W, C)`` channels-last images -> ``(n, C, H, W)`` and the leading shape."""
    lead = images.shape[:-3]
    return images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2), lead


class SpritesEncoder(nn.Module):
    """Six Conv2d(16, 3x3, ELU, "same") with strides 1, 2, 1, 2, 1, 2 (64 -> 32 -> 16 -> 8), flatten (1024),
    Linear(1024 -> 2L): means and log-variances. Images ``(*lead, 64, 64, 3)``."""

    def __init__(self, latent_dim: int, filters: int = 16, channels: int = 3):
        super().__init__()
        layers, c = [], channels
        for stride in (1, 2, 1, 2, 1, 2):
            layers += (
                [_SamePad(), nn.Conv2d(c, filters, 3, stride=2)]
                if stride == 2
                else [nn.Conv2d(c, filters, 3, padding=1)]
            )
            layers.append(nn.ELU())
            c = filters
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(filters * 8 * 8, 2 * latent_dim)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x, lead = _images_in(images.to(self.head.weight))
        mean, log_var = self.head(self.features(x)).chunk(2, dim=-1)
        return mean.reshape(*lead, -1), log_var.reshape(*lead, -1)


class SpritesDecoder(nn.Module):
    """Linear(L -> 1024), reshape 16 x 8 x 8, three times [nearest Upsample x2, Conv(16, 3x3, ELU), Conv(16, 3x3,
    ELU)] (8 -> 64), Conv(3, 3x3, ELU): the mean image ``(*lead, 64, 64, 3)`` (ELU output, no sigmoid)."""

    def __init__(self, latent_dim: int, filters: int = 16, channels: int = 3):
        super().__init__()
        self.filters = filters
        self.linear = nn.Linear(latent_dim, filters * 8 * 8)
        layers = []
        for _ in range(3):
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(filters, filters, 3, padding=1), nn.ELU(),
                       nn.Conv2d(filters, filters, 3, padding=1), nn.ELU()]  # fmt: skip
        self.body = nn.Sequential(*layers, nn.Conv2d(filters, channels, 3, padding=1), nn.ELU())

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.linear(z.reshape(-1, z.size(-1)).to(self.linear.weight)).reshape(-1, self.filters, 8, 8)
        return self.body(h).permute(0, 2, 3, 1).reshape(*lead, 64, 64, -1)


class SpritesFrameNetwork(nn.Module):
    """The representation network's per-frame part: three Conv2d(d, 2x2, stride 2, ELU) (64 -> 8), the mean over the
    8 x 8 positions: ``d`` numbers per frame ``(*lead, 64, 64, 3) -> (*lead, d)``."""

    def __init__(self, dim: int = 16, channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, dim, 2, stride=2), nn.ELU(), nn.Conv2d(dim, dim, 2, stride=2), nn.ELU(),
            nn.Conv2d(dim, dim, 2, stride=2), nn.ELU(),
        )  # fmt: skip

    def forward(self, images: Tensor) -> Tensor:
        x, lead = _images_in(images.to(self.net[0].weight))
        return self.net(x).mean((-1, -2)).reshape(*lead, -1)
