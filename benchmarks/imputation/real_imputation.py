"""Imputation of real series with holes (issue 32, item 4): every data set x pattern x seed, the peers on the same
masks, their error on the held-out values beside their time.

Data (:mod:`gpytorch_vae.data.real_series`, read offline from the ``imputegap==1.1.2`` and ``vega_datasets``
wheels): PhysioNet 2012 (163 stays x 48 h x 37 variables; pattern ``holdout10``: 10 % of the observed values held
out, the SAITS protocol), and the first 4,000 steps of electricity (20 clients, 15 min), traffic (20 sensors, hourly)
and ETTh1 (7 variables, hourly), and Seattle's 1,461 days x 4 variables, each with two patterns drawn by
``pygrinder``: ``mcar20`` (20 % of the entries at random) and ``blocks`` (runs of 24-48 steps of every variable,
20 % of the steps). Seeds 0, 1, 2 draw the mask and seed the model alike.

Protocol: each feature is standardised with the mean and standard deviation of the values left observed after
masking (a feature with zero spread, PhysioNet's ``MechVent``, keeps scale 1); every method sees only those values
(NaN elsewhere); MAE and RMSE are over the held-out values, in standardised units. Probabilistic methods (a
predictive standard deviation or samples) also get the coverage of their central 90 % interval and the CRPS. The
time is the wall time of fit + impute in one process, at the thread count recorded in each cell.

Methods (peers):

- ``mean``: each feature's observed mean (over all stays for PhysioNet).
- ``linear``: linear interpolation in time between the nearest observed values of the feature (within each stay for
  PhysioNet), the edge values carried outwards; a feature never observed in a stay gets its overall mean.
- ``saits``, ``brits``, ``gpvae``: PyPOTS 1.5's models (sizes in :data:`PYPOTS_SIZES`). They work on fixed-length
  windows: PhysioNet's stays (48 steps); the long series are cut into windows of 96 steps, every 48 steps (the last
  ending at the series' end), and each step's imputation comes from the window in which it is most central. Early
  stopping (patience 10, at most 100 epochs for SAITS and 50 for BRITS and GPVAE: :data:`PYPOTS_EPOCHS`; batch 32,
  Adam lr 1e-3) on a validation split made from observed values only: 20 % of PhysioNet's stays, or the windows of
  a contiguous 20 % stretch of a long series (its place drawn from the seed; the training windows are those that do
  not overlap it), each with 10 % of its observed values hidden again (``pygrinder.mcar``). The held-out values are
  never seen.

Ours: ``gpvae-imputer``, :class:`gpytorch_vae.GPVAEImputer` with its defaults (:func:`library_imputer`), and its
ablation arms (:data:`ABLATIONS`: the defaults with one setting changed).

Other methods plug in through :func:`register_method`: a function ``(x, times, eval_mask, seed) ->``
:class:`Imputation` (see :data:`Method`), e.g. in a script beside this one::

    import real_imputation as bench

    def my_imputer(x, times, eval_mask, seed):
        mean, std = ...  # fit on the non-NaN entries of x, predict every entry
        return bench.Imputation(mean, std=std, info={"epochs": 100})

    bench.register_method("mine", my_imputer)
    bench.main()  # then: python that_script.py run --methods mine; its cells join the same table

Run every cell not done yet, one process, one thread, cheap peers first (each cell writes its own JSON into
``--cells``; a cell whose JSON exists is skipped), then the table::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/imputation/real_imputation.py run --threads 1 \\
        --methods mean linear saits brits gpvae --cells runs/real_imputation
    python benchmarks/imputation/real_imputation.py report --cells runs/real_imputation \\
        --out benchmarks/results/real_imputation.json

Needs ``pip install pygrinder vega_datasets pypots==1.5`` and ``pip install --no-deps imputegap==1.1.2``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/common.py

import common  # noqa: E402

from gpytorch_vae.data.real_series import load_real_series, make_mask, mcar_mask  # noqa: E402
from gpytorch_vae.imputer import Windows  # noqa: E402
from gpytorch_vae.io import write_json  # noqa: E402

#: The patterns run on each data set.
GRID = {
    "physionet2012": ("holdout10",),
    "electricity": ("mcar20", "blocks"),
    "traffic": ("mcar20", "blocks"),
    "etth1": ("mcar20", "blocks"),
    "seattle": ("mcar20", "blocks"),
}
SEEDS = (0, 1, 2)
WINDOW, STRIDE = 96, 48  # PyPOTS's windows over a long series
VALIDATION_SHARE, VALIDATION_HIDDEN = 0.2, 0.1
Z90 = 1.6448536269514722  # the 95 % quantile of N(0, 1)

#: PyPOTS's models, as run here. SAITS: the configuration of PyPOTS's README example for PhysioNet; BRITS: the
#: hidden size of the SAITS paper's PhysioNet BRITS; GPVAE: the GP-VAE paper's PhysioNet configuration.
PYPOTS_SIZES = {
    "saits": dict(n_layers=2, d_model=256, n_heads=4, d_k=64, d_v=64, d_ffn=128, dropout=0.1),
    "brits": dict(rnn_hidden_size=108),
    "gpvae": dict(latent_size=35, encoder_sizes=(128, 128), decoder_sizes=(256, 256), kernel="cauchy", beta=0.2,
                  sigma=1.005, length_scale=7.0, window_size=24),  # fmt: skip
}
PYPOTS_TRAINING = dict(patience=10, batch_size=32, lr=1e-3)
#: The most epochs per model. SAITS, the strongest peer, keeps PyPOTS's default 100: its best epoch was 48-66 in
#: trial runs, and at seed 0 a cap of 50 gave it MAE 0.398 on PhysioNet against 0.374 with 100. BRITS and GPVAE
#: stop at 50 to bound the grid's time: its 81 PyPOTS cells took about 2 hours of one core even so (SAITS 30 min,
#: BRITS 22, GPVAE about 65: up to 200 s a cell on the long series). PyPOTS's GPVAE decodes the posterior mean of
#: the codes, so it gives no samples or intervals: all three are scored as point imputers.
PYPOTS_EPOCHS = {"saits": 100, "brits": 50, "gpvae": 50}


@dataclass
class Imputation:
    """What a method returns, in the shape of its input ``x``.

    :ivar mean: the point imputation (at the observed entries anything: only the held-out ones are scored).
    :ivar std: optional, each entry's predictive standard deviation (Gaussian intervals and CRPS).
    :ivar samples: optional, ``(K, *x.shape)`` draws from the predictive distribution (multiple imputations; the
        interval is then the 5-95 % sample quantiles and the CRPS the samples' energy form).
    :ivar info: anything to record with the cell (sizes, epochs run, ...).
    """

    mean: np.ndarray
    std: np.ndarray | None = None
    samples: np.ndarray | None = None
    info: dict = field(default_factory=dict)


#: A method: ``fn(x, times, eval_mask, seed) -> Imputation``. ``x`` is float64 ``(n_sequences, n_steps,
#: n_features)`` or ``(n_steps, n_features)``, standardised, NaN where missing (the held-out entries included);
#: ``times`` ``(n_steps,)`` the time of each step; ``eval_mask`` (bool, shape of ``x``) marks the held-out entries,
#: given only so that a method may limit its samples to them: its values are NaN in ``x``; ``seed`` seeds the model.
Method = Callable[[np.ndarray, np.ndarray, np.ndarray, int], Imputation]
METHODS: dict[str, Method] = {}


def register_method(name: str, fn: Method) -> None:
    """Add a method to the benchmark (e.g. the library's own imputer): ``run --methods NAME`` then runs it.

    :param name: the method's name in the cell files and the table.
    :param fn: see :data:`Method`.
    """
    METHODS[name] = fn


# ---------------------------------------------------------------------------------------------------- the peers
def _feature_means(x: np.ndarray) -> np.ndarray:
    """Each feature's mean over its observed entries (0, the standardised mean, for a feature never observed)."""
    flat = x.reshape(-1, x.shape[-1])
    seen = ~np.isnan(flat)
    return np.where(seen, flat, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)


def mean_method(x: np.ndarray, times: np.ndarray, eval_mask: np.ndarray, seed: int) -> Imputation:
    """Each feature's observed mean (over every sequence)."""
    return Imputation(np.where(np.isnan(x), _feature_means(x), x))


def linear_method(x: np.ndarray, times: np.ndarray, eval_mask: np.ndarray, seed: int) -> Imputation:
    """Linear interpolation in ``times`` within each sequence, edge values carried; the feature's overall mean where
    a sequence never observes it."""
    sequences = x[None] if x.ndim == 2 else x
    means = _feature_means(x)
    out = sequences.copy()
    never = 0
    for s in range(sequences.shape[0]):
        for j in range(sequences.shape[2]):
            column = sequences[s, :, j]
            seen = ~np.isnan(column)
            if seen.all():
                continue
            if not seen.any():
                out[s, :, j] = means[j]
                never += 1
                continue
            out[s, ~seen, j] = np.interp(times[~seen], times[seen], column[seen])
    return Imputation(out.reshape(x.shape), info={"sequence_features_never_observed": never})


def _validation_split(n_windows: int, starts: np.ndarray | None, n_steps: int, seed: int):
    """Indices of the training and validation windows (see the module's docstring)."""
    rng = np.random.default_rng(10_000 + seed)
    if starts is None:  # independent sequences: a random 20 %
        order = rng.permutation(n_windows)
        n_val = max(1, round(VALIDATION_SHARE * n_windows))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    span = round(VALIDATION_SHARE * n_steps)
    begin = int(rng.integers(0, n_steps - span + 1))
    ends = starts + WINDOW
    val = np.flatnonzero((starts >= begin) & (ends <= begin + span))
    train = np.flatnonzero((ends <= begin) | (starts >= begin + span))
    if not len(val) or not len(train):
        raise ValueError(f"a series of {n_steps} steps is too short for windows of {WINDOW} and a validation split")
    return train, val


def pypots_method(model: str) -> Method:
    """One of PyPOTS's models (:data:`PYPOTS_SIZES`, :data:`PYPOTS_TRAINING`) as a :data:`Method`."""

    def impute(x: np.ndarray, times: np.ndarray, eval_mask: np.ndarray, seed: int) -> Imputation:
        from pypots.imputation import BRITS, GPVAE, SAITS
        from pypots.optim import Adam
        from pypots.utils.random import set_random_seed

        long = x.ndim == 2
        if long:
            cover = Windows.cover(len(x), WINDOW, 1 - STRIDE / WINDOW)  # the imputer's windows and stitching
            starts, windows = cover.starts, cover.cut(x[None])
        else:
            starts, windows = None, x
        train, val = _validation_split(len(windows), starts, x.shape[-2], seed)
        val_hidden = mcar_mask(windows[val], VALIDATION_HIDDEN, seed=20_000 + seed)
        val_input = np.where(val_hidden, np.nan, windows[val])
        set_random_seed(seed)
        sizes = PYPOTS_SIZES[model]
        cls = {"saits": SAITS, "brits": BRITS, "gpvae": GPVAE}[model]
        net = cls(n_steps=windows.shape[1], n_features=windows.shape[2], epochs=PYPOTS_EPOCHS[model],
                  patience=PYPOTS_TRAINING["patience"], batch_size=PYPOTS_TRAINING["batch_size"],
                  optimizer=Adam(lr=PYPOTS_TRAINING["lr"]), device="cpu", saving_path=None,
                  model_saving_strategy=None, verbose=False, **sizes)  # fmt: skip
        net.fit({"X": windows[train]}, {"X": val_input, "X_ori": windows[val]})
        imputed = np.asarray(net.predict({"X": windows})["imputation"], dtype=np.float64)
        if imputed.ndim == 4:  # GPVAE: (n, n_sampling_times, T, F); its imputation is the posterior mean's decoding
            imputed = imputed.mean(axis=1)
        mean = cover.join(imputed, 1, len(x))[0] if long else imputed
        info = {"sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
                "training": {**PYPOTS_TRAINING, "epochs": PYPOTS_EPOCHS[model]},
                "window": WINDOW if long else x.shape[1], "stride": STRIDE if long else None,
                "windows_train": len(train), "windows_validation": len(val),
                "best_epoch": int(getattr(net, "best_epoch", -1)),
                "parameters": int(sum(p.numel() for p in net.model.parameters()))}  # fmt: skip
        return Imputation(mean, info=info)

    return impute


def library_imputer(**options) -> Method:
    """This library's :class:`~gpytorch_vae.GPVAEImputer` with its defaults changed by ``options`` (its own windows,
    validation split and early stopping, seeded by the cell's seed), scored with its multiple imputations. A feature
    with zero spread where observed (PhysioNet's ``MechVent``), which the imputer refuses, is imputed by its one
    observed value."""
    from gpytorch_vae import GPVAEImputer

    def impute(x: np.ndarray, times: np.ndarray, eval_mask: np.ndarray, seed: int) -> Imputation:
        flat = x.reshape(-1, x.shape[-1])
        constant = np.nanstd(flat, axis=0) == 0
        imputer = GPVAEImputer(**{"seed": seed, "progress": False, **options}).fit(x[..., ~constant], times=times)
        prediction = imputer.predict(x[..., ~constant], times=times)
        mean = np.where(np.isnan(x), np.nanmean(flat, axis=0), x)
        mean[..., ~constant] = prediction.mean
        samples = np.repeat(mean[None], len(prediction.samples), axis=0)
        samples[..., ~constant] = prediction.samples
        info = {"best_epoch": imputer.history.get("best_epoch"), "epochs_run": len(imputer.history["loss"]),
                "period": imputer.period, "noise_scale": imputer.noise_scale.tolist(),
                "constant_features": int(constant.sum()), "config": dict(vars(imputer.config))}  # fmt: skip
        return Imputation(mean, samples=samples, info=info)

    return impute


#: The imputer's ablation arms (issue 32, item 3): its defaults with one setting changed. Run them by name
#: (``run --methods gpvae-imputer-no-context ...``); the report lists their missing cells only where they ran.
ABLATIONS = {
    "gpvae-imputer-no-context": {"context": False},  # the networks read the values alone
    "gpvae-imputer-no-period": {"period": None},  # no seasonal context
    "gpvae-imputer-rbf": {"kernel": "rbf"},
    "gpvae-imputer-latent-2": {"latent_dim": 2},
    "gpvae-imputer-no-validation": {"validation_fraction": 0.0},  # all epochs, the noise uncalibrated
}

register_method("gpvae-imputer", library_imputer())
for _name, _options in ABLATIONS.items():
    register_method(_name, library_imputer(**_options))
register_method("mean", mean_method)
register_method("linear", linear_method)
for _model in PYPOTS_SIZES:
    register_method(_model, pypots_method(_model))


# ------------------------------------------------------------------------------------------------------ metrics
def scores(result: Imputation, truth: np.ndarray, eval_mask: np.ndarray) -> dict:
    """MAE and RMSE over the held-out entries; the central 90 % interval's coverage and the CRPS where the method
    gives a standard deviation (Gaussian) or samples."""
    y = truth[eval_mask]
    error = result.mean[eval_mask] - y
    out = {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
           "coverage90": None, "crps": None}  # fmt: skip
    if not np.isfinite(result.mean[eval_mask]).all():
        out["nonfinite_imputations"] = int((~np.isfinite(result.mean[eval_mask])).sum())
    if result.samples is not None:
        draws = result.samples[:, eval_mask]  # (K, n)
        low, high = np.quantile(draws, [0.05, 0.95], axis=0)
        out["coverage90"] = float(np.mean((y >= low) & (y <= high)))
        k = len(draws)  # E|X - X'| from the sorted draws, without the (K, K, n) differences
        spread = 2 * np.sum((2 * np.arange(1, k + 1) - k - 1)[:, None] * np.sort(draws, axis=0), axis=0) / k**2
        out["crps"] = float(np.mean(np.mean(np.abs(draws - y), axis=0) - 0.5 * spread))
    elif result.std is not None:
        sd = np.maximum(result.std[eval_mask], 1e-12)
        z = (y - result.mean[eval_mask]) / sd
        out["coverage90"] = float(np.mean(np.abs(z) <= Z90))
        pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        out["crps"] = float(np.mean(sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))))
    return out


# --------------------------------------------------------------------------------------------------------- cells
def prepare(dataset: str, pattern: str, seed: int) -> dict:
    """The cell's data: the standardised truth, the input (NaN at the held-out and the missing entries), the
    evaluation mask and the times."""
    series = load_real_series(dataset)
    eval_mask = make_mask(pattern, series.values, seed)
    observed = np.where(eval_mask, np.nan, series.values)
    flat = observed.reshape(-1, observed.shape[-1])
    centre = np.nanmean(flat, axis=0)
    scale = np.nanstd(flat, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return {"series": series, "truth": (series.values - centre) / scale, "x": (observed - centre) / scale,
            "eval_mask": eval_mask, "scale": scale}  # fmt: skip


def cell_path(cells: str, dataset: str, pattern: str, seed: int, method: str) -> str:
    return os.path.join(cells, f"{dataset}__{pattern}__s{seed}__{method}.json")


def run_cell(dataset: str, pattern: str, seed: int, method: str) -> dict:
    """One method on one data set, pattern and seed: its scores, time and settings."""
    data = prepare(dataset, pattern, seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    start = time.perf_counter()
    result = METHODS[method](data["x"], data["series"].times, data["eval_mask"], seed)
    seconds = time.perf_counter() - start
    observed = ~np.isnan(data["series"].values)
    return {
        "dataset": dataset, "pattern": pattern, "seed": seed, "method": method,
        **scores(result, data["truth"], data["eval_mask"]),
        "seconds": seconds, "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "shape": list(data["x"].shape), "source": data["series"].source,
        "held_out": int(data["eval_mask"].sum()),
        "held_out_share_of_observed": float(data["eval_mask"].sum() / observed.sum()),
        "info": result.info, "machine": common.machine(), "versions": _versions(),
    }  # fmt: skip


def _versions() -> dict:
    import importlib.metadata

    found = {}
    for package in ("pypots", "pygrinder", "imputegap", "torch", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs is not None:
        PYPOTS_EPOCHS.update(dict.fromkeys(PYPOTS_EPOCHS, args.epochs))
    if args.patience is not None:
        PYPOTS_TRAINING["patience"] = args.patience
    os.makedirs(args.cells, exist_ok=True)
    for method in args.methods:
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        for dataset in args.datasets:
            for pattern in GRID[dataset]:
                for seed in args.seeds:
                    path = cell_path(args.cells, dataset, pattern, seed, method)
                    if os.path.exists(path):
                        continue
                    print(f"{time.strftime('%H:%M:%S')} {dataset} {pattern} seed {seed} {method} ...", flush=True)
                    try:
                        record = run_cell(dataset, pattern, seed, method)
                    except Exception as error:  # noqa: BLE001 - log it, leave the cell to a later run
                        print(f"  failed: {type(error).__name__}: {error}", flush=True)
                        continue
                    write_json(path, record)
                    print(f"  MAE {record['mae']:.4f} RMSE {record['rmse']:.4f} {record['seconds']:.1f} s", flush=True)


# -------------------------------------------------------------------------------------------------------- report
def _summary(values: list[float], digits: int = 3) -> str:
    """``median (min-max)`` of the values that are not ``None``; ``-`` if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = float(np.median(values))
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(args) -> None:
    records = []
    for path in sorted(glob.glob(os.path.join(args.cells, "*.json"))):
        with open(path) as f:
            records.append(json.load(f))
    if args.methods:
        records = [r for r in records if r["method"] in args.methods]
    methods = args.methods or list(dict.fromkeys(list(METHODS) + [r["method"] for r in records]))
    rows, missing = [], []
    for dataset, patterns in GRID.items():
        for pattern in patterns:
            for method in methods:
                found = [r for r in records if (r["dataset"], r["pattern"], r["method"]) == (dataset, pattern, method)]
                if method in ABLATIONS and not found:
                    continue
                seeds = sorted(r["seed"] for r in found)
                missing += [f"{dataset}/{pattern}/s{s}/{method}" for s in SEEDS if s not in seeds]
                if not found:
                    continue
                rows.append({
                    "data set": dataset, "pattern": pattern, "method": method, "seeds": len(found),
                    "MAE": _summary([r["mae"] for r in found]), "RMSE": _summary([r["rmse"] for r in found]),
                    "90 % coverage": _summary([r["coverage90"] for r in found]),
                    "CRPS": _summary([r["crps"] for r in found]),
                    "s (fit+impute)": _summary([r["seconds"] for r in found], 1),
                    "threads": ",".join(sorted({str(r["threads"]) for r in found})),
                })  # fmt: skip
    columns = ["data set", "pattern", "method", "seeds", "MAE", "RMSE", "90 % coverage", "CRPS", "s (fit+impute)",
               "threads"]  # fmt: skip
    print(common.markdown_table(rows, columns))
    print("\nmedian over the seeds (min-max); MAE, RMSE, CRPS in standardised units over the held-out values")
    if missing:
        print(f"missing cells ({len(missing)}): {' '.join(missing)}")
    if args.out:
        write_json(args.out, {"grid": {k: list(v) for k, v in GRID.items()}, "seeds": list(SEEDS),
                              "pypots_sizes": {k: {a: list(b) if isinstance(b, tuple) else b for a, b in v.items()}
                                               for k, v in PYPOTS_SIZES.items()},
                              "pypots_training": PYPOTS_TRAINING, "pypots_epochs": PYPOTS_EPOCHS,
                              "window": WINDOW, "stride": STRIDE,
                              "table": rows, "missing": missing, "cells": records})  # fmt: skip
        print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the cells not done yet")
    run_parser.add_argument("--methods", nargs="+", default=["mean", "linear", "saits", "brits", "gpvae"])
    run_parser.add_argument("--datasets", nargs="+", default=list(GRID), choices=list(GRID))
    run_parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    run_parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    run_parser.add_argument("--epochs", type=int, default=None, help="every PyPOTS model's most epochs")
    run_parser.add_argument("--patience", type=int, default=None, help="PyPOTS's early-stopping patience (10)")
    run_parser.add_argument("--cells", default="runs/real_imputation", help="one JSON per cell")
    report_parser = sub.add_parser("report", help="the table of the cells done so far")
    report_parser.add_argument("--cells", default="runs/real_imputation")
    report_parser.add_argument("--out", default="benchmarks/results/real_imputation.json")
    report_parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all found)")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
