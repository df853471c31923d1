"""Fully connected encoders and decoders for observations of any shape (the moving-ball protocol's MLPs are the
one-hidden-layer tanh case)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _layers(sizes: Sequence[int], activation: type[torch.nn.Module]) -> list[torch.nn.Module]:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return layers


def _hidden(hidden: int | Sequence[int]) -> list[int]:
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    if not sizes or any(int(h) < 1 for h in sizes):
        raise ValueError(f"hidden must be a positive size or a non-empty list of them, got {hidden}")
    return [int(h) for h in sizes]


class MLPEncoder(torch.nn.Module):
    r"""``in_dim -> hidden... -> 2L``: the mean and log-variance of :math:`\tilde q(\mathbf z_i\mid\mathbf y_i)`.

    Observations ``(..., *observation_shape)`` are flattened over ``observation_shape`` (default ``(in_dim,)``, e.g.
    ``(28, 28)`` for images). Returns ``(mean, log_var)``, each ``(..., L)``, as
    :class:`~gpytorch_vae.models.GPVAE` expects.

    :param in_dim: the number of entries of one observation.
    :param hidden: one hidden size, or a list of them (e.g. ``(256, 256)``).
    :param latent_dim: :math:`L`.
    :param activation: the hidden layers' activation (default tanh, the moving-ball protocol's).
    :param observation_shape: the shape of one observation (its entries multiply to ``in_dim``).
    """

    def __init__(self, in_dim: int, hidden: int | Sequence[int], latent_dim: int,
                 activation: type[torch.nn.Module] = torch.nn.Tanh,
                 observation_shape: Sequence[int] | None = None):  # fmt: skip
        super().__init__()
        self.observation_shape = tuple(observation_shape or (in_dim,))
        if torch.Size(self.observation_shape).numel() != in_dim:
            raise ValueError(f"observation_shape {self.observation_shape} does not have in_dim = {in_dim} entries")
        self.net = torch.nn.Sequential(*_layers([in_dim, *_hidden(hidden), 2 * latent_dim], activation))

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        flat = y.flatten(y.dim() - len(self.observation_shape)) if len(self.observation_shape) > 1 else y
        mean, log_var = self.net(flat).chunk(2, dim=-1)
        return mean, log_var


class MLPDecoder(torch.nn.Sequential):
    """``L -> hidden... -> out_dim``: logits (Bernoulli) or means (Gaussian) of the observation, reshaped to
    ``observation_shape`` when given.

    :param latent_dim: :math:`L`.
    :param hidden: one hidden size, or a list of them.
    :param out_dim: the number of entries of one observation.
    :param activation: the hidden layers' activation (default tanh).
    :param observation_shape: the shape of one observation (default ``(out_dim,)``).
    """

    def __init__(self, latent_dim: int, hidden: int | Sequence[int], out_dim: int,
                 activation: type[torch.nn.Module] = torch.nn.Tanh,
                 observation_shape: Sequence[int] | None = None):  # fmt: skip
        super().__init__(*_layers([latent_dim, *_hidden(hidden), out_dim], activation))
        self.observation_shape = tuple(observation_shape or (out_dim,))
        if torch.Size(self.observation_shape).numel() != out_dim:
            raise ValueError(f"observation_shape {self.observation_shape} does not have out_dim = {out_dim} entries")

    def forward(self, z: Tensor) -> Tensor:
        out = super().forward(z)
        return out if len(self.observation_shape) == 1 else out.unflatten(-1, self.observation_shape)


class MaskedEncoder(torch.nn.Module):
    r"""Partial inference for observations with missing entries (the zero-filling design of Nazabal et al.'s HI-VAE
    and the GP-VAE imputation paper): the wrapped ``encoder`` sees the observation with its missing entries set to
    zero *and* the observation mask, concatenated along ``dim`` (the last dimension by default: a vector observation of
    ``D`` entries becomes ``2D`` inputs; for images pass the channel dimension, e.g. ``-3``). So an encoder can tell a
    missing pixel from a black one, at the cost of doubling its input. :class:`~gpytorch_vae.models.GPVAE` passes the
    mask to encoders with ``takes_mask = True`` (zero-filling is done by the model).

    :param encoder: an encoder taking the concatenated input, e.g. ``MLPEncoder(2 * D, hidden, L)``.
    :param dim: the dimension of one observation to concatenate along.
    """

    takes_mask = True

    def __init__(self, encoder: torch.nn.Module, dim: int = -1):
        super().__init__()
        self.encoder, self.dim = encoder, int(dim)

    @property
    def observation_shape(self) -> tuple[int, ...] | None:
        """The shape of one observation: the wrapped encoder's, halved along ``dim`` (``None`` when unknown)."""
        return _divided(getattr(self.encoder, "observation_shape", None), self.dim, 2)

    def forward(self, y: Tensor, mask: Tensor, *args) -> tuple[Tensor, Tensor]:
        return self.encoder(torch.cat([y, mask.to(y)], dim=self.dim), *args)


class WindowEncoder(torch.nn.Module):
    r"""An encoder that sees each observation with its neighbours: for vector observations ``(*batch, b, D)`` ordered
    along ``b`` (frames of a sequence, days of a series), observation :math:`i` is encoded from
    :math:`\mathbf y_{i-h}, \dots, \mathbf y_{i+h}` (``window`` :math:`= 2h + 1`), concatenated into
    ``window * D`` features, with zeros beyond the ends. This is the GP-VAE imputation paper's temporal encoder
    (Fortuin et al. 2020: a 1-D convolution of width 3 over time as the first layer; a window followed by a linear
    layer is that convolution), which lets the code of a frame with missing pixels draw on the neighbouring frames.

    The approximate likelihood :math:`\tilde q(\mathbf z_i\mid\mathbf y_{i-h:i+h})` uses each observation up to
    ``window`` times, so the latent dataset is no longer one factor per observation as in the SVGP-VAE paper (Eq. 5);
    use it where observations lie on a grid and neighbours carry the missing information.

    Put it inside :class:`MaskedEncoder` (``MaskedEncoder(WindowEncoder(MLPEncoder(2 * D * window, ...)))``): the
    mask travels with the values, and the zero padding at the ends reads as missing.

    :param encoder: an encoder taking ``window * D`` features (``window * 2D`` inside :class:`MaskedEncoder`).
    :param window: the odd number of observations seen per code (1: the plain encoder).
    """

    def __init__(self, encoder: torch.nn.Module, window: int = 3):
        super().__init__()
        if int(window) < 1 or int(window) % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {window}")
        self.encoder, self.window = encoder, int(window)

    @property
    def observation_shape(self) -> tuple[int, ...] | None:
        """The shape ``(D,)`` of one observation: the wrapped encoder's width over ``window`` (``None`` when
        unknown)."""
        return _divided(getattr(self.encoder, "observation_shape", None), -1, self.window)

    def forward(self, y: Tensor, *args) -> tuple[Tensor, Tensor]:
        half = self.window // 2
        # zero observations padded at both ends of the b axis, then a sliding window over it (torch's unfold appends
        # the window as the last dimension: (*batch, b, D, window) -> (*batch, b, window * D), neighbour-major)
        padded = torch.nn.functional.pad(y, (0, 0, half, half))
        return self.encoder(padded.unfold(-2, self.window, 1).transpose(-1, -2).flatten(-2), *args)


def _divided(shape: tuple[int, ...] | None, dim: int, parts: int) -> tuple[int, ...] | None:
    """``shape`` with its size at ``dim`` divided by ``parts`` (``None`` when ``shape`` is unknown or too short)."""
    if shape is None or not -len(shape) <= dim < len(shape):
        return None
    divided = list(shape)
    divided[dim] //= parts
    return tuple(divided)
