"""Networks that also read per-observation context features (e.g. what interpolating the observed neighbours
gives, :func:`gpytorch_vae.imputer.interpolation_context`), passed by :class:`~gpytorch_vae.models.GPVAE` as the
networks' second argument (its ``features``)."""

from __future__ import annotations

import torch
from torch import Tensor


class ContextEncoder(torch.nn.Module):
    """The wrapped ``encoder`` sees each observation's input concatenated with its context features along the last
    dimension: ``encoder(cat([y, context], -1))``.

    :param encoder: an encoder taking ``D + C`` features (e.g. ``MLPEncoder(D + C, hidden, L)``).
    """

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(torch.cat([y, context.to(y)], dim=-1))


class ResidualDecoder(torch.nn.Module):
    r"""Decodes the departure from a baseline: the output is ``context[..., :out_dim] + decoder(cat([z, context],
    -1))``, the first ``out_dim`` context features being a baseline of the observation's mean (e.g. the interpolation
    of the observed neighbours). The wrapped decoder's last linear layer starts at zero, so an untrained model
    outputs the baseline.

    :param decoder: a decoder taking ``L + C`` inputs and giving ``out_dim`` outputs (e.g. ``MLPDecoder(L + C, hidden,
        out_dim)``).
    :param out_dim: the number of entries of one observation (vector observations).
    """

    def __init__(self, decoder: torch.nn.Module, out_dim: int):
        super().__init__()
        self.decoder, self.out_dim = decoder, int(out_dim)
        last = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)

    def forward(self, z: Tensor, context: Tensor) -> Tensor:
        context = context.to(z).expand(*z.shape[:-1], context.shape[-1])  # e.g. over several draws of z
        return context[..., : self.out_dim] + self.decoder(torch.cat([z, context], dim=-1))
