"""Encoders and decoders of the papers' experiments."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
