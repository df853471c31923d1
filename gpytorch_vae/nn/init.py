"""Weight initialisations of the papers' reference code, to reproduce its training dynamics."""

from __future__ import annotations

import math

import torch

_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def _layers(module: torch.nn.Module):
    return (m for m in module.modules() if isinstance(m, _LAYERS))


@torch.no_grad()
def keras_init_(module: torch.nn.Module) -> torch.nn.Module:
    """Keras' defaults, as the TensorFlow reference code of the SVGP-VAE and FGP-VAE papers gets them: Glorot-uniform
    weights (:func:`torch.nn.init.xavier_uniform_`, the same fan-in/fan-out for convolutions) and zero biases, for
    every linear and convolution layer of ``module``. Returns ``module``."""
    for layer in _layers(module):
        torch.nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()
    return module


@torch.no_grad()
def truncated_normal_init_(module: torch.nn.Module) -> torch.nn.Module:
    """The moving-ball reference (Pearce 2020): weights from a normal with standard deviation
    :math:`1/\\sqrt{\\text{fan-in}}` truncated at two standard deviations (TensorFlow's ``truncated_normal``), zero
    biases. Returns ``module``."""
    for layer in _layers(module):
        fan_in = layer.weight[0].numel()
        std = 1.0 / math.sqrt(fan_in)
        torch.nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        if layer.bias is not None:
            layer.bias.zero_()
    return module


#: The weight initialisations by name (``--init``): PyTorch's defaults, Keras' Glorot-uniform with zero biases,
#: and the truncated normal of the SVGP-VAE reference code.
INITIALISATIONS = {"torch": lambda module: module, "keras": keras_init_, "truncated-normal": truncated_normal_init_}
