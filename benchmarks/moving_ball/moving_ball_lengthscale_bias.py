"""Why a learned lengthscale misses the truth on the moving ball with m = 15: the sparse bound's own optimum, with no
networks at all.

python benchmarks/moving_ball/moving_ball_lengthscale_bias.py \\
    --json benchmarks/results/moving_ball_lengthscale_bias.json

The SVGP-VAE's bound with the batch-Titsias q(u) (SVGP-VAE Eq. 9 in Eq. 7) is, per latent channel, Titsias's collapsed
bound ``log N(y | 0, Q + s I) - tr(K - Q) / (2 s)`` with ``Q = K_xu K_uu^-1 K_ux`` and the encoder variances ``s`` as
noise. Here ``y`` are the true ball paths themselves (35 videos x 2 coordinates, the generator's GP, amplitude 1,
30 frames, no noise added), the best case for an encoder, and ``s`` is the variance the encoder would report. For
each true lengthscale and noise the script finds the lengthscale that maximises (a) the exact log marginal
likelihood, (b) the bound with m = 15 evenly spaced inducing points (the study's setting) and (c) with m = 30, one
per frame, where the bound is exact (printed as a check: (c) must equal (a)). Median and quartiles over ``--draws``
independent batches; golden-section search on log lengthscale in [0.3, 12]. Float64, CPU, a few minutes.

``--scales`` multiplies the paths by each factor first, with the kernel's amplitude still 1: the learned codes are an
affine map of the paths whose scale the decoder does not fix, and codes larger than the amplitude move the
lengthscale's optimum (a learned amplitude removes the dependence: the optimum for ``a y`` with amplitude ``a^2``
and noise ``a^2 s`` is the one for ``y``, amplitude 1 and noise ``s``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import pathlib
import statistics
import sys
from functools import partial

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import RBFKernel
from linear_operator.utils.cholesky import psd_safe_cholesky

from gpytorch_vae.data.moving_ball import MovingBallGenerator

NUM_FRAMES, VIDEOS = 30, 35


def collapsed_bound(paths: torch.Tensor, lengthscale: float, noise: float, inducing: torch.Tensor) -> float:
    """Titsias's collapsed bound summed over the ``(P, T)`` paths (written out here: GPyTorch's ``InducingPointKernel``
    computes the same two terms inside an ``ExactGP``, which a grid search over fixed hyperparameters does not need)."""
    kernel = RBFKernel().double()
    kernel.lengthscale = lengthscale
    times = torch.arange(NUM_FRAMES, dtype=torch.float64).unsqueeze(-1)
    k_xx = kernel(times).to_dense()
    k_xu = kernel(times, inducing).to_dense()
    k_uu = kernel(inducing).to_dense() + 1e-10 * torch.eye(len(inducing), dtype=torch.float64)
    chol = psd_safe_cholesky(k_uu)
    a = torch.linalg.solve_triangular(chol, k_xu.T, upper=False)
    q_xx = a.T @ a
    identity = torch.eye(NUM_FRAMES, dtype=torch.float64)
    fit = MultivariateNormal(torch.zeros(NUM_FRAMES, dtype=torch.float64), q_xx + noise * identity)
    trace = (k_xx - q_xx).diagonal().sum().clamp_min(0.0)
    return (fit.log_prob(paths).sum() - paths.size(0) * trace / (2 * noise)).item()


def exact_log_likelihoods(paths: torch.Tensor, lengthscale: float, noise: float) -> torch.Tensor:
    """``log N(y | 0, K + s I)`` of each of the ``(P, T)`` paths under the RBF kernel over the frame times: ``(P,)``."""
    kernel = RBFKernel().double()
    kernel.lengthscale = lengthscale
    times = torch.arange(NUM_FRAMES, dtype=torch.float64).unsqueeze(-1)
    covariance = kernel(times).to_dense() + noise * torch.eye(NUM_FRAMES, dtype=torch.float64)
    return MultivariateNormal(torch.zeros(NUM_FRAMES, dtype=torch.float64), covariance).log_prob(paths)


def exact_log_likelihood(paths: torch.Tensor, lengthscale: float, noise: float) -> float:
    return exact_log_likelihoods(paths, lengthscale, noise).sum().item()


def argmax_lengthscale(objective, low: float = 0.3, high: float = 12.0, steps: int = 60) -> float:
    """Golden-section search of a unimodal objective over log lengthscale (a coarse grid first picks the bracket)."""
    grid = [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / 40) for i in range(41)]
    values = [objective(ell) for ell in grid]
    best = max(range(len(grid)), key=values.__getitem__)
    a, b = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(math.exp(c)), objective(math.exp(d))
    for _ in range(steps):
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(math.exp(d))
    return math.exp((a + b) / 2)


def true_paths(lengthscale: float, draws: int) -> list[torch.Tensor]:
    """``draws`` batches of the generator's true paths (seeds 0, 1, ...), each ``(2 * 35, T)`` in float64: one row per
    video and coordinate."""
    generator = MovingBallGenerator(lengthscale=lengthscale)
    batches = [generator.sample(VIDEOS, torch.Generator().manual_seed(seed)).paths for seed in range(draws)]
    return [p.transpose(-1, -2).reshape(-1, NUM_FRAMES).double() for p in batches]


def paths_parser(description: str, noises: list[float], json: str) -> argparse.ArgumentParser:
    """The options of the scripts that score true paths: true lengthscales, encoder noises, draws, the JSON file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lengthscales", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--noises", type=float, nargs="+", default=noises)
    parser.add_argument("--draws", type=int, default=10, help="independent batches of 35 videos")
    parser.add_argument("--json", default=json)
    return parser


def main(argv=None) -> None:
    parser = paths_parser(__doc__.splitlines()[0], [1e-3, 1e-2, 1e-1],
                          "benchmarks/results/moving_ball_lengthscale_bias.json")  # fmt: skip
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="factors on the paths (the codes' scale against the kernel's amplitude of 1)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for truth, scale in itertools.product(args.lengthscales, args.scales):
        batches = [scale * paths for paths in true_paths(truth, args.draws)]
        for noise in args.noises:
            found = {"exact": [], "m15": [], "m30": []}
            for paths in batches:
                found["exact"].append(argmax_lengthscale(partial(exact_log_likelihood, paths, noise=noise)))
                for m in (15, 30):
                    inducing = torch.linspace(0.0, NUM_FRAMES - 1.0, m, dtype=torch.float64).unsqueeze(-1)
                    bound = partial(collapsed_bound, paths, noise=noise, inducing=inducing)
                    found[f"m{m}"].append(argmax_lengthscale(bound))
            row = {"true_lengthscale": truth, "scale": scale, "noise": noise}
            for key, values in found.items():
                quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
                row[f"{key}_median"], row[f"{key}_q1"], row[f"{key}_q3"] = quartiles[1], quartiles[0], quartiles[2]
            row["m15_error"] = row["m15_median"] / truth - 1.0
            row["check_m30_minus_exact"] = max(abs(a - b) for a, b in zip(found["m30"], found["exact"]))
            rows.append(row)
    columns = ["true_lengthscale", "scale", "noise", "exact_median", "m30_median", "m15_median", "m15_q1", "m15_q3",
               "m15_error", "check_m30_minus_exact"]  # fmt: skip
    formats = {c: ".3f" for c in columns} | {"noise": "g", "scale": "g", "m15_error": "+.0%",
                                             "check_m30_minus_exact": ".1e"}  # fmt: skip
    print(common.markdown_table(rows, columns, formats))
    common.save(args.json, {"rows": rows, "draws": args.draws, "videos": VIDEOS, "machine": common.machine()})


if __name__ == "__main__":
    main()
