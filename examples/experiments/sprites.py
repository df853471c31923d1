"""SPRITES (SVGP-VAE paper Sec. 4.3; protocol: ``docs/protocols/sprites.md``): conditional generation of the poses of
unseen characters, whose identity vector a representation network computes from context frames."""

from __future__ import annotations

import os
import time

import numpy as np
import pyro
import torch
from gpytorch.kernels import LinearKernel, ProductKernel
from scipy.stats import gaussian_kde
from torch import Tensor

import gpytorch_vae
from gpytorch_vae import GECO, GPVAE
from gpytorch_vae.data import load_sprite_frames, sprites_splits
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.io import RunFolder, write_json
from gpytorch_vae.kernels import LatentLookup, NormalizedKernel
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.nn import (
    RepresentationInputs,
    RepresentationNetwork,
    SpritesDecoder,
    SpritesEncoder,
    SpritesFrameNetwork,
    compile_networks,
    keras_init_,
    pretrain_representation,
)
from gpytorch_vae.objectives import GECOObjective
from gpytorch_vae.priors import SparseLatentPrior
from gpytorch_vae.training import Checkpoint, Evaluation, epoch_timing, fit, load_checkpoint, save_checkpoint

LATENT_DIM = 64
POSE_DIM = 8
CHARACTER_DIM = 16
NUM_POSES = 72
KAPPA2 = 0.0075
BATCH_SIZE = 500  # 10 whole characters x 50 frames
JITTER = 0.01
PRETRAIN_BATCH = 5000


def pose_character_kernel(pose_dim: int = POSE_DIM, character_dim: int = CHARACTER_DIM) -> ProductKernel:
    r""":math:`k(\mathbf x, \mathbf x') = \cos(\mathbf v, \mathbf v')\,\cos(\mathbf c, \mathbf c')` on
    :math:`\mathbf x = (\mathbf v, \mathbf c)`: two linear kernels (unit variance, no bias), each normalised
    (:class:`~gpytorch_vae.kernels.NormalizedKernel`), over the pose columns and the character columns."""

    def cosine(columns):
        linear = LinearKernel(active_dims=torch.tensor(columns))
        linear.variance = 1.0
        linear.raw_variance.requires_grad_(False)
        return NormalizedKernel(linear)

    return ProductKernel(cosine(list(range(pose_dim))), cosine(list(range(pose_dim, pose_dim + character_dim))))


def build_model(pose_init: Tensor, inducing: Tensor, init: str = "keras") -> GPVAE:
    """The SVGP-VAE of the protocol: GP inputs are a learned GP-LVM vector per pose id and the representation
    network's vector of the character (the mean over its frames in the batch; at test time over its context frames):
    :class:`~gpytorch_vae.nn.RepresentationInputs`. SPRITES networks; m = 72 inducing points, all coordinates
    learned; jitter 0.01; everything float32 but the GP core (float64)."""
    representation = RepresentationNetwork(SpritesFrameNetwork(CHARACTER_DIM))
    inputs = RepresentationInputs(representation, group_column=0, input_map=LatentLookup(pose_init.float(), column=1))
    gp = SparseLatentGP(inducing.float(), pose_character_kernel(), jitter_val=JITTER)
    encoder, decoder = SpritesEncoder(LATENT_DIM), SpritesDecoder(LATENT_DIM)
    if init == "keras":
        keras_init_(encoder), keras_init_(decoder), keras_init_(representation)
    return GPVAE(encoder, decoder, SparseLatentPrior(gp), LATENT_DIM, GaussianLikelihood(), min_variance=1e-3,
                 max_variance=10.0, inputs=inputs)  # fmt: skip


class FrameBatches:
    """Consecutive batches of ``(aux, images)`` of frame pairs, images converted from uint8 per batch (the same
    batches in the same order every epoch)."""

    def __init__(self, frames: np.ndarray, pairs: np.ndarray, batch_size: int, device=None):
        _, slots = np.unique(pairs[:, 0], return_inverse=True)
        first = {}
        for character in pairs[:, 0].tolist():
            first.setdefault(character, len(first))
        self.aux = torch.tensor([[first[c], p] for c, p in pairs.tolist()], dtype=torch.float64)
        self.images = torch.from_numpy(np.ascontiguousarray(frames[pairs[:, 0], pairs[:, 1]]))  # uint8
        self.batch_size, self.device = batch_size, device

    def __len__(self) -> int:
        return -(-len(self.aux) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.aux), self.batch_size):
            images = self.images[i : i + self.batch_size].to(self.device, torch.float32) / 256.0
            yield self.aux[i : i + self.batch_size].to(self.device), images


def pca_scores(data: Tensor, k: int) -> Tensor:
    """Scores of a rank-``k`` PCA (:func:`torch.pca_lowrank`, seeded) of the rows of ``data``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(data, q=k, center=True)
    return (data - data.mean(0)) @ v[:, :k]


def initial_vectors(train: FrameBatches) -> tuple[Tensor, Tensor]:
    """Pose vectors: PCA(8) of the mean training frame of each pose id. Inducing points: one per pose id, its
    pose vector and one character part shared by all, drawn per coordinate from a 1-D Gaussian KDE
    (``resample(1, seed=42)``) of the PCA(16) scores of all training frames."""
    pose_vectors = pca_scores(pose_means(train), POSE_DIM)
    flat = train.images.reshape(len(train.aux), -1)
    scores = pca_scores(flat.float() / 256.0, CHARACTER_DIM).double().numpy()
    character = torch.tensor([gaussian_kde(scores[:, j]).resample(1, seed=42)[0, 0] for j in range(CHARACTER_DIM)])
    inducing = torch.cat([pose_vectors, character.float().expand(NUM_POSES, -1)], dim=-1)
    return pose_vectors, inducing


def pose_means(train: FrameBatches) -> Tensor:
    """The mean training frame of each pose id ``(72, 12288)`` (a pose without training frames: the mean frame)."""
    poses = train.aux[:, 1].long()
    flat = train.images.reshape(len(poses), -1).double() / 256.0
    sums = torch.zeros(NUM_POSES, flat.size(1), dtype=torch.float64).index_add_(0, poses, flat)
    counts = torch.bincount(poses, minlength=NUM_POSES)[:, None]
    means = torch.where(counts > 0, sums / counts.clamp_min(1), flat.mean(0))
    return means.float()


def pretraining_batches(train: FrameBatches, generator: torch.Generator):
    """Random batches of 5000 training frames and their character index, endlessly."""
    while True:
        rows = torch.randperm(len(train.aux), generator=generator)[:PRETRAIN_BATCH]
        yield train.images[rows].float() / 256.0, train.aux[rows, 0]


@torch.no_grad()
def generate(model: GPVAE, train: FrameBatches, context: FrameBatches, target: FrameBatches):
    r"""Target frames of unseen characters: the posterior given every training frame (:math:`b = N`, streamed), the
    character vectors from the context frames (``vae.condition_on_observations(train, inputs_context=context)``), the predicted
    :math:`q_S(\mathbf z)` at the targets (variances clipped to [1e-4, 100]), decoded: the posterior mean and one
    sample, ``(n, 64, 64, 3)`` each."""
    posterior = model.condition_on_observations(train, inputs_context=context)
    means, samples = [], []
    for aux, _ in target:
        q = posterior.predict(aux)
        variance = q.variance.clamp(1e-4, 100.0)
        means.append(model.decode(q.mean))
        samples.append(model.decode(q.mean + variance.sqrt() * torch.randn_like(q.mean)))
    return torch.cat(means), torch.cat(samples)


def mse(generated: Tensor, target: FrameBatches) -> float:
    total = sum(
        ((g - images).square().sum().item() for g, (_, images) in zip(generated.split(target.batch_size), target))
    )
    return total / generated.numel()


def pose_mean_floor(train: FrameBatches, target: FrameBatches) -> float:
    """The protocol's floor: each target predicted by the mean training frame of its pose id."""
    means = pose_means(train)
    total, count = 0.0, 0
    for aux, images in target:
        prediction = means[aux[:, 1].long()].reshape(images.shape)
        total += (prediction - images).square().sum().item()
        count += images.numel()
    return total / count


def run(
    epochs: int = 50,
    pretrain_steps: int = 4000,
    seed: int = 0,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    device: str = "cpu",
    out: str = "runs/sprites",
    resume: bool = False,
    lr: float = 1e-3,
    progress: bool = True,
    plots: bool = True,
    compile: bool | None = None,
    eval_every: int = 0,
) -> dict:
    """Pre-train the representation network, train the SVGP-VAE with GECO (kappa^2 = 0.0075), evaluate the final
    model on the 296 unseen characters (posterior-mean decode ``mse`` and one sample ``mse_sample``) beside the
    pose-mean floor; writes ``metrics.json``, ``history.json``, ``generations.png`` and a checkpoint per epoch
    (``resume`` continues; pre-training is part of the first checkpoint)."""
    with RunFolder(out):
        frames = load_sprite_frames(data_dir, cache_dir)
        splits = sprites_splits()
        train = FrameBatches(frames, splits.train, BATCH_SIZE, device)
        context = FrameBatches(frames, splits.context, BATCH_SIZE, device)
        target = FrameBatches(frames, splits.target, BATCH_SIZE, device)
        pyro.set_rng_seed(seed)
        pose_init, inducing = initial_vectors(train)
        model = build_model(pose_init, inducing).to(device)
        pretrain_path = os.path.join(out, "pretrained.pt")
        timings = {}
        if resume and os.path.exists(pretrain_path):
            saved = load_checkpoint(pretrain_path)
            model.load_state_dict(saved["model"])
            timings = {key: saved[key] for key in ("pretrain_seconds", "pretrain_final_loss") if key in saved}
        else:
            start = time.perf_counter()
            batches = pretraining_batches(train, torch.Generator().manual_seed(seed))
            losses = pretrain_representation(model.inputs.representation, batches, len(splits.train_characters),
                                             pretrain_steps, lr=1e-2, progress=progress)  # fmt: skip
            timings["pretrain_seconds"] = time.perf_counter() - start
            timings["pretrain_final_loss"] = losses[-1] if losses else None
            save_checkpoint({"model": model.state_dict(), "epoch": 0, **timings}, pretrain_path)
        compiled = compile_networks(model.encoder, model.decoder, model.inputs.representation.frame_network,
                                    enabled=compile, device_type=torch.device(device).type,
                                    steps=epochs * len(train))  # fmt: skip
        gpytorch_vae.settings.compile_gp.set(compiled)
        trace = Evaluation(lambda state: {"mse": mse(generate(model, train, context, target)[0], target)}, eval_every)
        objective = GECOObjective(model, len(splits.train), GECO(kappa2=KAPPA2))
        run_config = dict(seed=seed, lr=lr, pretrain_steps=pretrain_steps)
        checkpoint = Checkpoint(os.path.join(out, "checkpoint.pt"), resume, run_config)
        history = fit(objective, train, epochs=epochs, lr=lr, callbacks=[trace, checkpoint], progress=progress).history
        timing = epoch_timing(history)
        from_mean, from_sample = generate(model, train, context, target)
        metrics = {
            "mse": mse(from_mean, target),
            "mse_sample": mse(from_sample, target),
            "pose_mean_floor": pose_mean_floor(train, target),
            "epochs": epochs,
            "pretrain_steps": pretrain_steps,
            "seconds_per_epoch": timing["seconds_per_epoch"],
            "first_epoch_seconds": timing["first_epoch_seconds"],
            "compiled": compiled,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "seed": seed,
            **timings,
        }
        write_json(os.path.join(out, "metrics.json"), metrics)
        write_json(os.path.join(out, "history.json"), {"train": history, "evaluation": trace.points})
        if plots:
            from .plotting import plot_sprites

            plot_sprites(context, target, from_mean, os.path.join(out, "generations.png"),
                         title=f"SPRITES, unseen characters: MSE {metrics['mse']:.4f}")  # fmt: skip
        return metrics
