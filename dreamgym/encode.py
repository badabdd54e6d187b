"""Encode every episode with the trained V: frames -> latents, the training data of M.

``latents/episode_000042.npz`` holds μ and log σ² of every frame, (T + 1, z_dim) float32, with
the episode's actions, rewards and dones copied over (the format: :mod:`dreamgym.episodes`).
``latents/encoded_with.json`` records the sha256 of the V checkpoint used; when V changes, every
episode is encoded again.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamgym import rundir
from dreamgym.episodes import (
    EpisodeFileError,
    episode_files,
    latent_files,
    read_episode,
    read_latents,
)
from dreamgym.files import atomic_write, atomic_write_text, npz_bytes, sha256_of
from dreamgym.rundir import RunDir
from dreamgym.training import (
    Progress,
    Report,
    StageError,
    no_progress,
    no_report,
    remove_leftover_temporaries,
)
from dreamgym.vae import ConvVAE, encode_frames


@dataclass
class EncodeResult:
    encoded: int
    skipped_damaged: int
    already_done: int
    seconds: float


def encode_run(
    run_dir: str | Path,
    vae: ConvVAE,
    *,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
) -> EncodeResult:
    """Encode ``run_dir/episodes/*`` into ``run_dir/latents/*`` with ``vae`` (from ``run_dir/vae``)."""
    start = time.perf_counter()
    run = RunDir(run_dir)
    out_dir = run.latents
    vae_checkpoint = rundir.checkpoint(run.vae)
    if not vae_checkpoint.exists():
        raise StageError(f"{vae_checkpoint} does not exist: run `dreamgym train-vae` first")
    encoded_with = {"vae_checkpoint_sha256": sha256_of(vae_checkpoint)}
    marker = run.latents_marker
    if out_dir.exists() and (force or not marker.exists() or json.loads(marker.read_text()) != encoded_with):
        if marker.exists() and not force:
            report("latents: V has changed since the last encoding; encoding every episode again")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftover_temporaries(out_dir)
    atomic_write_text(marker, json.dumps(encoded_with) + "\n")
    vae.eval()
    result = EncodeResult(0, 0, 0, 0.0)
    paths = episode_files(run.episodes)
    for done, path in enumerate(paths):
        progress("encode", done, len(paths))
        target = out_dir / path.name
        if target.exists():
            result.already_done += 1
            continue
        try:
            episode = read_episode(path)
        except EpisodeFileError as error:
            report(f"skipping damaged file: {error}")
            result.skipped_damaged += 1
            continue
        mu, logvar = encode_frames(vae, episode["frames"])

        arrays = {"mu": mu, "logvar": logvar, **{key: episode[key] for key in ("actions", "rewards", "dones")}}
        atomic_write(target, functools.partial(_write_npz, arrays=arrays))
        result.encoded += 1
    progress("encode", len(paths), len(paths))
    result.seconds = time.perf_counter() - start
    return result


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.write_bytes(npz_bytes(arrays))


def initial_latents(run_dir: str | Path, report: Report = no_report) -> tuple[np.ndarray, np.ndarray]:
    """μ and log σ² (N, z_dim) of the first frame of every encoded episode: the dream's resets."""
    mus, logvars = [], []
    for path in latent_files(run_dir):
        try:
            latents = read_latents(path)
        except EpisodeFileError as error:
            report(f"skipping damaged file: {error}")
            continue
        mus.append(latents["mu"][0])
        logvars.append(latents["logvar"][0])
    if not mus:
        raise StageError(f"no encoded episodes in {RunDir(run_dir).latents}: run `dreamgym encode` first")
    return np.stack(mus), np.stack(logvars)
