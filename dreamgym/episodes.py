"""The files that carry data between stages: episodes (what collect records) and latents (what
encode makes of them), read by V, M and the pictures alike.

An episode file ``episodes/episode_000042.npz`` holds::

    frames   (T + 1, 64, 64, 3) uint8   preprocessed observations, the last one after the last action
    actions  (T,) integer in [0, n) or (T, action_dim) float32 within the game's bounds
    rewards  (T,) float32
    dones    (T,) bool                  True on the step that terminated the episode (not truncation)

A latent file ``latents/episode_000042.npz`` holds μ and log σ² of every frame, (T + 1, z_dim)
float32, and the episode's actions, rewards and dones. T ≥ 1 in both.

Files are written under a temporary name and renamed, so a file that exists is complete. A
reader checks every array (keys, shapes, dtypes, lengths, finiteness, action ranges) before
anything is built from it: a damaged or malformed file is an :class:`EpisodeFileError` naming
the file and what is wrong, and the stages report it and skip the file, so no NaN and no
misshapen frame ever reaches a model.
"""

from __future__ import annotations

import collections
import io
import math
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dreamgym.files import DamagedFileError, npz_bytes
from dreamgym.games import FRAME_SIZE, Game
from dreamgym.rundir import RunDir

EPISODE_GLOB = "episode_*.npz"
EPISODE_KEYS = ("frames", "actions", "rewards", "dones")
LATENT_KEYS = ("mu", "logvar", "actions", "rewards", "dones")
MAX_LOGVAR = 30.0
"""|log σ²| above this is no posterior V can produce; such a file is refused."""
DATA_READERS = min(8, os.cpu_count() or 1)
"""Threads that read and decompress files for V's and M's training."""
MAX_ARRAY_BYTES = 4 << 30
"""The largest array a file may hold (an Atari episode of 27,000 steps is 0.33 GiB of frames)."""
_HEADER_LOCK = threading.Lock()
"""numpy parses an .npy header with ``ast.literal_eval``, and CPython before 3.11.8 counts the AST
converter's recursion per interpreter, not per thread: two threads parsing at once can fail with
``SystemError: AST constructor recursion depth mismatch``. Reader threads decompress in parallel
and parse headers one at a time."""


class EpisodeFileError(DamagedFileError):
    """An episode or latent file is truncated, damaged or malformed; the message names it."""


def episode_path(directory: Path, index: int) -> Path:
    return directory / f"episode_{index:06d}.npz"


def episode_files(directory: str | os.PathLike[str]) -> list[Path]:
    return sorted(Path(directory).glob(EPISODE_GLOB))


def latent_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    return episode_files(RunDir(run_dir).latents)


def episode_index(path: Path) -> int:
    """The index in an episode (or latent) file's name: ``episode_000042.npz`` -> 42."""
    return int(path.stem.split("_")[-1])


def split_files(paths: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    """(training, validation): every ``every``-th episode is held out, the same ones at every stage."""
    validation = [p for p in paths if episode_index(p) % every == every - 1]
    held_out = set(validation)
    training = [p for p in paths if p not in held_out]
    return training, validation


def episode_bytes(frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> bytes:
    """One episode as the bytes of a compressed npz file (what a worker sends back)."""
    return npz_bytes({"frames": frames, "actions": actions, "rewards": rewards, "dones": dones}, compressed=True)


# --------------------------------------------------------------------------- reading, checked


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz file (never unpickled; other members are not read), or
    EpisodeFileError naming the file and the damage. What is decompressed is bounded by the
    sizes the archive declares, and those by MAX_ARRAY_BYTES, each and together."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            missing = [key for key in keys if key not in members]
            if missing:
                raise EpisodeFileError(f"{path}: missing arrays {missing}")
            total = sum(members[key].file_size for key in keys)
            if total > MAX_ARRAY_BYTES:
                raise EpisodeFileError(
                    f"{path}: arrays {list(keys)} are {total} bytes together, "
                    f"more than the {MAX_ARRAY_BYTES} a file may hold"
                )
            arrays = {}
            for key in keys:
                info = members[key]
                with archive.open(info) as member:  # zlib releases the GIL: readers run in parallel
                    raw = member.read(info.file_size + 1)
                if len(raw) != info.file_size:
                    raise EpisodeFileError(
                        f"{path}: array {key!r} holds {'more' if len(raw) > info.file_size else 'less'} "
                        f"than the {info.file_size} bytes its archive entry declares"
                    )
                arrays[key] = _npy_array(raw)
            return arrays
    except EpisodeFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise EpisodeFileError(f"{path} is damaged or truncated ({type(error).__name__}: {error})") from error


def _npy_array(raw: bytes) -> np.ndarray:
    """The array of an .npy file's bytes: never unpickled, never larger than the bytes it came in."""
    stream = io.BytesIO(raw)
    with _HEADER_LOCK:
        major, _ = np.lib.format.read_magic(stream)
        read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
        if read_header is None:
            raise ValueError(f".npy format version {major} is not one numpy's savez writes (1 or 2)")
        shape, fortran_order, dtype = read_header(stream)
    if dtype.hasobject:
        raise ValueError(f"arrays of Python objects ({dtype}) are refused")
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=stream.tell())
    return array.reshape(shape, order="F" if fortran_order else "C").copy()


def read_episode(path: Path, game: Game | None = None) -> dict[str, np.ndarray]:
    """An episode file, checked (with ``game``, its actions' range too)."""
    episode = read_npz(path, EPISODE_KEYS)
    frames = episode["frames"]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3):
        raise EpisodeFileError(
            f"{path}: frames must be uint8 of shape (T + 1, {FRAME_SIZE}, {FRAME_SIZE}, 3), "
            f"got {frames.dtype} {frames.shape}"
        )
    _check_steps(path, episode, len(frames), "frames", game)
    return episode


def read_latents(path: Path, game: Game | None = None) -> dict[str, np.ndarray]:
    """A latent file, checked (with ``game``, its actions' range too)."""
    latents = read_npz(path, LATENT_KEYS)
    mu, logvar = latents["mu"], latents["logvar"]
    for name, array in (("mu", mu), ("logvar", logvar)):
        if array.dtype.kind != "f" or array.ndim != 2 or array.shape[1] < 1:
            raise EpisodeFileError(
                f"{path}: {name} must be float of shape (T + 1, z_dim), got {array.dtype} {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise EpisodeFileError(f"{path}: {name} holds NaN or inf")
    if mu.shape != logvar.shape:
        raise EpisodeFileError(f"{path}: mu {mu.shape} and logvar {logvar.shape} differ")
    if np.any(np.abs(logvar) > MAX_LOGVAR):
        raise EpisodeFileError(f"{path}: logvar outside [-{MAX_LOGVAR:g}, {MAX_LOGVAR:g}]")
    _check_steps(path, latents, len(mu), "latents", game)
    return latents


def _check_steps(path: Path, arrays: dict[str, np.ndarray], frames: int, what: str, game: Game | None) -> None:
    """Actions, rewards and dones: T of each for T + 1 frames (T ≥ 1), finite, of the right kind."""
    actions, rewards, dones = arrays["actions"], arrays["rewards"], arrays["dones"]
    steps = len(actions)
    if steps < 1 or frames != steps + 1 or rewards.shape != (steps,) or dones.shape != (steps,):
        raise EpisodeFileError(
            f"{path}: inconsistent lengths: {frames} {what}, actions {actions.shape}, "
            f"rewards {rewards.shape}, dones {dones.shape} (expected T + 1 {what} for T ≥ 1 steps)"
        )
    if rewards.dtype.kind not in "fiu" or not np.all(np.isfinite(rewards)):
        raise EpisodeFileError(f"{path}: rewards must be finite numbers")
    if dones.dtype.kind not in "biuf" or not np.all((dones == 0) | (dones == 1)):
        raise EpisodeFileError(f"{path}: dones must be 0 or 1")
    if actions.dtype.kind not in "iuf" or not np.all(np.isfinite(actions)):
        raise EpisodeFileError(f"{path}: actions must be finite numbers, got {actions.dtype}")
    if game is None:
        return
    if game.discrete:
        if (
            actions.ndim != 1
            or actions.dtype.kind not in "iu"
            or np.any(actions < 0)
            or np.any(actions >= game.action_dim)
        ):
            raise EpisodeFileError(
                f"{path}: {game.name} actions must be integers in [0, {game.action_dim - 1}] "
                f"of shape (T,), got {actions.dtype} {actions.shape}"
            )
        return
    space = game.box
    if actions.shape != (steps, *space.shape) or np.any(actions < space.low) or np.any(actions > space.high):
        raise EpisodeFileError(
            f"{path}: {game.name} actions must be of shape (T, {space.shape[0]}) within "
            f"low={space.low}, high={space.high}"
        )


def iter_valid(
    paths: list[Path],
    read: Callable[[Path], dict],
    on_skip: Callable[[str], None] | None = None,
    readers: int = 1,
) -> Iterator[tuple[Path, dict]]:
    """(path, contents) of every readable file, in the order of ``paths``; each damaged one is
    reported and skipped. With ``readers`` > 1, that many threads read ahead (zlib and file
    reads release the GIL, so decompression runs in parallel); the result is the same."""
    with ThreadPoolExecutor(max(1, readers)) as pool:
        pending: collections.deque[tuple[Path, Future]] = collections.deque()
        for path in paths:
            pending.append((path, pool.submit(read, path)))
            if len(pending) > 2 * readers:
                yield from _checked(*pending.popleft(), on_skip)
        while pending:
            yield from _checked(*pending.popleft(), on_skip)


def _checked(path: Path, future: Future, on_skip: Callable[[str], None] | None) -> Iterator[tuple[Path, dict]]:
    try:
        yield path, future.result()
    except EpisodeFileError as error:
        if on_skip is not None:
            on_skip(f"skipping damaged file: {error}")
