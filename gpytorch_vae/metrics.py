"""Evaluation metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def affine_align(predicted: Tensor, true: Tensor) -> Tensor:
    r"""``predicted`` mapped by the least-squares affine map :math:`[\hat{\mathbf z}, 1]\mathbf W \approx \mathbf z`,
    one map fitted over all points (inputs ``(..., L)``; :math:`\mathbf W` is :math:`(L+1)\times L`). Latent spaces
    are identified only up to such maps (Pearce 2020's path metric)."""
    pred = predicted.reshape(-1, predicted.size(-1)).double()
    target = true.reshape(-1, true.size(-1)).double()
    design = torch.cat([pred, torch.ones_like(pred[:, :1])], dim=-1)
    weights = torch.linalg.lstsq(design, target).solution
    return (design @ weights).reshape(true.shape).to(true.dtype)


def affine_aligned_rmse(predicted: Tensor, true: Tensor) -> float:
    """RMSE between :func:`affine_align` ``(predicted, true)`` and ``true``, over all coordinates."""
    return (affine_align(predicted, true).double() - true.double()).square().mean().sqrt().item()
