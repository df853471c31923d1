r"""The SVGP-VAE's core in whitened form, one set of functions of tensors: the sufficient statistics of a latent
dataset (:func:`whitened_statistics`), the batch-Titsias :math:`q(\mathbf v)` of Eq. 9 (:func:`whitened_factors`), its
KL divergence from :math:`p(\mathbf v)` (:func:`whitened_kl_divergence`), and one step's draws and KL
(:func:`sample_and_kl`, which can run under :func:`torch.compile` as a single graph). The object path
(:class:`WhitenedLatentStatistics`, :func:`whitened_titsias_posterior`,
:class:`~gpytorch_vae.variational.AmortizedHybridPosterior`) is built from the same functions."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from pyro.distributions import MultivariateNormal
from torch import Tensor

from .. import settings
from .prior_terms import predictive_marginals


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
        return cls(*whitened_statistics(interp, residuals, noise), residuals.size(-1))

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


def whitened_statistics(interp: Tensor, residuals: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\mathbf P = \boldsymbol\Phi\mathbf D\boldsymbol\Phi^\top` and :math:`\mathbf r = \boldsymbol\Phi
    \mathbf D(\tilde{\mathbf y} - \mathbf m_X)` from :math:`\boldsymbol\Phi` (``(*batch, m, n)``), the residuals
    and the noise :math:`\tilde{\boldsymbol\sigma}^2` (both ``(*batch, n)``), :math:`\mathbf D =
    \mathrm{diag}(\tilde{\boldsymbol\sigma}^{-2})`."""
    weighted = interp / noise.unsqueeze(-2)
    precision_update = weighted @ interp.mT
    projected_targets = (weighted @ residuals.unsqueeze(-1)).squeeze(-1)
    return precision_update, projected_targets


def whitened_factors(
    precision_update: Tensor, projected_targets: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`\mathbf m_w = c\,\mathbf B^{-1}\mathbf r` and the lower Cholesky factor :math:`\mathbf S` of
    :math:`\mathbf B^{-1}`, :math:`\mathbf B = \mathbf I + c\,\mathbf P`, and the Cholesky ``info`` (non-zero only when
    :math:`\mathbf B` is not positive definite, which, its eigenvalues being :math:`\ge 1`, means NaN or inf in the
    latent data). :math:`\mathbf S` comes from the Cholesky factor of :math:`\mathbf B` with rows and columns reversed
    (:math:`\mathbf J\mathbf B\mathbf J = \mathbf C\mathbf C^\top` gives :math:`\mathbf B^{-1} = \mathbf S\mathbf
    S^\top` with lower-triangular :math:`\mathbf S = (\mathbf J\mathbf C^\top\mathbf J)^{-1}`); written by hand
    because no library routine returns it."""
    eye = torch.eye(precision_update.size(-1), dtype=precision_update.dtype, device=precision_update.device)
    precision = eye + scale * precision_update
    chol_flipped, info = torch.linalg.cholesky_ex(precision.flip(-1, -2))
    upper = chol_flipped.flip(-1, -2)  # B = upper @ upper.mT, upper triangular
    scale_tril = torch.linalg.solve_triangular(upper.mT, eye.expand_as(upper), upper=False)  # = upper^{-T}
    loc = scale * (scale_tril @ (scale_tril.mT @ projected_targets.unsqueeze(-1))).squeeze(-1)
    return loc, scale_tril, info


def whitened_titsias_posterior(stats: WhitenedLatentStatistics, scale: float) -> MultivariateNormal:
    r"""Whitened batch-Titsias posterior :math:`q(\mathbf v) = \mathcal N(\mathbf m_w, \mathbf B^{-1})` over
    :math:`\mathbf v = \mathbf L^{-1}(\mathbf u - \mathbf m_U)` (SVGP-VAE Eq. 9 in whitened form).

    With :math:`c` = ``scale`` (:math:`N/b` in Eq. 9),

    .. math::
        \mathbf B = \mathbf I + c\,\mathbf P, \qquad \mathbf m_w = c\,\mathbf B^{-1}\mathbf r,

    which is Eq. 9 multiplied through by :math:`\mathbf L^{-1}`: :math:`\boldsymbol\mu_b = \mathbf m_U + \mathbf L
    \mathbf m_w` and :math:`\mathbf A_b = \mathbf L \mathbf B^{-1} \mathbf L^\top`. One Cholesky factorisation of
    the :math:`m\times m` matrix :math:`\mathbf B` (eigenvalues :math:`\ge 1`, so well conditioned) per GP
    (:func:`whitened_factors`).
    """
    loc, scale_tril, info = whitened_factors(stats.precision_update, stats.projected_targets, scale)
    check_cholesky_info(info)
    return MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)  # a Cholesky factor by construction


def check_cholesky_info(info: Tensor) -> None:
    r"""Raise if :math:`\mathbf B = \mathbf I + c\mathbf P` was not positive definite (checked on CPU tensors, or
    always under :class:`gpytorch_vae.settings.debug`: a host sync)."""
    if settings.debug.on(info) and bool(info.any()):
        raise ValueError(
            "B = I + c * Phi D Phi^T is not positive definite, which only happens with NaN or inf in the latent data "
            "(encoder means or variances) or the kernel: check the encoder's outputs and the kernel hyperparameters"
        )


def whitened_prior(batch_shape: torch.Size, num_inducing: int, like: Tensor) -> MultivariateNormal:
    r""":math:`p(\mathbf v) = \mathcal N(\mathbf 0, \mathbf I_m)` with batch shape ``batch_shape``, dtype and device
    of ``like``: the whitened prior of the inducing values."""
    eye = torch.eye(num_inducing, dtype=like.dtype, device=like.device).expand(*batch_shape, -1, -1)
    return MultivariateNormal(like.new_zeros(*batch_shape, num_inducing), scale_tril=eye)


def whitened_kl_divergence(loc: Tensor, scale_tril: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mathbf m_w, \mathbf S\mathbf S^\top) \,\|\, \mathcal N(\mathbf 0, \mathbf I))
    = \tfrac12(\lVert\mathbf S\rVert_F^2 + \lVert\mathbf m_w\rVert^2 - m) - \sum_j \log S_{jj}`, which equals
    :math:`\mathrm{KL}(q(\mathbf u)\,\|\,p(\mathbf u))` because the KL divergence is invariant under the shared
    affine map :math:`\mathbf u = \mathbf m_U + \mathbf L \mathbf v`."""
    trace = scale_tril.square().sum((-1, -2))
    logdet = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + loc.square().sum(-1) - loc.size(-1)) - logdet


def sample_and_kl(
    interp: Tensor,
    data_mean: Tensor,
    data_variance: Tensor,
    y: Tensor,
    noise: Tensor,
    scale: float,
    jitter: float,
    eps_v: Tensor,
    eps_z: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""One step of the SVGP-VAE as one function of tensors: Eq. 9 (whitened) for the batch :math:`\{\mathbf y,
    \tilde{\boldsymbol\sigma}^2\}` with :math:`\boldsymbol\Phi` = ``interp``; then :math:`\mathbf v = \mathbf m_w +
    \mathbf S\boldsymbol\epsilon_v` and :math:`z_i = m(\mathbf x_i) + \boldsymbol\phi_i^\top\mathbf v + (k_{ii} -
    \lVert\boldsymbol\phi_i\rVert^2 + \epsilon)^{1/2}\epsilon_{z,i}`, given the standard normal noises. Returns
    ``z``, the KL per GP, :math:`\mathbf m_w`, :math:`\mathbf S` and the Cholesky ``info``."""
    loc, scale_tril, info = whitened_factors(*whitened_statistics(interp, y - data_mean, noise), scale)
    v = loc + (scale_tril @ eps_v.unsqueeze(-1)).squeeze(-1)
    mean, variance = predictive_marginals(interp, data_mean, data_variance, jitter, v, None)
    z = mean + variance.sqrt() * eps_z
    return z, whitened_kl_divergence(loc, scale_tril), loc, scale_tril, info


_compiled = {}


def run_sample_and_kl(*args) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`sample_and_kl`, compiled when :class:`gpytorch_vae.settings.compile_gp` is on."""
    if not settings.compile_gp._state:
        return sample_and_kl(*args)
    if "fn" not in _compiled:
        _compiled["fn"] = torch.compile(sample_and_kl, dynamic=False)
    return _compiled["fn"](*args)
