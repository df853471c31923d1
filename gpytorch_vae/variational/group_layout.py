"""Batched layout of points into groups of unequal size (padding), without Python loops over groups."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GroupLayout:
    r"""Where each of :math:`N` points sits in a padded ``(P, Q)`` grid of :math:`P` groups of at most :math:`Q`
    points (order within a group: order in the data).

    :ivar group_ids: the distinct group ids, sorted, ``(P,)``.
    :ivar group: group index of each point, ``(N,)``.
    :ivar position: position of each point within its group, ``(N,)``.
    :ivar mask: ``(P, Q)``, true where a real point sits.
    """

    group_ids: Tensor
    group: Tensor
    position: Tensor
    mask: Tensor

    @classmethod
    def create(cls, ids: Tensor) -> GroupLayout:
        """The layout of points with group ids ``ids`` ``(N,)`` (any dtype; compared exactly)."""
        if ids.dim() != 1 or ids.numel() == 0:
            raise ValueError("group ids must be a non-empty 1-D tensor")
        group_ids, group, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        order = torch.argsort(group, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(group)
        position[order] = torch.arange(len(ids), device=ids.device) - starts[group[order]]
        mask = torch.arange(int(counts.max()), device=ids.device) < counts[:, None]
        return cls(group_ids, group, position, mask)

    @property
    def num_groups(self) -> int:
        return self.mask.size(0)

    @property
    def max_size(self) -> int:
        return self.mask.size(1)

    def pad_points(self, values: Tensor, point_dim: int = -1, fill: float = 0.0) -> Tensor:
        """Scatter the point dimension ``point_dim`` of ``values`` into ``(P, Q)`` (two dims in its place)."""
        point_dim = point_dim % values.dim()
        moved = values.movedim(point_dim, 0)
        out = moved.new_full((self.num_groups, self.max_size, *moved.shape[1:]), fill)
        out[self.group, self.position] = moved
        return out.movedim((0, 1), (point_dim, point_dim + 1))

    def unpad_points(self, values: Tensor, group_dim: int = -2) -> Tensor:
        """Gather ``(P, Q)`` at ``group_dim, group_dim + 1`` back to the points, in data order."""
        group_dim = group_dim % values.dim()
        moved = values.movedim((group_dim, group_dim + 1), (0, 1))
        return moved[self.group, self.position].movedim(0, group_dim)

    def locate(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Group index of each of ``ids`` and whether the group exists in this layout."""
        index = torch.searchsorted(self.group_ids, ids.contiguous()).clamp(max=self.num_groups - 1)
        return index, self.group_ids[index] == ids
