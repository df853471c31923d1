"""Healing MNIST (``docs/protocols/healing_mnist.md``): imputing missing pixels and frames of rotating-digit sequences
with the SVGP-VAE, the exact GP-VAE and a VAE (masked Bernoulli likelihood, zero-filled inputs with the mask as extra
input), against mean and forward imputation; MSE and NLL over the missing entries, downstream AUROC, calibration."""

from __future__ import annotations

import os
import resource
import time

import pyro
import torch

from gpytorch_vae import GPVAE, ExactLatentGP, ExactLatentPrior, IndependentLatentPrior, SparseLatentPrior
from gpytorch_vae.data import HealingMNIST, RowBatches
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.io import RunFolder, write_json
from gpytorch_vae.kernels import CauchyKernel
from gpytorch_vae.likelihoods import BernoulliLikelihood
from gpytorch_vae.metrics import downstream_auroc, masked_bernoulli_nll, masked_mse
from gpytorch_vae.nn import MaskedEncoder, MLPDecoder, MLPEncoder, WindowEncoder
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import Checkpoint, epoch_timing, fit

from .evaluation import evaluating
from .resources import peak_rss_mb, reset_peak_rss

MODELS = ("svgpvae", "gpvae", "vae", "mean", "forward")
PIXELS = 784
ENCODER, DECODER = (256, 256), (256, 256, 256)  # the GP-VAE authors' HMNIST MLPs
CAUCHY_LENGTHSCALE = 2.0  # the authors' kernel: 1 / (1 + d^2 / l^2), sigma 1


def cauchy_kernel(latent_dim: int) -> CauchyKernel:
    """The GP-VAE authors' Cauchy kernel :math:`(1 + (t - t')^2 / l^2)^{-1}`, l = 2, one per latent channel, fixed
    (not learned)."""
    kernel = CauchyKernel(batch_shape=torch.Size([latent_dim])).double()
    kernel.lengthscale = torch.tensor(CAUCHY_LENGTHSCALE, dtype=torch.float64)
    kernel.requires_grad_(False)
    return kernel


def build_model(model: str, latent_dim: int, inducing: int, encoder_window: int = 1) -> GPVAE:
    """The masked-input MLP encoder and the MLP decoder (ReLU), a Bernoulli likelihood and the model's prior: one GP
    per sequence and latent channel over the 10 frame times (SVGP-VAE with ``inducing`` points evenly on [0, 9], or
    exact), or N(0, I) (VAE). ``encoder_window`` > 1: each frame's code is encoded from that many frames around it
    (:class:`~gpytorch_vae.nn.WindowEncoder`, the GP-VAE authors' temporal encoder has 3)."""
    if model == "vae":
        prior = IndependentLatentPrior()
    elif model == "gpvae":
        prior = ExactLatentPrior(ExactLatentGP(cauchy_kernel(latent_dim)))
    else:
        inducing_points = torch.linspace(0, 9, inducing, dtype=torch.float64).unsqueeze(-1)
        prior = SparseLatentPrior(SparseLatentGP(inducing_points, cauchy_kernel(latent_dim),
                                                 learn_inducing_locations=False))  # fmt: skip
    encoder = MLPEncoder(2 * PIXELS * encoder_window, ENCODER, latent_dim, activation=torch.nn.ReLU)
    encoder = MaskedEncoder(encoder if encoder_window == 1 else WindowEncoder(encoder, encoder_window))
    decoder = MLPDecoder(latent_dim, DECODER, PIXELS, activation=torch.nn.ReLU)
    return GPVAE(encoder, decoder, prior, latent_dim, BernoulliLikelihood(), gp_dtype=torch.float64)


# ---------------------------------------------------------------------- the simple baselines
def mean_imputation(train: HealingMNIST, batch_size: int = 500) -> torch.Tensor:
    """Each pixel's mean over the observed training entries (all frames): ``(784,)``."""
    total, count = torch.zeros(PIXELS, dtype=torch.float64), torch.zeros(PIXELS, dtype=torch.float64)
    for _, y, mask in RowBatches(train, batch_size):
        total += (y * mask).sum((0, 1)).double()
        count += mask.sum((0, 1)).double()
    return (total / count.clamp_min(1)).float()


def forward_imputation(y: torch.Tensor, mask: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The last observed value of each pixel earlier in its sequence, else the pixel's mean."""
    out = torch.where(mask, y, means.expand_as(y))
    last, seen = means.expand_as(y[:, 0]).clone(), torch.zeros_like(mask[:, 0])
    for t in range(y.size(1)):
        seen_now = mask[:, t]
        out[:, t] = torch.where(seen_now, y[:, t], torch.where(seen, last, means))
        last = torch.where(seen_now, y[:, t], last)
        seen = seen | seen_now
    return out


# ---------------------------------------------------------------------- evaluation


def metrics_of(probs: torch.Tensor, test: HealingMNIST, batch_size: int = 500) -> dict:
    """The protocol's metrics over the missing entries of the test set; calibration: the coverage of the smallest sets
    of pixel values holding 90 % predictive probability ({1} if p >= 0.9, {0} if p <= 0.1, else both; with
    ``decisive_share``, the share of singletons) and the expected calibration error over 10 bins of p. Computed
    ``batch_size`` sequences at a time (the full test set's missing entries in float64 would take gigabytes)."""
    totals = {"se": 0.0, "nll": 0.0, "covered": 0.0, "decisive": 0.0, "count": 0}
    bin_count, bin_truth, bin_p = (torch.zeros(10, dtype=torch.float64) for _ in range(3))
    for rows in torch.arange(len(test)).split(batch_size):
        truth, missing, chunk = test.full_frames(rows), test.missing_mask(rows), probs[rows]
        count = int(missing.sum())
        if count == 0:
            continue
        totals["se"] += masked_mse(chunk, truth, missing) * count
        totals["nll"] += masked_bernoulli_nll(chunk, truth, missing) * count
        p, x = chunk[missing].double(), truth[missing].double()
        covered = torch.where(p >= 0.9, x == 1, torch.where(p <= 0.1, x == 0, torch.ones_like(x, dtype=torch.bool)))
        totals["covered"] += covered.double().sum().item()
        totals["decisive"] += ((p >= 0.9) | (p <= 0.1)).double().sum().item()
        totals["count"] += count
        bins = (p * 10).long().clamp(max=9)  # reliability: 10 bins of p, |mean truth - mean p| weighted by share
        bin_count += torch.bincount(bins, minlength=10).double()
        bin_truth += torch.bincount(bins, weights=x, minlength=10)
        bin_p += torch.bincount(bins, weights=p, minlength=10)
    count = max(totals["count"], 1)
    return {
        "mse": totals["se"] / count,
        "nll": totals["nll"] / count,
        "auroc": downstream_auroc(probs, test.labels),
        "coverage_90": totals["covered"] / count,
        "calibration_error": ((bin_truth - bin_p).abs().sum() / bin_count.sum().clamp_min(1)).item(),
        "decisive_share": totals["decisive"] / count,
        "missing_entries": totals["count"],
    }


def run(model: str = "svgpvae", mechanism: str = "random", size: str = "quick", epochs: int = 20,
        batch_size: int = 64, latent_dim: int = 32, inducing: int = 5, lr: float = 1e-3, seed: int = 0,
        data_dir: str | None = None, cache_dir: str | None = None, out: str = "runs/healing_mnist",
        resume: bool = False, progress: bool = True, plots: bool = True, num_samples: int = 10,
        encoder_window: int = 1) -> dict:  # fmt: skip
    """Train one model on the training sequences (observed pixels only) and impute the test sequences; writes
    ``metrics.json`` (MSE, NLL, AUROC, calibration, s/epoch, peak memory), ``history.json``, ``sequences.png`` and a
    checkpoint per epoch (``resume`` continues; refused with other settings)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    with RunFolder(out):
        train = HealingMNIST("train", size, mechanism, data_dir, cache_dir)
        test = HealingMNIST("test", size, mechanism, data_dir, cache_dir)
        means = mean_imputation(train)
        pyro.set_rng_seed(seed)
        net, timing, history, training_seconds, training_peak = None, {}, {}, 0.0, None
        if model in ("svgpvae", "gpvae", "vae"):
            net = build_model(model, latent_dim, inducing, encoder_window)
            run_config = dict(model=model, mechanism=mechanism, size=size, batch_size=batch_size,
                              latent_dim=latent_dim, inducing=inducing, lr=lr, seed=seed,
                              **({} if encoder_window == 1 else {"encoder_window": encoder_window}))  # fmt: skip
            tracking = reset_peak_rss()
            start = time.perf_counter()
            # every sequence is its own GP data set (num_data None); the loss is per sequence
            history = fit(ELBO(net, None, loss_scale=1.0 / batch_size), RowBatches(train, batch_size, shuffle=True),
                          epochs=epochs, lr=lr, progress=progress,
                          callbacks=[Checkpoint(os.path.join(out, "checkpoint.pt"), resume, run_config)]).history
            training_seconds = time.perf_counter() - start
            training_peak = peak_rss_mb() if tracking else None
            timing = epoch_timing(history)
        probs, predictive = imputations_and_predictive(model, net, test, means, 250, num_samples)
        results = metrics_of(probs, test)
        if predictive is not None:
            calibration = metrics_of(predictive, test)
            results.update(
                {
                    f"{key}_sampled": calibration[key]
                    for key in ("mse", "nll", "coverage_90", "decisive_share", "calibration_error")
                }
            )
        metrics = {
            "model": model, "mechanism": mechanism, "size": size, "seed": seed, "epochs": epochs if net else 0,
            **results, "seconds_per_epoch": timing.get("seconds_per_epoch"), "training_seconds": training_seconds,
            "training_peak_rss_mb": training_peak,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "latent_dim": latent_dim if net else None,
            "inducing": inducing if model == "svgpvae" else None, "encoder_window": encoder_window if net else None,
            "batch_size": batch_size, "num_samples": num_samples,
            "train_sequences": len(train), "test_sequences": len(test),
        }  # fmt: skip
        write_json(os.path.join(out, "metrics.json"), metrics)
        write_json(os.path.join(out, "history.json"), history)
        if plots:
            from .plotting import plot_sequences

            rows = torch.arange(4)
            x, y, mask = test[rows]
            variance = None
            if net is not None:  # the predictive variance of each pixel (0 where observed)
                with evaluating(net):
                    variance = net.impute(x, y, mask, num_samples=num_samples).variance
            plot_sequences(y, mask, probs[:4], test.full_frames(rows), os.path.join(out, "sequences.png"),
                           variance=variance,
                           title=f"{model}, {mechanism} missingness: test MSE {results['mse']:.4f}")  # fmt: skip
        return metrics


def imputations_and_predictive(model, net, test, means, batch_size: int, num_samples: int):
    """The point imputations (decoded posterior-mean codes; for the baselines, their fill) and, for the networks, the
    predictive probabilities over ``num_samples`` posterior draws of the codes (what calibration is measured on),
    each ``(n, 10, 784)``, observed pixels kept."""
    point, predictive = [], []
    for x, y, mask in RowBatches(test, batch_size):
        if model == "mean":
            point.append(torch.where(mask, y, means.expand_as(y)))
        elif model == "forward":
            point.append(forward_imputation(y, mask, means))
        else:
            with evaluating(net):
                imputation = net.impute(x, y, mask, num_samples=num_samples)
            point.append(imputation.mean.float())
            predictive.append(imputation.predictive_mean.float())
    return torch.cat(point), (torch.cat(predictive) if predictive else None)
