"""Rotated MNIST (SVGP-VAE paper Table 1): conditional generation of digit 3 at 157.5 degrees.

python examples/rotated_mnist.py --model svgpvae --epochs 1000 --out runs/rotated_mnist/svgpvae
python examples/rotated_mnist.py --model fgpvae --extrapolate --out runs/rotated_mnist/fgpvae
"""

from __future__ import annotations

import argparse
import json

from experiments.cli import (
    COMPILE,
    add_common,
    add_compile,
    apply_threads,
    bounded,
    nonnegative_int,
    positive_float,
    positive_int,
    run_main,
)
from experiments.rotated_mnist import MODELS, Capacity, run

from gpytorch_vae.io import strict_json_value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(MODELS), default="svgpvae")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="default: the protocol's (1000; deep-svigp 2000; gppvae 100 + 100)")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: the 400 source "
                        "digits shipped with the package; $GPYTORCH_VAE_DATA is read too)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--extrapolate", action="store_true", help="fgpvae: also generate the 40 unseen digits")
    parser.add_argument("--gppvae-joint-epochs", type=nonnegative_int, default=0,
                        help="gppvae: joint epochs (Taylor trick) after the protocol's VAE and GP phases")  # fmt: skip
    parser.add_argument("--eval-every", type=nonnegative_int, default=0,
                        help="record the test MSE every N epochs (a learning curve; never used to select)")  # fmt: skip
    parser.add_argument("--init", choices=("torch", "keras"), default=None,
                        help="network initialisation: PyTorch's defaults or Keras' (the reference code's); default: "
                        "the model's (docs/results.md)")  # fmt: skip
    parser.add_argument("--lambda-max", type=positive_float, default=None,
                        help="bound on GECO's lambda (default: the model's; none for svgpvae)")  # fmt: skip
    parser.add_argument("--network-dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--max-variance", type=bounded(float, 1.01e-3, 1e12), default=None,
                        help="upper clip of the encoder variances (default: 10, the protocol)")  # fmt: skip
    parser.add_argument("--shuffle", action="store_true", help="a new random batch order every epoch")
    parser.add_argument("--dataset", default="3", choices=("3", "36", "13679", "0123456789"),
                        help="digit classes (scaling study, Fig. 7); other than 3 needs the MNIST files")  # fmt: skip
    parser.add_argument("--generate-images", action="store_true",
                        help="rotate digit 3's images per batch like the other sets (default: stored)")  # fmt: skip
    parser.add_argument("--inducing-points", type=positive_int, default=32,
                        help="m of the sparse GPs (Fig. 6: 8, 16, 24, 32)")  # fmt: skip
    parser.add_argument("--object-dim", type=bounded(int, 1, 400), default=8,
                        help="GP-LVM dimension M (Fig. 6, GPPVAE: 8, 16, 24, 32; rank H = 16 M)")  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="images per global batch (default: the protocol's 256; fgpvae 220)")  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures (no matplotlib needed)")
    add_common(parser, out="runs/rotated_mnist")
    add_compile(parser)
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.extrapolate and args.model != "fgpvae":
        parser.error("--extrapolate needs --model fgpvae")
    apply_threads(args.threads)
    metrics = run(
        model=args.model, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir, device=args.device,
        out=args.out, resume=args.resume, lr=args.lr, joint_epochs=args.gppvae_joint_epochs,
        extrapolate=args.extrapolate, eval_every=args.eval_every, plots=not args.no_plots, init=args.init,
        network_dtype=args.network_dtype, shuffle=args.shuffle, lambda_max=args.lambda_max,
        compile=COMPILE[args.compile], max_variance=args.max_variance, dataset=args.dataset,
        capacity=Capacity(args.inducing_points, args.object_dim), generate_images=args.generate_images,
        batch_size=args.batch_size,
    )  # fmt: skip
    print(json.dumps(strict_json_value(metrics), indent=2))


if __name__ == "__main__":
    run_main(main)
