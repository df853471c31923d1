"""SPRITES (issue #13): rendering, splits, the representation network, the kernel, training and evaluation."""

import math

import numpy as np
import pytest
import torch
from external_data import SPRITES_DIR, needs_sprites
from PIL import Image

from gpytorch_vae.data.sprites import render_sprites, sprites_splits
from gpytorch_vae.nn import RepresentationNetwork, SpritesDecoder, SpritesEncoder, SpritesFrameNetwork

LAYERS = {"body": 6, "bottomwear": 6, "topwear": 6, "hair": 6, "shoes": 2}


@pytest.fixture(scope="module")
def synthetic_sheets(tmp_path_factory):
    """Palette PNG sheets with a transparency chunk, like the LPC ones, with random colours and alpha holes."""
    root = tmp_path_factory.mktemp("sheets")
    rng = np.random.default_rng(0)
    for name, count in LAYERS.items():
        (root / name).mkdir()
        for i in range(count):
            palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
            index = rng.integers(0, 256, size=(1344, 832), dtype=np.uint8)
            index[rng.random((1344, 832)) < 0.5] = 0  # palette entry 0 is transparent
            image = Image.fromarray(index, mode="P")
            image.putpalette(palette.flatten().tolist())
            image.info["transparency"] = 0
            image.save(root / name / f"{i}.png", transparency=0)
    return root


def pillow_reference(root, s):
    """Pillow's alpha_composite of the character's layers on opaque black, cut into the 72 frames (a loop)."""
    canvas = Image.new("RGBA", (832, 1344), (0, 0, 0, 255))
    for name, index in (("body", s // 216), ("bottomwear", (s // 36) % 6), ("topwear", (s // 6) % 6),
                        ("hair", s % 6), ("shoes", 1)):  # fmt: skip
        canvas = Image.alpha_composite(canvas, Image.open(root / name / f"{index}.png").convert("RGBA"))
    sheet = np.asarray(canvas)[..., :3]
    rows = ((10, 9, 11), (2, 1, 3), (14, 13, 15))
    columns = ((8, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5, 4, 6), (0, 1, 2, 3, 4, 5, 4, 0))
    return np.stack([sheet[64 * r : 64 * r + 64, 64 * c : 64 * c + 64]
                     for action in range(3) for r in rows[action] for c in columns[action]])  # fmt: skip


def test_rendering_equals_pillows_alpha_composite(synthetic_sheets):
    characters = [0, 43, 777, 1295]
    frames = render_sprites(str(synthetic_sheets), characters=characters)
    assert frames.shape == (4, 72, 64, 64, 3) and frames.dtype == np.uint8
    for k, s in enumerate(characters):
        np.testing.assert_array_equal(frames[k], pillow_reference(synthetic_sheets, s))


def test_missing_sheets_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks the SPRITES sheets body/0.png"):
        render_sprites(str(tmp_path))


@needs_sprites
def test_rendering_matches_the_protocol_checksums():
    frames = render_sprites(str(SPRITES_DIR), characters=[0])[0]
    sums = [int(frames[8 * k : 8 * k + 8].astype(np.int64).sum()) for k in range(9)]
    assert sums == [2525222, 1806121, 1806338, 2696296, 2010959, 2010901, 2496972, 2044918, 2046458]


def test_splits_follow_the_protocol():
    perm = np.random.RandomState(423).permutation(1296)
    assert perm[:4].tolist() == [1116, 1135, 17, 469] and perm[1000] == 884
    s = sprites_splits()
    assert s.train.shape == (50000, 2) and s.heldout.shape == (22000, 2)
    assert s.context.shape == s.target.shape == (10656, 2)
    assert s.train_characters[0] == 886 and s.test_characters[0] == 1289
    first_test_labels = s.context[s.context[:, 0] == 1289][::8, 1] // 8  # its sequences in order, 8 frames each
    assert first_test_labels.tolist() == [0, 3, 7, 8, 5]  # the first 36 frames: 4 sequences and t = 0..3 of a fifth
    train_poses = np.concatenate([s.train[s.train[:, 0] == 886][:, 1], s.heldout[s.heldout[:, 0] == 886][:, 1]])
    assert sorted(train_poses.tolist()) == list(range(72))
    assert set(s.train[:, 0]) == set(s.train_characters) and not set(s.train[:, 0]) & set(s.test_characters)


def test_networks_shapes():
    encoder, decoder = SpritesEncoder(64), SpritesDecoder(64)
    images = torch.rand(3, 64, 64, 3)
    mean, log_var = encoder(images)
    assert mean.shape == log_var.shape == (3, 64) and decoder(mean).shape == (3, 64, 64, 3)
    assert sum(p.numel() for p in encoder.features.parameters()) == (3 * 9 * 16 + 16) + 5 * (16 * 9 * 16 + 16)


def test_representation_is_the_set_mean_and_order_invariant():
    torch.manual_seed(0)
    net = RepresentationNetwork(SpritesFrameNetwork(16))
    images = torch.rand(10, 64, 64, 3)
    groups = torch.tensor([3, 1, 3, 3, 1, 7, 7, 3, 1, 7])
    out = net(images, groups)
    features = net.frame_network(images)
    for g in (1, 3, 7):
        torch.testing.assert_close(out[groups == g], features[groups == g].mean(0).expand(int((groups == g).sum()), -1))
    order = torch.randperm(10)
    torch.testing.assert_close(net(images[order], groups[order]), out[order])


def test_pose_character_kernel_equals_its_formula():
    from experiments.sprites import pose_character_kernel

    kernel = pose_character_kernel().double()
    x, y = torch.randn(5, 24, dtype=torch.float64), torch.randn(4, 24, dtype=torch.float64)
    cos = lambda a, b: (a @ b.T) / (a.norm(dim=-1)[:, None] * b.norm(dim=-1)[None, :])  # noqa: E731
    expected = cos(x[:, :8], y[:, :8]) * cos(x[:, 8:], y[:, 8:])
    torch.testing.assert_close(kernel(x, y).to_dense(), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(kernel(x, diag=True), torch.ones(5, dtype=torch.float64), atol=1e-12, rtol=0)
    assert not [name for name, p in kernel.named_parameters() if p.requires_grad]


@pytest.fixture(scope="module")
def tiny_sprites():
    """Two training characters (12 frames each), two test characters (8 context, 8 target), random images."""
    from experiments.sprites import FrameBatches

    g = np.random.default_rng(0)
    frames = g.integers(0, 256, size=(4, 72, 64, 64, 3), dtype=np.uint8)
    train_pairs = np.array([(c, p) for c in (0, 1) for p in g.choice(72, 12, replace=False)])
    context = np.array([(c, p) for c in (2, 3) for p in range(8)])
    target = np.array([(c, p) for c in (2, 3) for p in range(8, 16)])
    return (FrameBatches(frames, train_pairs, 12), FrameBatches(frames, context, 8), FrameBatches(frames, target, 8),
            FrameBatches(frames, target, 16))  # fmt: skip


def small_model(train):
    from experiments.sprites import build_model, initial_vectors

    torch.manual_seed(0)
    return build_model(*initial_vectors(train))


def test_a_short_training_run_reduces_the_loss(tiny_sprites):
    from experiments.sprites import KAPPA2

    from gpytorch_vae import GECO
    from gpytorch_vae.objectives import GECOObjective
    from gpytorch_vae.training import fit

    train = tiny_sprites[0]
    model = small_model(train)
    history = fit(GECOObjective(model, 24, GECO(kappa2=KAPPA2)), train, epochs=25, lr=3e-3, progress=False).history
    assert np.mean(history["mse"][-2:]) < 0.8 * np.mean(history["mse"][:2]), history["mse"]


def test_evaluation_of_two_characters_equals_a_loop(tiny_sprites):
    from experiments.sprites import generate

    train, context, target_by_character, target_both = tiny_sprites
    model = small_model(train)
    both, _ = generate(model, train, context, target_both)
    singles = []
    for c in (2, 3):  # one character at a time: its own context and targets
        ctx_rows = (context.aux[:, 0] == c - 2).nonzero().flatten()
        tgt_rows = (target_both.aux[:, 0] == c - 2).nonzero().flatten()
        ctx = [(context.aux[ctx_rows], context.images[ctx_rows].float() / 256.0)]
        tgt = [(target_both.aux[tgt_rows], target_both.images[tgt_rows].float() / 256.0)]
        singles.append(generate(model, train, ctx, tgt)[0])
    torch.testing.assert_close(both, torch.cat(singles), atol=1e-5, rtol=1e-5)
    assert math.isfinite(both.sum().item())
