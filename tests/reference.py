"""Independent float64 references: GPyTorch ExactGP with FixedNoiseGaussianLikelihood, and dense linear algebra
written straight from the papers' equations (explicit inverses are fine here: small, well-conditioned, float64)."""

from __future__ import annotations

import math

import gpytorch
import torch

from gpytorch_vae.gps import SparseLatentGP

L_CHANNELS = 2


CHANNELS_SHAPE = torch.Size([L_CHANNELS])


def make_kernel(batch_shape=CHANNELS_SHAPE, lengthscale=(0.7, 1.3), outputscale=(1.0, 0.5)):
    kernel = gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(batch_shape=batch_shape), batch_shape=batch_shape
    ).double()
    kernel.base_kernel.lengthscale = torch.tensor(lengthscale, dtype=torch.float64).reshape(*batch_shape, 1, 1)
    kernel.outputscale = torch.tensor(outputscale, dtype=torch.float64).reshape(batch_shape)
    return kernel


def make_sparse_gp(inducing_points, batch_shape=CHANNELS_SHAPE, jitter_val=1e-10, statistics_reducer=None,
                   **kernel_kwargs):  # fmt: skip
    return SparseLatentGP(
        inducing_points.double(),
        make_kernel(batch_shape, **kernel_kwargs),
        jitter_val=jitter_val,
        statistics_reducer=statistics_reducer,
    ).double()


def latent_data(n, channels=L_CHANNELS, seed=0, batch=()):
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(*batch, n, 1, generator=g, dtype=torch.float64) * 6, dim=-2).values
    y = torch.randn(*batch, channels, n, generator=g, dtype=torch.float64)
    noise = 0.05 + torch.rand(*batch, channels, n, generator=g, dtype=torch.float64)
    return x, y, noise


class ReferenceExactGP(gpytorch.models.ExactGP):
    def __init__(self, x, y, noise, kernel):
        super().__init__(x, y, gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=noise))
        self.mean_module = gpytorch.means.ZeroMean(batch_shape=kernel.batch_shape)
        self.covar_module = kernel

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def exact_gp_reference(x, y, noise, kernel):
    """(posterior mean, posterior covariance at x, log marginal likelihood) from GPyTorch's ExactGP."""
    model = ReferenceExactGP(x, y, noise, kernel).double()
    with gpytorch.settings.max_cholesky_size(10_000):
        model.train()
        lml = model.likelihood(model(x)).log_prob(y)
        model.eval()
        with gpytorch.settings.debug(False):
            post = model(x)
        return post.mean.detach(), post.covariance_matrix.detach(), lml.detach()


def dense(kernel, a, b=None):
    return kernel(a, a if b is None else b).to_dense().detach()


def titsias_reference(kernel, u, x, y, noise):
    """Titsias (2009) optimum (Eqs. 4-5) and collapsed bound (Eq. 6), all dense."""
    kmm, kmn, knn = dense(kernel, u), dense(kernel, u, x), dense(kernel, x)
    d = torch.diag_embed(1.0 / noise)
    sigma = kmm + kmn @ d @ kmn.mT
    sigma_inv = torch.linalg.inv(sigma)
    mu = (kmm @ sigma_inv @ kmn @ d @ y.unsqueeze(-1)).squeeze(-1)
    a = kmm @ sigma_inv @ kmm
    qnn = kmn.mT @ torch.linalg.inv(kmm) @ kmn
    marginal = torch.distributions.MultivariateNormal(torch.zeros_like(y), qnn + torch.diag_embed(noise))
    trace = ((knn - qnn).diagonal(dim1=-1, dim2=-2) / noise).sum(-1)
    return mu, a, marginal.log_prob(y) - 0.5 * trace, sigma


def batch_titsias_reference(kernel, u, xb, yb, noiseb, num_data):
    """Eq. 9 of the SVGP-VAE paper, dense: Sigma_b, mu_b, A_b."""
    kmm, kmb = dense(kernel, u), dense(kernel, u, xb)
    c = num_data / yb.size(-1)
    d = torch.diag_embed(1.0 / noiseb)
    sigma_b = kmm + c * kmb @ d @ kmb.mT
    sigma_inv = torch.linalg.inv(sigma_b)
    mu_b = c * (kmm @ sigma_inv @ kmb @ d @ yb.unsqueeze(-1)).squeeze(-1)
    return sigma_b, mu_b, kmm @ sigma_inv @ kmm


def gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1) || N(m2, s2)), dense."""
    k = m1.size(-1)
    s2_inv = torch.linalg.inv(s2)
    diff = (m2 - m1).unsqueeze(-1)
    return 0.5 * (
        (s2_inv @ s1).diagonal(dim1=-1, dim2=-2).sum(-1)
        + (diff.mT @ s2_inv @ diff).squeeze(-1).squeeze(-1)
        - k
        + torch.logdet(s2)
        - torch.logdet(s1)
    )


def log_normal(y, mean, var):
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (y - mean) ** 2 / var)


# ---------------------------------------------------------------------- a tiny VAE for the training-loop tests
class LinearEncoder(torch.nn.Module):
    """A linear encoder: means and log-variances of a 2-dim latent code."""

    def __init__(self, data_dim: int, latent_dim: int = 2):
        super().__init__()
        self.net = torch.nn.Linear(data_dim, 2 * latent_dim)

    def forward(self, y):
        return self.net(y).chunk(2, dim=-1)


def tiny_vae(data_dim: int = 16, latent_dim: int = 2):
    """A Gaussian VAE with linear networks and the N(0, I) prior."""
    from gpytorch_vae.likelihoods import GaussianLikelihood
    from gpytorch_vae.models import GPVAE
    from gpytorch_vae.priors import IndependentLatentPrior

    decoder = torch.nn.Linear(latent_dim, data_dim)
    return GPVAE(
        LinearEncoder(data_dim, latent_dim),
        decoder,
        IndependentLatentPrior(),
        latent_dim,
        likelihood=GaussianLikelihood(noise=1.0),
    )


def geco_step_by_hand(forward, geco, optimizer, *batch):
    """One GECO step in a loop of one's own (what fit's GECOUpdate does): ``forward(*batch)`` (a GECOObjective, or
    it in DDP), the backward pass, ``optimizer.step(e)`` of a ScaledLossOptimizer, ``geco.update()``. The terms."""
    terms = forward(*batch)
    optimizer.zero_grad()
    terms.loss.backward()
    optimizer.step(terms.loss_exponent)
    geco.update()
    return terms
