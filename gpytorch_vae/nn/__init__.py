"""Encoders and decoders of the papers' experiments."""

from .compile import compile_networks, compiler_available
from .conv import ConvDecoder, ConvEncoder
from .init import INITIALISATIONS, keras_init_, truncated_normal_init_
from .mlp import MLPDecoder, MLPEncoder
from .representation import RepresentationInputs, RepresentationNetwork, pretrain_representation
from .sprites import SpritesDecoder, SpritesEncoder, SpritesFrameNetwork

__all__ = [
    "INITIALISATIONS",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "RepresentationInputs",
    "RepresentationNetwork",
    "SpritesDecoder",
    "SpritesEncoder",
    "SpritesFrameNetwork",
    "pretrain_representation",
    "compile_networks",
    "compiler_available",
    "keras_init_",
    "truncated_normal_init_",
]
