"""Quick start: recover GP-distributed latents from nonlinear 16-d observations with SVGP-VAE, the exact GP-VAE
or a plain VAE. Runs in about a minute on a laptop CPU, no data to download.

    python examples/synthetic.py --model svgpvae --out runs/synthetic
"""

from __future__ import annotations

import argparse
import json
import os

import gpytorch
import pyro
import torch
from experiments.cli import add_common, apply_threads, positive_float, positive_int, run_main
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae import GPVAE
from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.gps import ExactLatentGP, SparseLatentGP
from gpytorch_vae.io import RunFolder, strict_json_value, write_json
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.metrics import affine_aligned_rmse
from gpytorch_vae.nn import MLPDecoder, MLPEncoder
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.priors import ExactLatentPrior, IndependentLatentPrior, SparseLatentPrior
from gpytorch_vae.training import Checkpoint, epoch_timing, fit

LATENT_DIM = 2


def latent_prior(model: str, inducing: int, x_max: float) -> torch.nn.Module:
    batch = torch.Size([LATENT_DIM])
    kernel = gpytorch.kernels.RBFKernel(batch_shape=batch)
    kernel.lengthscale = 1.0
    if model == "svgpvae":
        inducing_points = torch.linspace(0, x_max, inducing).unsqueeze(-1)
        return SparseLatentPrior(SparseLatentGP(inducing_points, kernel).double())
    if model == "gpvae":
        return ExactLatentPrior(ExactLatentGP(kernel).double())
    return IndependentLatentPrior()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["svgpvae", "gpvae", "vae"], default="svgpvae")
    parser.add_argument("--inducing", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--epochs", type=positive_int, default=150)
    parser.add_argument("--lr", type=positive_float, default=1e-2)
    add_common(parser, out="runs/synthetic")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)

    pyro.set_rng_seed(args.seed)
    data = make_synthetic_gp_data(seed=args.seed)
    num_data, obs_dim = data.y.shape
    batch_size = num_data if args.model == "gpvae" else args.batch_size  # the exact GP needs the whole dataset
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
    vae = GPVAE(
        MLPEncoder(obs_dim, 64, LATENT_DIM),
        MLPDecoder(LATENT_DIM, 64, obs_dim),
        latent_prior(args.model, args.inducing, float(data.x.max())),
        latent_dim=LATENT_DIM,
        likelihood=GaussianLikelihood(noise=0.1**2),
        gp_dtype=torch.float64,
    ).to(args.device)
    settings = {
        "model": args.model,
        "seed": args.seed,
        "inducing": args.inducing,
        "batch_size": batch_size,
        "lr": args.lr,
    }  # what defines the run: a resume with other values is refused
    with RunFolder(args.out):
        history = fit(
            ELBO(vae),
            loader,
            epochs=args.epochs,
            lr=args.lr,
            callbacks=[Checkpoint(os.path.join(args.out, "checkpoint.pt"), args.resume, settings)],
            device=args.device,
        ).history
        z_mean = vae.posterior_latent_mean(data.x.to(args.device), data.y.to(args.device)).cpu()
        metrics = {
            "model": args.model,
            "rmse": affine_aligned_rmse(z_mean, data.z),
            "final_loss": history["loss"][-1] if history.get("loss") else None,
            "epochs": args.epochs,
            "seconds_per_epoch": epoch_timing(history)["seconds_per_epoch"],
        }
        write_json(os.path.join(args.out, "metrics.json"), metrics)
    print(json.dumps(strict_json_value(metrics), indent=2))


if __name__ == "__main__":
    run_main(main)
