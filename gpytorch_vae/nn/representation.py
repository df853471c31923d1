"""A representation network: one vector per set of observations of one object, usable as a GP input."""

from __future__ import annotations

import torch
from torch import Tensor, nn

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
