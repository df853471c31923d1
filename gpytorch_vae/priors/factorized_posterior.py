r"""The FGP-VAE posterior (Jazbec, Pearce and Fortuin, Appendix B), per group and batched over groups: the
posteriors :class:`~gpytorch_vae.priors.FactorizedLatentPrior` returns are built from these (they are not GPyTorch
variational strategies, so they live with the prior).

With a delta kernel over groups the prior is block-diagonal, so the exact posterior of the latent dataset and its
log normaliser :math:`\log Z` factorise over groups: an exact GP per group on the **local** channels
(:class:`GroupedGPPosterior`) and a conjugate Gaussian per group on the **global** channels
(:func:`global_posterior`). Groups of unequal size are padded (:class:`~gpytorch_vae.variational.GroupLayout`);
padded slots are independent of the real points, carry no data (zero precision) and add nothing to :math:`\log Z`.
The blocks are ``(P, Q, Q)`` tensors (a batched :class:`~linear_operator.operators.BlockDiagLinearOperator`); no
:math:`N\times N` matrix is formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def masked_block_covariance(blocks: Tensor, mask: Tensor) -> Tensor:
    """Kernel blocks ``(P, Q, Q)`` with padded rows/columns replaced by those of the identity (so that padded slots
    are independent unit-variance dummies)."""
    pair = mask[..., :, None] & mask[..., None, :]
    eye = torch.eye(blocks.size(-1), dtype=blocks.dtype, device=blocks.device)
    return torch.where(pair, blocks, torch.zeros_like(blocks)) + eye * (~mask)[..., None, :].to(blocks.dtype)


@dataclass
class GroupedGPPosterior:
    r"""Exact GP posterior of each group's latent data :math:`\{\tilde{\mathbf y}_p, \tilde{\boldsymbol\sigma}^2_p\}`
    under the block :math:`\mathbf K_p`, in the stable form with :math:`\mathbf S = \mathrm{diag}(\mathbf m /
    \tilde{\boldsymbol\sigma})` (mask :math:`\mathbf m`) and :math:`\mathbf B = \mathbf I + \mathbf S\mathbf K\mathbf S
    = \mathbf L\mathbf L^\top`:

    .. math::
        \mathbb E[\mathbf z] = \mathbf K\mathbf S\mathbf B^{-1}\mathbf S\tilde{\mathbf y},\quad
        \mathrm{Cov}[\mathbf z] = \mathbf K - \mathbf K\mathbf S\mathbf B^{-1}\mathbf S\mathbf K,\quad
        \log Z = -\tfrac12\big[\tilde{\mathbf y}^\top\mathbf S\mathbf B^{-1}\mathbf S\tilde{\mathbf y} + \log|\mathbf B|
        + \textstyle\sum_{q\,\mathrm{real}}\log(2\pi\tilde\sigma_q^2)\big],

    (:math:`(\mathbf K + \boldsymbol\Sigma)^{-1} = \mathbf S\mathbf B^{-1}\mathbf S` and :math:`|\mathbf K +
    \boldsymbol\Sigma| = |\boldsymbol\Sigma||\mathbf B|`); padded slots have zero precision.

    Shapes: ``covariance`` ``(P, Q, Q)`` (masked, from :func:`masked_block_covariance`), ``y``/``noise``/``mask``
    ``(..., P, Q)`` (e.g. a leading channel dimension).
    """

    covariance: Tensor
    root_precision: Tensor
    chol: Tensor
    weights: Tensor  # S B^{-1} S y
    log_normaliser: Tensor

    @classmethod
    def fit(cls, covariance: Tensor, y: Tensor, noise: Tensor, mask: Tensor) -> GroupedGPPosterior:
        real = mask.to(y.dtype)
        s = torch.where(mask, noise.rsqrt(), torch.zeros_like(noise))
        b = s[..., :, None] * covariance * s[..., None, :] + torch.eye(s.size(-1), dtype=s.dtype, device=s.device)
        chol = torch.linalg.cholesky(b)
        sy = (s * y)[..., None]
        half = torch.linalg.solve_triangular(chol, sy, upper=False)  # L^{-1} S y
        weights = s * torch.cholesky_solve(sy, chol)[..., 0]
        log_noise = torch.where(mask, (2 * math.pi * noise).log(), torch.zeros_like(noise))
        log_det_b = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_normaliser = -0.5 * (half.square().sum((-1, -2)) + log_det_b + (log_noise * real).sum(-1))
        return cls(covariance, s, chol, weights, log_normaliser)

    @property
    def mean(self) -> Tensor:
        return (self.covariance @ self.weights[..., None])[..., 0]

    def _whitened_cross(self, cross: Tensor) -> Tensor:
        """:math:`\\mathbf L^{-1}\\mathbf S\\mathbf K_{X*}` for a cross-covariance ``(..., P, Q, r)``."""
        return torch.linalg.solve_triangular(self.chol, self.root_precision[..., None] * cross, upper=False)

    @property
    def covariance_matrix(self) -> Tensor:
        w = self._whitened_cross(self.covariance.expand(*self.chol.shape))
        return self.covariance - w.mT @ w

    def predict(self, cross: Tensor, prior_variance: Tensor) -> tuple[Tensor, Tensor]:
        r"""Predictive means and variances at ``r`` new points per group: ``cross`` :math:`\mathbf K_{X*}`
        ``(..., P, Q, r)`` (zero rows at padded slots), ``prior_variance`` :math:`k(\mathbf x_*, \mathbf x_*)`
        ``(..., P, r)``."""
        mean = (cross * self.weights[..., None]).sum(-2)
        w = self._whitened_cross(cross.expand(*self.chol.shape[:-1], cross.size(-1)))
        return mean, prior_variance - w.square().sum(-2)


def global_posterior(y: Tensor, noise: Tensor, mask: Tensor, prior_variance: float = 1.0):
    r"""The global channels of a group: one latent :math:`z_p\sim\mathcal N(0, g)` shared by all its points, seen
    through :math:`\mathcal N(\tilde y_q\mid z_p, \tilde\sigma_q^2)`. Conjugate closed form (Appendix B):

    .. math::
        \bar\sigma^2 = \Big(\frac1g + \sum_q\frac1{\tilde\sigma_q^2}\Big)^{-1},\quad
        \bar\mu = \bar\sigma^2\sum_q\frac{\tilde y_q}{\tilde\sigma_q^2},\quad
        \log Z = \log\mathcal N(0\mid 0, g) + \sum_q\log\mathcal N(0\mid\tilde y_q, \tilde\sigma_q^2)
        - \log\mathcal N(0\mid\bar\mu, \bar\sigma^2).

    ``y``, ``noise``, ``mask`` ``(..., P, Q)``; returns mean, variance and :math:`\log Z`, each ``(..., P)``.
    """
    precision = torch.where(mask, noise.reciprocal(), torch.zeros_like(noise))
    variance = 1.0 / (1.0 / prior_variance + precision.sum(-1))
    mean = variance * (precision * y).sum(-1)

    def log_normal_at_zero(mu: Tensor, var: Tensor) -> Tensor:
        return -0.5 * ((2 * math.pi * var).log() + mu.square() / var)

    zero = torch.zeros_like(mean)
    terms = torch.where(mask, log_normal_at_zero(y, noise), torch.zeros_like(y)).sum(-1)
    log_z = log_normal_at_zero(zero, zero + prior_variance) + terms - log_normal_at_zero(mean, variance)
    return mean, variance, log_z


def select_groups(posterior: GroupedGPPosterior, index: Tensor) -> GroupedGPPosterior:
    """The posterior of the groups ``index`` (e.g. one entry per prediction point)."""
    return GroupedGPPosterior(
        posterior.covariance[index],
        posterior.root_precision[..., index, :],
        posterior.chol[..., index, :, :],
        posterior.weights[..., index, :],
        posterior.log_normaliser[..., index],
    )
