"""Prior quantities shared by the inducing-point computations: one kernel evaluation, one Cholesky."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gpytorch.distributions import MultivariateNormal
from linear_operator import to_dense
from linear_operator.operators import DenseLinearOperator, DiagLinearOperator, LinearOperator, MatmulLinearOperator
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

from .. import settings
from .diagnostics import check_prior_covariance, not_positive_definite


@dataclass(frozen=True)
class WhitenedPriorTerms:
    r"""Prior terms of inducing inputs :math:`\mathbf U` and data inputs :math:`\mathbf X` in whitened form.

    :ivar inducing_mean: :math:`\mathbf m_U = m(\mathbf U)`, ``(*batch, m)``.
    :ivar chol: lower :math:`\mathbf L` with :math:`\mathbf L\mathbf L^\top = \mathbf K_{mm} + \epsilon\mathbf I`.
    :ivar interp: :math:`\boldsymbol\Phi = \mathbf L^{-1}\mathbf K_{mX}`, ``(*batch, m, n)``.
    :ivar data_mean: :math:`m(\mathbf X)`, ``(*batch, n)``.
    :ivar data_variance: :math:`\mathrm{diag}\,\mathbf K_{XX}`, ``(*batch, n)``.
    :ivar data_covar: lazy :math:`\mathbf K_{XX}`, ``(*batch, n, n)`` (evaluated only for full predictive covariances).
    :ivar jitter: :math:`\epsilon`, also added to predictive variances (as GPyTorch does), so that a prior
        conditional at an inducing input stays a proper distribution.
    """

    inducing_mean: Tensor
    chol: Tensor
    interp: Tensor
    data_mean: Tensor
    data_variance: Tensor
    data_covar: LinearOperator
    jitter: float

    @classmethod
    def compute(
        cls,
        prior_model,
        x: Tensor,
        inducing_points: Tensor,
        jitter: float,
        compute_dtype: torch.dtype | None = None,
        **kwargs,
    ) -> "WhitenedPriorTerms":
        r"""Evaluate the GP prior ``prior_model.forward`` once on :math:`[\mathbf U; \mathbf X]` (as GPyTorch's
        ``VariationalStrategy`` does, so models whose ``forward`` transforms inputs, e.g. GP-LVM look-ups, work). Of
        its lazy covariance only two blocks are evaluated: the rows of :math:`\mathbf U`, :math:`[\mathbf K_{mm}\,
        \mathbf K_{mX}]` (one kernel evaluation), and the diagonal of :math:`\mathbf K_{XX}`. The kernel runs in the
        model's dtype; the Cholesky factorisation and everything after it in ``compute_dtype`` (default: the same)."""
        batch_shape = torch.broadcast_shapes(inducing_points.shape[:-2], x.shape[:-2])
        inducing_points = inducing_points.expand(*batch_shape, *inducing_points.shape[-2:])
        x = x.expand(*batch_shape, *x.shape[-2:])
        num_inducing = inducing_points.size(-2)
        full_output = prior_model.forward(torch.cat([inducing_points, x], dim=-2), **kwargs)
        full_covar = full_output.lazy_covariance_matrix
        rows = to_dense(full_covar[..., :num_inducing, :])  # one kernel evaluation for K_mm and K_mX
        dtype, mean = compute_dtype or rows.dtype, full_output.mean
        if rows.dtype != dtype:  # the kernel ran in the model's dtype: factorise in the compute dtype
            rows, mean = rows.to(dtype), mean.to(dtype)
        induc_induc = rows[..., :num_inducing]
        checked = settings.debug.on(rows)
        if checked:
            check_prior_covariance(rows, prior_model, inducing_points, "inducing points")
        induc_induc = induc_induc + jitter * torch.eye(num_inducing, dtype=induc_induc.dtype, device=induc_induc.device)
        if checked:  # psd_safe_cholesky retries with more jitter and warns; else the library's message
            try:
                chol = psd_safe_cholesky(induc_induc)
            except NotPSDError as error:
                message = not_positive_definite(prior_model, inducing_points, "inducing points", jitter)
                raise ValueError(message) from error
        else:  # no host sync: a failed factorisation turns into NaN, which the step's one loss check refuses
            chol, info = torch.linalg.cholesky_ex(induc_induc)
            chol = torch.where((info == 0)[..., None, None], chol, torch.nan)
        interp = torch.linalg.solve_triangular(chol, rows[..., num_inducing:], upper=False)
        data_covar = full_covar[..., num_inducing:, num_inducing:]
        variance = data_covar.diagonal(dim1=-1, dim2=-2)
        return cls(
            inducing_mean=mean[..., :num_inducing],
            chol=chol,
            interp=interp,
            data_mean=mean[..., num_inducing:],
            data_variance=variance if variance.dtype == dtype else variance.to(dtype),
            data_covar=data_covar,
            jitter=jitter,
        )

    def marginals(self, whitened_values: Tensor, whitened_covar_root: Tensor | None) -> tuple[Tensor, Tensor]:
        """Means and variances of :meth:`predictive` (:func:`predictive_marginals` of these terms)."""
        return predictive_marginals(self.interp, self.data_mean, self.data_variance, self.jitter, whitened_values,
                                    whitened_covar_root)  # fmt: skip

    def predictive(self, whitened_values: Tensor, whitened_covar_root: Tensor | None, diag: bool) -> MultivariateNormal:
        r""":math:`\int p(\mathbf f_X\mid\mathbf v)\,q(\mathbf v)\,d\mathbf v` for :math:`q(\mathbf v) =
        \mathcal N(\mathbf m_w, \mathbf S\mathbf S^\top)` (SVGP-VAE Eq. 3 in whitened form):

        .. math::
            \mathbf m_X + \boldsymbol\Phi^\top\mathbf m_w, \qquad
            \mathbf K_{XX} + \boldsymbol\Phi^\top(\mathbf S\mathbf S^\top - \mathbf I)\boldsymbol\Phi.

        With ``whitened_covar_root=None`` this is the prior conditional :math:`p(\mathbf f_X\mid\mathbf v)` at
        ``whitened_values``. With ``diag=True`` only the marginal variances are computed (a diagonal covariance).
        """
        if diag:
            mean, variance = self.marginals(whitened_values, whitened_covar_root)
            return MultivariateNormal(mean, DiagLinearOperator(variance))
        interp = self.interp
        mean = self.data_mean + (interp.mT @ whitened_values.unsqueeze(-1)).squeeze(-1)
        middle = -interp  # (S S^T - I) Phi
        if whitened_covar_root is not None:
            middle = middle + whitened_covar_root @ (whitened_covar_root.mT @ interp)
        data_covar = to_dense(self.data_covar).to(interp.dtype)
        eye = torch.eye(data_covar.size(-1), dtype=interp.dtype, device=interp.device)
        covar = DenseLinearOperator(data_covar + self.jitter * eye) + MatmulLinearOperator(interp.mT, middle)
        return MultivariateNormal(mean, covar)


def predictive_marginals(interp: Tensor, data_mean: Tensor, data_variance: Tensor, jitter: float,
                         whitened_values: Tensor,
                         whitened_covar_root: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    r"""Means and variances of the predictive of Eq. 3 in whitened form at inputs with prior terms
    :math:`\boldsymbol\Phi` = ``interp``, :math:`m(\mathbf x_i)` = ``data_mean`` and :math:`k_{ii}` =
    ``data_variance``, in :math:`O(m^2 n)`:

    .. math::
        m(\mathbf x_i) + \boldsymbol\phi_i^\top\mathbf m_w, \qquad
        k_{ii} - \lVert\boldsymbol\phi_i\rVert^2 + \lVert\mathbf S^\top\boldsymbol\phi_i\rVert^2 + \epsilon;

    with ``whitened_covar_root=None`` (:math:`\mathbf S = \mathbf 0`) the prior conditional
    :math:`p(f_i\mid\mathbf v)` at :math:`\mathbf v` = ``whitened_values``."""
    mean = data_mean + (interp.mT @ whitened_values.unsqueeze(-1)).squeeze(-1)
    # k_ii - q_ii >= 0 in exact arithmetic; clamp the round-off.
    variance = (data_variance - interp.square().sum(-2)).clamp_min(0.0)
    if whitened_covar_root is not None:
        variance = variance + (whitened_covar_root.mT @ interp).square().sum(-2)
    return mean, variance + jitter
