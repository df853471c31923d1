"""SPRITES (Li & Mandt 2018) as the SVGP-VAE paper uses it (Sec. 4.3): frames rendered from the LPC sprite sheets,
the splits of the protocol (``docs/protocols/sprites.md``), training frames, context and targets.

The sheets (39 PNGs, 0.7 MB) come from the public repository ``YingzhenLi/Sprites`` (folders ``body/``,
``bottomwear/``, ``topwear/``, ``hair/``, ``shoes/``); give their folder as ``root`` or ``$GPYTORCH_VAE_SPRITES``.
Rendering all 1296 x 72 frames takes about a minute; they are cached as uint8 (1.1 GB) in ``cache_dir``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import TMP_SUFFIX, atomic_write

SPRITES_ENV = "GPYTORCH_VAE_SPRITES"
NUM_CHARACTERS = 1296
FRAMES_PER_CHARACTER = 72  # 9 sequences (3 actions x 3 directions) x 8 frames
LAYERS = ("body", "bottomwear", "topwear", "hair")
# sheet rows (front, left, right) and columns (t = 0..7) of the sequences, per action (walk, spellcast, slash)
ROWS = ((10, 9, 11), (2, 1, 3), (14, 13, 15))
COLUMNS = ((8, 1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 4, 5, 4, 6), (0, 1, 2, 3, 4, 5, 4, 0))
NUM_TRAIN = 1000
TRAIN_FRAMES = 50
CONTEXT_FRAMES = 36


def sheets_folder(root: str | None = None) -> str:
    """The folder of the sprite sheets: ``root``, else ``$GPYTORCH_VAE_SPRITES``; an error names what is missing."""
    root = root or os.environ.get(SPRITES_ENV)
    if not root:
        raise FileNotFoundError(
            f"no SPRITES sheets given: pass the folder as data_dir (the examples: --data-dir) or set ${SPRITES_ENV}. "
            f"It must hold the LPC sheet "
            f"folders {', '.join(LAYERS)}, shoes of the public repository YingzhenLi/Sprites"
        )
    missing = [f"{name}/{i}.png" for name, count in (*((layer, 6) for layer in LAYERS), ("shoes", 2))
               for i in range(count) if not os.path.exists(os.path.join(root, name, f"{i}.png"))]  # fmt: skip
    if missing:
        raise FileNotFoundError(
            f"{root} lacks the SPRITES sheets {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
        )
    return root


SHEET_SIZE = (832, 1344)  # width, height of an LPC sheet: 13 columns x 21 rows of 64 x 64 frames
FRAMES_SHAPE = (NUM_CHARACTERS, FRAMES_PER_CHARACTER, 64, 64, 3)


def _read_sheet(path: str) -> np.ndarray:
    """One sprite sheet as RGBA float64; a file that is not a readable PNG of the LPC size is named."""
    from PIL import Image, UnidentifiedImageError  # Pillow: an optional dependency (pip install pillow)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"sprite sheet {path} is not a file: the sheets folder must hold {{layer}}/{{i}}.png")
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.size != SHEET_SIZE:
                raise ValueError(
                    f"sprite sheet {path} is a {image.format} image of {image.size[0]} x {image.size[1]} pixels; an "
                    f"LPC sheet is a PNG of {SHEET_SIZE[0]} x {SHEET_SIZE[1]}: fetch the sheets of YingzhenLi/Sprites "
                    f"again"
                )
            return np.asarray(image.convert("RGBA"), dtype=np.float64)  # palette PNGs carry transparency
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"sprite sheet {path} cannot be read as an image ({error}): it is damaged or not a PNG; "
                         f"fetch it again") from None  # fmt: skip


def _frames_of_sheet(path: str) -> np.ndarray:
    """The 72 frames of one sheet, RGBA float64 ``(72, 64, 64, 4)``, in pose order ``a = 8 * label + t``."""
    sheet = _read_sheet(path)
    frames = [sheet[64 * row : 64 * row + 64, 64 * column : 64 * column + 64]
              for rows, columns in zip(ROWS, COLUMNS) for row in rows for column in columns]  # fmt: skip
    return np.stack(frames)


def _over(canvas: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Alpha "over" compositing in float: :math:`c \\leftarrow a\\,s + (1 - a)\\,c`, :math:`a = \\alpha / 255`."""
    alpha = layer[..., 3:] / 255.0
    return alpha * layer[..., :3] + (1.0 - alpha) * canvas


def render_sprites(root: str | None = None, characters=None) -> np.ndarray:
    """All frames, uint8 ``(1296, 72, 64, 64, 3)``: character ``s`` stacks body ``s // 216``, bottomwear
    ``(s // 36) % 6``, topwear ``(s // 6) % 6``, hair ``s % 6`` and shoes 1 onto opaque black, composited in float and
    rounded to uint8 once (byte-identical to Pillow's ``alpha_composite`` on these sheets). Frame ``a = 8 * label +
    t`` of a character is frame ``t`` of sequence ``label = 3 * action + direction`` (actions walk, spellcast, slash;
    directions front, left, right). ``characters``: render only these (in this order), e.g. for a check."""
    root = sheets_folder(root)
    layers = {name: np.stack([_frames_of_sheet(os.path.join(root, name, f"{i}.png")) for i in range(6)])
              for name in LAYERS}  # fmt: skip
    shoes = _frames_of_sheet(os.path.join(root, "shoes", "1.png"))
    if characters is not None:
        out = np.empty((len(characters), FRAMES_PER_CHARACTER, 64, 64, 3), dtype=np.uint8)
        for k, s in enumerate(characters):
            canvas = np.zeros((FRAMES_PER_CHARACTER, 64, 64, 3))
            for name, index in zip(LAYERS, (s // 216, (s // 36) % 6, (s // 6) % 6, s % 6)):
                canvas = _over(canvas, layers[name][index])
            out[k] = np.round(_over(canvas, shoes)).astype(np.uint8)
        return out
    out = np.empty((NUM_CHARACTERS, FRAMES_PER_CHARACTER, 64, 64, 3), dtype=np.uint8)
    black = np.zeros((FRAMES_PER_CHARACTER, 64, 64, 3))
    for body in range(6):  # vectorised over the 216 characters of each body
        canvas = _over(black, layers["body"][body])  # (72, 64, 64, 3)
        canvas = _over(canvas[None], layers["bottomwear"])  # (6, ...)
        canvas = _over(canvas[:, None], layers["topwear"][None])  # (6, 6, ...)
        canvas = _over(canvas[:, :, None], layers["hair"][None, None])  # (6, 6, 6, ...)
        canvas = _over(canvas, shoes)
        out[216 * body : 216 * (body + 1)] = np.round(canvas).reshape(216, *canvas.shape[3:]).astype(np.uint8)
    return out


def _cache_key(root: str) -> str:
    digest = hashlib.md5()
    for name in (*LAYERS, "shoes"):
        for i in range(6 if name != "shoes" else 2):
            with open(os.path.join(root, name, f"{i}.png"), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:12]


def cache_folder(cache_dir: str | None) -> str:
    """The folder of cached frames (default ``~/.cache/gpytorch_vae``), created and checked writable before any
    rendering; stale temporary files of killed writes are removed."""
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "gpytorch_vae")
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise NotADirectoryError(f"the cache folder {cache_dir} is a file: pass a folder as cache_dir")
    os.makedirs(cache_dir, exist_ok=True)
    if not os.access(cache_dir, os.W_OK):
        raise PermissionError(f"the cache folder {cache_dir} is not writable: pass another cache_dir")
    for stale in glob.glob(os.path.join(cache_dir, "sprites_frames_*" + TMP_SUFFIX)):
        os.remove(stale)
    return cache_dir


def open_frames_cache(path: str) -> np.ndarray:
    """The cached frames, memory-mapped, after checking the file: a truncated, empty or foreign file is named with
    what to do."""
    advice = "delete it to render the frames again"
    try:
        frames = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"the SPRITES cache {path} cannot be read ({error}): {advice}") from None
    if frames.shape != FRAMES_SHAPE or frames.dtype != np.uint8:
        raise ValueError(f"the SPRITES cache {path} holds {frames.dtype} {frames.shape}, not uint8 {FRAMES_SHAPE}: "
                         f"{advice}")  # fmt: skip
    return frames


def load_sprite_frames(root: str | None = None, cache_dir: str | None = None) -> np.ndarray:
    """:func:`render_sprites`, cached as ``sprites_frames_<hash of the sheets>.npy`` in ``cache_dir`` (default
    ``~/.cache/gpytorch_vae``, created if needed; :func:`cache_folder`) and memory-mapped when read back
    (:func:`open_frames_cache`)."""
    root = sheets_folder(root)
    cache_dir = cache_folder(cache_dir)
    path = os.path.join(cache_dir, f"sprites_frames_{_cache_key(root)}.npy")
    if not os.path.exists(path):
        frames = render_sprites(root)
        atomic_write(path, lambda f: np.save(f, frames))
    return open_frames_cache(path)


@dataclass(frozen=True)
class SpritesSplits:
    """The protocol's frames, as ``(character, pose)`` index pairs into the ``(1296, 72, ...)`` frames.

    :ivar train_characters: the 1000 training characters in order of first appearance ``(1000,)``.
    :ivar train: ``(50000, 2)`` rows ``[character, pose]``: 50 sampled frames of each training character, character
        by character (in ``train_characters`` order), in sampled order.
    :ivar heldout: ``(22000, 2)``: the other 22 frames of each training character, ascending.
    :ivar test_characters: the 296 test characters in order of first appearance ``(296,)``.
    :ivar context: ``(10656, 2)``: the first 36 frames of each test character (its sequences in order of
        appearance, 8 frames each).
    :ivar target: ``(10656, 2)``: the other 36.
    """

    train_characters: np.ndarray
    train: np.ndarray
    heldout: np.ndarray
    test_characters: np.ndarray
    context: np.ndarray
    target: np.ndarray


def _characters_in_order(characters: np.ndarray, seed_permutation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sequences label-major (sequence ``k = n * label + j`` is character ``characters[j]``), reordered by
    ``seed_permutation``; returns the characters by first appearance and, for each, its pose order (its 9
    sequences in order of appearance, 8 frames each)."""
    n = len(characters)
    order = seed_permutation
    seq_character = np.tile(characters, 9)[order]
    seq_label = np.repeat(np.arange(9), n)[order]
    first, poses = {}, {}
    for character, label in zip(seq_character.tolist(), seq_label.tolist()):
        first.setdefault(character, len(first))
        poses.setdefault(character, []).extend(range(8 * label, 8 * label + 8))
    ordered = np.array(sorted(first, key=first.get))
    return ordered, np.array([poses[c] for c in ordered])


def sprites_splits() -> SpritesSplits:
    """The protocol's split and frame choice: ``np.random.seed(423)`` permutation of the 1296 characters (1000 train,
    296 test); ``np.random.seed(0)``, then permutations of the 9000 training and 2664 test sequences (one stream, in
    this order); characters numbered by first appearance; ``random.seed(0)`` once, then per training character
    ``random.sample(range(72), 50)`` (the reference leaves Python's ``random`` unseeded here, so its choice cannot
    be reproduced: the seed is this library's). Draws on private generators: global states are left alone."""
    perm = np.random.RandomState(423).permutation(NUM_CHARACTERS)
    train_chars, test_chars = perm[:NUM_TRAIN], perm[NUM_TRAIN:]
    stream = np.random.RandomState(0)
    p_train, p_test = stream.permutation(9 * len(train_chars)), stream.permutation(9 * len(test_chars))
    train_order, train_poses = _characters_in_order(train_chars, p_train)
    test_order, test_poses = _characters_in_order(test_chars, p_test)
    rng = random.Random(0)
    train, heldout = [], []
    for character, poses in zip(train_order, train_poses):
        chosen = rng.sample(range(FRAMES_PER_CHARACTER), TRAIN_FRAMES)
        rest = sorted(set(range(FRAMES_PER_CHARACTER)) - set(chosen))
        train += [(character, poses[i]) for i in chosen]
        heldout += [(character, poses[i]) for i in rest]
    pairs = lambda chars, poses, sl: np.array([(c, p) for c, ps in zip(chars, poses) for p in ps[sl]])  # noqa: E731
    return SpritesSplits(
        train_characters=train_order,
        train=np.array(train),
        heldout=np.array(heldout),
        test_characters=test_order,
        context=pairs(test_order, test_poses, slice(None, CONTEXT_FRAMES)),
        target=pairs(test_order, test_poses, slice(CONTEXT_FRAMES, None)),
    )


class SpriteFrames(Dataset):
    """Frames ``(character, pose)`` of the rendered set as a :class:`torch.utils.data.Dataset` of ``(aux, image)``:
    ``aux = [character slot, pose id]`` (float64; the slot numbers the characters of this split in order, e.g. for a
    GP-LVM or the representation network's grouping) and the image ``(64, 64, 3)`` as float32 in ``[0, 1)`` (uint8 /
    256, as the protocol). An index may be a list or tensor of rows (a whole batch at once).

    :param frames: the rendered frames ``(1296, 72, 64, 64, 3)`` uint8 (e.g. :func:`load_sprite_frames`).
    :param pairs: ``(n, 2)`` rows ``[character, pose]`` (e.g. ``sprites_splits().train``).
    """

    def __init__(self, frames: np.ndarray, pairs: np.ndarray):
        self.frames, self.pairs = frames, np.asarray(pairs)
        _, slots = np.unique(self.pairs[:, 0], return_inverse=True)
        first = {}
        for character in self.pairs[:, 0].tolist():  # slots in order of first appearance
            first.setdefault(character, len(first))
        self.slots = np.array([first[c] for c in self.pairs[:, 0].tolist()])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(index)
        aux = np.stack([self.slots[index], self.pairs[index, 1]], axis=-1).astype(np.float64)
        images = self.frames[self.pairs[index, 0], self.pairs[index, 1]].astype(np.float32) / 256.0
        return torch.from_numpy(aux), torch.from_numpy(images)
