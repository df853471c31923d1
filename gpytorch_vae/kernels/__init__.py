"""Kernels and input maps for the GP-VAE benchmarks."""

from .delta_kernel import DeltaKernel
from .view_object_kernel import ObjectViewInputs, ViewObjectKernel, fixed_periodic_kernel, view_object_kernel

__all__ = ["DeltaKernel", "ObjectViewInputs", "ViewObjectKernel", "fixed_periodic_kernel", "view_object_kernel"]
