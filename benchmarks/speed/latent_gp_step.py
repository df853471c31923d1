"""Time one forward+backward pass of the latent-GP objective: SVGP-VAE hybrid strategy vs exact GP.

For each batch size b and number of inducing points m, times `hensman_bound().sum().backward()` of the hybrid
strategy (L channels, float64) and the exact GP's `log_marginal_likelihood` + posterior, and prints the median of
several repeats. Writes a JSON file.

    python benchmarks/speed/latent_gp_step.py --out benchmarks/results/latent_gp_step.json [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import gpytorch
import torch

from gpytorch_vae.gps import ExactLatentGP, SparseLatentGP


def kernel(channels: int) -> gpytorch.kernels.Kernel:
    batch = torch.Size([channels])
    return gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=batch), batch_shape=batch)


def latent_batch(b: int, channels: int, device, dtype, requires_grad: bool = True):
    x = torch.rand(b, 1, device=device, dtype=dtype) * 10
    y = torch.randn(channels, b, device=device, dtype=dtype, requires_grad=requires_grad)
    noise = (torch.rand(channels, b, device=device, dtype=dtype) + 0.1).requires_grad_(requires_grad)
    return x, y, noise


def median_time(step, repeats: int, device) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sparse_step(b, m, channels, device, dtype):
    gp = SparseLatentGP(torch.linspace(0, 10, m).unsqueeze(-1), kernel(channels)).to(device, dtype)
    x, y, noise = latent_batch(b, channels, device, dtype)

    def step():
        gp.set_latent_data(x, y, noise, num_data=10 * b)
        gp.variational_strategy.hensman_bound().sum().backward()

    return step


def exact_step(b, channels, device, dtype):
    gp = ExactLatentGP(kernel(channels)).to(device, dtype)
    x, y, noise = latent_batch(b, channels, device, dtype)

    def step():
        gp.set_latent_data(x, y, noise)
        post = gp.posterior()
        (gp.log_marginal_likelihood().sum() + post.variance.sum()).backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--inducing", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/latent_gp_step.json")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), torch.float64
    torch.manual_seed(0)
    rows = []
    for b in args.batch_sizes:
        for m in args.inducing:
            seconds = median_time(sparse_step(b, m, args.channels, device, dtype), args.repeats, device)
            rows.append({"model": "svgp (hybrid)", "b": b, "m": m, "ms": 1e3 * seconds})
        seconds = median_time(exact_step(b, args.channels, device, dtype), args.repeats, device)
        rows.append({"model": "exact", "b": b, "m": None, "ms": 1e3 * seconds})
    print(f"{'model':<15}{'b':>6}{'m':>6}{'median ms':>12}")
    for row in rows:
        print(f"{row['model']:<15}{row['b']:>6}{str(row['m'] or '-'):>6}{row['ms']:>12.2f}")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = {
        "device": device_name,
        "threads": torch.get_num_threads(),
        "channels": args.channels,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
