"""The rotated-MNIST benchmark (SVGP-VAE paper Table 1): training, conditional generation at 157.5 degrees, MSE."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyro
import torch
from torch import Tensor

from ..data.rotated_mnist import ANGLES_DEG, ImageSplit, RotatedMNIST, factorized_splits, load_rotated_mnist
from ..models import GECO, GPVAE
from ..models.deep_svigp import DeepSVIGP
from ..models.factorized_latent_prior import FactorizedLatentPrior
from ..models.gppvae import GPPVAE, fit_gppvae
from ..plotting import plot_image_rows
from ..training import fit_geco, fit_svi
from .rotated_mnist_models import DEFAULT_EPOCHS, KAPPA2, MODELS, build_model

BATCH_SIZE = 256
FGP_BATCH_SIZE = 220  # 20 whole digits x 11 angles


def split_tensors(split: ImageSplit, device=None) -> tuple[Tensor, Tensor]:
    """Auxiliary rows (float64, for the GP) and images (float32, for the networks) of a split."""
    return torch.tensor(split.aux, device=device), torch.tensor(split.images, dtype=torch.float32, device=device)


def batches_in_order(x: Tensor, y: Tensor, batch_size: int = BATCH_SIZE):
    """A callable giving the minibatches in the fixed order of the protocol (16 batches of 4050 rows)."""
    return lambda: zip(x.split(batch_size), y.split(batch_size))


def _gaussian_sample(mean: Tensor, variance: Tensor) -> Tensor:
    return mean + variance.sqrt() * torch.randn_like(mean)


@torch.no_grad()
def _cvae_generate(vae: GPVAE, x_train: Tensor, y_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """The CVAE protocol: average the latent codes of all training images of each test digit, decode at the test
    angle (means and one sample per training image)."""
    mean, var = vae.encode_all(y_train, x_train, BATCH_SIZE)
    ids = x_train[:, 0].long()
    num_ids = int(ids.max()) + 1

    def per_id_average(z: Tensor) -> Tensor:  # (L, N) -> (num_ids, L)
        sums = z.new_zeros(num_ids, z.size(0) + 1).index_add_(0, ids, torch.cat([z.mT, torch.ones_like(z[:1].mT)], 1))
        return sums[:, :-1] / sums[:, -1:].clamp_min(1.0)

    test_ids = x_test[:, 0].long()
    decode = lambda z: vae.decode(per_id_average(z)[test_ids].mT, x=x_test)  # noqa: E731
    return decode(mean), decode(_gaussian_sample(mean, var))


@torch.no_grad()
def generate(
    model, name: str, train: ImageSplit, test: ImageSplit, device=None, batch_size: int = BATCH_SIZE
) -> tuple[Tensor, Tensor]:
    """Conditional generation at the test inputs from all training data: decoded posterior mean and one decoded
    posterior sample, each ``(n_test, 28, 28)``.

    SVGP-VAE: streaming conditioning on every training batch (:math:`b = N`), then :math:`q_S(\\mathbf z)` at
    (test id, 157.5 deg). Deep SVIGP: :math:`q(\\mathbf f)` there. GPPVAE: the exact low-rank GP posterior given the
    encoder means. FGP-VAE: each test digit's GP (local) and shared Gaussian (global) given its training images (an
    unseen digit, given its context images, works the same way). CVAE: see :func:`_cvae_generate`."""
    x_train, y_train = split_tensors(train, device)
    x_test, _ = split_tensors(test, device)
    if name == "cvae":
        return _cvae_generate(model, x_train, y_train, x_test)
    if isinstance(model, DeepSVIGP):
        mean, var = model.predict(x_test)
        return model.decoder(mean.mT), model.decoder(_gaussian_sample(mean, var).mT)
    if isinstance(getattr(model, "latent_prior", None), FactorizedLatentPrior):
        mean, var = model.latent_prior.predict(x_test, x_train, *model.encode_all(y_train, x_train, BATCH_SIZE))
        return model.decode(mean, torch.float32), model.decode(_gaussian_sample(mean, var), torch.float32)
    if isinstance(model, GPPVAE):
        mean, var = model.predict(x_train, y_train, x_test)
        return model.vae.decode(mean, torch.float32), model.vae.decode(_gaussian_sample(mean, var), torch.float32)
    model.condition_on_data(batches_in_order(x_train, y_train, batch_size)())
    mean, var = model.latent_prior.predict(x_test)
    return model.decode(mean, torch.float32), model.decode(_gaussian_sample(mean, var), torch.float32)


def evaluate(model, name: str, train: ImageSplit, test: ImageSplit, device=None, batch_size: int = BATCH_SIZE) -> dict:
    """Per-pixel MSE over the test images of the decoded posterior mean (``mse``) and of one decoded posterior
    sample (``mse_sample``); also returns the generations."""
    truth = torch.tensor(test.images, dtype=torch.float32, device=device)
    from_mean, from_sample = generate(model, name, train, test, device, batch_size)
    return {
        "mse": (from_mean - truth).square().mean().item(),
        "mse_sample": (from_sample - truth).square().mean().item(),
        "generated": from_mean,
        "generated_sample": from_sample,
    }


def train_model(model, name: str, x: Tensor, y: Tensor, epochs: int, lr: float, checkpoint: str | None,
                resume: bool, progress: bool, device, return_history: bool = False, joint_epochs: int = 0):  # fmt: skip
    """Trains with the protocol's objective (GECO for SVGP-VAE, SVI otherwise) in the fixed batch order; returns the
    number of epochs run by this call (or their mean losses with ``return_history``). GPPVAE runs ``epochs / 2``
    VAE epochs, ``epochs / 2`` GP epochs and then ``joint_epochs`` with the Taylor trick."""
    batches, num_data = batches_in_order(x, y, FGP_BATCH_SIZE if name == "fgpvae" else BATCH_SIZE), len(x)
    common = dict(checkpoint=checkpoint, resume=resume, progress=progress, device=device)
    if name in ("svgpvae", "fgpvae"):
        geco = GECO(kappa2=KAPPA2).to(device)
        history = fit_geco(model, geco, batches, num_data, epochs, lr=lr, **common)
    elif name == "gppvae":  # whole digits per batch: sort by (id, angle); epochs split as the protocol's 100 + 100
        order = torch.from_numpy(np.lexsort((x[:, 1].cpu().numpy(), x[:, 0].cpu().numpy())))
        x, y = x[order].to(device), y[order].to(device)
        phases = dict(vae_epochs=epochs // 2, gp_epochs=epochs - epochs // 2, joint_epochs=joint_epochs)
        history = fit_gppvae(model, x, y, **phases, lr=lr, checkpoint=checkpoint, resume=resume, progress=progress)
    else:
        history = fit_svi(model, batches, num_data, epochs, lr=lr, **common)
    return history if return_history else len(history)


def _splits(model: str, data: RotatedMNIST):
    if model == "fgpvae":
        splits = factorized_splits(data)
        return splits.train, splits.test, splits
    return data.train(), data.test(), None


def _unseen_rotations(net, model: str, data: RotatedMNIST, splits, path: str, num_digits: int = 4) -> None:
    """Fig. D.1: all 16 rotations of unseen digits generated from their context images, under the truth."""
    ids = splits.unseen_target.aux[:num_digits, 0].astype(int)
    targets = data.select(np.repeat(ids, len(ANGLES_DEG)), np.tile(np.arange(len(ANGLES_DEG)), len(ids)))
    generated = generate(net, model, splits.unseen_context, targets)[0].reshape(len(ids), len(ANGLES_DEG), 28, 28)
    truth = torch.tensor(targets.images).reshape(len(ids), len(ANGLES_DEG), 28, 28)
    rows = [row for pair in zip(truth, generated) for row in pair]
    labels = [label for i in ids for label in (f"{i} truth", f"{i} generated")]
    plot_image_rows(rows, labels, path, num=len(ANGLES_DEG), title=f"{model}: unseen digits, all angles")


def run(
    model: str = "svgpvae",
    epochs: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    device: str = "cpu",
    out: str = "runs/rotated_mnist",
    resume: bool = False,
    lr: float = 1e-3,
    progress: bool = True,
    joint_epochs: int = 0,
    extrapolate: bool = False,
) -> dict:
    """Train one model and evaluate conditional generation at 157.5 degrees on the test images; writes
    ``out/metrics.json`` (``mse``, ``mse_sample``, ``seconds_per_epoch``, ``epochs``, ``model``, ...),
    ``out/generations.png`` and a checkpoint per epoch (``out/checkpoint.pt``, continued with ``resume``).
    ``epochs`` defaults to the protocol's (1000; 2000 for Deep SVIGP; 100 + 100 for GPPVAE). FGP-VAE uses its own
    splits (``factorized_splits``); with ``extrapolate`` it also reports ``mse_extrapolation`` on the 40 unseen digits
    and draws ``out/unseen_digits.png``."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if extrapolate and model != "fgpvae":
        raise ValueError("extrapolation to unseen digits needs --model fgpvae")
    epochs = DEFAULT_EPOCHS[model] if epochs is None else int(epochs)
    os.makedirs(out, exist_ok=True)
    data = load_rotated_mnist(data_dir)
    train, test, splits = _splits(model, data)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    net = build_model(model, data, train, seed=seed).to(device)
    x, y = split_tensors(train)
    start = time.perf_counter()
    ran = train_model(net, model, x, y, epochs, lr, os.path.join(out, "checkpoint.pt"), resume, progress, device,
                      joint_epochs=joint_epochs)  # fmt: skip
    seconds_per_epoch = (time.perf_counter() - start) / max(ran, 1)
    results = evaluate(net, model, train, test, device)
    metrics = {
        "model": model,
        "seed": seed,
        "epochs": epochs + (joint_epochs if model == "gppvae" else 0),
        "mse": results["mse"],
        "mse_sample": results["mse_sample"],
        "seconds_per_epoch": seconds_per_epoch if ran else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if extrapolate:
        unseen = evaluate(net, model, splits.unseen_context, splits.unseen_target, device)
        metrics.update(mse_extrapolation=unseen["mse"], mse_extrapolation_sample=unseen["mse_sample"])
        _unseen_rotations(net, model, data, splits, os.path.join(out, "unseen_digits.png"))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    truth = torch.tensor(test.images)
    plot_image_rows([truth, results["generated"], results["generated_sample"]], ["truth", "mean", "sample"],
                    os.path.join(out, "generations.png"), title=f"{model}: test MSE {results['mse']:.4f}")  # fmt: skip
    return metrics
