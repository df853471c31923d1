"""RMSE vs number of inducing points on the moving ball (SVGP-VAE paper Fig. 1), beside the VAE and exact GP-VAE.

Runs each configuration with ``gpytorch_vae.experiments.moving_ball.run`` (skipping those whose metrics.json exists),
then prints a table, writes ``OUT/sweep.json`` and plots ``OUT/rmse_vs_m.png``.

    python benchmarks/moving_ball/moving_ball_sweep.py --steps 25000 --out runs/moving_ball_sweep
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common  # noqa: F401  (examples/ on the import path)
from experiments.moving_ball import run
from experiments.plotting import pyplot


def configs(inducing: list[int]) -> list[dict]:
    return [{"model": "vae"}, {"model": "gpvae"}] + [{"model": "svgpvae", "inducing": m} for m in inducing]


def run_name(config: dict) -> str:
    return config["model"] + (f"_m{config['inducing']}" if "inducing" in config else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inducing", type=int, nargs="+", default=[2, 4, 6, 8, 10, 15, 20, 30])
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/moving_ball_sweep")
    args = parser.parse_args()
    results = []
    for config in configs(args.inducing):
        out = os.path.join(args.out, run_name(config))
        path = os.path.join(out, "metrics.json")
        if os.path.exists(path):
            with open(path) as f:
                metrics = json.load(f)
        else:
            metrics = run(**config, steps=args.steps, seed=args.seed, out=out, progress=False)
        results.append(metrics)
        print(f"{run_name(config):<14} rmse {metrics['rmse']:.4f}  {1e3 * metrics['seconds_per_step']:.1f} ms/step")
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n| model | m | RMSE | ms/step | steps |\n|---|---:|---:|---:|---:|")
    for r in results:
        m = r["inducing"] if r["inducing"] is not None else "-"
        print(f"| {r['model']} | {m} | {r['rmse']:.4f} | {1e3 * r['seconds_per_step']:.1f} | {r['steps']} |")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    sparse = [r for r in results if r["model"] == "svgpvae"]
    ax.plot([r["inducing"] for r in sparse], [r["rmse"] for r in sparse], "o-", label="SVGP-VAE")
    for r, style in zip([r for r in results if r["model"] != "svgpvae"], ["--", ":"]):
        ax.axhline(r["rmse"], ls=style, color="k", label=r["model"].upper().replace("GPVAE", "GP-VAE"))
    ax.set_xlabel("inducing points m")
    ax.set_ylabel("path RMSE (GP units)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "rmse_vs_m.png"), dpi=120)


if __name__ == "__main__":
    main()
