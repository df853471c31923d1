"""Moving ball (SVGP-VAE paper Sec. 4.1): VAE vs exact GP-VAE vs SVGP-VAE.

python examples/moving_ball.py --model svgpvae --inducing 15 --steps 25000 --out runs/moving_ball/svgpvae
"""

from __future__ import annotations

import argparse
import json

from gpytorch_vae.experiments.moving_ball import MODELS, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="svgpvae")
    parser.add_argument("--inducing", type=int, default=15, help="number of inducing points m (svgpvae)")
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learn-lengthscale", action="store_true")
    parser.add_argument("--learn-inducing", action="store_true")
    parser.add_argument("--inducing-init", choices=["even", "bunched"], default="even")
    parser.add_argument("--true-lengthscale", type=float, default=2.0, help="lengthscale of the data generator")
    parser.add_argument("--lengthscale-init", type=float, default=None, help="default: 1.0 if learned, else true")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/moving_ball")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    metrics = run(
        model=args.model,
        inducing=args.inducing,
        steps=args.steps,
        seed=args.seed,
        learn_lengthscale=args.learn_lengthscale,
        learn_inducing=args.learn_inducing,
        inducing_init_kind=args.inducing_init,
        true_lengthscale=args.true_lengthscale,
        lengthscale_init=args.lengthscale_init,
        lr=args.lr,
        log_every=args.log_every,
        device=args.device,
        out=args.out,
        resume=args.resume,
    )
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
