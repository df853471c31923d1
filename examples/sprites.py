"""SPRITES (SVGP-VAE paper Sec. 4.3): generate every pose of characters never seen in training.

python examples/sprites.py --data-dir PATH/TO/Sprites --epochs 50 --out runs/sprites

The sheets are the folders body/ bottomwear/ topwear/ hair/ shoes/ of the public repository YingzhenLi/Sprites;
pass their parent folder (or set $GPYTORCH_VAE_SPRITES). Frames are rendered once (about a minute) and cached as
uint8 in --cache-dir (default ~/.cache/gpytorch_vae, 1.1 GB).
"""

from __future__ import annotations

import argparse
import json

from experiments.cli import (
    COMPILE,
    add_common,
    add_compile,
    apply_threads,
    folder,
    nonnegative_int,
    positive_float,
    positive_int,
    run_main,
)
from experiments.sprites import run

from gpytorch_vae.io import strict_json_value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=50)
    parser.add_argument("--pretrain-steps", type=nonnegative_int, default=4000,
                        help="classifier pre-training steps of the representation network")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="folder with the sprite sheets ($GPYTORCH_VAE_SPRITES)")
    parser.add_argument("--cache-dir", type=folder, default=None, help="where the rendered frames are cached")
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--eval-every", type=nonnegative_int, default=0, help="test MSE every N epochs (a curve)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures (no matplotlib needed)")
    add_common(parser, out="runs/sprites")
    add_compile(parser)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    metrics = run(
        epochs=args.epochs, pretrain_steps=args.pretrain_steps, seed=args.seed, data_dir=args.data_dir,
        cache_dir=args.cache_dir, device=args.device, out=args.out, resume=args.resume, lr=args.lr,
        plots=not args.no_plots, compile=COMPILE[args.compile], eval_every=args.eval_every,
    )  # fmt: skip
    print(json.dumps(strict_json_value(metrics), indent=2))


if __name__ == "__main__":
    run_main(main)
