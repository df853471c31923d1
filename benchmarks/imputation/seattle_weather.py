"""A real time series with holes: Seattle's daily weather 2012-2015 (vega_datasets, 1461 days x 4 variables) with a
share of the observed values hidden (pygrinder's mechanisms), imputed by the SVGP-VAE treating the whole series as
one GP data set in minibatches, against linear interpolation, mean imputation and PyPOTS's GP-VAE and SAITS.

python benchmarks/imputation/seattle_weather.py --mechanism mcar --seed 0 --threads 1 --out runs/seattle_weather/mcar_s0

Needs ``pip install vega_datasets pygrinder`` (and ``pypots`` for ``--peers``). The variables are precipitation
(as log(1 + mm): daily rain is heavy-tailed), maximum and minimum temperature and wind, standardised with the means
and standard deviations of the entries left observed. Mechanisms: ``mcar`` hides each entry with probability 0.3
(:func:`pygrinder.mcar`); ``blocks`` hides runs of 14 days of a variable (:func:`pygrinder.seq_missing` on 28-day
samples, about 30 % of the entries). The mask is drawn from ``--mask-seed`` (0 for every reported run), the models
from ``--seed``. Metrics (standardised units, over the hidden entries): MSE, MAE, and for the SVGP-VAE the coverage
of its 90 % predictive intervals. Writes ``metrics.json`` (one entry per method) and ``imputations.png`` (one year).
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/common.py
import common
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae import GPVAE, SparseLatentPrior
from gpytorch_vae.data.real_series import SEATTLE_VARIABLES as VARIABLES
from gpytorch_vae.data.real_series import load_seattle_weather
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.io import RunFolder, write_json
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.nn import MaskedEncoder, MLPDecoder, MLPEncoder
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import fit

MISSING_RATE, BLOCK_DAYS = 0.3, 14
MIN_NOISE = 0.2  # the floor of the learned noise variances (standardised units)
WINDOW = 28  # days per sample for PyPOTS's window-based models


def hide(values: np.ndarray, mechanism: str, seed: int) -> np.ndarray:
    """The mask of entries left observed (True), drawn with pygrinder from numpy's global generator at ``seed``."""
    import pygrinder  # pip install pygrinder

    np.random.seed(seed)
    if mechanism == "mcar":
        hidden = pygrinder.mcar(values[None], MISSING_RATE)[0]
    else:  # pygrinder hides at most one block per sample and variable: cut the series into samples of 28 days
        windows = len(values) // WINDOW
        hidden = values.copy()
        blocks = pygrinder.seq_missing(values[: windows * WINDOW].reshape(windows, WINDOW, -1), MISSING_RATE,
                                       BLOCK_DAYS)  # fmt: skip
        hidden[: windows * WINDOW] = blocks.reshape(windows * WINDOW, -1)
    return ~np.isnan(hidden)


def mean_fill(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    means = np.nanmean(np.where(mask, y, np.nan), axis=0)
    return np.where(mask, y, means)


def linear_fill(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear interpolation between the nearest observed days of each variable (constant beyond the ends)."""
    days = np.arange(len(y), dtype=np.float64)
    out = y.copy()
    for j in range(y.shape[1]):
        seen = mask[:, j]
        out[~seen, j] = np.interp(days[~seen], days[seen], y[seen, j])
    return out


def svgpvae_fill(y, mask, seed: int, epochs: int, inducing: int, latent_dim: int):
    """The SVGP-VAE on the whole series as one GP data set over days (minibatches of 128 days): masked Gaussian
    likelihood with a learned noise per variable, zero-filled encoder input with the mask beside it, an RBF kernel
    per latent channel with a learned lengthscale (starting at 2 days); returns the mean imputation, the predictive
    standard deviation of every entry and the training seconds."""
    import gpytorch

    torch.manual_seed(seed)
    days = torch.arange(len(y), dtype=torch.float64).unsqueeze(-1)
    y_t, mask_t = torch.as_tensor(y, dtype=torch.float32), torch.as_tensor(mask)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([latent_dim]))
    kernel.lengthscale = 2.0
    gp = SparseLatentGP(torch.linspace(0, len(y) - 1, inducing, dtype=torch.float64).unsqueeze(-1), kernel)
    vae = GPVAE(
        MaskedEncoder(MLPEncoder(2 * y.shape[1], (64, 64), latent_dim)),
        MLPDecoder(latent_dim, (64, 64), y.shape[1]),
        SparseLatentPrior(gp),
        latent_dim=latent_dim,
        # learned noise per variable, kept above MIN_NOISE so that the short-lengthscale latent GP does not
        # absorb the day-to-day noise of the observed entries
        likelihood=GaussianLikelihood(noise=0.5, learn_noise=True, noise_shape=(y.shape[1],), min_noise=MIN_NOISE),
        gp_dtype=torch.float64,
    )
    data = TensorDataset(days, y_t, mask_t)
    start = time.perf_counter()
    result = fit(ELBO(vae), DataLoader(data, batch_size=128, shuffle=True), epochs=epochs, lr=3e-3, progress=False)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        vae.eval()
        posterior = vae.condition_on_observations(DataLoader(data, batch_size=512))
        imputed = vae.impute(days, y_t, mask_t, num_samples=100, posterior=posterior)
    info = {"lengthscales_days": kernel.lengthscale.flatten().tolist(), "noise": vae.likelihood.noise.tolist(),
            "final_loss": result.history["loss"][-1], "training_seconds": seconds,
            "seconds_per_epoch": seconds / epochs}  # fmt: skip
    return imputed.predictive_mean.double().numpy(), imputed.variance.double().sqrt().numpy(), info


def pypots_fill(y: np.ndarray, mask: np.ndarray, model: str, seed: int, epochs: int) -> tuple[np.ndarray, dict]:
    """PyPOTS's GPVAE or SAITS on non-overlapping windows of 28 days (the series padded with missing days at the
    end), trained on the observed entries and then imputing them (transductive, like the others)."""
    from pypots.imputation import GPVAE, SAITS
    from pypots.optim import Adam
    from pypots.utils.random import set_random_seed

    n, d = y.shape
    windows = math.ceil(n / WINDOW)
    padded = np.full((windows * WINDOW, d), np.nan)
    padded[:n] = np.where(mask, y, np.nan)
    x = padded.reshape(windows, WINDOW, d)
    set_random_seed(seed)
    common_args = dict(n_steps=WINDOW, n_features=d, epochs=epochs, batch_size=16, optimizer=Adam(lr=1e-3),
                       device="cpu", saving_path=None, model_saving_strategy=None)  # fmt: skip
    if model == "gpvae":
        net = GPVAE(latent_size=8, encoder_sizes=(64, 64), decoder_sizes=(64, 64), window_size=3, kernel="cauchy",
                    sigma=1.0, length_scale=7.0, beta=0.2, **common_args)  # fmt: skip
    else:
        net = SAITS(n_layers=2, d_model=64, n_heads=4, d_k=16, d_v=16, d_ffn=128, dropout=0.1, **common_args)
    start = time.perf_counter()
    net.fit({"X": x})
    seconds = time.perf_counter() - start
    imputed = np.asarray(net.predict({"X": x})["imputation"]).reshape(windows * WINDOW, d)[:n]
    return np.where(mask, y, imputed), {"training_seconds": seconds, "seconds_per_epoch": seconds / epochs}


def scores(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> dict:
    error = (filled - truth)[hidden]
    per_variable = {v: float(np.mean(((filled - truth)[:, j][hidden[:, j]]) ** 2)) for j, v in enumerate(VARIABLES)}
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "mse_per_variable": per_variable}


def plot(path, truth, hidden, fills: dict, sd: np.ndarray, year: slice) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = np.arange(len(truth))[year]
    fig, axes = plt.subplots(len(VARIABLES), 1, figsize=(10, 8), sharex=True)
    for j, (ax, name) in enumerate(zip(axes, VARIABLES)):
        seen, gone = ~hidden[year, j], hidden[year, j]
        ax.plot(days[seen], truth[year, j][seen], ".", ms=2, color="0.5", label="observed")
        ax.plot(days[gone], truth[year, j][gone], "x", ms=3, color="k", label="hidden (truth)")
        mean = fills["svgpvae"][year, j]
        ax.fill_between(days, mean - 1.645 * sd[year, j], mean + 1.645 * sd[year, j], color="C0", alpha=0.2,
                        label="SVGP-VAE 90 %")  # fmt: skip
        ax.plot(days, mean, color="C0", lw=1, label="SVGP-VAE")
        ax.plot(days, fills["linear"][year, j], color="C1", lw=0.8, label="linear")
        ax.set_ylabel(name + (" (log1p)" if j == 0 else "") + "\n(standardised)", fontsize=8)
    axes[0].legend(fontsize=7, ncol=5, loc="upper right")
    axes[-1].set_xlabel("day (2014)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mechanism", choices=("mcar", "blocks"), default="mcar")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and batch order")
    parser.add_argument("--mask-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=300, help="SVGP-VAE epochs (12 steps each)")
    parser.add_argument("--inducing", type=int, default=200, help="inducing points over the 1461 days")
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--peers", action="store_true", help="also PyPOTS's GPVAE and SAITS (pip install pypots)")
    parser.add_argument("--peer-epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="runs/seattle_weather")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with RunFolder(args.out):
        raw = load_seattle_weather().values  # (1461, 4): log(1 + precipitation), temp_max, temp_min, wind
        mask = hide(raw, args.mechanism, args.mask_seed)
        observed = np.where(mask, raw, np.nan)
        centre, scale = np.nanmean(observed, 0), np.nanstd(observed, 0)
        truth = (raw - centre) / scale
        y = np.where(mask, truth, 0.0)
        hidden = ~mask
        fills = {"mean": mean_fill(y, mask), "linear": linear_fill(y, mask)}
        svgp, sd, info = svgpvae_fill(y, mask, args.seed, args.epochs, args.inducing, args.latent_dim)
        fills["svgpvae"] = svgp
        extra = {"svgpvae": info}
        if args.peers:
            for peer in ("gpvae", "saits"):
                fills[f"pypots-{peer}"], extra[f"pypots-{peer}"] = pypots_fill(y, mask, peer, args.seed,
                                                                                args.peer_epochs)  # fmt: skip
        z = np.abs(svgp - truth)[hidden] / sd[hidden]
        metrics = {
            "mechanism": args.mechanism, "seed": args.seed, "mask_seed": args.mask_seed,
            "hidden_fraction": float(hidden.mean()), "epochs": args.epochs, "inducing": args.inducing,
            "latent_dim": args.latent_dim, "peer_epochs": args.peer_epochs if args.peers else None,
            "methods": {name: {**scores(fill, truth, hidden), **extra.get(name, {})} for name, fill in fills.items()},
            "svgpvae_coverage_90": float(np.mean(z < 1.645)), "machine": common.machine(),
            "threads": torch.get_num_threads(),
        }  # fmt: skip
        write_json(os.path.join(args.out, "metrics.json"), metrics)
        plot(os.path.join(args.out, "imputations.png"), truth, hidden, fills, sd, slice(731, 1096))
    for name, m in metrics["methods"].items():
        print(f"{name:14s} MSE {m['mse']:.4f}  MAE {m['mae']:.4f}")
    print(f"SVGP-VAE 90 % interval coverage {metrics['svgpvae_coverage_90']:.3f}")


if __name__ == "__main__":
    main()
