"""Missing views on rotated MNIST: a trained model conditions on the test digits seen at only some of their training
angles, with some pixels of those views missing, and generates the digits at 157.5 degrees (the Table-1 task) and at
every angle it did not see. The masks go through the model's ``condition`` (views without an observed pixel carry no
data; missing pixels are left out of the latent dataset's encoder input as zeros)."""

from __future__ import annotations

import numpy as np
import torch

from gpytorch_vae.data import RowBatches
from gpytorch_vae.data.rotated_mnist import ANGLES_DEG
from gpytorch_vae.training.checkpoint import load_checkpoint

from .evaluation import evaluating
from .rotated_mnist import BATCH_SIZE, Capacity, RunConfig, build_model, load_data, model_splits

SETTINGS = ((None, 0.0), (4, 0.0), (2, 0.0), (1, 0.0), (None, 0.5), (4, 0.5), (2, 0.5))  # (views kept, pixels missing)


def load_trained(run_dir: str, data_dir: str | None = None):
    """The model of a finished ``examples/rotated_mnist.py`` run (its checkpoint's settings and weights), the data,
    and the model's training and test splits."""
    checkpoint = load_checkpoint(f"{run_dir}/checkpoint.pt")
    settings = dict(checkpoint["run_config"])
    settings["capacity"] = Capacity(**settings["capacity"])
    config = RunConfig(**settings).resolved()
    data = load_data(config, data_dir)
    train, test, _ = model_splits(config.model, data)
    net = build_model(config.model, data, train, seed=config.seed, init=config.init, capacity=config.capacity)
    weights = {k[len("model.") :]: v for k, v in checkpoint["objective"].items() if k.startswith("model.")}
    net.load_state_dict(weights)
    return config, data, net, train, test


def view_mask(train, digits: np.ndarray, views: int | None, pixels_missing: float, seed: int = 0) -> torch.Tensor:
    """``(n, 28, 28)`` bool, True where observed: each of ``digits`` keeps ``views`` of its training views (``None``:
    all), drawn with ``numpy.random.default_rng(seed)``, and within them each pixel is missing with probability
    ``pixels_missing``; the other digits are fully observed."""
    rng = np.random.default_rng(seed)
    ids = train.aux[:, 0].astype(int)
    keep = np.ones(len(ids), dtype=bool)
    if views is not None:
        for digit in digits:
            rows = np.flatnonzero(ids == digit)
            keep[rows] = False
            keep[rng.choice(rows, min(views, len(rows)), replace=False)] = True
    pixels = rng.random(train.images.shape) >= pixels_missing
    mask = keep[:, None, None] & (pixels | ~np.isin(ids, digits)[:, None, None])
    return torch.from_numpy(mask)


@torch.no_grad()
def generate_with_mask(net, train, mask: torch.Tensor, targets_aux: np.ndarray) -> torch.Tensor:
    """Condition on the training split under ``mask`` and decode the posterior mean at ``targets_aux``."""
    x, y = train.tensors()
    posterior = net.condition_on_observations(RowBatches((x, y, mask), BATCH_SIZE))
    x_target = torch.tensor(targets_aux)
    q = posterior.predict(x_target)
    starts = range(0, len(x_target), BATCH_SIZE)
    return torch.cat([net.decode(q.mean[..., i : i + BATCH_SIZE], x=x_target[i : i + BATCH_SIZE]) for i in starts])


def study(net, data, train, test, seed: int = 0) -> list[dict]:
    """For every setting of :data:`SETTINGS`: the MSE at 157.5 degrees of the 270 test digits (Table 1's metric,
    decoded posterior mean) and the MSE at their training views that the mask hid."""
    digits = np.unique(test.aux[:, 0].astype(int))
    rows = []
    with evaluating(net):
        for views, pixels_missing in SETTINGS:
            mask = view_mask(train, digits, views, pixels_missing, seed)
            hidden = ~mask.flatten(1).any(-1) & torch.from_numpy(np.isin(train.aux[:, 0].astype(int), digits))
            targets = np.concatenate([test.aux, train.aux[hidden.numpy()]])
            generated = generate_with_mask(net, train, mask, targets)
            truth = torch.cat([torch.tensor(test.images), torch.tensor(train.images[hidden.numpy()])]).float()
            error = (generated - truth).square().flatten(1).mean(-1)
            rows.append({
                "views_kept": views, "pixels_missing": pixels_missing, "hidden_views": int(hidden.sum()),
                "mse_test_angle": error[: len(test)].mean().item(),
                "mse_hidden_views": error[len(test) :].mean().item() if hidden.any() else None,
            })  # fmt: skip
    return rows


@torch.no_grad()
def figure_rows(net, data, train, digits, views: int, pixels_missing: float, seed: int = 0):
    """Per digit: the truth at all 16 angles, what the model saw (hidden views and pixels grey) and the
    generations at all 16 angles, each ``(16, 28, 28)``."""
    angles = len(ANGLES_DEG)
    mask = view_mask(train, np.asarray(digits), views, pixels_missing, seed)
    targets = data.select(np.repeat(digits, angles), np.tile(np.arange(angles), len(digits)))
    with evaluating(net):
        generated = generate_with_mask(net, train, mask, targets.aux).reshape(len(digits), angles, 28, 28)
    truth = torch.tensor(targets.images).float().reshape(len(digits), angles, 28, 28)
    seen = torch.full_like(truth, 0.5)  # grey: not seen
    ids, angle_of = train.aux[:, 0].astype(int), np.rint(np.degrees(train.aux[:, 1]) / 22.5).astype(int) % angles
    for k, digit in enumerate(digits):
        for row in np.flatnonzero(ids == digit):
            image = torch.tensor(train.images[row]).float()
            seen[k, angle_of[row]] = torch.where(mask[row], image, torch.tensor(0.5))
    return truth, seen, generated
