"""Moving ball (SVGP-VAE paper Sec. 4.1): VAE vs exact GP-VAE vs SVGP-VAE.

python examples/moving_ball.py --model svgpvae --inducing 15 --steps 25000 --out runs/moving_ball/svgpvae
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
    positive_float,
    positive_int,
    run_main,
)
from experiments.moving_ball import LEARNED_LENGTHSCALE_START, MODELS, run

from gpytorch_vae.io import strict_json_value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="svgpvae")
    parser.add_argument("--inducing", type=positive_int, default=15, help="number of inducing points m (svgpvae)")
    parser.add_argument("--steps", type=positive_int, default=25_000)
    parser.add_argument("--learn-lengthscale", action="store_true")
    parser.add_argument("--learn-inducing", action="store_true")
    parser.add_argument("--learn-outputscale", action="store_true",
                        help="learn the kernel's amplitude too (default: fixed at 1, the protocol's)")  # fmt: skip
    parser.add_argument("--inducing-init", choices=["even", "bunched"], default="even")
    parser.add_argument("--true-lengthscale", type=bounded(float, 0.1, 100.0), default=2.0,
                        help="lengthscale of the data generator")  # fmt: skip
    starts = ", ".join(f"{start:g} for {model}" for model, (start, _) in LEARNED_LENGTHSCALE_START.items())
    held = ", ".join(f"{steps} for {model}" for model, (_, steps) in LEARNED_LENGTHSCALE_START.items() if steps)
    parser.add_argument("--lengthscale-init", type=bounded(float, 0.01, 1000.0), default=None,
                        help=f"default: the true one if fixed; if learned, {starts}")  # fmt: skip
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--prior-lr", type=positive_float, default=None,
                        help="learning rate of the latent prior's parameters (lengthscale, amplitude, inducing "
                        "points); default: --lr")  # fmt: skip
    parser.add_argument("--prior-warmup", type=int, default=None,
                        help="steps during which the latent prior's parameters stay at their start (default with a "
                        f"learned lengthscale from its default start: {held}; else 0)")  # fmt: skip
    parser.add_argument("--log-every", type=positive_int, default=100, help="steps per checkpoint and trace point")
    parser.add_argument("--init", choices=("torch", "truncated-normal"), default=None,
                        help="network initialisation: PyTorch's or the reference code's truncated normal (default "
                        "for every model; docs/moving_ball.md)")  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="do not draw figures (no matplotlib needed)")
    add_common(parser, out="runs/moving_ball")
    add_compile(parser)
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps % args.log_every:
        parser.error(f"--steps ({args.steps}) must be a multiple of --log-every ({args.log_every})")
    apply_threads(args.threads)
    metrics = run(
        model=args.model, inducing=args.inducing, steps=args.steps, seed=args.seed,
        learn_lengthscale=args.learn_lengthscale, learn_inducing=args.learn_inducing,
        inducing_init_kind=args.inducing_init, true_lengthscale=args.true_lengthscale,
        lengthscale_init=args.lengthscale_init, lr=args.lr, log_every=args.log_every, device=args.device,
        out=args.out, resume=args.resume, plots=not args.no_plots, network_init=args.init,
        compile=COMPILE[args.compile], prior_lr=args.prior_lr, prior_warmup=args.prior_warmup,
        learn_outputscale=args.learn_outputscale,
    )  # fmt: skip
    print(json.dumps(strict_json_value(metrics), indent=2))


if __name__ == "__main__":
    run_main(main)
