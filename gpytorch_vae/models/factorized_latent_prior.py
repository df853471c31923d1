"""FGP-VAE's latent prior (Jazbec, Pearce and Fortuin) as Pyro model/guide fragments."""

from __future__ import annotations

from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from gpytorch.kernels import Kernel
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from ..variational.factorized_posterior import (
    GroupedGPPosterior,
    global_posterior,
    masked_block_covariance,
    select_groups,
)
from ..variational.group_layout import GroupLayout
from .latent_priors import SparseLatentPrior


class FactorizedLatentPrior(torch.nn.Module):
    r"""The FGP-VAE prior: with a delta kernel over groups (e.g. digit ids), channels ``0..J-1`` are **local** (an
    independent GP per group over the other inputs, kernel ``local_kernel``) and the remaining ones **global** (one
    :math:`\mathcal N(0, g)` latent per group, shared by its points).

    The guide samples the exact posterior (:class:`~gpytorch_vae.variational.factorized_posterior.GroupedGPPosterior`
    per group on the local channels, :func:`~gpytorch_vae.variational.factorized_posterior.global_posterior` on the
    global ones), the model the block-diagonal prior; sites ``z_local`` (``(J, P, Q)``, padded groups) and
    ``z_global`` (``(L - J, P)``). With :class:`~pyro.infer.TraceMeanField_ELBO` the loss is minus
    :math:`\mathbb E_q[\log p(\mathbf Y\mid\mathbf Z)] - \mathrm{KL}(q\,\|\,p)`, which equals the FGP-VAE ELBO
    :math:`\sum_p\mathbb E_q[\sum_q\log p(\mathbf y_q\mid\mathbf z_q) - \log\tilde q(\mathbf z_q\mid\mathbf y_q)] +
    \log Z_p` because :math:`\log q = \log\tilde q + \log p - \log Z`. The ELBO is a sum over groups: minibatches of
    whole groups need no :math:`b/N` scaling (``num_data`` is ignored).

    :param local_kernel: GPyTorch kernel on the local inputs (e.g. a fixed periodic kernel over the angle).
    :param num_local: :math:`J`.
    :param num_global: :math:`L - J`.
    :param group_column: column of ``x`` holding the group id.
    :param local_columns: columns of ``x`` the local kernel sees.
    :param global_prior_variance: :math:`g`.
    :param jitter: added to the diagonals of the prior and posterior blocks before their Cholesky factors.
    :param local_gp: optional sparse alternative for the local channels (beyond the paper, which names it future
        work): a :class:`~gpytorch_vae.models.SparseLatentGP` on the local inputs whose inducing points every group
        shares. Each group then gets its amortized hybrid posterior (SVGP-VAE's Eq. 9 with :math:`b = N_p`), through
        :class:`~gpytorch_vae.models.SparseLatentPrior` (sites ``inducing_values`` and ``z``); padded slots carry
        infinite noise, i.e. no data. ``local_kernel`` is then unused (pass ``local_gp.covar_module``).
    """

    def __init__(
        self,
        local_kernel: Kernel,
        num_local: int,
        num_global: int,
        group_column: int = 0,
        local_columns: Sequence[int] = (1,),
        global_prior_variance: float = 1.0,
        jitter: float = 1e-8,
        local_gp=None,
    ):
        super().__init__()
        self.sparse_local = None if local_gp is None else SparseLatentPrior(local_gp)
        self.local_kernel = local_kernel
        self.num_local = int(num_local)
        self.num_global = int(num_global)
        self.group_column = int(group_column)
        self.local_columns = list(local_columns)
        self.global_prior_variance = float(global_prior_variance)
        self.jitter = float(jitter)

    # ------------------------------------------------------------------ structure
    def layout(self, x: Tensor) -> GroupLayout:
        if x.dim() != 2:
            raise ValueError(f"x must be (N, D) (one dataset of grouped points), got {tuple(x.shape)}")
        return GroupLayout.create(x[:, self.group_column])

    def _like(self) -> Tensor | None:
        """A tensor with the GP dtype and device."""
        if self.sparse_local is not None:
            return self.sparse_local.strategy.inducing_points
        return next(self.local_kernel.parameters(), None)

    def _cast(self, t: Tensor) -> Tensor:
        like = self._like()
        return t if like is None else t.to(like)

    def prior_blocks(self, x: Tensor, layout: GroupLayout) -> Tensor:
        """The masked local kernel blocks ``(P, Q, Q)``."""
        inputs = layout.pad_points(self._cast(x[:, self.local_columns]), point_dim=0)
        return masked_block_covariance(self.local_kernel(inputs).to_dense(), layout.mask)

    def _check(self, mean: Tensor) -> None:
        if mean.size(-2) != self.num_local + self.num_global:
            raise ValueError(f"expected {self.num_local + self.num_global} latent channels, got {mean.size(-2)}")

    def _global(self, mean: Tensor, var: Tensor, layout: GroupLayout) -> tuple[Tensor, Tensor, Tensor]:
        pad = lambda t: layout.pad_points(self._cast(t[self.num_local :]), fill=1.0)  # noqa: E731
        return global_posterior(pad(mean), pad(var), layout.mask, self.global_prior_variance)

    def posteriors(self, x: Tensor, mean: Tensor, var: Tensor):
        """``(layout, local GroupedGPPosterior over (J, P, Q), (global mean, variance, log Z) over (L - J, P))``
        (exact local channels)."""
        self._check(mean)
        layout = self.layout(x)
        blocks = self.prior_blocks(x, layout)
        pad = lambda t: layout.pad_points(t[: self.num_local].to(blocks), fill=1.0)  # noqa: E731
        local = GroupedGPPosterior.fit(blocks, pad(mean), pad(var), layout.mask)
        return layout, local, self._global(mean, var, layout)

    def log_normaliser(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        r""":math:`\sum_p\log Z_p` over all groups and channels."""
        _, local, glob = self.posteriors(x, mean, var)
        return local.log_normaliser.sum() + glob[2].sum()

    def _assemble(self, layout: GroupLayout, local: Tensor, glob: Tensor) -> Tensor:
        return torch.cat([layout.unpad_points(local), glob[..., layout.group]], dim=-2)

    def _scale_tril(self, covariance: Tensor) -> Tensor:
        eye = torch.eye(covariance.size(-1), dtype=covariance.dtype, device=covariance.device)
        return psd_safe_cholesky(covariance + self.jitter * eye)

    def _sparse_inputs(self, x: Tensor, layout: GroupLayout) -> Tensor:
        """Local inputs of the sparse variant, one GP per group: ``(P, 1, Q, d)``."""
        return layout.pad_points(self._cast(x[:, self.local_columns]), point_dim=0).unsqueeze(-3)

    def _sparse_targets(self, mean: Tensor, var: Tensor, layout: GroupLayout) -> tuple[Tensor, Tensor]:
        """Local latent data of the sparse variant ``(P, J, Q)``; padded slots have infinite noise (no data)."""
        pad = lambda t, fill: layout.pad_points(self._cast(t[: self.num_local]), fill=fill).movedim(-2, 0)  # noqa
        return pad(mean, 0.0), pad(var, float("inf"))

    # ------------------------------------------------------------------ Pyro fragments
    def guide(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        self._check(mean)
        layout = self.layout(x)
        if self.sparse_local is None:
            _, local, _ = self.posteriors(x, mean, var)
            q_local = dist.MultivariateNormal(local.mean, scale_tril=self._scale_tril(local.covariance_matrix))
            z_local = pyro.sample("z_local", q_local.to_event(2))
        else:
            inputs, targets = self._sparse_inputs(x, layout), self._sparse_targets(mean, var, layout)
            z_local = self.sparse_local.guide(inputs, *targets).movedim(0, -2)
        g_mean, g_var, _ = self._global(mean, var, layout)
        z_global = pyro.sample("z_global", dist.Normal(g_mean, g_var.sqrt()).to_event(2))
        return self._assemble(layout, z_local, z_global)

    def model(self, x: Tensor, batch_shape: torch.Size, num_data: int | None = None) -> Tensor:
        layout = self.layout(x)
        if self.sparse_local is None:
            blocks = self.prior_blocks(x, layout)
            zeros = blocks.new_zeros(self.num_local, *layout.mask.shape)
            tril = self._scale_tril(blocks).expand(self.num_local, -1, -1, -1)
            z_local = pyro.sample("z_local", dist.MultivariateNormal(zeros, scale_tril=tril).to_event(2))
        else:
            shape = torch.Size([layout.num_groups, self.num_local, layout.max_size])
            z_local = self.sparse_local.model(self._sparse_inputs(x, layout), shape).movedim(0, -2)
        g_zeros = z_local.new_zeros(self.num_global, layout.num_groups)
        z_global = pyro.sample("z_global", dist.Normal(g_zeros, self.global_prior_variance**0.5).to_event(2))
        return self._assemble(layout, z_local, z_global)

    # ------------------------------------------------------------------ objective parts and prediction
    def kl_divergence(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None) -> Tensor:
        r""":math:`\mathrm{KL}(q\,\|\,p)` summed over groups and channels (what the sites contribute; for the sparse
        variant the local part is :math:`\sum\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))`)."""
        self._check(mean)
        layout = self.layout(x)
        if self.sparse_local is None:
            _, local, _ = self.posteriors(x, mean, var)
            q = dist.MultivariateNormal(local.mean, scale_tril=self._scale_tril(local.covariance_matrix))
            p = dist.MultivariateNormal(torch.zeros_like(local.mean), scale_tril=self._scale_tril(local.covariance))
            kl_local = torch.distributions.kl_divergence(q, p).sum()
        else:
            inputs, targets = self._sparse_inputs(x, layout), self._sparse_targets(mean, var, layout)
            kl_local = self.sparse_local.kl_divergence(inputs, *targets)
        g_mean, g_var, _ = self._global(mean, var, layout)
        g_prior = dist.Normal(torch.zeros_like(g_mean), torch.full_like(g_mean, self.global_prior_variance**0.5))
        return kl_local + torch.distributions.kl_divergence(dist.Normal(g_mean, g_var.sqrt()), g_prior).sum()

    def posterior_mean(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Posterior means ``(L, N)`` at the latent inputs."""
        self._check(mean)
        layout = self.layout(x)
        if self.sparse_local is None:
            local_mean = self.posteriors(x, mean, var)[1].mean
        else:
            inputs, targets = self._sparse_inputs(x, layout), self._sparse_targets(mean, var, layout)
            local_mean = self.sparse_local.posterior_mean(inputs, *targets).movedim(0, -2)
        return self._assemble(layout, local_mean, self._global(mean, var, layout)[0])

    def _local_predict(self, x_new: Tensor, x: Tensor, mean: Tensor, var: Tensor, layout: GroupLayout, index: Tensor,
                       local: GroupedGPPosterior | None):  # fmt: skip
        """Local-channel predictive means and variances ``(J, r)`` at ``x_new`` in groups ``index`` (``local``: the
        exact posterior, ``None`` for the sparse variant)."""
        new = self._cast(x_new[:, self.local_columns])[:, None, :]  # (r, 1, d)
        if local is None:
            inputs = self._sparse_inputs(x, layout)[index]  # (r, 1, Q, d)
            targets = [t[index] for t in self._sparse_targets(mean, var, layout)]  # (r, J, Q)
            self.sparse_local.strategy.set_latent_data(inputs, *targets)
            local_mean, local_var = self.sparse_local.predict(new[:, None])  # (r, J, 1)
            return local_mean[..., 0].mT, local_var[..., 0].mT
        inputs = layout.pad_points(self._cast(x[:, self.local_columns]), point_dim=0)[index]  # (r, Q, d)
        cross = self.local_kernel(inputs, new).to_dense() * layout.mask[index][..., None]  # (r, Q, 1)
        local_mean, local_var = select_groups(local, index).predict(cross, self.local_kernel(new, diag=True))
        return local_mean[..., 0], local_var[..., 0]

    @torch.no_grad()
    def predict(self, x_new: Tensor, x: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        r"""Posterior predictive means and variances ``(L, r)`` of the latents at ``x_new`` ``(r, D)`` given the
        latent dataset at ``x``: per point, its group's GP (local) and its group's shared Gaussian (global). Points
        of groups absent from ``x`` get the prior (unseen groups)."""
        self._check(mean)
        if self.sparse_local is None:
            layout, local, (g_mean, g_var, _) = self.posteriors(x, mean, var)
        else:
            layout, local = self.layout(x), None
            g_mean, g_var, _ = self._global(mean, var, layout)
        index, seen = layout.locate(self._cast(x_new[:, self.group_column]).to(layout.group_ids))
        local_mean, local_var = self._local_predict(x_new, x, mean, var, layout, index, local)
        prior_var = self.local_kernel(self._cast(x_new[:, self.local_columns]), diag=True)
        means = torch.cat([torch.where(seen, local_mean, 0.0), torch.where(seen, g_mean[:, index], 0.0)])
        variances = torch.cat([torch.where(seen, local_var, prior_var.expand_as(local_var)),
                               torch.where(seen, g_var[:, index], self.global_prior_variance)])  # fmt: skip
        return means, variances
