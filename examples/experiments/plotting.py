"""Figures (matplotlib, imported lazily with the Agg backend so nothing needs a display)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, title: str = "", dpi: int = 120) -> None:
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    fig.clf()
    pyplot().close(fig)


def plot_paths(true: Tensor, predicted: Tensor, path: str, num: int = 6, title: str = "") -> None:
    """True (blue) vs predicted (orange) 2-D paths ``(B, T, 2)`` of the first ``num`` sequences (SVGP-VAE Fig. 2)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, num, figsize=(2.2 * num, 2.4), squeeze=False)
    for ax, t, p in zip(axes[0], true[:num], predicted[:num]):
        ax.plot(t[:, 0], t[:, 1], color="tab:blue", lw=1.5, label="true")
        ax.plot(p[:, 0], p[:, 1], color="tab:orange", lw=1.5, label="predicted")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    axes[0][0].legend(fontsize=7, loc="best")
    _save(fig, path, title)


def plot_trace(steps: Sequence[int], values, path: str, ylabel: str, reference: float | None = None) -> None:
    """A quantity over training: one line per column of ``values`` (e.g. the lengthscale, Fig. 3, or the
    inducing inputs, Fig. 4), with an optional horizontal reference line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(list(steps), values, lw=1)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    _save(fig, path)


def plot_image_rows(rows: Sequence[Tensor], labels: Sequence[str], path: str, num: int = 10, title: str = "") -> None:
    """A grid of images, one row per tensor ``(n, H, W)`` (e.g. ground truth vs generations, SVGP-VAE Fig. 5)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), num, figsize=(1.0 * num, 1.1 * len(rows)), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for c in range(num):
            ax = axes[r][c]
            ax.imshow(images[c].detach().cpu().float().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=8)
    _save(fig, path, title, dpi=100)


def plot_unseen_rotations(model, data, splits, path: str, generate, num_digits: int = 4) -> None:
    """FGP-VAE paper Fig. D.1: all 16 rotations of unseen digits generated from their context images, under the
    truth (``generate(model, context, targets)`` gives the decoded posterior means first)."""
    import numpy as np
    import torch

    from gpytorch_vae.data.rotated_mnist import ANGLES_DEG

    ids = splits.unseen_target.aux[:num_digits, 0].astype(int)
    angles = len(ANGLES_DEG)
    targets = data.select(np.repeat(ids, angles), np.tile(np.arange(angles), len(ids)))
    generated = generate(model, splits.unseen_context, targets)[0].reshape(len(ids), angles, 28, 28)
    truth = torch.tensor(targets.images).reshape(len(ids), angles, 28, 28)
    rows = [row for pair in zip(truth, generated) for row in pair]
    labels = [label for i in ids for label in (f"{i} truth", f"{i} generated")]
    plot_image_rows(rows, labels, path, num=angles, title="unseen digits, all angles")


def plot_sprites(context, target, generated, path: str, characters: int = 4, frames: int = 8, title: str = "") -> None:
    """SVGP-VAE paper Fig. 8: for a few unseen characters, context frames, true targets and generated targets."""
    plt = pyplot()
    context_images = next(iter(context))[1]
    target_images = next(iter(target))[1]
    rows, labels = [], []
    for c in range(characters):
        rows += [context_images[36 * c : 36 * c + frames], target_images[36 * c : 36 * c + frames],
                 generated[36 * c : 36 * c + frames]]  # fmt: skip
        labels += [f"char {c} context", "target", "generated"]
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.0 * frames, 1.05 * len(rows)), squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for k in range(frames):
            ax = axes[r][k]
            ax.imshow(images[k].detach().cpu().float().clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7)
    _save(fig, path, title, dpi=90)


def plot_sequences(observed, mask, imputed, truth, path: str, variance=None, title: str = "") -> None:
    """Healing MNIST: for a few sequences ``(n, T, 784)``, rows of frames: observed (missing pixels grey), imputed
    (the pixel probabilities), truth and, when given, the predictive variance."""
    import torch

    plt = pyplot()
    shown = torch.where(mask, observed, torch.full_like(observed, 0.5))
    kinds = [("observed", shown), ("imputed", imputed), ("truth", truth)]
    if variance is not None:
        kinds.append(("variance", variance / max(float(variance.max()), 1e-12)))
    n, frames = observed.size(0), observed.size(1)
    fig, axes = plt.subplots(n * len(kinds), frames, figsize=(0.9 * frames, 0.95 * n * len(kinds)), squeeze=False)
    for s in range(n):
        for k, (label, images) in enumerate(kinds):
            row = s * len(kinds) + k
            for t in range(frames):
                ax = axes[row][t]
                ax.imshow(images[s, t].reshape(28, 28).detach().cpu().float().numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row][0].set_ylabel(label, fontsize=7)
    _save(fig, path, title, dpi=80)
