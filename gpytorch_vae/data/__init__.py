"""Data sets (torchvision-style, no torchvision needed): rotated MNIST, moving ball, synthetic GP data, and the MNIST
IDX reader. Files are found through a ``data_dir`` argument or ``$GPYTORCH_VAE_DATA``."""

from .batches import RowBatches
from .healing_mnist import HealingMNIST
from .mnist import DATA_ENV, load_mnist, read_idx
from .moving_ball import (
    MovingBallBatch,
    MovingBallDataset,
    MovingBallGenerator,
    MovingBallStream,
    moving_ball_test_batch,
)
from .rotated_mnist import (
    FactorizedSplits,
    GeneratedImageSplit,
    ImageSplit,
    MultiClassRotatedMNIST,
    RotatedMNIST,
    factorized_splits,
    load_rotated_mnist,
)
from .sprites import SpriteFrames, SpritesSplits, load_sprite_frames, render_sprites, sprites_splits
from .synthetic import SyntheticGPData, make_synthetic_gp_data

__all__ = [
    "DATA_ENV",
    "FactorizedSplits",
    "GeneratedImageSplit",
    "HealingMNIST",
    "ImageSplit",
    "MultiClassRotatedMNIST",
    "MovingBallBatch",
    "MovingBallDataset",
    "MovingBallGenerator",
    "MovingBallStream",
    "RotatedMNIST",
    "RowBatches",
    "SpriteFrames",
    "SpritesSplits",
    "SyntheticGPData",
    "factorized_splits",
    "load_mnist",
    "load_rotated_mnist",
    "load_sprite_frames",
    "make_synthetic_gp_data",
    "moving_ball_test_batch",
    "read_idx",
    "render_sprites",
    "sprites_splits",
]
