"""Cross-modal clustering: k-means on the sphere and the loss that teaches sounds the centres."""

import pytest
import torch
from torch.nn import functional as F

from models.training.clusters import cluster_loss, spherical_kmeans


def _planted(groups: int, per_group: int, spread: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(groups, 32, generator=gen), dim=1)
    labels = torch.arange(groups).repeat_interleave(per_group)
    noise = spread * torch.randn(len(labels), 32, generator=gen)
    return F.normalize(centres[labels] + noise, dim=1), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_finds_planted_groups(seed):
    points, labels = _planted(groups=6, per_group=50, spread=0.1, seed=seed)
    found = spherical_kmeans(points, 6, torch.Generator().manual_seed(seed))
    # Each found group holds exactly one planted group (the numbering is arbitrary).
    for group in range(6):
        assert len(set(labels[found.assignments == group].tolist())) == 1
    assert len(set(found.assignments.tolist())) == 6
    assert torch.allclose(found.centres.norm(dim=1), torch.ones(6), atol=1e-5)


def test_kmeans_repeats_with_its_seed_and_refuses_too_many_groups():
    points, _ = _planted(groups=3, per_group=20, spread=0.5, seed=4)
    first = spherical_kmeans(points, 5, torch.Generator().manual_seed(7))
    second = spherical_kmeans(points, 5, torch.Generator().manual_seed(7))
    assert torch.equal(first.assignments, second.assignments)
    with pytest.raises(ValueError, match="cannot make 61 clusters of 60 points"):
        spherical_kmeans(points, 61, torch.Generator())


def test_cluster_loss_pulls_each_sound_to_its_images_centre():
    centres = torch.eye(4)[:3]  # three unit centres
    sounds = torch.eye(4)[[0, 1, 2]].clone().requires_grad_(True)
    right = cluster_loss(sounds, centres, torch.tensor([0, 1, 2]))
    wrong = cluster_loss(sounds, centres, torch.tensor([1, 2, 0]))
    assert right < 0.01 < wrong
    wrong.backward()
    # The gradient moves sound 0 toward centre 1, its image's group, and away from centre 0.
    step = -sounds.grad[0]
    assert step[1] > 0 > step[0]
