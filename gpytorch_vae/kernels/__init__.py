"""Kernels and input maps for the GP-VAE benchmarks."""

from .cauchy_kernel import CauchyKernel
from .delta_kernel import DeltaKernel
from .normalized_kernel import NormalizedKernel
from .view_object_kernel import (
    LatentLookup,
    ObjectViewInputs,
    ViewObjectKernel,
    fixed_periodic_kernel,
    view_object_kernel,
)

__all__ = [
    "CauchyKernel",
    "DeltaKernel",
    "LatentLookup",
    "NormalizedKernel",
    "ObjectViewInputs",
    "ViewObjectKernel",
    "fixed_periodic_kernel",
    "view_object_kernel",
]
