r"""The core of one SVGP-VAE step as one function of tensors (no distribution objects), so that it can run under
:func:`torch.compile` as a single graph: from the whitened prior terms and the latent batch to Eq. 9's
:math:`q(\mathbf v)`, a draw of :math:`\mathbf v` and of :math:`\mathbf z\mid\mathbf v` at the batch inputs, and
:math:`\mathrm{KL}(q(\mathbf v)\,\|\,p(\mathbf v))`."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import settings


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


def kl_from_factors(loc: Tensor, scale_tril: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal N(\mathbf m_w, \mathbf S\mathbf S^\top)\,\|\,\mathcal N(\mathbf 0, \mathbf I)) =
    \tfrac12(\lVert\mathbf S\rVert_F^2 + \lVert\mathbf m_w\rVert^2 - m) - \sum_j\log S_{jj}`."""
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
    r"""Eq. 9 (whitened) for the batch :math:`\{\mathbf y, \tilde{\boldsymbol\sigma}^2\}` with
    :math:`\boldsymbol\Phi` = ``interp``; then :math:`\mathbf v = \mathbf m_w + \mathbf S\boldsymbol\epsilon_v` and
    :math:`z_i = m(\mathbf x_i) + \boldsymbol\phi_i^\top\mathbf v + (k_{ii} - \lVert\boldsymbol\phi_i\rVert^2 +
    \epsilon)^{1/2}\epsilon_{z,i}`: the draws of :class:`~gpytorch_vae.priors.SparseLatentPosterior`'s sites, given
    their standard normal noises. Returns ``z``, the KL per GP, :math:`\mathbf m_w`, :math:`\mathbf S` and the
    Cholesky ``info``."""
    weighted = interp / noise.unsqueeze(-2)
    precision_update = weighted @ interp.mT
    projected_targets = (weighted @ (y - data_mean).unsqueeze(-1)).squeeze(-1)
    loc, scale_tril, info = whitened_factors(precision_update, projected_targets, scale)
    v = loc + (scale_tril @ eps_v.unsqueeze(-1)).squeeze(-1)
    mean = data_mean + (interp.mT @ v.unsqueeze(-1)).squeeze(-1)
    variance = (data_variance - interp.square().sum(-2)).clamp_min(0.0) + jitter
    z = mean + variance.sqrt() * eps_z
    return z, kl_from_factors(loc, scale_tril), loc, scale_tril, info


_compiled = {}


def run_sample_and_kl(*args) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`sample_and_kl`, compiled when :class:`gpytorch_vae.settings.compile_gp` is on."""
    if not settings.compile_gp.on():
        return sample_and_kl(*args)
    if "fn" not in _compiled:
        _compiled["fn"] = torch.compile(sample_and_kl, dynamic=False)
    return _compiled["fn"](*args)
