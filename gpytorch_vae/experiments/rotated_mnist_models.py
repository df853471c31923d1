"""The models of the rotated-MNIST benchmark (``shared/protocols/rotated_mnist.md``, ``baselines.md``), all with the
same convolutional networks and the same view x object kernel."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import gaussian_kde
from torch import Tensor

from ..data.rotated_mnist import ANGLES_DEG, ImageSplit, RotatedMNIST
from ..kernels import ObjectViewInputs, fixed_periodic_kernel, view_object_kernel
from ..models import GPVAE, IndependentLatentPrior, SparseLatentGP, SparseLatentPrior
from ..models.conv_networks import ConvDecoder, ConvEncoder
from ..models.deep_svigp import DeepSVIGP, SVIGPLatentGP
from ..models.factorized_latent_prior import FactorizedLatentPrior
from ..models.gppvae import GPPVAE
from ..models.low_rank_gp import LowRankViewObjectGP

MODELS = ("svgpvae", "cvae", "gppvae", "deep-svigp", "fgpvae")
LATENT_DIM = 16
INDUCING_PER_ANGLE = 2  # m = 32
KAPPA2 = 0.020
DEFAULT_EPOCHS = {"svgpvae": 1000, "cvae": 1000, "gppvae": 200, "deep-svigp": 2000, "fgpvae": 1000}
FGP_LOCAL_CHANNELS = 8
GPPVAE_OBSERVATION_SCALE = 0.1  # the protocol does not fix it; sigma_y^2 = 0.01 is about the pixel MSE reached


def angle_features(aux: Tensor) -> Tensor:
    """The CVAE's condition: ``[sin(angle), cos(angle)]`` from auxiliary rows ``[id, angle, ...]``."""
    angle = aux[..., 1:2]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def inducing_init(train: ImageSplit, per_angle: int = INDUCING_PER_ANGLE, seed: int = 0) -> Tensor:
    r"""Inducing inputs :math:`(\theta, \mathbf v)`: ``per_angle`` per angle of all 16 (157.5 deg included); each
    coordinate of :math:`\mathbf v` drawn from a 1-D Gaussian KDE (:func:`scipy.stats.gaussian_kde`, Scott's rule) of
    the matching PCA column of the training auxiliary rows. ``(16 * per_angle, 9)`` float64."""
    rng = np.random.default_rng(seed)
    num = per_angle * len(ANGLES_DEG)
    angles = np.repeat(np.deg2rad(ANGLES_DEG), per_angle)
    columns = [gaussian_kde(column).resample(num, seed=rng)[0] for column in train.aux[:, 2:].T]
    return torch.tensor(np.stack([angles, *columns], axis=1))


def build_model(
    name: str, data: RotatedMNIST, train: ImageSplit, seed: int = 0, gp_dtype: torch.dtype = torch.float64
) -> torch.nn.Module:
    """``svgpvae``: :class:`~gpytorch_vae.models.GPVAE` with a :class:`~gpytorch_vae.models.SparseLatentPrior` (m = 32)
    on the view x object kernel over learned GP-LVM vectors (initialised from the PCA scores), encoder variances
    clipped to [1e-3, 10], trained with GECO. ``cvae``: conditional networks (angle as sin/cos), N(0, I) prior,
    Gaussian likelihood with sigma = 0.01. ``deep-svigp``: :class:`~gpytorch_vae.models.deep_svigp.DeepSVIGP` with the
    same kernel, GP-LVM vectors and inducing inputs. ``gppvae``: :class:`~gpytorch_vae.models.gppvae.GPPVAE`, a plain
    VAE (Gaussian likelihood, sigma = 0.1) with the exact low-rank GP over the same kernel and GP-LVM vectors (noise
    initialised at 0.1). ``fgpvae``: :class:`~gpytorch_vae.models.GPVAE` with a
    :class:`~gpytorch_vae.models.factorized_latent_prior.FactorizedLatentPrior` (8 local channels with a fixed
    periodic kernel per digit, 8 global channels), trained with GECO. The GP parts are in ``gp_dtype``, the networks
    in float32."""
    if name == "cvae":
        networks = ConvEncoder(LATENT_DIM, condition_dim=2), ConvDecoder(LATENT_DIM, condition_dim=2)
        return GPVAE(
            *networks, IndependentLatentPrior(), LATENT_DIM, likelihood="gaussian", observation_scale=0.01,
            observation_dims=2, condition=angle_features,
        )  # fmt: skip
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    gaussian_vae = dict(
        likelihood="gaussian", observation_dims=2, min_variance=1e-3, max_variance=10.0, gp_dtype=gp_dtype
    )
    if name == "fgpvae":
        local = fixed_periodic_kernel(dtype=gp_dtype)
        prior = FactorizedLatentPrior(local, FGP_LOCAL_CHANNELS, LATENT_DIM - FGP_LOCAL_CHANNELS, group_column=0,
                                      local_columns=(1,))  # fmt: skip
        return GPVAE(ConvEncoder(LATENT_DIM), ConvDecoder(LATENT_DIM), prior, LATENT_DIM, **gaussian_vae)
    kernel = view_object_kernel(data.pca.shape[1], dtype=gp_dtype)
    inputs = ObjectViewInputs(torch.tensor(data.pca, dtype=gp_dtype))
    if name == "gppvae":
        vae = GPVAE(
            ConvEncoder(LATENT_DIM), ConvDecoder(LATENT_DIM), IndependentLatentPrior(), LATENT_DIM,
            likelihood="gaussian", observation_scale=GPPVAE_OBSERVATION_SCALE, observation_dims=2,
        )  # fmt: skip
        return GPPVAE(vae, LowRankViewObjectGP(kernel, inputs.to(gp_dtype), torch.tensor(np.deg2rad(ANGLES_DEG))))
    inducing = inducing_init(train, seed=seed).to(gp_dtype)
    if name == "deep-svigp":
        gp = SVIGPLatentGP(inducing, kernel, LATENT_DIM).to(gp_dtype)
        return DeepSVIGP(gp, ConvDecoder(LATENT_DIM), inputs.to(gp_dtype), noise=0.1)
    prior = SparseLatentPrior(SparseLatentGP(inducing, kernel), input_map=inputs).to(gp_dtype)
    return GPVAE(ConvEncoder(LATENT_DIM), ConvDecoder(LATENT_DIM), prior, LATENT_DIM, **gaussian_vae)
