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
        weight = self.head.weight
        x = x if x.dtype == weight.dtype and x.device == weight.device else x.to(weight)
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
        h, weight = z.reshape(-1, z.size(-1)), self.linear.weight
        h = h if h.dtype == weight.dtype and h.device == weight.device else h.to(weight)
        if self.condition_dim:
            condition = condition.to(h).expand(*lead, self.condition_dim).reshape(-1, self.condition_dim)
            h = torch.cat([h, condition], dim=-1)
        h = self.linear(h).reshape(-1, self.filters, 4, 4)
        if self.condition_dim:
            h = torch.cat([h, _constant_channels(condition, 4, 4)], dim=1)
        return self.body(h).reshape(*lead, 28, 28)


class ImageEncoder(nn.Module):
    r"""A convolutional encoder for images of any shape ``(C, H, W)``: ``len(channels)`` blocks of
    [Conv2d(3x3, stride 2, padding 1), activation] (each halves the height and width, rounding up), flatten,
    Linear to :math:`2L`: the mean and log-variance of :math:`\tilde q(\mathbf z\mid\mathbf y)`.

    :param image_shape: ``(C, H, W)`` (channels first) or, with ``channels_last``, ``(H, W, C)``.
    :param latent_dim: :math:`L`.
    :param channels: the channels of the convolution blocks.
    :param activation: their activation (default ELU, the papers').
    :param channels_last: images come as ``(..., H, W, C)`` (e.g. decoded PNGs) instead of ``(..., C, H, W)``.
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, channels=(32, 64),
                 activation: type[nn.Module] = nn.ELU, channels_last: bool = False):  # fmt: skip
        super().__init__()
        c, h, w = _chw(image_shape, channels_last)
        self.image_shape, self.channels_last = tuple(image_shape), channels_last
        layers = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), activation()]
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c * h * w, 2 * latent_dim)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images`` ``(*lead, *image_shape)`` -> mean, log-variance ``(*lead, L)``."""
        lead = images.shape[: images.dim() - 3]
        x = images.reshape(-1, *self.image_shape)
        x = x.permute(0, 3, 1, 2) if self.channels_last else x
        mean, log_var = self.head(self.features(x.to(self.head.weight))).chunk(2, dim=-1)
        return mean.reshape(*lead, -1), log_var.reshape(*lead, -1)


class ImageDecoder(nn.Module):
    r"""A convolutional decoder for images of any shape ``(C, H, W)``: Linear from :math:`L` to
    ``channels[0]`` feature maps of :math:`\lceil H/2^k\rceil\times\lceil W/2^k\rceil` (:math:`k` =
    ``len(channels)``), :math:`k` blocks of [nearest Upsample x2, Conv2d(3x3, same), activation], a last Conv2d(3x3,
    same) to ``C`` channels, cropped to ``H x W``: logits (Bernoulli) or means (Gaussian), no output activation.

    :param latent_dim: :math:`L`.
    :param image_shape: ``(C, H, W)``, or ``(H, W, C)`` with ``channels_last``.
    :param channels: the channels of the upsampling blocks.
    :param activation: their activation (default ELU).
    :param channels_last: give images as ``(..., H, W, C)``.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], channels=(64, 32),
                 activation: type[nn.Module] = nn.ELU, channels_last: bool = False):  # fmt: skip
        super().__init__()
        c, h, w = _chw(image_shape, channels_last)
        self.image_shape, self.channels_last, self.size = tuple(image_shape), channels_last, (h, w)
        k = len(channels)
        self.start = (channels[0], -(-h // 2**k), -(-w // 2**k))
        self.linear = nn.Linear(latent_dim, int(torch.tensor(self.start).prod()))
        layers, previous = [], channels[0]
        for out in channels:
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(previous, out, 3, padding=1), activation()]
            previous = out
        self.body = nn.Sequential(*layers, nn.Conv2d(previous, c, 3, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``(*lead, L)`` -> images ``(*lead, *image_shape)``."""
        lead = z.shape[:-1]
        x = self.body(self.linear(z.reshape(-1, z.size(-1)).to(self.linear.weight)).reshape(-1, *self.start))
        x = x[..., : self.size[0], : self.size[1]]
        x = x.permute(0, 2, 3, 1) if self.channels_last else x
        return x.reshape(*lead, *self.image_shape)


def _chw(image_shape, channels_last: bool) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W) (or (H, W, C) with channels_last), got {image_shape}")
    h, w, c = image_shape if channels_last else (image_shape[1], image_shape[2], image_shape[0])
    return int(c), int(h), int(w)
