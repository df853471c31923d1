"""Why the moving ball's latent paths lock on later when the true lengthscale is long: how much the GP prior prefers
the affine code of a path to a warped one, with no networks at all.

python benchmarks/moving_ball/moving_ball_warp_penalty.py --json benchmarks/results/moving_ball_warp_penalty.json

A decoder can read the ball's position from any invertible warp of it, so what pulls the codes onto (an affine map
of) the true paths is the prior alone: the KL term, which for small encoder variances ``s`` is, per channel, minus
``log N(z | 0, K + s I)`` of the code path ``z`` up to terms that do not depend on ``z``. For true paths drawn from the
generator's GP (35 videos x 2 coordinates, 30 frames), the script compares the affine code (the paths themselves)
with warped codes ``g(path)`` standardised to the same mean and variance (``tanh(2x)``, ``x^3``, ``abs(x)``), under an
RBF kernel of lengthscale ``--kernel-lengthscale`` (default 2.4: where the learned lengthscale waits before the codes
lock on, docs/moving_ball.md) and under the true one. It prints the prior's preference for the affine code in nats per
frame (mean over the paths) and the share of paths where it prefers the affine code. Float64, CPU, seconds.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common
import torch
from moving_ball_lengthscale_bias import NUM_FRAMES, VIDEOS, exact_log_likelihoods, paths_parser, true_paths

WARPS = {"tanh(2x)": lambda x: torch.tanh(2 * x), "x^3": lambda x: x**3, "abs(x)": torch.abs}


def standardised(codes: torch.Tensor) -> torch.Tensor:
    """The codes shifted and scaled to mean 0 and standard deviation 1 over all paths and frames (a decoder absorbs
    any affine map, so only the shape of the warp matters)."""
    return (codes - codes.mean()) / codes.std()


def main(argv=None) -> None:
    parser = paths_parser(__doc__.splitlines()[0], [1e-3, 1e-2], "benchmarks/results/moving_ball_warp_penalty.json")
    parser.add_argument("--kernel-lengthscale", type=float, default=2.4, help="the model's kernel before lock-on")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for truth in args.lengthscales:
        paths = torch.cat(true_paths(truth, args.draws))  # (P, T)
        affine = standardised(paths)
        for kernel_name, lengthscale in (("waiting", args.kernel_lengthscale), ("true", truth)):
            for noise in args.noises:
                row = {"true_lengthscale": truth, "kernel": f"{kernel_name} ({lengthscale:g})", "noise": noise}
                affine_fit = exact_log_likelihoods(affine, lengthscale, noise)
                for name, warp in WARPS.items():
                    preference = affine_fit - exact_log_likelihoods(standardised(warp(paths)), lengthscale, noise)
                    row[f"{name} nats/frame"] = (preference.mean() / NUM_FRAMES).item()
                    row[f"{name} affine preferred"] = (preference > 0).double().mean().item()
                rows.append(row)
    columns = list(rows[0])
    formats = {c: ".2f" for c in columns if "nats" in c} | {c: ".0%" for c in columns if "preferred" in c}
    print(common.markdown_table(rows, columns, formats | {"noise": "g", "true_lengthscale": "g"}))
    common.save(args.json, {"rows": rows, "draws": args.draws, "videos": VIDEOS, "machine": common.machine()})


if __name__ == "__main__":
    main()
