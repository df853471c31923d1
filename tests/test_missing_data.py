"""Issue #21: observation masks through the likelihood, the encoder and every latent prior; imputation."""

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from gpytorch_vae import (
    GPVAE,
    ExactLatentGP,
    ExactLatentPrior,
    FactorizedLatentPrior,
    IndependentLatentPrior,
    SparseLatentPrior,
)
from gpytorch_vae.kernels import fixed_periodic_kernel
from gpytorch_vae.likelihoods import BernoulliLikelihood, GaussianLikelihood
from gpytorch_vae.nn import MLPEncoder
from gpytorch_vae.objectives import ELBO, GECOObjective
from reference import batch_titsias_reference, dense, gaussian_kl, make_kernel, make_sparse_gp

D, L, N = 5, 2, 9
DT = torch.float64


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 6, N, dtype=DT).unsqueeze(-1)
    y = torch.randn(N, D, generator=g, dtype=DT)
    mask = torch.rand(N, D, generator=g) > 0.3
    mask[4] = False  # an observation with nothing observed
    mask[0] = True
    return x, y, mask


class Encoder(torch.nn.Module):
    """Linear, float64, with the mask as extra input."""

    takes_mask = True

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = torch.nn.Parameter(torch.randn(2 * D, 2 * L, generator=g, dtype=DT) * 0.5)

    def forward(self, y, mask):
        mean, log_var = (torch.cat([y, mask.to(y)], -1) @ self.w).chunk(2, -1)
        return mean, log_var - 1.0


def vae(prior, likelihood=None):
    torch.manual_seed(1)
    decoder = torch.nn.Linear(L, D).double()
    likelihood = GaussianLikelihood(noise=0.3) if likelihood is None else likelihood
    return GPVAE(Encoder(), decoder, prior, L, likelihood, min_variance=1e-6, max_variance=1e6, gp_dtype=DT)


def sparse():
    return SparseLatentPrior(make_sparse_gp(torch.linspace(0, 6, 4, dtype=DT).unsqueeze(-1)))


def exact():
    return ExactLatentPrior(ExactLatentGP(make_kernel()).double())


def test_the_masked_likelihood_sums_over_observed_entries():
    x, y, mask = data()
    out = torch.randn(N, D, dtype=DT)
    gaussian = GaussianLikelihood(noise=0.3)
    expected = sum(-0.5 * (math.log(2 * math.pi * 0.3) + (y[i, j] - out[i, j]) ** 2 / 0.3)
                   for i in range(N) for j in range(D) if mask[i, j])  # fmt: skip
    torch.testing.assert_close(gaussian.total_log_prob(out, y, mask), torch.tensor(float(expected), dtype=DT))
    probs = torch.sigmoid(out).numpy()
    binary = (y > 0).to(DT)
    expected = np.where(mask.numpy(), np.where(binary.numpy() > 0, np.log(probs), np.log1p(-probs)), 0.0).sum()
    torch.testing.assert_close(BernoulliLikelihood().total_log_prob(out, binary, mask), torch.tensor(expected))


@pytest.mark.parametrize("num_data", [N, 3 * N])
def test_the_masked_elbo_equals_a_dense_computation_with_the_missing_entries_dropped(num_data):
    """SVGP-VAE: reconstruction over the observed entries at the draw, and the KL of Eq. 9 from the observed points
    only (written out densely, b counting every point of the batch), minus each other."""
    x, y, mask = data()
    model = vae(sparse())
    pyro.set_rng_seed(0)
    terms = ELBO(model, num_data)(x, y, mask)
    # the encoder on the zero-filled observations and the mask, by hand
    inputs = torch.cat([torch.where(mask, y, 0.0), mask.to(DT)], -1)
    mean, log_var = (inputs @ model.encoder.w).chunk(2, -1)
    var = (log_var - 1.0).exp()
    seen = mask.any(-1)
    kernel, u = make_kernel(), torch.linspace(0, 6, 4, dtype=DT).unsqueeze(-1)
    _, mu, a = batch_titsias_reference(
        kernel, u, x[seen], mean.mT[:, seen], var.mT[:, seen], num_data * int(seen.sum()) / N
    )
    kl = (N / num_data) * gaussian_kl(mu, a, torch.zeros_like(mu), dense(kernel, u)).sum()
    decoded = model.decoder(terms.z.mT.detach())
    reconstruction = sum(-0.5 * (math.log(2 * math.pi * 0.3) + (y[i, j] - decoded[i, j]) ** 2 / 0.3)
                         for i in range(N) for j in range(D) if mask[i, j])  # fmt: skip
    torch.testing.assert_close(terms.kl, kl, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(terms.reconstruction, reconstruction, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("make_prior", [sparse, exact, IndependentLatentPrior], ids=["sparse", "exact", "independent"])
def test_with_nothing_missing_the_mask_changes_nothing(make_prior):
    """An all-true mask gives today's objective exactly (an encoder that does not take the mask sees the same input)."""
    x, y, _ = data()
    model = GPVAE(MLPEncoder(D, 4, L).double(), torch.nn.Linear(L, D).double(), make_prior(), L, GaussianLikelihood(),
                  gp_dtype=DT)  # fmt: skip
    pyro.set_rng_seed(0)
    masked = ELBO(model, N)(x, y, torch.ones(N, D, dtype=torch.bool))
    pyro.set_rng_seed(0)
    plain = ELBO(model, N)(x, y)
    assert torch.equal(masked.loss, plain.loss) and torch.equal(masked.z, plain.z)


def fgp():
    return FactorizedLatentPrior(fixed_periodic_kernel(dtype=DT), 1, 1, group_column=0, local_columns=(1,))


@pytest.mark.parametrize("make_prior", [sparse, exact, fgp, IndependentLatentPrior],
                         ids=["sparse", "exact", "factorized", "independent"])  # fmt: skip
def test_an_observation_with_nothing_observed_gets_the_latent_of_the_others(make_prior):
    """The posterior given a batch in which some points carry no data equals the posterior given the others alone,
    at every point (for the independent prior: N(0, I) at the points without data), and so does the KL."""
    g = torch.Generator().manual_seed(2)
    x = torch.stack([torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2.0]), torch.linspace(0, 6, N)], -1).to(DT)
    mean, var = torch.randn(L, N, generator=g, dtype=DT), 0.05 + torch.rand(L, N, generator=g, dtype=DT)
    observed = torch.ones(1, N, dtype=torch.bool)
    observed[0, [2, 4]] = False
    prior = make_prior()
    if make_prior in (sparse, exact):
        x = x[:, 1:]
    masked = prior.condition(x, mean, var, None, observed)
    keep = observed[0]
    subset = prior.condition(x[keep], mean[:, keep], var[:, keep])
    if make_prior is IndependentLatentPrior:
        torch.testing.assert_close(masked.mean[:, ~keep], torch.zeros(L, 2, dtype=DT))
        torch.testing.assert_close(masked.mean[:, keep], subset.mean)
    else:
        torch.testing.assert_close(masked.predict(x).mean, subset.predict(x).mean, atol=1e-8, rtol=1e-7)
        torch.testing.assert_close(masked.predict(x).variance, subset.predict(x).variance, atol=1e-8, rtol=1e-7)
    torch.testing.assert_close(masked.kl_divergence(), subset.kl_divergence(), atol=1e-7, rtol=1e-7)


def test_pyro_and_the_elbo_agree_under_a_mask():
    x, y, mask = data()
    model = vae(sparse())
    pyro.clear_param_store()
    pyro.set_rng_seed(4)
    svi = TraceMeanField_ELBO().differentiable_loss(model.model, model.guide, x, y, N, mask)
    pyro.set_rng_seed(4)
    torch.testing.assert_close(svi, ELBO(model, N)(x, y, mask).loss, atol=1e-8, rtol=1e-9)


def test_geco_counts_observed_entries_only():
    x, y, mask = data()
    model = vae(sparse())
    pyro.set_rng_seed(0)
    terms = GECOObjective(model, N, kappa2=0.0)(x, y, mask)
    decoded = terms.decoded.detach()
    per_example = [((y[i] - decoded[i]) ** 2)[mask[i]].mean() for i in range(N) if mask[i].any()]
    torch.testing.assert_close(terms.mse, torch.stack(per_example).mean().to(terms.mse), atol=1e-6, rtol=1e-6)


def test_impute_keeps_observed_entries_and_gives_samples_and_variances():
    x, y, mask = data()
    binary = (y > 0).to(DT)
    model = vae(sparse(), BernoulliLikelihood())
    imputation = model.impute(x, binary, mask, num_samples=5)
    assert torch.equal(imputation.mean[mask], binary[mask]) and torch.equal(imputation.mask, mask)
    assert imputation.samples.shape == (5, N, D) and torch.equal(
        imputation.samples[:, mask], binary[mask].expand(5, -1)
    )
    assert set(imputation.samples[:, ~mask].unique().tolist()) <= {0.0, 1.0}
    assert bool((imputation.variance[mask] == 0).all()) and bool((imputation.variance[~mask] > 0).all())
    missing = imputation.mean[~mask]
    assert bool(((missing > 0) & (missing < 1)).all())  # probabilities
    posterior = model.posterior(x, binary, None, mask)
    expected = torch.sigmoid(model.decode(posterior.predict(x).mean))
    torch.testing.assert_close(imputation.mean[~mask], expected[~mask])


def test_healing_mnist_models_train_impute_and_are_scored(tmp_path):
    """The Healing MNIST example's pieces on a few synthetic digits: every model trains a few steps, imputes the test
    sequences (observed pixels kept) and gets the protocol's metrics."""
    from experiments import healing_mnist as hm

    from gpytorch_vae.data import HealingMNIST, RowBatches
    from gpytorch_vae.training import fit

    g = np.random.default_rng(0)
    images = (g.random((24, 28, 28)) > 0.7).astype(np.uint8) * 255
    labels = np.arange(24) % 4
    train = HealingMNIST.from_arrays(images[:16], labels[:16], "train", "mnar")
    test = HealingMNIST.from_arrays(images[16:], labels[16:], "test", "mnar")
    means = hm.mean_imputation(train)
    for model in hm.MODELS:
        net = None
        if model in ("svgpvae", "gpvae", "vae"):
            net = hm.build_model(model, latent_dim=4, inducing=3)
            fit(ELBO(net, None, loss_scale=1 / 8), RowBatches(train, 8), epochs=1, progress=False)
        probs, predictive = hm.imputations_and_predictive(model, net, test, means, 4, num_samples=3)
        _, y, mask = test[torch.arange(len(test))]
        assert torch.equal(probs[mask], y[mask]) and bool(((probs >= 0) & (probs <= 1)).all())
        metrics = hm.metrics_of(probs, test)
        assert 0 <= metrics["mse"] <= 1 and metrics["nll"] > 0 and 0 <= metrics["calibration_error"] <= 1
        in_chunks = hm.metrics_of(probs, test, batch_size=3)  # the sums over chunks are the sums over the whole
        assert in_chunks.keys() == metrics.keys() and in_chunks["missing_entries"] == metrics["missing_entries"]
        for key in metrics:
            assert in_chunks[key] == pytest.approx(metrics[key], rel=1e-9, abs=1e-12), key
        assert (predictive is None) == (model in ("mean", "forward"))


def test_the_healing_mnist_command_line_refuses_bad_mechanisms_and_sizes():
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "healing_mnist.py"
    for bad in (["--mechanism", "sometimes"], ["--size", "huge"]):
        result = subprocess.run([sys.executable, str(script), *bad], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "invalid choice" in result.stderr


def test_the_cauchy_kernel_is_the_rational_quadratic_with_alpha_one():
    import gpytorch

    from gpytorch_vae.kernels import CauchyKernel

    x, z = torch.linspace(0, 9, 10, dtype=DT).unsqueeze(-1), torch.tensor([[2.5], [7.0]], dtype=DT)
    cauchy = CauchyKernel().double()
    cauchy.lengthscale = 2.0
    expected = 1.0 / (1.0 + (x - z.T).square() / 4.0)
    torch.testing.assert_close(cauchy(x, z).to_dense(), expected)
    rq = gpytorch.kernels.RQKernel().double()
    rq.alpha, rq.lengthscale = 1.0, 2.0 / 2**0.5
    torch.testing.assert_close(rq(x, z).to_dense(), expected)


@pytest.mark.parametrize("model", ["svgpvae", "fgpvae"])
def test_missing_views_of_a_trained_rotated_mnist_run(model, tmp_path):
    """examples/rotated_mnist_missing_views.py on a one-epoch run: with nothing hidden it reproduces the run's own
    Table-1 MSE (masked conditioning with every entry observed is the unmasked one), hidden views are counted, and
    the figure is drawn (where matplotlib is installed)."""
    root = pathlib.Path(__file__).resolve().parents[1] / "examples"
    run = tmp_path / model
    train = [sys.executable, str(root / "rotated_mnist.py"), "--model", model, "--epochs", "1", "--threads", "1",
             "--no-plots", "--compile", "off", "--out", str(run)]  # fmt: skip
    subprocess.run(train, check=True, capture_output=True, timeout=600)
    views = [sys.executable, str(root / "rotated_mnist_missing_views.py"), "--run", str(run), "--threads", "1"]
    plots = importlib.util.find_spec("matplotlib") is not None  # the oldest-dependency CI step has no matplotlib
    if not plots:
        views.append("--no-plots")
    result = subprocess.run(views, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads((run / "missing_views.json").read_text())["rows"]
    trained = json.loads((run / "metrics.json").read_text())
    everything = rows[0]
    assert everything["views_kept"] is None and everything["pixels_missing"] == 0.0
    assert everything["mse_test_angle"] == pytest.approx(trained["mse"], rel=1e-5)
    from experiments.rotated_mnist import RunConfig, load_data, model_splits

    train_split, test, _ = model_splits(model, load_data(RunConfig(model=model), None))
    ids = train_split.aux[:, 0].astype(int)
    views = np.array([(ids == digit).sum() for digit in np.unique(test.aux[:, 0].astype(int))])  # test digits' views
    for row in rows:
        kept = views if row["views_kept"] is None else np.minimum(views, row["views_kept"])
        assert row["hidden_views"] == int((views - kept).sum())
        assert math.isfinite(row["mse_test_angle"])
    if plots:
        assert (run / "missing_views.png").stat().st_size > 10_000


def test_the_window_encoder_is_a_convolution_over_time():
    """WindowEncoder + a linear layer = torch's Conv1d of width ``window`` over the observation axis, zero padded."""
    from gpytorch_vae.nn import WindowEncoder

    torch.manual_seed(0)
    batch, b, features, hidden, window = 3, 7, 4, 5, 3
    linear = torch.nn.Linear(window * features, hidden).double()
    conv = torch.nn.Conv1d(features, hidden, window, padding=window // 2).double()
    with torch.no_grad():  # conv.weight[h, d, k] multiplies y[t + k - 1, d]; the window is neighbour-major
        conv.weight.copy_(linear.weight.view(hidden, window, features).transpose(1, 2))
        conv.bias.copy_(linear.bias)

    class Pair(torch.nn.Module):
        def forward(self, y):
            return linear(y), linear(y)

    y = torch.randn(batch, b, features, dtype=DT)
    expected = conv(y.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(WindowEncoder(Pair(), window)(y)[0], expected)
    identity = WindowEncoder(torch.nn.Identity(), 1)  # a window of one is the plain encoder
    assert torch.equal(identity(y), y)
    for bad in (0, 2, -1):
        with pytest.raises(ValueError, match="positive odd"):
            WindowEncoder(Pair(), bad)


def test_a_windowed_masked_encoder_trains_and_imputes_on_healing_mnist_sequences():
    from experiments import healing_mnist as hm

    from gpytorch_vae.data import HealingMNIST, RowBatches
    from gpytorch_vae.training import fit

    g = np.random.default_rng(1)
    images = (g.random((12, 28, 28)) > 0.7).astype(np.uint8) * 255
    data_set = HealingMNIST.from_arrays(images, np.arange(12) % 3, "train", "frames")
    net = hm.build_model("svgpvae", latent_dim=4, inducing=3, encoder_window=3)
    history = fit(ELBO(net, None, loss_scale=1 / 4), RowBatches(data_set, 4), epochs=1, progress=False).history
    assert all(math.isfinite(v) for v in history["loss"])
    x, y, mask = data_set[torch.arange(4)]
    assert torch.equal(net.impute(x, y, mask).mean[mask], y[mask])
