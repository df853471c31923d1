"""Healing MNIST: the generator of ``docs/protocols/healing_mnist.md`` (issue #21) and the imputation metrics.

Fast: synthetic source images, no MNIST files needed (one test reads the real files where ``$GPYTORCH_VAE_DATA``
names them).
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from external_data import MNIST_DIR, needs_mnist

from gpytorch_vae.data import DATA_ENV, HealingMNIST, RowBatches, load_mnist
from gpytorch_vae.data import healing_mnist as hm
from gpytorch_vae.metrics import downstream_auroc, masked_bernoulli_nll, masked_mse

NUM = 24


def synthetic_images(n: int = NUM) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like uint8 images: a bar whose position and length vary, plus sparse grey speckle."""
    rng = np.random.default_rng(2024)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        top, left = 4 + i % 6, 10 + i % 5
        images[i, top : top + 12 + i % 7, left : left + 4] = 255
        images[i, 14 - i % 3 : 16 - i % 3, 6:22] = 200
    speckle = (rng.random(images.shape) < 0.05) * rng.integers(0, 256, images.shape)
    return np.maximum(images, speckle).astype(np.uint8), np.arange(n) % 10


@pytest.fixture(scope="module")
def sources():
    return synthetic_images()


@pytest.fixture(scope="module")
def datasets(sources):
    return {mechanism: HealingMNIST.from_arrays(*sources, mechanism=mechanism) for mechanism in hm.MECHANISMS}


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().astype(np.uint8).tobytes()).hexdigest()[:16]


# Pinned data, compared as tests/README.md says. The masks of the "random" and "frames" mechanisms are pure draws of
# numpy's PCG64 stream (no floating-point arithmetic but the comparison), the same on every CPU: their sha256 prefix
# and number of missing pixels are pinned exactly. The frames (a LAPACK Cholesky and a reduction give the angles,
# scipy rotates, then binarises at 0.5) and the "mnar" mask (which reads the frames) can differ in a pixel where a
# rotated value lies within rounding of 0.5, so they are compared with the arrays in PINNED_FILE, allowing
# MAX_FLIPPED_PIXELS differing pixels, and an "mnar" mask may differ only where the frames do.
PINNED_FILE = Path(__file__).with_name("data") / "healing_mnist_pinned.npz"
MAX_FLIPPED_PIXELS = 5
MISSING_DIGESTS = {  # the first 3 sequences of the synthetic sources
    "random": ("bfa3d24ce1b3e10d", 14063),
    "frames": ("6ceaf3b5298700c5", 9408),  # 3 sequences x 4 frames x 784 pixels
}
REAL_MISSING_DIGESTS = {  # the first 20 training sequences of MNIST (also the first of the quick and full sets)
    "random": ("6591a4e11c49294d", 93891),
    "frames": ("e646dcdd311bde72", 62720),
}
FIRST_ANGLES = {  # degrees, the first sequence of the training (seed 0) and test (seed 1) splits
    0: [7.543813266651349, 4.56576500102681, 6.995704698632563, 13.696059551305694, 19.483447247276594,
        20.02218740385787, 17.122765377952383, 18.346010950135415, 29.469335009318474, 46.43856163484738],
    1: [20.73505152676703, 35.600818812802416, 48.12781973280464, 48.37409714234992, 35.82104949433834,
        19.71773324064953, 9.86745168883845, 8.775655737125131, 12.774142333721814, 18.065118131924766],
}  # fmt: skip
ANGLES_RTOL = 1e-9  # 25x the largest difference seen between two CPUs (4e-11, Intel Xeon against AMD EPYC)


def pinned_arrays(prefix: str) -> dict[str, np.ndarray]:
    """The pinned ``frames`` and ``mnar`` missing mask of ``prefix`` (``"synthetic"`` or ``"real"``), bool."""
    with np.load(PINNED_FILE) as pinned:
        return {name: hm._unpack(pinned[f"{prefix}_{name}"]) for name in ("frames", "mnar")}


def assert_matches_pinned(datasets: dict, rows: torch.Tensor, prefix: str, digests: dict) -> None:
    """``datasets`` (one per mechanism) give the pinned data at ``rows``: exact masks of pure draws, the frames and
    the ``mnar`` mask within :data:`MAX_FLIPPED_PIXELS` pixels (the mask only where the frames differ)."""
    pinned = pinned_arrays(prefix)
    frames = datasets["random"].full_frames(rows).bool().numpy()
    flipped = frames != pinned["frames"]
    assert flipped.sum() <= MAX_FLIPPED_PIXELS, f"{flipped.sum()} pixels differ from the pinned frames"
    for mechanism, (sha, count) in digests.items():
        missing = datasets[mechanism].missing_mask(rows)
        assert (digest(missing), int(missing.sum())) == (sha, count), mechanism
    mnar_differs = datasets["mnar"].missing_mask(rows).numpy() != pinned["mnar"]
    assert not (mnar_differs & ~flipped).any(), "the mnar mask differs where the frames do not"


def write_pinned_arrays(real_images: np.ndarray, real_labels: np.ndarray) -> None:
    """Write :data:`PINNED_FILE` from this checkout's generator (run only to re-pin on purpose, e.g.
    ``python tests/test_healing_mnist_data.py``, with the MNIST files in ``$GPYTORCH_VAE_DATA``)."""
    arrays = {}
    for prefix, (images, labels), n in (("synthetic", synthetic_images(), 3), ("real", (real_images, real_labels), 20)):
        for name, mechanism in (("frames", "random"), ("mnar", "mnar")):
            data = HealingMNIST.from_arrays(images[:n], labels[:n], mechanism=mechanism)
            array = data.full_frames(torch.arange(n)).bool() if name == "frames" else data.missing_mask(torch.arange(n))
            arrays[f"{prefix}_{name}"] = np.packbits(array.numpy(), axis=-1)
    PINNED_FILE.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED_FILE, **arrays)


class TestPinned:
    def test_frames_and_masks_of_the_first_sequences(self, datasets):
        assert_matches_pinned(datasets, torch.arange(3), "synthetic", MISSING_DIGESTS)

    def test_first_angles(self):
        for seed, angles in FIRST_ANGLES.items():
            np.testing.assert_allclose(hm.gp_angles(1, seed)[0], angles, rtol=ANGLES_RTOL, atol=0)

    def test_pinned_comparisons_can_fail(self, sources, datasets, monkeypatch):
        """A changed seed, lengthscale or row order of the angles, or frames rotated the other way, are caught."""
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(hm.gp_angles(1, 2)[0], FIRST_ANGLES[0], rtol=ANGLES_RTOL, atol=0)
        with pytest.raises(AssertionError):  # the second draw of the stream in place of the first
            np.testing.assert_allclose(hm.gp_angles(2, 0)[1], FIRST_ANGLES[0], rtol=ANGLES_RTOL, atol=0)
        monkeypatch.setattr(hm, "LENGTHSCALE", 3.0 * (1 + 1e-8))
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(hm.gp_angles(1, 0)[0], FIRST_ANGLES[0], rtol=ANGLES_RTOL, atol=0)
        monkeypatch.undo()
        monkeypatch.setattr(hm, "gp_angles", lambda n, seed: -datasets["random"].angles[:n])  # turned the other way
        mirrored = {m: HealingMNIST.from_arrays(*sources, mechanism=m) for m in hm.MECHANISMS}
        with pytest.raises(AssertionError, match="pixels differ"):
            assert_matches_pinned(mirrored, torch.arange(3), "synthetic", MISSING_DIGESTS)


class TestAngles:
    def test_reproducible_prefix_consistent_and_split_dependent(self, sources):
        np.testing.assert_array_equal(hm.gp_angles(50, 0), hm.gp_angles(50, 0))
        np.testing.assert_array_equal(hm.gp_angles(7, 0), hm.gp_angles(50, 0)[:7])  # the i-th draw
        train = HealingMNIST.from_arrays(*sources, split="train")
        test = HealingMNIST.from_arrays(*sources, split="test")
        assert (train.seed, test.seed) == (0, 1)
        np.testing.assert_array_equal(train.angles, hm.gp_angles(NUM, 0))
        np.testing.assert_array_equal(test.angles, hm.gp_angles(NUM, 1))
        assert not np.allclose(train.angles, test.angles)
        assert not torch.equal(train.full_frames(torch.arange(NUM)), test.full_frames(torch.arange(NUM)))

    def test_gp_statistics(self):
        angles = hm.gp_angles(4000, 5)
        assert angles.shape == (4000, 10)
        assert abs(angles.std() - 60.0) < 3.0 and abs(angles.mean()) < 3.0
        lag1 = np.corrcoef(angles[:, 3], angles[:, 4])[0, 1]
        assert abs(lag1 - np.exp(-1 / 18)) < 0.02  # RBF, lengthscale 3


class TestFrames:
    def test_rotation_and_binarization(self, sources):
        images = sources[0][:2]
        frames = hm.rotate_frames(images, np.zeros((2, 10)))
        np.testing.assert_array_equal(frames[:, 3], (images / 255.0 > 0.5).reshape(2, 784))
        upside_down = hm.rotate_frames(images, np.full((2, 10), 180.0))
        np.testing.assert_array_equal(
            upside_down[:, 0].reshape(2, 28, 28), frames[:, 0].reshape(2, 28, 28)[:, ::-1, ::-1]
        )

    def test_chunk_size_and_prefix_do_not_change_the_data(self, sources, datasets, monkeypatch):
        monkeypatch.setattr(hm, "CHUNK", 5)
        rows = torch.arange(10)
        for mechanism, data in datasets.items():
            for other in (HealingMNIST.from_arrays(*sources, mechanism=mechanism),  # chunked by 5
                          HealingMNIST.from_arrays(sources[0][:10], sources[1][:10], mechanism=mechanism)):  # fmt: skip
                assert torch.equal(other.full_frames(rows), data.full_frames(rows))
                assert torch.equal(other.missing_mask(rows), data.missing_mask(rows))


class TestMissingness:
    def test_rates_follow_the_protocol(self, datasets):
        rows = torch.arange(NUM)  # 188,160 pixels
        frames = datasets["random"].full_frames(rows).bool()

        def near(values, p):
            return abs(values.float().mean().item() - p) < 5 * (p * (1 - p) / values.numel()) ** 0.5

        assert near(datasets["random"].missing_mask(rows), 0.6)
        mnar = datasets["mnar"].missing_mask(rows)
        assert frames.sum() > 5000 and near(mnar[frames], 0.8) and near(mnar[~frames], 0.4)

    def test_frames_mechanism_hides_four_inner_frames(self, datasets):
        missing = datasets["frames"].missing_mask(torch.arange(NUM))
        per_frame = missing.any(-1)
        assert torch.equal(missing, per_frame[..., None].expand_as(missing))  # whole frames
        assert (per_frame.sum(-1) == 4).all() and not per_frame[:, 0].any() and not per_frame[:, 9].any()
        # uniform choice: each inner frame hidden in half of many sequences
        hidden = hm.draw_missing("frames", np.zeros((4000, 10, 1), bool), np.random.default_rng(0))[..., 0]
        assert np.abs(hidden[:, 1:9].mean(0) - 0.5).max() < 0.04
        assert (hidden.sum(1) == 4).all() and not hidden[:, [0, 9]].any()

    def test_masks_are_drawn_from_seed_plus_100(self, datasets):
        data = datasets["mnar"]
        frames = data.full_frames(torch.arange(NUM)).bool().numpy()
        expected = hm.draw_missing("mnar", frames, np.random.default_rng(100))
        np.testing.assert_array_equal(data.missing_mask(torch.arange(NUM)).numpy(), expected)


class TestItems:
    def test_observed_entries_are_the_frames_missing_ones_zero(self, datasets):
        rows = torch.tensor([3, 0, 7])
        for data in datasets.values():
            x, y, mask = data[rows]
            full = data.full_frames(rows)
            assert torch.equal(mask, ~data.missing_mask(rows))  # mask: True = observed
            assert torch.equal(y[mask], full[mask]) and (y[~mask] == 0).all()

    def test_shapes_and_index_types(self, datasets):
        data = datasets["random"]
        assert len(data) == NUM and data.num_frames == 10 and data.frame_shape == (28, 28)
        assert data.labels.dtype == np.int64 and data.labels.tolist() == [i % 10 for i in range(NUM)]
        x, y, mask = data[torch.arange(5)]
        assert x.shape == (5, 1, 10, 1) and x.dtype == torch.float64
        assert torch.equal(x[2, 0, :, 0], torch.arange(10, dtype=torch.float64))
        assert y.shape == mask.shape == (5, 10, 784) and y.dtype == torch.float32 and mask.dtype == torch.bool
        single = data[4]
        assert single[0].shape == (1, 10, 1) and single[1].shape == (10, 784)
        for a, b in zip(data[[1, 2]], data[torch.tensor([1, 2])]):
            assert torch.equal(a, b)
        with pytest.raises(TypeError, match="integers"):
            data[torch.tensor([0.5])]
        batches = list(RowBatches(data, batch_size=10))
        assert [b[1].shape[0] for b in batches] == [10, 10, 4] and len(batches[0]) == 3


class TestCache:
    def test_round_trip_without_regenerating(self, sources, datasets, tmp_path, monkeypatch):
        cached = HealingMNIST.from_arrays(*sources, mechanism="mnar", cache_dir=str(tmp_path))
        names = sorted(os.listdir(tmp_path))
        assert len([n for n in names if n.endswith(".npy")]) == 3  # labels, frames, missing-mnar
        monkeypatch.setattr(hm, "rotate_frames", lambda *a: pytest.fail("regenerated instead of reading the cache"))
        again = HealingMNIST.from_arrays(*sources, mechanism="mnar", cache_dir=str(tmp_path))
        rows = torch.arange(NUM)
        for data in (cached, again):
            for a, b in zip(data[rows], datasets["mnar"][rows]):
                assert torch.equal(a, b)
            np.testing.assert_array_equal(data.labels, datasets["mnar"].labels)

    def test_truncated_or_foreign_cache_files_are_refused(self, sources, tmp_path):
        HealingMNIST.from_arrays(*sources, cache_dir=str(tmp_path))
        [frames] = [p for p in tmp_path.iterdir() if p.name.endswith("_frames.npy")]
        content = frames.read_bytes()
        frames.write_bytes(content[: len(content) // 2])
        with pytest.raises(ValueError, match=f"{frames}.*delete it"):
            HealingMNIST.from_arrays(*sources, cache_dir=str(tmp_path))
        np.save(frames, np.zeros((NUM, 10, 98), dtype=np.int16))
        with pytest.raises(ValueError, match=f"{frames}.*not this generator's.*delete it"):
            HealingMNIST.from_arrays(*sources, cache_dir=str(tmp_path))
        frames.write_bytes(b"not an array at all")
        with pytest.raises(ValueError, match=f"{frames}.*delete it"):
            HealingMNIST.from_arrays(*sources, cache_dir=str(tmp_path))

    def test_the_mechanisms_parameter_is_part_of_the_cache_key(self, sources, tmp_path):
        rows, cache = torch.arange(NUM), str(tmp_path)
        protocol = HealingMNIST.from_arrays(*sources, cache_dir=cache).missing_mask(rows)
        lower = HealingMNIST.from_arrays(*sources, cache_dir=cache, missingness=0.2).missing_mask(rows)
        assert abs(protocol.float().mean() - 0.6) < 0.01 and abs(lower.float().mean() - 0.2) < 0.01
        assert torch.equal(HealingMNIST.from_arrays(*sources, cache_dir=cache, missingness=0.6).missing_mask(rows),
                           protocol)  # fmt: skip
        names = sorted(p.name.split("_")[-1] for p in tmp_path.glob("*.npy"))
        assert names == ["frames.npy", "labels.npy", "missing-random-0.2.npy", "missing-random-0.6.npy"]
        two = HealingMNIST.from_arrays(*sources, "train", "frames", cache, missingness=2).missing_mask(rows)
        assert (two.any(-1).sum(-1) == 2).all()
        frames = HealingMNIST.from_arrays(*sources).full_frames(rows).bool()
        mnar = HealingMNIST.from_arrays(*sources, mechanism="mnar", missingness=(0.0, 1.0)).missing_mask(rows)
        assert torch.equal(mnar, frames)  # every pixel that is 1 missing, none that is 0

    def test_a_bad_mechanism_parameter_is_named(self, sources):
        for mechanism, parameter, message in (("random", 1.5, "probability"), ("mnar", 0.3, "two probabilities"),
                                              ("frames", 9, "whole number"), ("frames", 2.5, "whole number")):
            with pytest.raises(ValueError, match=f"{message}.*{parameter}"):
                HealingMNIST.from_arrays(*sources, mechanism=mechanism, missingness=parameter)

    def test_stale_temporary_files_are_removed(self, sources, tmp_path):
        stale = tmp_path / "healing_mnist_v1_x_frames.npy.abc123.tmp"
        stale.write_bytes(b"half a write")
        HealingMNIST.from_arrays(*sources, mechanism="frames", cache_dir=str(tmp_path))
        assert not stale.exists()


class TestArguments:
    def test_bad_arguments_name_the_valid_ones(self, sources):
        with pytest.raises(ValueError, match="mechanism 'mcar'.*'random', 'mnar', 'frames'"):
            HealingMNIST.from_arrays(*sources, mechanism="mcar")
        with pytest.raises(ValueError, match="size 'tiny'.*'full', 'quick'"):
            HealingMNIST(size="tiny")
        with pytest.raises(ValueError, match="split 'val'.*'train', 'test'"):
            HealingMNIST(split="val")
        with pytest.raises(ValueError, match="uint8"):
            HealingMNIST.from_arrays(sources[0].astype(np.float32), sources[1])
        with pytest.raises(ValueError, match="labels"):
            HealingMNIST.from_arrays(sources[0], sources[1][:3])


@needs_mnist
def test_real_mnist_files(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(MNIST_DIR))
    monkeypatch.setitem(hm.SIZES, "quick", {"train": 20, "test": 10})  # the first 20 sequences only, for speed
    images, labels = load_mnist("train", download=False)
    rows = torch.arange(20)
    datasets = {m: HealingMNIST("train", "quick", m, cache_dir=str(tmp_path)) for m in hm.MECHANISMS}
    assert_matches_pinned(datasets, rows, "real", REAL_MISSING_DIGESTS)
    for mechanism, data in datasets.items():
        assert len(data) == 20 and data.labels.tolist() == labels[:20].tolist()
        injected = HealingMNIST.from_arrays(images[:20], labels[:20], mechanism=mechanism)
        assert torch.equal(injected.full_frames(rows), data.full_frames(rows))
        assert torch.equal(injected.missing_mask(rows), data.missing_mask(rows))


class TestMetrics:
    def test_masked_mse_and_nll(self):
        probs = np.array([[0.9, 0.2], [0.5, 0.0]])
        target = np.array([[1.0, 0.0], [1.0, 1.0]])
        where = np.array([[True, False], [True, True]])
        assert masked_mse(probs, target, where) == pytest.approx((0.01 + 0.25 + 1.0) / 3)
        nll = (-np.log(0.9) - np.log(0.5) - np.log(1e-6)) / 3  # p = 0 clipped to 1e-6
        assert masked_bernoulli_nll(probs, target, where) == pytest.approx(nll)
        as_tensors = [torch.tensor(a) for a in (probs, target, where)]
        assert masked_mse(*as_tensors) == pytest.approx(masked_mse(probs, target, where))
        assert masked_bernoulli_nll(*as_tensors) == pytest.approx(nll)
        with pytest.raises(ValueError, match="one shape"):
            masked_mse(probs, target, where[0])
        with pytest.raises(ValueError, match="no entry"):
            masked_mse(probs, target, np.zeros_like(where))

    def test_downstream_auroc(self):
        pytest.importorskip("sklearn")
        rng = np.random.default_rng(0)
        labels = np.tile(np.arange(3), 40)
        separable = rng.normal(size=(120, 2, 3)) * 0.1 + labels[:, None, None]
        assert downstream_auroc(separable, labels) > 0.99
        noise = torch.tensor(rng.normal(size=(120, 6)))
        assert abs(downstream_auroc(noise, labels) - 0.5) < 0.2
        for unbalanced in (np.r_[np.arange(60) % 2, np.arange(60) % 3], np.r_[np.arange(60) % 3, np.arange(60) % 2]):
            with pytest.raises(ValueError, match=r"classes \[2\] occur in only one half"):
                downstream_auroc(separable, unbalanced)


if __name__ == "__main__":
    write_pinned_arrays(*load_mnist("train", download=False))
