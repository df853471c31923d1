"""Moving-ball videos (Pearce 2020; SVGP-VAE Sec. 4.1): a ball whose 2-D path is a GP draw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import IterableDataset


@dataclass(frozen=True)
class MovingBallBatch:
    """``times`` ``(B, T, 1)``, ``paths`` ``(B, T, 2)`` in GP units, ``frames`` ``(B, T, size * size)`` in {0, 1}."""

    times: Tensor
    paths: Tensor
    frames: Tensor


class MovingBallGenerator:
    r"""Draws batches of moving-ball videos, vectorised over videos, frames and pixels.

    Path coordinates are independent draws from :math:`GP(0, k)` with
    :math:`k(t, t') = \exp(-(t - t')^2 / (2\ell^2))` on the times :math:`0, \dots, T-1` (covariance
    :math:`\mathbf K + 10^{-5}\mathbf I`); the ball's centre in pixels is ``scale * size * path + size / 2`` and a
    pixel (at integer coordinates) is on when its squared distance to the centre is below ``radius ** 2``.
    Defaults follow the protocol (``docs/protocols/moving_ball.md``).

    :param num_frames: :math:`T`.
    :param size: frame side in pixels.
    :param lengthscale: :math:`\ell` of the generating RBF kernel.
    :param radius: ball radius in pixels.
    :param scale: GP units to frame fraction (one GP unit is ``scale * size`` pixels).
    """

    def __init__(
        self,
        num_frames: int = 30,
        size: int = 32,
        lengthscale: float = 2.0,
        radius: float = 3.0,
        scale: float = 0.2,
    ):
        if num_frames < 1 or size < 1 or lengthscale <= 0 or radius <= 0:
            raise ValueError("num_frames, size, lengthscale and radius must be positive")
        self.num_frames, self.size, self.lengthscale = num_frames, size, float(lengthscale)
        self.radius, self.scale = float(radius), float(scale)
        times = torch.arange(num_frames, dtype=torch.float64)
        covar = torch.exp(-0.5 * (times[:, None] - times[None, :]).square() / self.lengthscale**2)
        self.chol = torch.linalg.cholesky(covar + 1e-5 * torch.eye(num_frames, dtype=torch.float64))
        self.times = times
        self.grid = torch.arange(size, dtype=torch.float64)

    def sample(self, num_videos: int, generator: torch.Generator | None = None) -> MovingBallBatch:
        """Draw ``num_videos`` videos (float32 tensors)."""
        noise = torch.randn(num_videos, self.num_frames, 2, generator=generator, dtype=torch.float64)
        paths = self.chol @ noise  # (B, T, 2)
        return MovingBallBatch(
            times=self.times.expand(num_videos, -1).unsqueeze(-1).float(),
            paths=paths.float(),
            frames=self.render(paths),
        )

    def render(self, paths: Tensor) -> Tensor:
        """Binary frames ``(..., T, size * size)`` of ball paths ``(..., T, 2)`` in GP units."""
        centres = self.scale * self.size * paths.double() + self.size / 2
        offsets = (self.grid - centres.unsqueeze(-1)).square()  # (..., T, 2, size): separable squared distances
        sq_dist = offsets[..., 0, :, None] + offsets[..., 1, None, :]  # (..., T, size, size), row = first coordinate
        return (sq_dist < self.radius**2).flatten(-2).float()


class MovingBallStream:
    """A seeded, endless stream of fresh batches whose position can be saved and restored: ``next(stream)`` gives
    the next :class:`MovingBallBatch`; :meth:`state_dict` / :meth:`load_state_dict` hold the random generator's
    state, so a resumed run sees exactly the batches an uninterrupted one would. Iterating it does not restart it
    (unlike :class:`MovingBallDataset`, which restarts from its seed for each iteration, as a DataLoader expects).

    :param batch_size: videos per batch (35 in the protocol).
    :param seed: seed of the stream.
    """

    def __init__(self, generator: MovingBallGenerator, batch_size: int = 35, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.generator, self.batch_size = generator, batch_size
        self.rng = torch.Generator().manual_seed(seed)
        self.position = 0

    def __iter__(self) -> MovingBallStream:
        return self

    def __next__(self) -> MovingBallBatch:
        self.position += 1
        return self.generator.sample(self.batch_size, self.rng)

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        self.position = int(state["position"])


class MovingBallDataset(IterableDataset):
    """An endless stream of fresh batches of moving-ball videos, seeded (use with ``DataLoader(batch_size=None)``).

    :param batch_size: videos per batch (35 in the protocol).
    :param seed: seed of the stream; the same seed gives the same sequence of batches.
    """

    def __init__(self, generator: MovingBallGenerator, batch_size: int = 35, seed: int = 0):
        self.generator, self.batch_size, self.seed = generator, batch_size, seed

    def __iter__(self) -> Iterator[MovingBallBatch]:
        rng = torch.Generator().manual_seed(self.seed)
        while True:
            yield self.generator.sample(self.batch_size, rng)


def moving_ball_test_batch(generator: MovingBallGenerator, num_videos: int = 35, seed: int = 1234) -> MovingBallBatch:
    """The fixed test batch of the protocol: ``num_videos`` videos drawn once with a fixed seed."""
    return generator.sample(num_videos, torch.Generator().manual_seed(seed))
