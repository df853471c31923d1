"""SPRITES (SVGP-VAE paper Sec. 4.3; protocol: ``docs/protocols/sprites.md``): conditional generation of the poses of
unseen characters, whose identity vector a representation network computes from context frames."""

from __future__ import annotations

import os
import time

import numpy as np
import pyro
import torch
from gpytorch.kernels import LinearKernel, ProductKernel
from gpytorch.models.gplvm import PointLatentVariable
from scipy.stats import gaussian_kde
from torch import Tensor

import gpytorch_vae
from gpytorch_vae import GECO, GPVAE
from gpytorch_vae.data import load_sprite_frames, sprites_splits
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.kernels import NormalizedKernel
from gpytorch_vae.nn import (
    RepresentationNetwork,
    SpritesDecoder,
    SpritesEncoder,
    SpritesFrameNetwork,
    compile_networks,
    keras_init_,
    pretrain_representation,
)
from gpytorch_vae.objectives import ScaledLossOptimizer
from gpytorch_vae.priors import SparseLatentPrior
from gpytorch_vae.training import adam, epoch_timing, geco_step, run_epochs, trainable_parameters, write_json

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


class SpritesSVGPVAE(torch.nn.Module):
    """The SVGP-VAE of the protocol: GP inputs are a learned GP-LVM vector per pose id and the representation
    network's vector of the character (the mean over its frames in the batch); SPRITES networks; m = 72 inducing
    points, all coordinates learned; jitter 0.01; everything float32 but the GP core (float64)."""

    observation_dims = 3

    def __init__(self, pose_init: Tensor, inducing: Tensor, init: str = "keras"):
        super().__init__()
        self.representation = RepresentationNetwork(SpritesFrameNetwork(CHARACTER_DIM))
        self.pose_latent = PointLatentVariable(NUM_POSES, POSE_DIM, torch.nn.Parameter(pose_init.float().clone()))
        gp = SparseLatentGP(inducing.float(), pose_character_kernel(), jitter_val=JITTER)
        encoder, decoder = SpritesEncoder(LATENT_DIM), SpritesDecoder(LATENT_DIM)
        if init == "keras":
            keras_init_(encoder), keras_init_(decoder), keras_init_(self.representation)
        self.vae = GPVAE(encoder, decoder, SparseLatentPrior(gp), LATENT_DIM, likelihood="gaussian",
                         observation_dims=3, min_variance=1e-3, max_variance=10.0)  # fmt: skip

    def gp_inputs(self, aux: Tensor, images: Tensor) -> Tensor:
        """``[pose vector, character vector]`` ``(n, 24)`` of frames ``aux = [character slot, pose id]``."""
        characters = self.representation(images, aux[:, 0])
        return torch.cat([self.pose_latent()[aux[:, 1].long()], characters], dim=-1)

    def forward(self, aux: Tensor, images: Tensor, num_data: int | None = None, reconstruction: bool = True):
        """The GP-VAE's ELBO terms at the frames' GP inputs."""
        return self.vae.elbo_terms(self.gp_inputs(aux, images), images, num_data, reconstruction)


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
def condition(model: SpritesSVGPVAE, train: FrameBatches):
    """The posterior given every training frame (b = N), streamed through the whitened statistics."""
    strategy = model.vae.latent_prior.strategy
    stats = strategy.accumulate_statistics(
        (model.gp_inputs(aux, images), *model.vae.latent_dataset(images)) for aux, images in train
    )
    return strategy.condition_on_statistics(stats)


@torch.no_grad()
def generate(model: SpritesSVGPVAE, posterior, context: FrameBatches, target: FrameBatches, batch_size: int = 500):
    """Target frames of unseen characters from their context frames: the character vector is the representation
    network's mean over the context frames, the pose vector the learned one; q_S(z) at those inputs (variances
    clipped to [1e-4, 100]), decoded: the posterior mean and one sample, ``(n, 64, 64, 3)`` each."""
    ids, vectors = [], []
    for aux, images in context:  # whole characters per batch (36 frames each, batches of 500 may split one)
        ids.append(aux[:, 0]), vectors.append(model.representation.frame_network(images))
    ids, features = torch.cat(ids), torch.cat(vectors)
    characters, slot = torch.unique(ids, return_inverse=True)
    sums = features.new_zeros(len(characters), features.size(1)).index_add_(0, slot, features)
    character_vectors = sums / torch.bincount(slot)[:, None]
    means, samples = [], []
    for aux, _ in target:
        index = torch.searchsorted(characters, aux[:, 0].contiguous())
        x = torch.cat([model.pose_latent()[aux[:, 1].long()], character_vectors[index]], dim=-1)
        q = posterior.predict(model.vae.latent_prior.gp_inputs(x), diag=True)
        variance = q.variance.clamp(1e-4, 100.0)
        means.append(model.vae.decode(q.mean))
        samples.append(model.vae.decode(q.mean + variance.sqrt() * torch.randn_like(q.mean)))
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
    os.makedirs(out, exist_ok=True)
    frames = load_sprite_frames(data_dir, cache_dir)
    splits = sprites_splits()
    train = FrameBatches(frames, splits.train, BATCH_SIZE, device)
    context = FrameBatches(frames, splits.context, BATCH_SIZE, device)
    target = FrameBatches(frames, splits.target, BATCH_SIZE, device)
    pyro.set_rng_seed(seed)
    pose_init, inducing = initial_vectors(train)
    model = SpritesSVGPVAE(pose_init, inducing).to(device)
    checkpoint = os.path.join(out, "checkpoint.pt")
    pretrain_path = os.path.join(out, "pretrained.pt")
    timings = {}
    if resume and os.path.exists(pretrain_path):
        saved = gpytorch_vae.training.load_checkpoint(pretrain_path)
        model.load_state_dict(saved["model"])
        timings = {key: saved[key] for key in ("pretrain_seconds", "pretrain_final_loss") if key in saved}
    else:
        start = time.perf_counter()
        batches = pretraining_batches(train, torch.Generator().manual_seed(seed))
        losses = pretrain_representation(model.representation, batches, len(splits.train_characters),
                                         pretrain_steps, lr=1e-2, progress=progress)  # fmt: skip
        timings["pretrain_seconds"] = time.perf_counter() - start
        timings["pretrain_final_loss"] = losses[-1] if losses else None
        gpytorch_vae.training.save_checkpoint({"model": model.state_dict(), "epoch": 0, **timings}, pretrain_path)
    compiled = compile_networks(model.vae.encoder, model.vae.decoder, model.representation.frame_network,
                                enabled=compile, device_type=torch.device(device).type)  # fmt: skip
    gpytorch_vae.settings.compile_gp.set(compiled)
    geco = GECO(kappa2=KAPPA2).to(device)
    optimizer = ScaledLossOptimizer(adam(trainable_parameters(model), lr=lr))  # a fresh Adam (see the protocol)
    step = geco_step(model, geco, optimizer, len(splits.train))
    trace = EvaluationTrace(model, train, context, target, eval_every)

    def state():
        return {"model": model.state_dict(), "geco": geco.state_dict(), "optimizer": optimizer.state_dict()}

    def load_state(saved):
        model.load_state_dict(saved["model"])
        geco.load_state_dict(saved["geco"])
        optimizer.load_state_dict(saved["optimizer"])

    history = {}
    run_epochs(step, train, epochs, state, load_state, checkpoint=checkpoint, resume=resume,
               progress=progress, callback=trace, extra_state={"evaluation": trace}, history=history,
               divergence_key="mse")  # fmt: skip
    timing = epoch_timing(history)
    posterior = condition(model, train)
    from_mean, from_sample = generate(model, posterior, context, target)
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
        **{key: value for key, value in timings.items()},
    }
    write_json(os.path.join(out, "metrics.json"), metrics)
    write_json(os.path.join(out, "history.json"), {"train": history, "evaluation": trace.points})
    if plots:
        from .plotting import plot_sprites

        plot_sprites(context, target, from_mean, os.path.join(out, "generations.png"),
                     title=f"SPRITES, unseen characters: MSE {metrics['mse']:.4f}")  # fmt: skip
    return metrics


class EvaluationTrace:
    """Test MSE (posterior-mean decode) every ``every`` epochs, on a forked RNG (a learning curve; never used to
    select), checkpointed."""

    def __init__(self, model, train, context, target, every: int):
        self.model, self.train, self.context, self.target, self.every = model, train, context, target, every
        self.points: list[dict] = []

    def __call__(self, epoch: int, loss: float) -> None:
        if self.every and (epoch + 1) % self.every == 0:
            with torch.random.fork_rng():
                from_mean, _ = generate(self.model, condition(self.model, self.train), self.context, self.target)
            self.points.append({"epoch": epoch + 1, "mse": mse(from_mean, self.target)})

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = list(state["points"])
