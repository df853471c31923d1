"""Seconds per training epoch on rotated MNIST (4050 images, batch 256), every model on this machine.

python benchmarks/speed/rotated_mnist_epoch_time.py --rounds 5 --threads 1

Models take turns epoch by epoch (round robin), so that all see the same machine load; the table reports the median
over rounds (after one warm-up round) and the ratio to the CVAE. GPPVAE is timed in both of its phases.
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
from experiments.rotated_mnist import MODELS, build_model, train

from gpytorch_vae.baselines import fit_gppvae
from gpytorch_vae.data import factorized_splits, load_rotated_mnist

VARIANTS = (
    "cvae", "svgpvae", "deep-svigp", "fgpvae", "gppvae (VAE phase)", "gppvae (GP phase)", "gppvae (joint, Taylor)",
)  # fmt: skip


def one_epoch(name: str, model, x, y) -> None:
    if name.startswith("gppvae"):
        phase = {"VAE": (1, 0, 0), "GP ": (0, 1, 0), "joi": (0, 0, 1)}[name[8:11]]
        fit_gppvae(model, x, y, *phase, progress=False)
    else:
        train(name, model, (x, y), 1, 1e-3, MODELS[name].batch_size, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default="benchmarks/results/rotated_mnist_epoch_time_cpu.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_rotated_mnist()
    train_split, fgp_train = data.train(), factorized_splits(data).train  # 4050 and 3960 images
    tensors = {"train": train_split.tensors(), "fgp": fgp_train.tensors()}
    pyro.set_rng_seed(0)
    models = {v: build_model(v.split(" ")[0], data, fgp_train if v == "fgpvae" else train_split) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for r in range(args.rounds + 1):
        for variant, model in models.items():
            start = time.perf_counter()
            one_epoch(variant, model, *tensors["fgp" if variant == "fgpvae" else "train"])
            if r:  # round 0 warms up
                times[variant].append(time.perf_counter() - start)
    medians = {v: statistics.median(t) for v, t in times.items()}
    print(f"threads: {torch.get_num_threads()}, rounds: {args.rounds}")
    print("| model | s/epoch (median) | x CVAE |\n|---|---|---|")
    for variant, value in medians.items():
        print(f"| {variant} | {value:.2f} | {value / medians['cvae']:.2f} |")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"threads": torch.get_num_threads(), "rounds": args.rounds, "seconds": times,
                   "median": medians}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
