"""GP-VAE (Fortuin et al. 2020) as implemented by PyPOTS on Healing MNIST: one mechanism and seed per run.

python benchmarks/imputation/pypots_healing_mnist.py --mechanism mnar --size quick --seed 0 --threads 1 \\
    --out runs/pypots_hmnist

Trains ``pypots.imputation.GPVAE`` with the GP-VAE authors' HMNIST configuration (``docs/protocols/
healing_mnist.md``) on the training sequences of :class:`~gpytorch_vae.data.HealingMNIST` (each frame flattened to
784 features, NaN where missing), imputes the test sequences and writes ``OUT/metrics.json``: MSE and Bernoulli NLL
over the missing test pixels, the downstream AUROC, fit seconds per epoch and peak memory; with few enough test
sequences also ``OUT/imputed_test.npy`` (float16 probabilities, observed pixels kept). PyPOTS is an optional
dependency (pip install pypots).

PyPOTS's GP-VAE decodes with a unit-variance Gaussian (the authors' HMNIST model is Bernoulli); its decoded means
clipped to [0, 1] are used as the pixel probabilities p (``mse_unclipped`` is the MSE before the clipping).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/common.py
import common  # examples/ on the import path, machine()
import numpy as np
import torch
from experiments.resources import peak_rss_mb, reset_peak_rss

from gpytorch_vae.data import DATA_ENV, HealingMNIST
from gpytorch_vae.data.healing_mnist import MECHANISMS, NUM_FRAMES, NUM_PIXELS, SIZES
from gpytorch_vae.io import RunFolder, atomic_write, write_json
from gpytorch_vae.metrics import downstream_auroc, masked_bernoulli_nll, masked_mse

# the GP-VAE authors' HMNIST configuration (kernel, M and K: their defaults)
CONFIG = {
    "latent_size": 256,
    "encoder_sizes": (256, 256),
    "decoder_sizes": (256, 256, 256),
    "window_size": 3,
    "kernel": "cauchy",
    "sigma": 1.0,
    "length_scale": 2.0,
    "kernel_scales": 1,
    "beta": 0.8,
    "M": 1,
    "K": 1,
    "batch_size": 64,
}
LEARNING_RATE = 1e-3
EPOCHS = 20
SAVE_IMPUTED_LIMIT = 2000  # test sequences; above it the imputed probabilities are not written (16 MB per 1000)
CHUNK = 1000


def pypots_inputs(data: HealingMNIST, rows: torch.Tensor) -> np.ndarray:
    """``(len(rows), 10, 784)`` float32, the observed pixels and NaN where missing (PyPOTS's input), in chunks."""
    out = np.empty((len(rows), NUM_FRAMES, NUM_PIXELS), dtype=np.float32)
    for start in range(0, len(rows), CHUNK):
        _, y, mask = data[rows[start : start + CHUNK]]
        out[start : start + len(y)] = np.where(mask.numpy(), y.numpy(), np.nan)
    return out


def auroc(probs: np.ndarray, labels: np.ndarray) -> dict:
    """``{"auroc": ...}``, or ``None`` and the reason where too few sequences hold every class (``--limit``)."""
    try:
        return {"auroc": downstream_auroc(probs, labels)}
    except ValueError as error:
        return {"auroc": None, "auroc_error": str(error)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mechanism", choices=MECHANISMS, default="mnar")
    parser.add_argument("--size", choices=tuple(SIZES), default="quick")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and batch order (0-4)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda where available)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N training and test sequences "
                        "(smoke tests; not the protocol)")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help=f"the MNIST IDX files (default ${DATA_ENV})")
    parser.add_argument("--cache-dir", default=None, help="the Healing MNIST cache folder")
    parser.add_argument("--out", required=True, help="run folder for metrics.json")
    parser.add_argument("--resume", action="store_true", help="accepted for benchmarks/studies/study.py: PyPOTS keeps "
                        "no checkpoint here, so an unfinished run starts again")  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="accepted for benchmarks/studies/study.py (no figures)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        import pypots
        from pypots.imputation import GPVAE
        from pypots.optim import Adam
        from pypots.utils.random import set_random_seed
    except ImportError:
        sys.exit("this benchmark runs PyPOTS's GP-VAE, which is not installed: pip install pypots")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with RunFolder(args.out):
        train, test = (HealingMNIST(split, args.size, args.mechanism, args.data_dir, args.cache_dir)
                       for split in ("train", "test"))  # fmt: skip
        n_train, n_test = (len(d) if args.limit is None else min(args.limit, len(d)) for d in (train, test))
        train_rows, test_rows = torch.arange(n_train), torch.arange(n_test)
        x_train, x_test = pypots_inputs(train, train_rows), pypots_inputs(test, test_rows)

        set_random_seed(args.seed)
        model = GPVAE(
            n_steps=NUM_FRAMES,
            n_features=NUM_PIXELS,
            **CONFIG,
            epochs=args.epochs,
            optimizer=Adam(lr=LEARNING_RATE),
            device=device,
            saving_path=None,
            model_saving_strategy=None,
        )
        reset_peak_rss()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        model.fit({"X": x_train})
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        imputed = np.asarray(model.predict({"X": x_test})["imputation"])
        predict_seconds = time.perf_counter() - start
        imputed = imputed.reshape(n_test, NUM_FRAMES, NUM_PIXELS)  # (n, 1 sampling, T, F) -> (n, T, F)

        full, missing = test.full_frames(test_rows), test.missing_mask(test_rows)
        probs = np.clip(imputed, 0.0, 1.0)
        metrics = {
            "model": "GP-VAE (PyPOTS)",
            "pypots": pypots.__version__,
            "mechanism": args.mechanism,
            "size": args.size,
            "limit": args.limit,
            "n_train": n_train,
            "n_test": n_test,
            "seed": args.seed,
            "epochs": args.epochs,
            "config": {**CONFIG, "learning_rate": LEARNING_RATE, "optimizer": "Adam"},
            "mse": masked_mse(probs, full, missing),
            "nll": masked_bernoulli_nll(probs, full, missing),
            **auroc(probs, test.labels[:n_test]),
            "mse_unclipped": masked_mse(imputed, full, missing),
            "missing_fraction": missing.float().mean().item(),
            "fit_seconds": fit_seconds,
            "seconds_per_epoch": fit_seconds / max(args.epochs, 1),
            "predict_seconds": predict_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda") else None,
            "machine": common.machine(device),
            "note": "PyPOTS decodes with a unit-variance Gaussian; p = its decoded mean clipped to [0, 1]. "
            "seconds_per_epoch = fit wall time / epochs.",
        }
        if n_test <= SAVE_IMPUTED_LIMIT:
            imputed16 = probs.astype(np.float16)
            atomic_write(os.path.join(args.out, "imputed_test.npy"), lambda f: np.save(f, imputed16))
            metrics["imputed_file"] = "imputed_test.npy"
        write_json(os.path.join(args.out, "metrics.json"), metrics)
        shown = ", ".join(f"{key} {metrics[key]:.4g}" if metrics[key] is not None else f"{key} -"
                          for key in ("mse", "nll", "auroc", "seconds_per_epoch"))  # fmt: skip
        print(f"{args.mechanism} {args.size} seed {args.seed}: {shown}")


if __name__ == "__main__":
    main()
