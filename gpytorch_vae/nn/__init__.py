"""Encoders and decoders: generic ones for any observation shape (MLPs, convolutional networks for any ``(C, H, W)``)
and the papers' configurations (rotated MNIST, SPRITES), with the reference code's initialisations."""

from .compile import compile_networks, compiler_available
from .context import ContextEncoder, ResidualDecoder
from .conv import ConvDecoder, ConvEncoder, ImageDecoder, ImageEncoder
from .init import INITIALISATIONS, keras_init_, truncated_normal_init_
from .mlp import MaskedEncoder, MLPDecoder, MLPEncoder, WindowEncoder
from .representation import RepresentationInputs, RepresentationNetwork, pretrain_representation
from .sprites import SpritesDecoder, SpritesEncoder, SpritesFrameNetwork

__all__ = [
    "INITIALISATIONS",
    "ContextEncoder",
    "ConvDecoder",
    "ConvEncoder",
    "ImageDecoder",
    "ImageEncoder",
    "MLPDecoder",
    "MaskedEncoder",
    "MLPEncoder",
    "RepresentationInputs",
    "ResidualDecoder",
    "RepresentationNetwork",
    "SpritesDecoder",
    "SpritesEncoder",
    "SpritesFrameNetwork",
    "WindowEncoder",
    "pretrain_representation",
    "compile_networks",
    "compiler_available",
    "keras_init_",
    "truncated_normal_init_",
]
