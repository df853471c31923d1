"""Minibatches of rows of a data set, in order, shuffled per epoch, or sharded over data-parallel ranks."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from ..distributed import ShardedBatchSampler


class RowBatches:
    """The batches of ``data`` (a data set indexable by a tensor of row indices, which gives a whole batch: e.g. a
    :class:`~torch.utils.data.TensorDataset`, :class:`~gpytorch_vae.data.ImageSplit`,
    :class:`~gpytorch_vae.data.GeneratedImageSplit`): ``batch_size`` consecutive rows at a time in the data's order
    (the papers' protocols), or, with ``shuffle``, in a new order every pass drawn from torch's generator (so a
    resumed :func:`~gpytorch_vae.training.fit` sees the same batches), or, with ``sharded``, this rank's contiguous
    shard of every global batch (:class:`~gpytorch_vae.distributed.ShardedBatchSampler`, shuffled by epoch with
    ``seed``). Re-iterable; :attr:`dataset` is ``data`` (``fit`` takes :math:`N` from its length).

    :param data: the data set, or a tuple of tensors (wrapped in a ``TensorDataset``).
    :param batch_size: rows per (global) batch.
    """

    def __init__(self, data: Dataset | tuple, batch_size: int, shuffle: bool = False, sharded: bool = False,
                 seed: int = 0):  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = TensorDataset(*data) if isinstance(data, tuple) else data
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.sampler = (
            ShardedBatchSampler(len(self.dataset), batch_size, shuffle=shuffle, seed=seed) if sharded else None
        )

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            rows_of_batches = (torch.as_tensor(rows) for rows in self.sampler)
        else:
            order = torch.randperm(len(self.dataset)) if self.shuffle else torch.arange(len(self.dataset))
            rows_of_batches = order.split(self.batch_size)
        for rows in rows_of_batches:
            yield self.dataset[rows]
