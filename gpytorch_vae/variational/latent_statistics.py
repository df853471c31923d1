"""Sufficient statistics of a latent dataset for the batch-Titsias :math:`q(\\mathbf u)`."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from pyro.distributions import MultivariateNormal
from torch import Tensor

from ..settings import validate_values
from .fused import whitened_factors


@dataclass(frozen=True)
class WhitenedLatentStatistics:
    r"""Whitened sufficient statistics of a latent dataset
    :math:`\{\mathbf X, \tilde{\mathbf y}, \tilde{\boldsymbol\sigma}^2\}`.

    With :math:`\mathbf K_{mm} = \mathbf L \mathbf L^\top`, :math:`\boldsymbol\Phi = \mathbf L^{-1}\mathbf K_{mn}`
    and :math:`\mathbf D = \mathrm{diag}(\tilde{\boldsymbol\sigma}^{-2})` these are

    .. math::
        \mathbf P = \boldsymbol\Phi \mathbf D \boldsymbol\Phi^\top, \qquad
        \mathbf r = \boldsymbol\Phi \mathbf D (\tilde{\mathbf y} - \mathbf m_X),

    both sums over data points, so statistics of disjoint batches add up (streaming conditioning in
    :math:`O(m^2)` memory). ``num_points`` is the number :math:`n` of latent points they summarise.
    They are only valid for the kernel hyperparameters and inducing points they were computed with.

    :param precision_update: :math:`\mathbf P`, shape ``(*batch, m, m)``.
    :param projected_targets: :math:`\mathbf r`, shape ``(*batch, m)``.
    :param num_points: :math:`n`.
    """

    precision_update: Tensor
    projected_targets: Tensor
    num_points: int

    def __add__(self, other: "WhitenedLatentStatistics") -> "WhitenedLatentStatistics":
        return WhitenedLatentStatistics(
            self.precision_update + other.precision_update,
            self.projected_targets + other.projected_targets,
            self.num_points + other.num_points,
        )

    @classmethod
    def from_interpolation(cls, interp: Tensor, residuals: Tensor, noise: Tensor) -> "WhitenedLatentStatistics":
        r"""Statistics from :math:`\boldsymbol\Phi` (``(*batch, m, n)``), :math:`\tilde{\mathbf y} - \mathbf m_X`
        and :math:`\tilde{\boldsymbol\sigma}^2` (both ``(*batch, n)``)."""
        weighted = interp / noise.unsqueeze(-2)
        precision_update = weighted @ interp.mT
        projected_targets = (weighted @ residuals.unsqueeze(-1)).squeeze(-1)
        return cls(precision_update, projected_targets, residuals.size(-1))

    def detach(self) -> "WhitenedLatentStatistics":
        return WhitenedLatentStatistics(
            self.precision_update.detach(), self.projected_targets.detach(), self.num_points
        )


class StatisticsReducer(abc.ABC):
    """Combines the :class:`WhitenedLatentStatistics` of the shards of one batch held by several processes into those
    of the union batch (what :class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy` conditions on in
    data-parallel training); :class:`gpytorch_vae.distributed.StatisticsAllReduce` sums them over the ranks."""

    @abc.abstractmethod
    def __call__(self, stats: WhitenedLatentStatistics) -> WhitenedLatentStatistics:
        """The statistics of the union batch (``num_points`` included)."""


def whitened_titsias_posterior(stats: WhitenedLatentStatistics, scale: float) -> MultivariateNormal:
    r"""Whitened batch-Titsias posterior :math:`q(\mathbf v) = \mathcal N(\mathbf m_w, \mathbf B^{-1})` over
    :math:`\mathbf v = \mathbf L^{-1}(\mathbf u - \mathbf m_U)` (SVGP-VAE Eq. 9 in whitened form).

    With :math:`c` = ``scale`` (:math:`N/b` in Eq. 9),

    .. math::
        \mathbf B = \mathbf I + c\,\mathbf P, \qquad \mathbf m_w = c\,\mathbf B^{-1}\mathbf r,

    which is Eq. 9 multiplied through by :math:`\mathbf L^{-1}`: :math:`\boldsymbol\mu_b = \mathbf m_U + \mathbf L
    \mathbf m_w` and :math:`\mathbf A_b = \mathbf L \mathbf B^{-1} \mathbf L^\top`. One Cholesky factorisation of
    the :math:`m\times m` matrix :math:`\mathbf B` (eigenvalues :math:`\ge 1`, so well conditioned) per GP.

    The lower Cholesky factor of :math:`\mathbf B^{-1}` is obtained from the Cholesky factor of :math:`\mathbf B`
    with its rows and columns reversed (:math:`\mathbf J \mathbf B \mathbf J = \mathbf C \mathbf C^\top` gives
    :math:`\mathbf B^{-1} = \mathbf S \mathbf S^\top` with lower-triangular :math:`\mathbf S = (\mathbf J
    \mathbf C^\top \mathbf J)^{-1}`); written by hand because no library routine returns it.
    """
    loc, scale_tril, info = whitened_factors(stats.precision_update, stats.projected_targets, scale)
    check_cholesky_info(info)
    return MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)  # a Cholesky factor by construction


def check_cholesky_info(info: Tensor) -> None:
    r"""Raise if :math:`\mathbf B = \mathbf I + c\mathbf P` was not positive definite (checked on CPU tensors, or
    always under :class:`gpytorch_vae.settings.validate_values`; it forces a device sync)."""
    if validate_values.applies_to(info) and bool(info.any()):
        raise ValueError(
            "B = I + c * Phi D Phi^T is not positive definite, which only happens with NaN or inf in the latent data "
            "(encoder means or variances) or the kernel: check the encoder's outputs and the kernel hyperparameters"
        )


def whitened_prior(batch_shape: torch.Size, num_inducing: int, like: Tensor) -> MultivariateNormal:
    r""":math:`p(\mathbf v) = \mathcal N(\mathbf 0, \mathbf I_m)` with batch shape ``batch_shape``, dtype and device
    of ``like``: the whitened prior of the inducing values."""
    eye = torch.eye(num_inducing, dtype=like.dtype, device=like.device).expand(*batch_shape, -1, -1)
    return MultivariateNormal(like.new_zeros(*batch_shape, num_inducing), scale_tril=eye)


def whitened_kl_divergence(q_whitened: torch.distributions.MultivariateNormal) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mathbf m_w, \mathbf S\mathbf S^\top) \,\|\, \mathcal N(\mathbf 0, \mathbf I))
    = \tfrac12(\lVert\mathbf S\rVert_F^2 + \lVert\mathbf m_w\rVert^2 - m) - \sum_j \log S_{jj}`, which equals
    :math:`\mathrm{KL}(q(\mathbf u)\,\|\,p(\mathbf u))` because the KL divergence is invariant under the shared
    affine map :math:`\mathbf u = \mathbf m_U + \mathbf L \mathbf v`."""
    scale_tril = q_whitened.scale_tril
    mean = q_whitened.loc
    trace = scale_tril.square().sum((-1, -2))
    logdet = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mean.square().sum(-1) - mean.size(-1)) - logdet
