"""The model API as a user meets it: Pyro SVI, GPyTorch priors on hyperparameters, likelihood objects, observation
shapes and dtypes, ``num_data``, single-process steps and the library's messages."""

import math
import pathlib
import re

import gpytorch
import pyro
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae import GPVAE, SparseLatentPrior
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.likelihoods import BernoulliLikelihood, DistributionLikelihood, GaussianLikelihood
from gpytorch_vae.objectives import ELBO, GECOObjective
from gpytorch_vae.training import Callback, fit
from reference import LinearEncoder

D_OBS, LATENT = 6, 2


def sparse_vae(likelihood=None, lengthscale_prior=None, seed=0):
    torch.manual_seed(seed)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([LATENT]), lengthscale_prior=lengthscale_prior)
    gp = SparseLatentGP(torch.linspace(0, 5, 6).unsqueeze(-1), kernel)
    decoder = torch.nn.Sequential(torch.nn.Linear(LATENT, 8), torch.nn.Tanh(), torch.nn.Linear(8, D_OBS))
    likelihood = GaussianLikelihood(noise=0.25) if likelihood is None else likelihood
    return GPVAE(LinearEncoder(D_OBS, LATENT), decoder, SparseLatentPrior(gp), LATENT, likelihood,
                 gp_dtype=torch.float64)  # fmt: skip


def data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 5, n).unsqueeze(-1).double()
    return x, torch.randn(n, D_OBS, generator=g)


def test_two_models_train_through_pyro_svi_in_one_process():
    """The README's Pyro route, a second model without pyro.clear_param_store(): it trains (at ab19055 none of its
    parameters changed, silently)."""
    x, y = data()
    for seed in (0, 1):
        vae = sparse_vae(seed=seed)
        before = {name: p.detach().clone() for name, p in vae.named_parameters() if p.requires_grad}
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
        for _ in range(3):
            svi.step(x, y, 24)
        changed = [name for name, p in vae.named_parameters() if p.requires_grad and not torch.equal(p, before[name])]
        assert len(changed) == len(before), (seed, set(before) - set(changed))


def test_a_gpytorch_prior_enters_the_objective_by_its_log_probability():
    """A GammaPrior on the lengthscale changes the loss by exactly (b/N) log p(lengthscale), through ELBO and Pyro
    (at ab19055 it was registered but the loss was the same to 13 digits)."""
    x, y = data()
    prior = gpytorch.priors.GammaPrior(3.0, 2.0)
    plain, with_prior = sparse_vae(), sparse_vae(lengthscale_prior=prior)  # the same seed: the same parameters
    lengthscale = with_prior.latent_prior.gp.covar_module.lengthscale
    expected = (12 / 48) * prior.log_prob(lengthscale).sum()
    losses = []
    for vae in (plain, with_prior):
        pyro.set_rng_seed(0)
        losses.append(ELBO(vae, 48)(x[:12], y[:12]).loss)
    torch.testing.assert_close(losses[0] - losses[1], expected.to(losses[0]), atol=1e-5, rtol=1e-6)
    svi = []
    for vae in (plain, with_prior):
        pyro.set_rng_seed(0)
        svi.append(TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x[:12], y[:12], 48))
    torch.testing.assert_close(svi[0] - svi[1], expected.to(svi[0]), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(svi[1], losses[1].to(svi[1]), atol=1e-4, rtol=1e-6)


def test_learned_gaussian_noise_and_its_prior():
    """The likelihood is an object: a learned per-channel noise trains, and its GPyTorch prior enters the loss."""
    likelihood = GaussianLikelihood(noise=1.0, learn_noise=True, noise_shape=(D_OBS,),
                                    noise_prior=gpytorch.priors.GammaPrior(2.0, 2.0))  # fmt: skip
    vae = sparse_vae(likelihood)
    x, y = data()
    y = y * torch.linspace(0.1, 2.0, D_OBS)  # channels of very different scales
    fit(ELBO(vae), DataLoader(TensorDataset(x, y), batch_size=8), epochs=60, lr=3e-2, progress=False)
    noise = likelihood.noise.detach()
    assert noise.shape == (D_OBS,) and noise[0] < 0.5 * noise[-1], noise


def test_any_distribution_as_likelihood():
    vae = sparse_vae(DistributionLikelihood(lambda out: torch.distributions.Laplace(out, 0.5)))
    x, y = data()
    terms = ELBO(vae, 24)(x, y)
    assert math.isfinite(terms.loss.item()) and terms.decoded.shape == y.shape


def test_images_need_no_observation_dims_and_a_wrong_decoder_is_named():
    """Observations of any shape: the number of observation dims comes from the encoder's output (at ab19055,
    without observation_dims a ValueError came from inside Pyro)."""

    class ImageEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3 * 4 * 4, 2 * LATENT)

        def forward(self, y):
            return self.net(y.flatten(-3)).chunk(2, dim=-1)

    class ImageDecoder(torch.nn.Module):
        def __init__(self, side):
            super().__init__()
            self.side, self.net = side, torch.nn.Linear(LATENT, 3 * side * side)

        def forward(self, z):
            return self.net(z).unflatten(-1, (3, self.side, self.side))

    gp = SparseLatentGP(torch.linspace(0, 5, 4).unsqueeze(-1), gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])))
    x, images = data(10)[0], torch.rand(10, 3, 4, 4)
    vae = GPVAE(ImageEncoder(), ImageDecoder(4), SparseLatentPrior(gp), LATENT, BernoulliLikelihood())
    pyro.set_rng_seed(0)
    direct = ELBO(vae, 10)(x, images).loss
    pyro.set_rng_seed(0)
    svi = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x, images, 10)
    torch.testing.assert_close(svi.to(direct), direct)
    vae.decoder = ImageDecoder(5)
    with pytest.raises(ValueError, match=r"decoder's output \(10, 3, 5, 5\).*observations have shape \(10, 3, 4, 4\)"):
        ELBO(vae, 10)(x, images)


def test_observation_dtypes_are_handled_at_one_boundary():
    """float64 observations with float32 networks are cast once; integer images are refused with advice (at ab19055:
    'mat1 and mat2 must have the same dtype' and a Pyro trace dump)."""
    vae = sparse_vae()
    vae.encoder.float()
    x, y = data()
    assert math.isfinite(ELBO(vae, 24)(x, y.double()).loss.item())
    with pytest.raises(TypeError, match="uint8.*floating point"):
        ELBO(vae, 24)(x, (y.abs() * 10).to(torch.uint8))


def test_num_data_is_never_silently_none():
    """ELBO without num_data refuses to run alone and takes the data set's length under fit, for fit's run only
    (at ab19055, num_data=None meant 'every batch is the whole data set' without a word); a given N is kept."""
    vae = sparse_vae()
    x, y = data()
    with pytest.raises(ValueError, match="needs num_data"):
        ELBO(vae)(x, y)

    class Record(Callback):
        def on_epoch_end(self, state, logs):
            seen.append(state.objective.num_data)

    for objective, expected in ((ELBO(vae), 24), (ELBO(vae, 100), 100), (ELBO(vae, None), None)):
        seen = []
        fit(objective, DataLoader(TensorDataset(x, y), batch_size=8), epochs=1, callbacks=[Record()], progress=False)
        assert seen == [expected]
    with pytest.raises(ValueError, match="needs num_data"):  # the objective is left as it was given
        objective = ELBO(vae)
        fit(objective, DataLoader(TensorDataset(x, y), batch_size=8), epochs=1, progress=False)
        objective(x, y)
    with pytest.raises(ValueError, match="num_data"):
        ELBO(vae, 6.7)
    with pytest.raises(ValueError, match="at least the batch size"):
        ELBO(vae, 10)(x, y)


def test_a_single_process_step_makes_no_collective_call(monkeypatch):
    """Neither the ELBO nor GECO nor any posterior's draw calls torch.distributed in one process."""
    import torch.distributed as dist

    def refuse(*args, **kwargs):
        raise AssertionError("a collective or process-group call in a single-process step")

    for name in ("all_reduce", "all_gather", "get_world_size", "get_rank", "is_initialized", "broadcast"):
        monkeypatch.setattr(dist, name, refuse)
    x, y = data()
    vae = sparse_vae()
    fit(ELBO(vae, 24), [(x, y)], epochs=1, progress=False)
    fit(GECOObjective(vae, 24), [(x, y)], epochs=1, progress=False)


def test_library_messages_name_arguments_not_command_line_flags():
    """Errors and warnings of the library name its own arguments (at ab19055 they named --no-compile, which does not
    exist, and --resume); a flag may appear only as the examples' equivalent, in parentheses, or in a pip command."""
    root = pathlib.Path(__file__).resolve().parents[1] / "gpytorch_vae"
    bare = []
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for flag in re.findall(r"[\"'(\s](--[a-z][a-z-]+)", line):
                if "pip install" in line:  # an install command's options are pip's, not the examples'
                    continue
                if f"the examples: {flag}" not in line and not line.lstrip().startswith("#"):
                    bare.append(f"{path.name}:{number}: {flag}")
    assert not bare, bare
