r"""Where the reparameterisation noise of a posterior's per-point draws comes from.

A posterior draws latent codes as :math:`\mathbf z = \boldsymbol\mu + \mathbf S\boldsymbol\epsilon`. The noise of
quantities shared by all points (e.g. the inducing values) comes from torch's global generator. The noise of the
per-point part comes from a :class:`StandardNormalNoise`: by default the same generator, and in data-parallel
training this rank's slice of the noise of the union batch of all ranks
(:class:`gpytorch_vae.distributed.UnionBatchNoise`), so that a step on several processes draws what one process
draws on the union batch. The choice is made by whoever runs the step and passed explicitly: a single-process
draw never calls :mod:`torch.distributed`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class StandardNormalNoise:
    """Standard normal noise of a given shape from torch's global generator (``torch.empty(shape).normal_()``)."""

    def __call__(self, shape: Sequence[int], dim: int, dtype: torch.dtype, device=None) -> Tensor:
        """Noise of ``shape``; ``dim`` is the dimension that indexes points (or groups of points), which a subclass
        may take a slice of."""
        return torch.empty(*shape, dtype=dtype, device=device).normal_()


#: the default noise source
STANDARD_NORMAL = StandardNormalNoise()
