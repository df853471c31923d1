"""Healing MNIST: impute missing pixels and frames of rotating-digit sequences (docs/protocols/healing_mnist.md).

python examples/healing_mnist.py --model svgpvae --mechanism random --size quick --out runs/healing_mnist/svgpvae
"""

from __future__ import annotations

import argparse
import json

from experiments.cli import add_common, apply_threads, positive_float, positive_int, run_main
from experiments.healing_mnist import MODELS, run

from gpytorch_vae.data.healing_mnist import MECHANISMS, SIZES
from gpytorch_vae.io import strict_json_value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="svgpvae",
                        help="svgpvae, gpvae (exact), vae, or the baselines mean and forward")  # fmt: skip
    parser.add_argument("--mechanism", choices=MECHANISMS, default="random")
    parser.add_argument("--size", choices=tuple(SIZES), default="quick",
                        help="quick: 6,000 / 1,000 sequences; full: 60,000 / 10,000")  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="sequences per batch")
    parser.add_argument("--latent-dim", type=positive_int, default=32)
    parser.add_argument("--inducing", type=positive_int, default=5, help="inducing points per sequence (svgpvae)")
    parser.add_argument("--encoder-window", type=positive_int, default=1,
                        help="frames each code is encoded from (odd; 3 as the GP-VAE authors' encoder)")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--samples", type=positive_int, default=10, help="posterior draws for the predictive")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files ($GPYTORCH_VAE_DATA)")
    parser.add_argument("--cache-dir", default=None, help="where the generated sequences are cached")
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures (no matplotlib needed)")
    add_common(parser, out="runs/healing_mnist")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    metrics = run(
        model=args.model, mechanism=args.mechanism, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        latent_dim=args.latent_dim, inducing=args.inducing, lr=args.lr, seed=args.seed, data_dir=args.data_dir,
        cache_dir=args.cache_dir, out=args.out, resume=args.resume, plots=not args.no_plots, num_samples=args.samples,
        encoder_window=args.encoder_window,
    )  # fmt: skip
    print(json.dumps(strict_json_value(metrics), indent=2))


if __name__ == "__main__":
    run_main(main)
