"""A representation network: one vector per set of observations of one object, usable as a GP input."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from ..models.inputs import ObservationInputs
from ..variational.group_layout import GroupLayout


class RepresentationNetwork(nn.Module):
    r"""Maps a set of observations of one object (e.g. frames of one character) to one vector, the mean of a
    per-observation network's outputs over the set (the "Pool" architecture of Eslami et al. 2018, as the SVGP-VAE
    paper's SPRITES model uses it). The mean makes the vector invariant to the order and, in distribution, to the
    number of observations; it can enter any kernel as a GP input (SVGP-VAE Sec. 4.3: auxiliary data that is not
    observed at test time, computed from context observations).

    :param frame_network: maps observations ``(n, *obs)`` to features ``(n, d)``.
    """

    def __init__(self, frame_network: nn.Module):
        super().__init__()
        self.frame_network = frame_network

    def forward(self, observations: Tensor, groups: Tensor) -> Tensor:
        """For each observation ``(n, *obs)``, the mean feature ``(n, d)`` over the observations of its group
        (``groups`` ``(n,)``, any ids) in this call."""
        layout = GroupLayout.create(groups)
        features = self.frame_network(observations)  # (n, d)
        count = layout.mask.sum(-1, keepdim=True).to(features)  # (P, 1)
        means = layout.pad_points(features, point_dim=0).sum(1) / count  # (P, d)
        return means[layout.group]

    def set_vectors(self, observations: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """The group ids ``(P,)`` (sorted) and the vector of each group ``(P, d)``."""
        layout = GroupLayout.create(groups)
        features = self.frame_network(observations)
        count = layout.mask.sum(-1, keepdim=True).to(features)
        return layout.group_ids, layout.pad_points(features, point_dim=0).sum(1) / count


def pretrain_representation(
    network: RepresentationNetwork,
    batches,
    num_classes: int,
    steps: int,
    lr: float = 1e-2,
    progress: bool = False,
) -> list[float]:
    r"""Classifier pre-training (SVGP-VAE SPRITES): a linear softmax classifier of the object index on the frame
    network's per-observation features, trained with the network by cross-entropy and Adam; the classifier is
    dropped afterwards. ``batches`` yields ``(observations, labels)`` (an iterator; cycled if shorter than
    ``steps``). Returns the loss per step."""
    features = network.frame_network
    probe = next(p for p in features.parameters())
    with torch.no_grad():
        batch = next(iter(batches))
        dim = features(batch[0][:1]).size(-1)
    classifier = nn.Linear(dim, num_classes).to(probe)
    optimizer = torch.optim.Adam([*features.parameters(), *classifier.parameters()], lr=lr)
    losses, iterator = [], iter(batches)
    for step in range(steps):
        try:
            observations, labels = next(iterator)
        except StopIteration:
            iterator = iter(batches)
            observations, labels = next(iterator)
        loss = nn.functional.cross_entropy(classifier(features(observations)), labels.long().to(probe.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress and (step + 1) % 100 == 0:
            print(f"pre-training step {step + 1}/{steps}: loss {loss.item():.4f}", flush=True)
    return losses


class RepresentationInputs(ObservationInputs):
    r"""Latent-prior inputs with a part computed from the observations: ``[input_map(x), r(x, y)]``, where
    :math:`r` is a :class:`RepresentationNetwork`'s vector of each point's group (the column ``group_column`` of
    ``x``, e.g. a character id): in training, the mean over the group's observations in the batch (SVGP-VAE Sec. 4.3,
    SPRITES); at test time (:meth:`condition_on_observations`), the mean over the group's context observations, so that new points of
    a group whose observations are unknown get its vector.

    :param representation: the :class:`RepresentationNetwork`.
    :param group_column: the column of ``x`` holding the group id.
    :param input_map: the other inputs, a module of ``x`` (e.g. a GP-LVM look-up,
        :class:`~gpytorch_vae.kernels.LatentLookup`); ``None``: the representation alone.
    """

    def __init__(self, representation: RepresentationNetwork, group_column: int = 0,
                 input_map: nn.Module | None = None):  # fmt: skip
        super().__init__()
        self.representation, self.group_column, self.input_map = representation, int(group_column), input_map

    def _with_map(self, x: Tensor, vectors: Tensor) -> Tensor:
        if self.input_map is None:
            return vectors
        other = self.input_map(x)
        return torch.cat([other, vectors.to(other)], dim=-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self._with_map(x, self.representation(y, x[:, self.group_column]))

    @torch.no_grad()
    def condition_on_observations(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Callable[[Tensor], Tensor]:
        ids, sums, counts = [], [], []
        for x, y in batches:  # per batch: the sums of each group's features (groups may span batches)
            layout = GroupLayout.create(x[:, self.group_column])
            features = self.representation.frame_network(y)
            ids.append(layout.group_ids)
            sums.append(layout.pad_points(features, point_dim=0).sum(1))
            counts.append(layout.mask.sum(-1))
        groups, slot = torch.unique(torch.cat(ids), return_inverse=True)
        total = torch.cat(sums).new_zeros(len(groups), sums[0].size(-1)).index_add_(0, slot, torch.cat(sums))
        count = torch.zeros(len(groups), dtype=total.dtype, device=total.device).index_add_(
            0, slot, torch.cat(counts).to(total)
        )
        vectors = total / count[:, None]

        def inputs_of(x: Tensor) -> Tensor:
            wanted = x[:, self.group_column].to(groups)
            index = torch.searchsorted(groups, wanted.contiguous()).clamp(max=len(groups) - 1)
            if not bool((groups[index] == wanted).all()):
                missing = wanted[groups[index] != wanted][0].item()
                raise ValueError(f"group {missing} has no context observations: its representation is unknown")
            return self._with_map(x, vectors[index])

        return inputs_of
