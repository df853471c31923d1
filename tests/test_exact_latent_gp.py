"""ExactLatentGP (Pearce's exact latent GP) against GPyTorch's ExactGP and dense autograd."""

import pytest
import torch

from gpytorch_vae.gps import ExactLatentGP
from reference import L_CHANNELS, exact_gp_reference, latent_data, make_kernel


def make_gp():
    return ExactLatentGP(make_kernel()).double()


class TestExactLatentGP:
    def test_posterior_and_log_z_match_exact_gp(self):
        x, y, noise = latent_data(15, seed=0)
        gp = make_gp()
        gp.set_latent_data(x, y, noise)
        mean, covar, lml = exact_gp_reference(x, y, noise, make_kernel())
        post = gp.posterior()
        torch.testing.assert_close(post.mean, mean)
        torch.testing.assert_close(post.covariance_matrix, covar)
        torch.testing.assert_close(gp.log_marginal_likelihood(), lml)

    def test_posterior_in_train_mode_and_at_new_inputs(self):
        x, y, noise = latent_data(10, seed=1)
        gp = make_gp()
        gp.set_latent_data(x, y, noise)
        assert gp.training
        xr = torch.linspace(-1, 7, 4, dtype=torch.float64).unsqueeze(-1)
        kernel = make_kernel()
        kxx = kernel(x).to_dense().detach() + torch.diag_embed(noise)
        krx = kernel(xr, x).to_dense().detach()
        mean = (krx @ torch.linalg.solve(kxx, y.unsqueeze(-1))).squeeze(-1)
        torch.testing.assert_close(gp.posterior(xr).mean, mean)
        assert gp.training

    def test_gradients_match_dense_autograd(self):
        """detach_test_caches is off: gradients reach the latent data through the posterior covariance."""
        x, y, noise = latent_data(8, seed=2)
        y.requires_grad_(True)
        noise.requires_grad_(True)
        gp = make_gp()
        gp.set_latent_data(x, y, noise)
        post = gp.posterior()
        (post.covariance_matrix.sum() + post.mean.square().sum() + gp.log_marginal_likelihood().sum()).backward()
        got = (y.grad.clone(), noise.grad.clone())
        y2, noise2 = y.detach().clone().requires_grad_(True), noise.detach().clone().requires_grad_(True)
        kxx = make_kernel()(x).to_dense().detach()
        c = kxx + torch.diag_embed(noise2)
        mean = (kxx @ torch.linalg.solve(c, y2.unsqueeze(-1))).squeeze(-1)
        cov = kxx - kxx @ torch.linalg.solve(c, kxx)
        lml = torch.distributions.MultivariateNormal(torch.zeros_like(y2), c).log_prob(y2)
        (cov.sum() + mean.square().sum() + lml.sum()).backward()
        torch.testing.assert_close(got[0], y2.grad)
        torch.testing.assert_close(got[1], noise2.grad)

    def test_no_stale_prediction_cache(self):
        x, y, noise = latent_data(8, seed=3)
        gp = make_gp()
        gp.eval()
        gp.set_latent_data(x, y, noise)
        first = gp.posterior().mean.detach()
        gp.covar_module.base_kernel.lengthscale = 2.5
        mean, _, _ = exact_gp_reference(x, y, noise, gp.covar_module)
        torch.testing.assert_close(gp.posterior().mean, mean)
        assert not torch.allclose(first, mean)

    def test_batch_of_independent_gps(self):
        batch = 3
        x, y, noise = latent_data(7, seed=4, batch=(batch,))
        gp = make_gp()
        gp.set_latent_data(x.unsqueeze(-3), y, noise)
        post, lml = gp.posterior(), gp.log_marginal_likelihood()
        assert lml.shape == torch.Size([batch, L_CHANNELS])
        for i in range(batch):
            mean, covar, lml_i = exact_gp_reference(x[i], y[i], noise[i], make_kernel())
            torch.testing.assert_close(post.mean[i], mean)
            torch.testing.assert_close(post.covariance_matrix[i], covar)
            torch.testing.assert_close(lml[i], lml_i)

    def test_errors(self):
        gp = make_gp()
        with pytest.raises(RuntimeError, match="set_latent_data"):
            gp.posterior()
        x, y, noise = latent_data(5)
        with pytest.raises(ValueError, match="num_data"):
            gp.set_latent_data(x, y, noise, num_data=50)
