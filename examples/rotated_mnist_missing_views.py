"""Missing views: condition a trained rotated-MNIST model on digits seen at only some angles, with pixels missing.

python examples/rotated_mnist.py --model svgpvae --out runs/rotated_mnist/svgpvae
python examples/rotated_mnist_missing_views.py --run runs/rotated_mnist/svgpvae

Reads the finished run's checkpoint (any of --model svgpvae|fgpvae|cvae|...), masks the training views of the 270
test digits (keeping 4, 2 or 1 of them, and/or hiding half of their pixels), conditions on the masked data and
generates the digits at 157.5 degrees and at the hidden views. Writes ``missing_views.json`` (MSE per setting) and
``missing_views.png`` (four digits: truth, what the model saw, generations) into ``--out`` (default: the run folder).
"""

from __future__ import annotations

import argparse
import os

from experiments.cli import apply_threads, positive_int, run_main, seed
from experiments.missing_views import figure_rows, load_trained, study

from gpytorch_vae.io import write_json


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished examples/rotated_mnist.py run folder")
    parser.add_argument("--out", default=None, help="where to write (default: --run)")
    parser.add_argument("--seed", type=seed, default=0, help="which views and pixels are hidden")
    parser.add_argument("--views", type=int, default=2, help="views kept per digit in the figure")
    parser.add_argument("--pixels-missing", type=float, default=0.5, help="share of their pixels hidden (figure)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    out = args.out or args.run
    config, data, net, train, test = load_trained(args.run, args.data_dir)
    rows = study(net, data, train, test, args.seed)
    write_json(os.path.join(out, "missing_views.json"), {"model": config.model, "run": args.run, "rows": rows})
    for row in rows:
        views = "all" if row["views_kept"] is None else row["views_kept"]
        hidden = "-" if row["mse_hidden_views"] is None else f"{row['mse_hidden_views']:.4f}"
        print(f"views kept {views:>3}, pixels missing {row['pixels_missing']:.0%}: MSE at 157.5 deg "
              f"{row['mse_test_angle']:.4f}, at the hidden views {hidden}")  # fmt: skip
    if not args.no_plots:
        from experiments.plotting import plot_image_rows

        digits = test.aux[:4, 0].astype(int)
        truth, seen, generated = figure_rows(net, data, train, digits, args.views, args.pixels_missing, args.seed)
        images = [row for k in range(len(digits)) for row in (truth[k], seen[k], generated[k])]
        labels = [label for d in digits for label in (f"{d} truth", f"{d} seen", f"{d} generated")]
        title = (f"{config.model}: {args.views} views kept, {args.pixels_missing:.0%} of their pixels hidden "
                 f"(grey: not seen)")  # fmt: skip
        plot_image_rows(images, labels, os.path.join(out, "missing_views.png"), num=16, title=title)


if __name__ == "__main__":
    run_main(main)
