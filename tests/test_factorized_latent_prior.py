"""FGP-VAE: the factorized delta-kernel posterior against dense exact GPs (issue #5)."""

import math

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from gpytorch_vae import GPVAE, ExactLatentGP, SparseLatentGP
from gpytorch_vae.kernels import DeltaKernel, fixed_periodic_kernel
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.priors import FactorizedLatentPrior
from gpytorch_vae.priors.factorized_posterior import global_posterior
from gpytorch_vae.variational.group_layout import GroupLayout

DT = torch.float64
GRID = torch.linspace(0, 2 * math.pi, 17, dtype=DT)[:-1]
J, G = 2, 2  # local and global channels


def grouped_data(ids=(3, 1, 3, 3, 7, 1, 3, 9, 7), seed=0):
    """Groups of sizes 4, 2, 2, 1 (unequal, one singleton), angles on the grid, in scrambled order."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor(ids, dtype=DT)
    angles = GRID[torch.randperm(16, generator=g)[: len(ids)]]
    x = torch.stack([ids, angles], dim=-1)
    mean = torch.randn(J + G, len(ids), generator=g, dtype=DT)
    var = torch.rand(J + G, len(ids), generator=g, dtype=DT) + 0.2
    return x, mean, var


def make_prior(sparse=False, lengthscale=1.0):
    kernel = fixed_periodic_kernel(lengthscale, dtype=DT)
    gp = (
        SparseLatentGP(GRID[:, None].clone(), kernel, learn_inducing_locations=False, jitter_val=1e-11)
        if sparse
        else None
    )
    return FactorizedLatentPrior(kernel, J, G, jitter=1e-12, local_gp=None if gp is None else gp.to(DT))


def dense_kernel(local: bool, lengthscale=1.0):
    delta = DeltaKernel(active_dims=torch.tensor([0]))
    if not local:
        return delta
    return delta * fixed_periodic_kernel(lengthscale, dtype=DT, active_dims=torch.tensor([1]))


def dense_exact_gp(x, mean, var):
    """GPyTorch ExactGP + FixedNoiseGaussianLikelihood over all points, delta-product kernels (local, global)."""
    result = []
    for channels, local in ((slice(0, J), True), (slice(J, J + G), False)):
        gp = ExactLatentGP(dense_kernel(local)).to(DT)
        gp.set_latent_data(x, mean[channels], var[channels])
        result.append((gp.posterior(), gp.log_marginal_likelihood()))
    return result


def test_layout_of_unequal_groups():
    ids = torch.tensor([5.0, 2.0, 5.0, 9.0, 2.0, 5.0])
    layout = GroupLayout.create(ids)
    assert layout.mask.sum(1).tolist() == [2, 3, 1]
    values = torch.arange(12.0).reshape(2, 6)
    torch.testing.assert_close(layout.unpad_points(layout.pad_points(values)), values)
    index, seen = layout.locate(torch.tensor([9.0, 4.0]))
    assert index[0] == 2 and seen.tolist() == [True, False]


def test_delta_kernel():
    x = torch.tensor([[1.0], [2.0], [1.0]])
    torch.testing.assert_close(DeltaKernel()(x).to_dense(), torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]))


def test_posterior_and_log_z_equal_the_dense_exact_gp():
    x, mean, var = grouped_data()
    prior = make_prior()
    (q_local, logz_local), (q_global, logz_global) = dense_exact_gp(x, mean, var)
    posterior = prior.condition(x, mean, var)
    torch.testing.assert_close(posterior.log_normaliser, logz_local.sum() + logz_global.sum())
    expected_mean = torch.cat([q_local.mean, q_global.mean])
    torch.testing.assert_close(prior.posterior_mean(x, mean, var), expected_mean, atol=1e-10, rtol=0)
    # full local covariance: the padded blocks, scattered back, equal the dense block-diagonal posterior
    layout = posterior.layout
    covariance = posterior.local.posterior.covariance_matrix  # (J, P, Q, Q)
    n = x.size(0)
    dense = torch.zeros(J, n, n, dtype=DT)
    same = layout.group[:, None] == layout.group[None, :]
    rows = covariance[:, layout.group[:, None], layout.position[:, None], layout.position[None, :]]
    dense[:, same] = rows[:, same]
    torch.testing.assert_close(dense, q_local.covariance_matrix, atol=1e-10, rtol=0)


def test_global_channels_equal_the_conjugate_closed_form():
    y, noise = torch.tensor([[0.3, -1.2, 2.0]], dtype=DT), torch.tensor([[0.5, 1.5, 0.25]], dtype=DT)
    mask = torch.ones(1, 3, dtype=torch.bool)
    mean, variance, log_z = global_posterior(y, noise, mask, prior_variance=2.0)
    precision = 1 / 2.0 + (1 / noise).sum()
    torch.testing.assert_close(variance, 1 / precision[None])
    torch.testing.assert_close(mean, (y / noise).sum(-1) / precision)
    # log Z: y ~ N(0, 2 * 11^T + diag(noise))
    covariance = 2.0 * torch.ones(3, 3, dtype=DT) + torch.diag(noise[0])
    expected = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=DT), covariance).log_prob(y[0])
    torch.testing.assert_close(log_z[0], expected)


def test_group_of_one_image():
    x, mean, var = grouped_data(ids=(4,))
    prior = make_prior()
    (q_local, logz_local), (q_global, logz_global) = dense_exact_gp(x, mean, var)
    torch.testing.assert_close(prior.condition(x, mean, var).log_normaliser, logz_local.sum() + logz_global.sum())
    torch.testing.assert_close(prior.posterior_mean(x, mean, var), torch.cat([q_local.mean, q_global.mean]))


def test_prediction_in_seen_and_unseen_groups():
    x, mean, var = grouped_data()
    prior = make_prior()
    x_new = torch.tensor([[3.0, GRID[5]], [9.0, GRID[2]], [5.0, GRID[7]]], dtype=DT)  # group 5 is unseen
    q = prior.condition(x, mean, var).predict(x_new)
    means, variances = q.mean, q.variance
    n = x.size(0)
    everything = torch.cat([x, x_new])
    for channels, local in ((slice(0, J), True), (slice(J, J + G), False)):
        k = dense_kernel(local)(everything).to_dense()
        c = k[:n, :n] + torch.diag_embed(var[channels])
        cross = k[n:, :n]
        expected_mean = (cross @ torch.linalg.solve(c, mean[channels].unsqueeze(-1))).squeeze(-1)
        expected_var = k[n:, n:].diagonal() - (
            cross @ torch.linalg.solve(c, cross.mT.expand(c.shape[0], -1, -1))
        ).diagonal(dim1=-2, dim2=-1)
        torch.testing.assert_close(means[channels], expected_mean, atol=1e-10, rtol=0)
        torch.testing.assert_close(variances[channels], expected_var, atol=1e-10, rtol=0)
    assert torch.all(means[:, 2] == 0) and torch.allclose(variances[:, 2], torch.ones(J + G, dtype=DT))


def test_kl_is_the_paper_elbo_identity():
    r"""KL(q || p) = sum_q E_q[log q~(z_q | y_q)] - log Z: our ELBO E[log p(y|z)] - KL equals the paper's form."""
    x, mean, var = grouped_data()
    prior = make_prior()
    posterior = prior.condition(x, mean, var)
    layout, g_var = posterior.layout, posterior.global_variance
    marginal_mean = prior.posterior_mean(x, mean, var)
    local_var = layout.unpad_points(posterior.local.posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1))
    marginal_var = torch.cat([local_var, g_var[:, layout.group]])
    cross_entropy = -0.5 * ((2 * math.pi * var).log() + ((marginal_mean - mean).square() + marginal_var) / var)
    expected = cross_entropy.sum() - posterior.log_normaliser
    torch.testing.assert_close(prior.kl_divergence(x, mean, var), expected)


def test_sparse_local_channels_with_inducing_points_on_the_inputs_equal_the_exact_ones():
    x, mean, var = grouped_data()
    exact, sparse = make_prior(), make_prior(sparse=True)
    torch.testing.assert_close(sparse.posterior_mean(x, mean, var), exact.posterior_mean(x, mean, var), atol=1e-8,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(sparse.kl_divergence(x, mean, var), exact.kl_divergence(x, mean, var), atol=1e-7,
                               rtol=0)  # fmt: skip
    x_new = torch.tensor([[3.0, GRID[5]], [9.0, GRID[2]], [5.0, GRID[7]]], dtype=DT)
    q_sparse, q_exact = sparse.condition(x, mean, var).predict(x_new), exact.condition(x, mean, var).predict(x_new)
    torch.testing.assert_close(q_sparse.mean, q_exact.mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(q_sparse.variance, q_exact.variance, atol=1e-8, rtol=0)


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 2 * (J + G))

    def forward(self, y):
        return self.net(y).chunk(2, dim=-1)


@pytest.mark.parametrize("sparse", [False, True])
def test_svi_loss_matches_the_fgp_elbo(sparse):
    torch.manual_seed(0)
    x, _, _ = grouped_data()
    y = torch.randn(x.size(0), 3, dtype=DT)
    vae = GPVAE(Encoder().double(), torch.nn.Linear(J + G, 3).double(), make_prior(sparse), J + G,
                likelihood=GaussianLikelihood(noise=1.0), gp_dtype=DT)  # fmt: skip
    pyro.clear_param_store()
    losses = torch.tensor([TraceMeanField_ELBO().loss(vae.model, vae.guide, x, y) for _ in range(400)])
    mean, var = vae.latent_dataset(y)
    prior = vae.latent_prior
    kl = prior.kl_divergence(x, mean, var)
    # E_q[log p(y | z)] by Monte Carlo from the exact marginals (the likelihood factorises over points)
    marginal_mean = make_prior().posterior_mean(x, mean, var)
    marginal_var = make_prior().condition(x, mean, var).predict(x).variance
    assert kl > 1.0
    z = marginal_mean + marginal_var.sqrt() * torch.randn(4000, *marginal_mean.shape, dtype=DT)
    log_lik = torch.distributions.Normal(vae.decoder(z.mT), 1.0).log_prob(y).sum((-1, -2))
    expected = -(log_lik.mean() - kl).item()
    standard_error = (losses.var() / len(losses) + log_lik.var() / len(log_lik)).sqrt().item()
    assert abs(losses.mean().item() - expected) < 4 * standard_error
    assert abs(losses.mean().item() - (expected - kl.item())) > 10 * standard_error  # power: the KL is seen
