r"""Data-parallel training on :mod:`torch.distributed` (DDP, launched by ``torchrun``; gloo on CPU, NCCL on GPU).

With :math:`R` ranks each holding :math:`b_r` points of a minibatch, the faithful SVGP-VAE estimator is the one a
single process computes on the union batch :math:`b = \sum_r b_r`. :class:`StatisticsAllReduce` sums the whitened
sufficient statistics of the ranks' latent data (:math:`m\times m` and :math:`m` per channel) with autograd through
the collective (:func:`torch.distributed.nn.functional.all_reduce`), so every rank builds the same
:math:`q_S(\mathbf u)` of Eq. 9 with :math:`c = N/b`; give it to
:class:`~gpytorch_vae.variational.AmortizedHybridVariationalStrategy` as ``statistics_reducer``. Every rank keeps the
same random stream and takes its own slice of the union batch's draws, so a step on :math:`R` ranks reproduces the
single-process step (tested to float64 tolerance). The whole model, GP parameters included, is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (:func:`data_parallel`), and each rank's loss is scaled so that
the average of the ranks' gradients is the gradient of the union batch's objective (:meth:`Ranks.loss`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .variational.latent_statistics import StatisticsReducer, WhitenedLatentStatistics
from .variational.noise import StandardNormalNoise


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_from_environment(device: str = "cpu") -> bool:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU, NCCL on
    CUDA (each rank on ``cuda:LOCAL_RANK``). Returns whether training is distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


@dataclass(frozen=True)
class ReducedStatistics(WhitenedLatentStatistics):
    """Statistics summed over the ranks, with where this rank's points sit in the union batch: ``offset`` (points of
    the ranks before it) and ``local_points`` (its own)."""

    offset: int = 0
    local_points: int = 0


class StatisticsAllReduce(StatisticsReducer):
    r"""Sums :class:`~gpytorch_vae.variational.WhitenedLatentStatistics` over the ranks of ``group``, with gradients:
    the backward of a sum is the sum of the ranks' gradients, so the gradient reaching each rank's local statistics
    is the gradient of the objective of the union batch (times the number of ranks, which :meth:`Ranks.loss` and the
    averaging of the gradients undo).

    :param group: the process group (default: the world).
    """

    def __init__(self, group=None):
        self.group = group

    def __call__(self, stats: WhitenedLatentStatistics) -> ReducedStatistics:
        from torch.distributed.nn.functional import all_reduce

        local = stats.num_points
        position, ranks = dist.get_rank(self.group), dist.get_world_size(self.group)
        # One collective (each costs a round trip, and its backward another): both statistics and, in the last
        # ``ranks`` slots, every rank's number of points (each rank writes its own slot; exact as integers).
        precision, targets = stats.precision_update, stats.projected_targets
        slots = precision.new_zeros(ranks)
        slots[position] = local
        packed = all_reduce(torch.cat([precision.flatten(), targets.flatten(), slots]), group=self.group)
        counts = [int(c) for c in packed[-ranks:].detach().round().tolist()]
        split = precision.numel()
        return ReducedStatistics(
            packed[:split].view_as(precision),
            packed[split : split + targets.numel()].view_as(targets),
            int(sum(counts)),
            offset=int(sum(counts[:position])),
            local_points=local,
        )


class UnionBatchNoise(StandardNormalNoise):
    """The per-point noise of a posterior's draw as this rank's slice of the noise of the union batch (every rank
    draws the whole and keeps its part, along the dimension that indexes points or groups), so that the ranks'
    random streams stay equal and their draws are those of one process on the union batch. Each call gathers the
    ranks' sizes (one small collective): give it only to draws that every rank makes."""

    def __init__(self, group=None):
        self.group = group

    def __call__(self, shape, dim, dtype, device=None) -> Tensor:
        shape = list(shape)
        dim = dim % len(shape)
        offset, total = union_slice(shape[dim], device, self.group)
        full = shape.copy()
        full[dim] = total
        return torch.empty(full, dtype=dtype, device=device).normal_().narrow(dim, offset, shape[dim])


class Ranks:
    r"""The processes of a data-parallel run, as an objective sees them (:class:`~gpytorch_vae.objectives.ELBO`,
    :class:`~gpytorch_vae.objectives.GECOObjective`): give one to an objective to make it combine the ranks' terms;
    without one an objective makes no collective call.

    * :meth:`loss`: what a rank backpropagates so that the averaged gradients (DDP) are the union batch's;
    * :meth:`sum`: a value summed over the ranks (no gradient), e.g. the union batch's reconstruction error;
    * :attr:`noise`: the posterior's per-point noise as this rank's slice of the union batch's
      (:class:`UnionBatchNoise`).

    :param group: the process group (default: the world).
    """

    def __init__(self, group=None):
        if not is_distributed():
            raise RuntimeError("Ranks needs an initialised torch.distributed process group (e.g. under torchrun)")
        self.group = group
        self.noise = UnionBatchNoise(group)

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    def loss(self, local_terms: Tensor, shared_terms: Tensor) -> Tensor:
        r"""The loss a rank backpropagates: ``R * local_terms + shared_terms``, where ``local_terms`` are the sums
        over its own points (e.g. the reconstruction) and ``shared_terms`` what every rank computes the same (e.g. the
        KL of the shared :math:`q_S(\mathbf u)`). Averaged over the ranks (DDP) the gradients are those of
        ``sum_r local_terms_r + shared_terms``, the union batch's objective."""
        return self.world_size * local_terms + shared_terms

    def sum(self, value: Tensor) -> Tensor:
        """The sum of ``value`` over the ranks (no gradient)."""
        value = value.detach().clone()
        dist.all_reduce(value, group=self.group)
        return value


def data_parallel(module: torch.nn.Module, device=None) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` (its gradients averaged over the ranks,
    overlapped with the backward pass), without a buffer broadcast before every forward pass (the buffers, e.g.
    GECO's multiplier, evolve identically on every rank)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device is not None and torch.device(device).type == "cuda" else None
    keyword = "forward_sync_buffers"  # newer torch; broadcast_buffers is deprecated there
    if keyword not in inspect.signature(DistributedDataParallel.__init__).parameters:
        keyword = "broadcast_buffers"
    return DistributedDataParallel(module, device_ids=ids, **{keyword: False})


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Batches of indices for one rank: the data set's rows in order (or shuffled per epoch with ``seed``, the same
    on every rank) are cut into global batches of ``batch_size``, and each global batch into ``world`` contiguous
    shards; this rank gets its shard of every batch. The union of the ranks' batches is the single-process batch, in
    order, so whole groups of consecutive rows (e.g. FGP-VAE's digits) stay on one rank when the shard size is a
    multiple of the group size. Use it as a :class:`~torch.utils.data.DataLoader`'s ``sampler`` with
    ``batch_size=None`` and a data set that takes a list of indices, or iterate it directly.

    :param num_rows: the data set's length.
    :param batch_size: the global batch size :math:`b = \\sum_r b_r`.
    :param rank, world: this rank and the number of ranks (default: those of the process group).
    :param shuffle: a new order every epoch (:meth:`set_epoch`), drawn from ``seed + epoch``.
    """

    def __init__(self, num_rows: int, batch_size: int, rank: int | None = None, world: int | None = None,
                 shuffle: bool = False, seed: int = 0):  # fmt: skip
        if batch_size < 1 or num_rows < 1:
            raise ValueError(f"need num_rows >= 1 and batch_size >= 1, got {num_rows} and {batch_size}")
        self.num_rows, self.batch_size = num_rows, batch_size
        self.rank = globals()["rank"]() if rank is None else rank
        self.world = world_size() if world is None else world
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_rows)
        for batch in order.split(self.batch_size):
            yield batch.tensor_split(self.world)[self.rank].tolist()


def union_slice(local_size: int, device=None, group=None) -> tuple[int, int]:
    """``(offset, total)``: where this rank's ``local_size`` items sit among all ranks' (in rank order)."""
    if not is_distributed():
        return 0, local_size
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, torch.tensor([local_size], device=device), group=group)
    sizes = [int(s) for s in sizes]
    return sum(sizes[: dist.get_rank(group)]), sum(sizes)
