"""# Tutorial 1: an SVGP-VAE on your own (image, timestamp) data

You have colour images taken at known times and want a latent space in which images close in time are close, so
that you can generate the image at a time you have not observed. This is what a GP prior over the latent codes,
indexed by the timestamps, gives. The data here are made up (a coloured disc moving smoothly across 64 x 64 frames);
replace `times` and `images` with yours: `times` of shape `(N, 1)`, `images` of shape `(N, 3, 64, 64)` in [0, 1].

The model: a convolutional encoder and decoder for `(3, 64, 64)` images (`ImageEncoder`, `ImageDecoder`), an SVGP-VAE
latent prior (`SparseLatentPrior`: one sparse GP per latent channel over time, 16 inducing points), a Gaussian
likelihood whose noise is learned, and a GPyTorch `GammaPrior` on the kernel's lengthscale, which enters the
objective as GPyTorch's own marginal log likelihoods add it. `fit` trains the ELBO with Adam and takes the data set
size N (for the SVGP-VAE's b/N scaling) from the DataLoader.
"""

import math

import gpytorch
import torch
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae import GPVAE, SparseLatentPrior
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.nn import ImageDecoder, ImageEncoder
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import fit

torch.manual_seed(0)


# --- made-up data: a red disc on a blue background, its centre moving smoothly with time ---
def render(t: torch.Tensor) -> torch.Tensor:
    centre = 32 + 18 * torch.stack([torch.sin(t / 5), torch.cos(t / 7)], dim=-1)  # (N, 2) pixels
    grid = torch.stack(torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij"), dim=-1)
    disc = ((grid - centre[:, None, None, :]).square().sum(-1) < 8**2).float()  # (N, 64, 64)
    return torch.stack([disc, 0.2 * torch.ones_like(disc), 0.6 * (1 - disc)], dim=1)  # (N, 3, 64, 64)


times = torch.rand(240, 1) * 30  # when each image was taken
images = render(times[:, 0]) + 0.05 * torch.randn(240, 3, 64, 64)
held_out = torch.linspace(1, 29, 8).unsqueeze(-1)  # times we never saw

# --- the model: about 20 lines of library calls ---
L = 4  # latent channels
lengthscale_prior = gpytorch.priors.GammaPrior(3.0, 1.0)  # lengthscales around 3 time units
kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([L]), lengthscale_prior=lengthscale_prior)
gp = SparseLatentGP(inducing_points=torch.linspace(0, 30, 16).unsqueeze(-1), covar_module=kernel)
vae = GPVAE(
    ImageEncoder((3, 64, 64), L, channels=(8, 16)),
    ImageDecoder(L, (3, 64, 64), channels=(16, 8)),
    SparseLatentPrior(gp),
    latent_dim=L,
    likelihood=GaussianLikelihood(noise=0.1, learn_noise=True),
    gp_dtype=torch.float64,  # the GP part in float64, the networks in float32
)
loader = DataLoader(TensorDataset(times, images), batch_size=40, shuffle=True)
result = fit(ELBO(vae), loader, epochs=25, lr=5e-3, progress=False)

# --- generate the images at the held-out times: condition on all data, predict, decode ---
posterior = vae.condition_on_observations(DataLoader(TensorDataset(times, images), batch_size=200))
with torch.no_grad():
    generated = vae.decode(posterior.predict(held_out).mean)  # (8, 3, 64, 64)

mse = (generated - render(held_out[:, 0])).square().mean().item()
baseline = (images.mean(0) - render(held_out[:, 0])).square().mean().item()
print(f"loss per epoch: first {result.history['loss'][0]:.0f}, last {result.history['loss'][-1]:.0f}")
print(f"learned noise variance: {vae.likelihood.noise.item():.4f} (pixel noise 0.05^2 = 0.0025)")
print(f"learned lengthscales: {[round(v, 2) for v in kernel.lengthscale.flatten().tolist()]}")
print(f"held-out times: MSE {mse:.4f}, against {baseline:.4f} for the mean image")
assert math.isfinite(mse) and mse < 0.5 * baseline
