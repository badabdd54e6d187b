"""Episode and latent files: a malformed file is refused by name before anything is built from
it, and the stages skip it like a truncated one, so no NaN or misshapen frame reaches a model."""

from __future__ import annotations

import gc
import io
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from dreamgym.episodes import EpisodeFileError, read_episode, read_latents, read_npz
from dreamgym.files import npz_bytes
from dreamgym.games import lookup
from dreamgym.mdnrnn import LatentEpisodes
from dreamgym.vae import frame_batches

DOOM, CAR = lookup("doom"), lookup("carracing")


def episode(steps: int = 4, game=DOOM, **changes) -> dict[str, np.ndarray]:
    arrays = {
        "frames": np.zeros((steps + 1, 64, 64, 3), np.uint8),
        "actions": np.zeros(steps, np.int64) if game.discrete else np.zeros((steps, 3), np.float32),
        "rewards": np.ones(steps, np.float32),
        "dones": np.zeros(steps, bool),
    }
    arrays.update(changes)
    return arrays


def latents(steps: int = 4, z_dim: int = 3, **changes) -> dict[str, np.ndarray]:
    arrays = {
        "mu": np.zeros((steps + 1, z_dim), np.float32),
        "logvar": np.zeros((steps + 1, z_dim), np.float32),
        "actions": np.zeros(steps, np.int64),
        "rewards": np.ones(steps, np.float32),
        "dones": np.zeros(steps, bool),
    }
    arrays.update(changes)
    return arrays


def write(path, arrays):
    path.write_bytes(npz_bytes(arrays))
    return path


BAD_EPISODES = {
    "frames 32x32": episode(frames=np.zeros((5, 32, 32, 3), np.uint8)),
    "frames RGBA": episode(frames=np.zeros((5, 64, 64, 4), np.uint8)),
    "frames 1-D": episode(frames=np.zeros(5, np.uint8)),
    "frames float": episode(frames=np.zeros((5, 64, 64, 3), np.float32)),
    "0 steps": episode(steps=0),
    "NaN reward": episode(rewards=np.array([1, np.nan, 1, 1], np.float32)),
    "inf reward": episode(rewards=np.array([1, np.inf, 1, 1], np.float32)),
    "done 2": episode(dones=np.array([0, 0, 0, 2], np.int64)),
    "action out of range": episode(actions=np.array([0, 1, 3, 0])),
    "negative action": episode(actions=np.array([0, -1, 0, 0])),
    "float Doom actions": episode(actions=np.array([0.0, 1.5, 0, 0])),
    "one frame too many": episode(frames=np.zeros((6, 64, 64, 3), np.uint8)),
}


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_a_malformed_episode_file_is_refused_by_name(case, tmp_path):
    path = write(tmp_path / "episode_000003.npz", BAD_EPISODES[case])
    with pytest.raises(EpisodeFileError, match="episode_000003.npz"):
        read_episode(path, DOOM)


@pytest.mark.parametrize(
    "actions",
    [
        np.array([[0, 0.5, 0]] * 3 + [[np.nan, 0, 0]], np.float32),
        np.array([[0, 0.5, 0]] * 3 + [[1.5, 0, 0]], np.float32),
        np.zeros((4, 2), np.float32),
    ],
)
def test_carracing_actions_must_be_finite_and_within_the_bounds(actions, tmp_path):
    path = write(tmp_path / "episode_000001.npz", episode(game=CAR, actions=actions))
    with pytest.raises(EpisodeFileError, match="episode_000001.npz"):
        read_episode(path, CAR)


@pytest.mark.parametrize(
    "changes",
    [
        {"mu": np.array([[0, 0, np.nan]] * 5, np.float32)},
        {"logvar": np.full((5, 3), np.inf, np.float32)},
        {"logvar": np.full((5, 3), 1e6, np.float32)},
        {"mu": np.zeros((5, 4), np.float32)},
        {"mu": np.zeros((4, 3), np.float32), "logvar": np.zeros((4, 3), np.float32)},
        {"rewards": np.array([np.nan] * 4, np.float32)},
    ],
)
def test_a_malformed_latent_file_is_refused_by_name(changes, tmp_path):
    path = write(tmp_path / "episode_000007.npz", latents(**changes))
    with pytest.raises(EpisodeFileError, match="episode_000007.npz"):
        read_latents(path, DOOM)


def test_well_formed_files_are_read_unchanged(tmp_path):
    for game in (DOOM, CAR):
        arrays = episode(game=game)
        read = read_episode(write(tmp_path / f"episode_{game.name}.npz", arrays), game)
        assert all(np.array_equal(read[key], arrays[key]) for key in arrays)
    read = read_latents(write(tmp_path / "episode_000009.npz", latents()), DOOM)
    assert read["mu"].shape == (5, 3)


def npy_bytes(header: str, data: bytes) -> bytes:
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


@pytest.mark.parametrize(
    "member, damage",
    [
        (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", bytes(16)), "smaller"),
        (npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", bytes(8)), "Python objects"),
        (b"\x93NUMPY\x09\x00" + bytes(200), "version"),
    ],
)
def test_an_array_is_never_larger_than_its_bytes_nor_unpickled(member, damage, tmp_path):
    path = tmp_path / "episode_000005.npz"
    arrays = episode()
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{key}.npy", member if key == "rewards" else buffer.getvalue())
    with pytest.raises(EpisodeFileError, match=f"episode_000005.npz.*{damage}"):
        read_episode(path, DOOM)


class _SwitchesThreadsWhenCollected:
    def __del__(self):
        time.sleep(0)


def test_reader_threads_at_different_depths_read_at_once(tmp_path):
    """numpy parses .npy headers with the AST, whose recursion count CPython 3.11.7 shares between
    threads; a collection running a finalizer mid-parse hands the GIL over. Without the header lock
    this fails with SystemError in most runs (it cannot pass falsely: the lock is what holds)."""
    path = write(tmp_path / "episode_000001.npz", {"a": np.zeros(3)})

    def read_at_depth(depth: int) -> int:
        if depth:
            return read_at_depth(depth - 1)
        for _ in range(1000):
            garbage = _SwitchesThreadsWhenCollected()
            garbage.cycle = garbage
            read_npz(path, ("a",))
        return 0

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(100)
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(read_at_depth, range(0, 40, 5))) == [0] * 8
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


def test_ms_data_and_vs_batches_skip_malformed_files_and_say_which(tmp_path):
    good = [write(tmp_path / f"episode_00000{i}.npz", latents()) for i in range(2)]
    bad = write(tmp_path / "episode_000005.npz", latents(rewards=np.array([1, np.nan, 1, 1], np.float32)))
    skipped: list[str] = []
    data = LatentEpisodes.load([*good, bad], DOOM, torch.device("cpu"), skipped.append)
    assert len(data) == 2 and bool(torch.isfinite(data.rewards).all())
    assert len(skipped) == 1 and "episode_000005.npz" in skipped[0]

    frames_dir = tmp_path / "episodes"
    frames_dir.mkdir()
    files = [
        write(frames_dir / "episode_000000.npz", episode()),
        write(frames_dir / "episode_000001.npz", episode(frames=np.zeros((5, 32, 32, 3), np.uint8))),
    ]
    skipped.clear()
    batches = list(frame_batches(files, 2, np.random.default_rng(0), 100, on_skip=skipped.append))
    assert sum(len(b) for b in batches) == 5 and all(b.shape[1:] == (64, 64, 3) for b in batches)
    assert len(skipped) == 1 and "episode_000001.npz" in skipped[0]


@pytest.mark.parametrize("limit", [3, 5, 12, 23])
def test_vs_batches_draw_exactly_the_frames_asked_for_repeating_a_small_dataset(limit, tmp_path):
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8)
    files = [
        write(tmp_path / "episode_000000.npz", episode(frames=frames)),
        write(tmp_path / "episode_000001.npz", episode(frames=np.zeros((5, 32, 32, 3), np.uint8))),
    ]
    skipped: list[str] = []
    batches = list(frame_batches(files, 2, np.random.default_rng(0), 5, limit=limit, on_skip=skipped.append))
    drawn = np.concatenate(batches)[:, 0, 0, 0]
    assert len(drawn) == limit and all(len(b) <= 2 for b in batches)
    assert np.bincount(drawn, minlength=5).min() >= limit // 5 - 1  # every frame, pass after pass
    assert len(skipped) <= 1 and (limit <= 5 or skipped)  # the damaged file: reported once, not every pass


def test_vs_batches_stop_when_no_file_is_readable(tmp_path):
    bad = write(tmp_path / "episode_000000.npz", episode(frames=np.zeros((5, 32, 32, 3), np.uint8)))
    assert list(frame_batches([bad], 2, np.random.default_rng(0), 100, limit=10)) == []


def test_an_extra_member_is_never_decompressed_and_the_sizes_are_bounded_together(tmp_path, monkeypatch):
    import dreamgym.episodes as episodes

    path = tmp_path / "episode_000000.npz"
    path.write_bytes(npz_bytes(episode()))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:  # a 256 MiB member that compresses to ~0.25 MB
        with archive.open("padding.npy", "w", force_zip64=True) as member:
            block = np.zeros(1 << 24, np.uint8).tobytes()
            for _ in range(16):
                member.write(block)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile,
        "open",
        lambda self, name, *a, **k: opened.append(getattr(name, "filename", name)) or real_open(self, name, *a, **k),
    )
    assert sorted(read_episode(path)) == ["actions", "dones", "frames", "rewards"]
    assert "padding.npy" not in opened
    monkeypatch.setattr(episodes, "MAX_ARRAY_BYTES", 64 * 64 * 3 * 5 + 100)  # each array fits, all of them do not
    with pytest.raises(EpisodeFileError, match="bytes together"):
        read_episode(path)
