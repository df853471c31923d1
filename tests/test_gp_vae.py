"""GP-VAE objective tests in a linear-Gaussian model, where log p(Y|X) and every expectation are exact."""

import math

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from gpytorch_vae import GPVAE, ExactLatentGP, ExactLatentPrior, IndependentLatentPrior, SparseLatentPrior
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.objectives import ELBO
from reference import (
    L_CHANNELS,
    batch_titsias_reference,
    dense,
    gaussian_kl,
    latent_data,
    log_normal,
    make_kernel,
    make_sparse_gp,
)

N, K, SIGMA_Y = 6, 3, 0.4


class LinearEncoder(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mean_map = torch.nn.Parameter(torch.randn(K, L_CHANNELS, generator=g, dtype=torch.float64))
        self.log_var = torch.nn.Parameter(torch.randn(L_CHANNELS, generator=g, dtype=torch.float64) - 1)

    def forward(self, y):
        mean = y @ self.mean_map
        return mean, self.log_var.expand_as(mean)


def linear_decoder(seed=1):
    g = torch.Generator().manual_seed(seed)
    decoder = torch.nn.Linear(L_CHANNELS, K).double()
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(K, L_CHANNELS, generator=g))
        decoder.bias.copy_(torch.randn(K, generator=g))
    return decoder


def observations(seed=2):
    x, _, _ = latent_data(N, seed=seed)
    y = torch.randn(N, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, y


def log_evidence(x, y, decoder):
    """log p(Y|X) with vec(Y) ~ N(1 (x) c, sum_l K_l (x) w_l w_l^T + sigma^2 I)."""
    kernel = make_kernel()
    kxx = dense(kernel, x)
    w = decoder.weight.detach()
    cov = sum(torch.kron(kxx[c], torch.outer(w[:, c], w[:, c])) for c in range(L_CHANNELS))
    cov = cov + SIGMA_Y**2 * torch.eye(N * K, dtype=torch.float64)
    mean = decoder.bias.detach().repeat(N)
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(y.reshape(-1))


def expected_log_lik(y, decoder, q_mean, q_var):
    """sum_i E_q[log N(y_i | W z_i + c, sigma^2 I)] for q marginals (L, N)."""
    w, c = decoder.weight.detach(), decoder.bias.detach()
    pred = q_mean.mT @ w.mT + c
    return log_normal(y, pred, torch.tensor(SIGMA_Y**2)).sum() - (q_var.mT @ (w**2).mT).sum() / (2 * SIGMA_Y**2)


def encoder_terms(encoder, y):
    mean, log_var = encoder(y)
    return mean.detach().mT, log_var.detach().exp().mT


def eq10_dense(x, y, encoder, decoder, u, num_data=None):
    """SVGP-VAE Eq. 10 written out densely from Eqs. 3, 7 and 9 (b = all rows of y)."""
    kernel = make_kernel()
    num_data = num_data or N
    ym, yv = encoder_terms(encoder, y)
    _, mu, a = batch_titsias_reference(kernel, u, x, ym, yv, num_data)
    kmm_inv = torch.linalg.inv(dense(kernel, u))
    kxm = dense(kernel, x, u)
    q_mean = (kxm @ kmm_inv @ mu.unsqueeze(-1)).squeeze(-1)
    q_cov = dense(kernel, x) - kxm @ kmm_inv @ kxm.mT + kxm @ kmm_inv @ a @ kmm_inv @ kxm.mT
    q_var = q_cov.diagonal(dim1=-1, dim2=-2)
    e_log_qtilde = (log_normal(ym, q_mean, yv) - q_var / (2 * yv)).sum()
    kl = gaussian_kl(mu, a, torch.zeros_like(mu), dense(kernel, u))
    hensman = (num_data / N) * (log_normal(ym, q_mean, yv) - q_var / (2 * yv)).sum(-1) - kl  # Eq. 7, per channel
    return expected_log_lik(y, decoder, q_mean, q_var) - e_log_qtilde + (N / num_data) * hensman.sum()


def eq2_dense(x, y, encoder, decoder):
    """Pearce's Eq. 2 with the exact latent-GP posterior, dense."""
    kxx = dense(make_kernel(), x)
    ym, yv = encoder_terms(encoder, y)
    c = kxx + torch.diag_embed(yv)
    q_mean = (kxx @ torch.linalg.solve(c, ym.unsqueeze(-1))).squeeze(-1)
    q_var = (kxx - kxx @ torch.linalg.solve(c, kxx)).diagonal(dim1=-1, dim2=-2)
    log_z = torch.distributions.MultivariateNormal(torch.zeros_like(ym), c).log_prob(ym)
    e_log_qtilde = (log_normal(ym, q_mean, yv) - q_var / (2 * yv)).sum()
    return expected_log_lik(y, decoder, q_mean, q_var) - e_log_qtilde + log_z.sum()


def optimal_encoder(decoder):
    """With orthogonal decoder columns the exact posterior factorises over channels: this encoder gives it."""
    w = decoder.weight.detach()
    sq = (w**2).sum(0)
    encoder = LinearEncoder()
    with torch.no_grad():
        encoder.mean_map.copy_(w / sq)  # (y - c) is handled by a zero bias in orthogonal_problem
        encoder.log_var.copy_(torch.log(SIGMA_Y**2 / sq))
    return encoder


def orthogonal_decoder():
    decoder = linear_decoder()
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        q, _ = torch.linalg.qr(torch.randn(K, L_CHANNELS, generator=g, dtype=torch.float64))
        decoder.weight.copy_(q * torch.tensor([1.5, 0.8], dtype=torch.float64))
        decoder.bias.zero_()
    return decoder


def build(prior_kind, encoder, decoder, u=None):
    if prior_kind == "sparse":
        prior = SparseLatentPrior(make_sparse_gp(u))
    elif prior_kind == "exact":
        prior = ExactLatentPrior(ExactLatentGP(make_kernel()).double())
    else:
        prior = IndependentLatentPrior()
    return GPVAE(
        encoder,
        decoder,
        prior,
        latent_dim=L_CHANNELS,
        likelihood=GaussianLikelihood(noise=SIGMA_Y**2),
        min_variance=1e-8,
        max_variance=1e8,
    )


def svi_loss_stats(vae, x, y, num_data=None, batches=25, particles=200):
    elbo = TraceMeanField_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=x.dim() - 1)
    losses = torch.tensor([elbo.loss(vae.model, vae.guide, x, y, num_data) for _ in range(batches)])
    return losses.mean().item(), losses.std().item() / math.sqrt(batches)


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


class TestEvidenceBound:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_random_parameters_below_evidence(self, seed):
        x, y = observations(seed)
        decoder, encoder = linear_decoder(seed + 10), LinearEncoder(seed + 20)
        evidence = log_evidence(x, y, decoder)
        assert eq2_dense(x, y, encoder, decoder) < evidence
        # U = X, b = N: Eq. 10 collapses to Eq. 2
        torch.testing.assert_close(eq10_dense(x, y, encoder, decoder, x.clone()), eq2_dense(x, y, encoder, decoder))
        assert eq10_dense(x, y, encoder, decoder, x[::2].clone()) < evidence

    def test_optimum_reaches_evidence(self):
        x, y = observations()
        decoder = orthogonal_decoder()
        encoder = optimal_encoder(decoder)
        evidence = log_evidence(x, y, decoder)
        torch.testing.assert_close(eq2_dense(x, y, encoder, decoder), evidence, atol=1e-6, rtol=0)
        torch.testing.assert_close(eq10_dense(x, y, encoder, decoder, x.clone()), evidence, atol=1e-6, rtol=0)
        loss, se = svi_loss_stats(build("exact", encoder, decoder), x, y)
        assert abs(-loss - evidence.item()) < 4 * se + 1e-6

    @pytest.mark.parametrize("kind", ["sparse", "exact"])
    def test_library_elbo_below_evidence(self, kind):
        x, y = observations(1)
        decoder = linear_decoder(11)
        loss, se = svi_loss_stats(build(kind, LinearEncoder(21), decoder, x[::2].clone()), x, y)
        assert -loss < log_evidence(x, y, decoder).item() + 4 * se

    @pytest.mark.parametrize("kind", ["sparse", "exact"])
    def test_training_the_encoder_closes_the_gap(self, kind):
        """Fit only the encoder by SVI (decoder and kernel fixed): the ELBO climbs to the evidence."""
        x, y = observations()
        decoder, encoder = orthogonal_decoder(), LinearEncoder(3)
        vae = build(kind, encoder, decoder, x.clone())  # U = X for the sparse prior
        evidence = log_evidence(x, y, decoder)
        gap_before = (evidence - eq2_dense(x, y, encoder, decoder)).item()
        optimizer = torch.optim.Adam(encoder.parameters(), lr=0.05)
        elbo = TraceMeanField_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
        for _ in range(300):
            optimizer.zero_grad()
            elbo.differentiable_loss(vae.model, vae.guide, x, y).backward()
            optimizer.step()
        gap_after = (evidence - eq10_dense(x, y, encoder, decoder, x.clone())).item()
        assert gap_before > 1.0 and 0 <= gap_after < 0.05 * gap_before, (gap_before, gap_after)


class TestSVILossIsEquation:
    """Pyro's loss, averaged over samples, equals minus the analytic objective (Eq. 10 / Eq. 2)."""

    @pytest.mark.parametrize("num_data", [None, 24])
    def test_sparse_loss_is_minus_eq10(self, num_data):
        x, y = observations()
        encoder, decoder = LinearEncoder(), linear_decoder()
        u = x[::2].clone()
        loss, se = svi_loss_stats(build("sparse", encoder, decoder, u), x, y, num_data)
        expected = eq10_dense(x, y, encoder, decoder, u, num_data).item()
        assert abs(-loss - expected) < 4 * se + 1e-6, (loss, se, expected)

    def test_exact_loss_is_minus_eq2(self):
        x, y = observations()
        encoder, decoder = LinearEncoder(), linear_decoder()
        loss, se = svi_loss_stats(build("exact", encoder, decoder), x, y)
        assert abs(-loss - eq2_dense(x, y, encoder, decoder).item()) < 4 * se + 1e-6

    def test_wrong_scaling_is_detected(self):
        """The check has power: the objective with the KL unscaled differs by many standard errors."""
        x, y = observations()
        encoder, decoder = LinearEncoder(), linear_decoder()
        u = x[::2].clone()
        loss, se = svi_loss_stats(build("sparse", encoder, decoder, u), x, y, 24)
        assert abs(-loss - eq10_dense(x, y, encoder, decoder, u, None).item()) > 10 * se

    @pytest.mark.parametrize("kind", ["sparse", "exact", "iid"])
    def test_elbo_matches_the_pyro_loss(self, kind):
        x, y = observations()
        vae = build(kind, LinearEncoder(), linear_decoder(), x[::2].clone())
        loss, se = svi_loss_stats(vae, x, y)
        terms = [-ELBO(vae, None)(x, y).loss.item() for _ in range(400)]
        mean = sum(terms) / len(terms)
        sd = torch.tensor(terms).std().item() / math.sqrt(len(terms))
        assert abs(-loss - mean) < 4 * math.hypot(se, sd)


class TestGradients:
    def test_gradients_reach_every_component(self):
        x, y = observations()
        vae = build("sparse", LinearEncoder(), linear_decoder(), x[::2].clone())
        loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x, y, 12)
        loss.backward()
        gp = vae.latent_prior.gp
        groups = {
            "encoder": vae.encoder.mean_map.grad,
            "decoder": vae.decoder.weight.grad,
            "lengthscale": gp.covar_module.base_kernel.raw_lengthscale.grad,
            "outputscale": gp.covar_module.raw_outputscale.grad,
            "inducing points": gp.variational_strategy.inducing_points.grad,
        }
        for name, grad in groups.items():
            assert grad is not None and grad.abs().sum() > 0, name

    def test_svi_registers_all_parameters(self):
        x, y = observations()
        vae = build("sparse", LinearEncoder(), linear_decoder(), x[::2].clone())
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
        svi.step(x, y)
        names = set(pyro.get_param_store().keys())
        assert any(n.startswith("encoder") for n in names) and any(n.startswith("decoder") for n in names)
        assert any("inducing_points" in n for n in names) and any("raw_lengthscale" in n for n in names)

    def test_training_reduces_loss(self):
        x, y = observations()
        vae = build("sparse", LinearEncoder(), linear_decoder(), x[::2].clone())
        before, _ = svi_loss_stats(vae, x, y, batches=5)
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 2e-2}), TraceMeanField_ELBO())
        for _ in range(150):
            svi.step(x, y)
        after, _ = svi_loss_stats(vae, x, y, batches=5)
        assert after < before - 1.0


class TestBatchOfIndependentGPs:
    def test_batched_loss_is_sum_of_separate_losses(self):
        """B videos, each its own GP dataset: the analytic ELBO of the batch is the sum over videos."""
        batch = 3
        xs, ys = zip(*(observations(seed) for seed in range(batch)))
        x, y = torch.stack(xs).unsqueeze(-3), torch.stack(ys)
        encoder, decoder = LinearEncoder(), linear_decoder()
        u = torch.linspace(0, 6, 4, dtype=torch.float64).unsqueeze(-1)
        for kind in ("sparse", "exact"):
            vae = build(kind, encoder, decoder, u)
            mean, var = vae.latent_dataset(y)
            kl = vae.latent_prior.kl_divergence(x, mean, var)
            separate = sum(vae.latent_prior.kl_divergence(xs[i], *vae.latent_dataset(ys[i])) for i in range(batch))
            torch.testing.assert_close(kl, separate)
        loss, se = svi_loss_stats(build("sparse", encoder, decoder, u), x, y)
        expected = sum(eq10_dense(xs[i], ys[i], encoder, decoder, u).item() for i in range(batch))
        assert abs(-loss - expected) < 4 * se + 1e-6
