"""# Tutorial 3: the same GP-VAE trained with Pyro's SVI, twice in one process

`GPVAE.model` and `GPVAE.guide` are a Pyro model/guide pair over the same three calls every objective of the library
uses (encode and condition the latent prior, draw, decode): the guide's site `z` draws from the latent posterior and
carries the ELBO's analytic KL part, the model's site `z` is flat, and the observations are a site `y` in a
`pyro.plate` over the points. So `pyro.infer.SVI` with `TraceMeanField_ELBO` (or `Trace_ELBO`) optimises exactly the
objective of `gpytorch_vae.objectives.ELBO` (checked below at one random state), with Pyro's optimisers and
estimators, e.g. several particles.

Pyro keeps parameters in a global param store. `GPVAE` registers its own parameters there at every call (replacing
entries of a model built earlier under the same names), so a second model trains without `pyro.clear_param_store()`.
The data: 16-dimensional observations of two smooth latent functions of time, as in `examples/synthetic.py`.
"""

import gpytorch
import pyro
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from gpytorch_vae import GPVAE, SparseLatentPrior
from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.metrics import affine_aligned_rmse
from gpytorch_vae.nn import MLPDecoder, MLPEncoder
from gpytorch_vae.objectives import ELBO

data = make_synthetic_gp_data(num_points=400, seed=0)  # x (400, 1) times, y (400, 16), z (400, 2) true latents
N, L = len(data.x), 2


def build(seed: int) -> GPVAE:
    torch.manual_seed(seed)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([L]))
    gp = SparseLatentGP(torch.linspace(0, float(data.x.max()), 20).unsqueeze(-1), kernel)
    return GPVAE(MLPEncoder(16, 64, L), MLPDecoder(L, 64, 16), SparseLatentPrior(gp), L,
                 likelihood=GaussianLikelihood(noise=0.01), gp_dtype=torch.float64)  # fmt: skip


def train_with_svi(vae: GPVAE, epochs: int = 60) -> list[float]:
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
    losses = []
    for _ in range(epochs):
        order = torch.randperm(N)
        losses.append(sum(svi.step(data.x[rows], data.y[rows], N) for rows in order.split(100)) / 4)
    return losses


for run, seed in enumerate((0, 1)):  # two models, one process, no pyro.clear_param_store()
    vae = build(seed)
    pyro.set_rng_seed(seed)
    svi_loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, data.x[:100], data.y[:100], N)
    pyro.set_rng_seed(seed)
    direct_loss = ELBO(vae, N)(data.x[:100], data.y[:100]).loss
    losses = train_with_svi(vae)
    rmse = affine_aligned_rmse(vae.posterior_latent_mean(data.x, data.y), data.z)
    print(
        f"model {run + 1}: SVI loss {svi_loss.item():.3f} = ELBO loss {direct_loss.item():.3f} at one random state; "
        f"loss per batch {losses[0]:.1f} -> {losses[-1]:.1f}; latent RMSE after an affine map {rmse:.3f}"
    )
    assert abs(svi_loss.item() - direct_loss.item()) < 1e-3 * abs(direct_loss.item()) and losses[-1] < 0.5 * losses[0]
