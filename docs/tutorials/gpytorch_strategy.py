"""# Tutorial 2: the SVGP-VAE strategy inside a plain GPyTorch model, trained with GPyTorch's `VariationalELBO`

`AmortizedHybridVariationalStrategy` is a GPyTorch variational strategy: it goes into an `ApproximateGP` like
GPyTorch's own. What differs is q(u): it has no variational parameters. It is the optimum of Eq. 9 of the
SVGP-VAE paper for the "latent data" of the current minibatch, targets with known per-point noise variances (in a
GP-VAE, the encoder's means and variances). Given those, `gpytorch.mlls.VariationalELBO` with a
`FixedNoiseGaussianLikelihood` holding the noise is the minibatch Hensman bound (Eq. 7) divided by N, and training it
learns the kernel hyperparameters and inducing points only.

Here the latent data are two noisy sines (two latent channels, one GP each, of different frequencies) with a
different known noise at every point, N = 2000 points in minibatches of b = 500.

A caution, measured with this script: the batch-Titsias q(u) weighs the batch by c = N/b, so its noise too, and the
hyperparameters it learns are biased towards short lengthscales when b is a small share of N. With b = 500 (c = 4) the
slower channel's lengthscale grows to about twice the faster one's in 40 epochs; with b = 250 or 100 both stay near
0.7. In a GP-VAE each batch is often a whole data set (a video: c = 1), where the question does not arise.
"""

import math

import gpytorch
import torch
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae.variational import AmortizedHybridVariationalStrategy

torch.manual_seed(0)
L, N = 2, 2000
x = torch.rand(N, 1, dtype=torch.float64) * 10
truth = torch.stack([torch.sin(x[:, 0]), torch.sin(x[:, 0] / 3)])  # (L, N)
noise = 0.01 + 0.2 * torch.rand(L, N, dtype=torch.float64)  # known noise variance of every target
y = truth + noise.sqrt() * torch.randn(L, N, dtype=torch.float64)


class LatentGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing_points):
        strategy = AmortizedHybridVariationalStrategy(self, inducing_points, learn_inducing_locations=True)
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ZeroMean(batch_shape=torch.Size([L]))
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(batch_shape=torch.Size([L])), batch_shape=torch.Size([L])
        )

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


gp = LatentGP(torch.linspace(0, 10, 20, dtype=torch.float64).unsqueeze(-1)).double()
optimizer = torch.optim.Adam(gp.parameters(), lr=0.05)
loader = DataLoader(TensorDataset(x, y.mT, noise.mT), batch_size=500, shuffle=True)
gp.train()
for epoch in range(40):
    losses = []
    for x_b, y_b, noise_b in loader:
        y_b, noise_b = y_b.mT, noise_b.mT  # (L, b)
        gp.variational_strategy.set_latent_data(x_b, y_b, noise_b, num_data=N)  # q(u): Eq. 9 of this batch
        mll = gpytorch.mlls.VariationalELBO(gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise_b), gp, num_data=N)
        loss = -mll(gp(x_b), y_b).sum()  # gp(x_b) and the KL share one kernel evaluation and factorisation
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    if epoch % 10 == 9:
        print(f"epoch {epoch + 1}: mean -ELBO / N = {sum(losses) / len(losses):.4f}")

# predict: condition on all N points in O(m^2) memory (streamed statistics), then call the model in eval mode
gp.eval()
with torch.no_grad():
    gp.variational_strategy.condition_on_batches((x_b, y_b.mT, n_b.mT) for x_b, y_b, n_b in loader)
    x_test = torch.linspace(0, 10, 200, dtype=torch.float64).unsqueeze(-1)
    q_f = gp(x_test)
    expected = torch.stack([torch.sin(x_test[:, 0]), torch.sin(x_test[:, 0] / 3)])
    rmse = (q_f.mean - expected).square().mean(-1).sqrt()
lengthscales = gp.covar_module.base_kernel.lengthscale.flatten().tolist()
print(f"lengthscales learned: {[round(v, 2) for v in lengthscales]} (the slower channel should get the longer one)")
print(f"RMSE of the posterior mean against the noise-free functions: {[round(v, 3) for v in rmse.tolist()]}")
assert lengthscales[1] > 1.2 * lengthscales[0] and bool((rmse < 0.1).all()) and math.isfinite(losses[-1])
