"""Rotated MNIST (SVGP-VAE paper Table 1): conditional generation of digit 3 at 157.5 degrees.

python examples/rotated_mnist.py --model svgpvae --epochs 1000 --out runs/rotated_mnist/svgpvae
python examples/rotated_mnist.py --model fgpvae --extrapolate --out runs/rotated_mnist/fgpvae
"""

from __future__ import annotations

import argparse
import json

import torch

from gpytorch_vae.experiments.rotated_mnist import run
from gpytorch_vae.experiments.rotated_mnist_models import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="svgpvae")
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's (1000; deep-svigp 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: the 400 source "
                        "digits shipped with the package; $GPYTORCH_VAE_DATA is read too)")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/rotated_mnist")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--extrapolate", action="store_true", help="fgpvae: also generate the 40 unseen digits")
    parser.add_argument("--gppvae-joint-epochs", type=int, default=0,
                        help="gppvae: joint epochs (Taylor trick) after the protocol's VAE and GP phases")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = run(
        model=args.model, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir, device=args.device,
        out=args.out, resume=args.resume, lr=args.lr, joint_epochs=args.gppvae_joint_epochs,
        extrapolate=args.extrapolate,
    )  # fmt: skip
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
