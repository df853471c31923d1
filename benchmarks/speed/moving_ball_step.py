"""Time one SVI step (forward + backward + Adam) of each moving-ball model on the protocol's batch of 35 videos.

Median over repeats after warm-up; prints a table and writes JSON.

    python benchmarks/speed/moving_ball_step.py --out benchmarks/results/moving_ball_step_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common  # noqa: F401  (examples/ on the import path)
import pyro
import torch
from experiments.moving_ball import build_model, gp_inputs
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO

from gpytorch_vae.data import MovingBallDataset, MovingBallGenerator


def time_model(model: str, inducing: int, repeats: int, device: str) -> float:
    pyro.clear_param_store()
    vae = build_model(model, num_inducing=inducing, learn_lengthscale=True, learn_inducing=True).to(device)
    scale = 1.0 / 35
    svi = SVI(poutine.scale(vae.model, scale=scale), poutine.scale(vae.guide, scale=scale),
              pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO())  # fmt: skip
    stream = iter(MovingBallDataset(MovingBallGenerator(), 35))
    batches = [next(stream) for _ in range(repeats + 3)]
    times = []
    for i, batch in enumerate(batches):
        x, y = gp_inputs(batch).to(device), batch.frames.to(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        svi.step(x, y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/moving_ball_step_cpu.json")
    args = parser.parse_args()
    rows = [
        {"model": name, "m": m, "ms": 1e3 * time_model(name, m or 15, args.repeats, args.device)}
        for name, m in [("vae", None), ("gpvae", None), ("svgpvae", 15), ("svgpvae", 30)]
    ]
    print("| model | m | median ms / step |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | {row['m'] or '-'} | {row['ms']:.1f} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    meta = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "repeats": args.repeats, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
