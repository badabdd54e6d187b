"""The real data of an online run (``dreamgym.online``), and the model refined on it: the
agent's real episodes played through the latent twin and recorded with their latents (each
latent file names the V that encoded it), M's training data with recent episodes weighted up,
and the bounded gradient steps that refine M and V on it."""

from __future__ import annotations

import functools
import math
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgym.config import RECONSTRUCTION_LOSSES, OnlineConfig
from dreamgym.episodes import (
    EpisodeFileError,
    episode_bytes,
    episode_index,
    episode_path,
    latent_files,
    read_episode,
    read_latents,
    read_npz,
)
from dreamgym.evaluate import NoisyPolicy, SampledPolicy, act
from dreamgym.files import atomic_write, npz_bytes
from dreamgym.games import Game
from dreamgym.mdnrnn import MDNRNN, SequenceBatch, mdnrnn_losses
from dreamgym.replay import Replay
from dreamgym.rundir import RunDir
from dreamgym.training import StageError
from dreamgym.vae import ConvVAE, encode_frames, frame_errors, frames_to_tensor, vae_loss
from dreamgym.world_model import WorldModel

# --------------------------------------------------------------------------- M's data


class TrainingData:
    """Every real episode as M's training data (μ, log σ², actions, rewards, ends), in memory,
    with the order episodes arrived in (recent ones are weighted up)."""

    def __init__(self) -> None:
        self.episodes: list[dict[str, np.ndarray]] = []

    def add(self, latents: dict[str, np.ndarray], game: Game) -> None:
        self.episodes.append(
            {
                "mu": latents["mu"].astype(np.float32),
                "logvar": latents["logvar"].astype(np.float32),
                "actions": game.encode_actions(latents["actions"]),
                "rewards": latents["rewards"].astype(np.float32),
                "dones": latents["dones"].astype(np.float32),
            }
        )

    @property
    def steps(self) -> int:
        return sum(len(e["actions"]) for e in self.episodes)

    def batch(
        self,
        batch_size: int,
        window: int,
        burn_in: int,
        recent: int,
        rng: np.random.Generator,
        generator: torch.Generator,
        device: torch.device,
    ) -> SequenceBatch:
        """``batch_size`` windows of ``window`` steps: half from the last ``recent`` episodes, half
        from all. A window that starts inside an episode leaves its first ``burn_in`` steps out of
        the loss (M's state is warming up there, as at a dream's data start). A window may run
        past the episode's end (padded), so that every step after the first ``burn_in`` is in the
        loss of as many windows as any other: the last step, where the episode ends, included."""
        count = len(self.episodes)
        recent_first = max(0, count - recent)
        chosen = [
            int(rng.integers(recent_first, count)) if i % 2 == 0 else int(rng.integers(count))
            for i in range(batch_size)
        ]
        z, actions, next_z, rewards, dones, mask = [], [], [], [], [], []
        for index in chosen:
            episode = self.episodes[index]
            steps = len(episode["actions"])
            start = int(rng.integers(0, max(1, steps - burn_in)))
            end = min(steps, start + window)
            rows = slice(start, end)
            noise = torch.randn((end - start + 1, episode["mu"].shape[1]), generator=generator)
            mu = torch.from_numpy(episode["mu"][start : end + 1])
            sampled = mu + torch.exp(0.5 * torch.from_numpy(episode["logvar"][start : end + 1])) * noise
            pad = window - (end - start)
            valid = torch.ones(end - start)
            if start > 0:
                valid[:burn_in] = 0.0
            z.append(_pad(sampled[:-1], pad))
            next_z.append(_pad(sampled[1:], pad))
            actions.append(_pad(torch.from_numpy(episode["actions"][rows]), pad))
            rewards.append(_pad(torch.from_numpy(episode["rewards"][rows]), pad))
            dones.append(_pad(torch.from_numpy(episode["dones"][rows]), pad))
            mask.append(_pad(valid, pad))
        stack = [torch.stack(part).to(device) for part in (z, actions, next_z, rewards, dones, mask)]
        batch = SequenceBatch(*stack)
        return batch._replace(rewards=batch.rewards * batch.mask, dones=batch.dones * batch.mask)


def _pad(tensor: torch.Tensor, pad: int) -> torch.Tensor:
    if pad == 0:
        return tensor
    return torch.cat([tensor, torch.zeros((pad, *tensor.shape[1:]), dtype=tensor.dtype)])


def refine_m(
    model: WorldModel, data: TrainingData, config: OnlineConfig, round_index: int, steps: int | None = None
) -> float:
    """``steps`` (None: ``config.m_steps``) Adam steps on M (member 0) -> the mean loss; the
    dream's M gets the new weights."""
    trainer = MDNRNN(model.mdnrnn.config)
    trainer.load_state_dict(model.mdnrnn.state_dict())
    trainer.train()
    optimizer = torch.optim.Adam(trainer.parameters(), lr=config.m_learning_rate)
    rng = np.random.default_rng([config.seed, round_index, 11])
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + round_index)
    pos_weight = math.exp(model.mdnrnn.config.done_logit_offset)  # the weight its done head was trained with
    losses = []
    for _ in range(config.m_steps if steps is None else steps):
        batch = data.batch(
            config.m_batch_size,
            config.m_window,
            config.warmup,
            config.recent_episodes,
            rng,
            generator,
            torch.device("cpu"),
        )
        parts = mdnrnn_losses(trainer, batch, pos_weight, generator)
        loss = parts["nll"] + parts["reward"] + parts["done"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.mdnrnn.load_state_dict(trainer.state_dict())
    return float(np.mean(losses)) if losses else float("nan")


# --------------------------------------------------------------------------- real play


def recorded_seed(config: OnlineConfig, index: int) -> int:
    """The game seed of the run's recorded real episode ``index`` (the same on every resume)."""
    return config.seed * 1_000_000 + index


def play_real(
    model: WorldModel,
    agent: Any,
    seed: int,
    noise: float,
    max_steps: int | None = None,
    *,
    sample: bool = False,
) -> dict[str, np.ndarray]:
    """One real episode (at most ``max_steps``) through the latent twin with ``agent`` (None: the
    game's exploration policy) and exploration ``noise`` -> frames, actions, rewards and ends.
    ``sample``: the agent draws its actions from its own distribution instead (as in the dream;
    ``noise`` is then unused), from torch's generator seeded with ``seed`` (the caller's
    generator is left as it was), as ``dreamgym evaluate --sample`` plays it."""
    from dreamgym.envs.latent import LatentObservation

    game = model.game
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one frame and one LSTM step at a time: more threads only wait on each other
    real = game.make_real_env()
    env = LatentObservation(real, model, keep_frame=True)
    if agent is None:
        policy = game.explorer(rng, real)
    elif sample:
        sampled = SampledPolicy(agent)
        policy = functools.partial(act, sampled)
    else:
        policy = NoisyPolicy(agent, game, noise, rng)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            observation, info = env.reset(seed=seed)
            frames, actions, rewards, dones = [info["frame"]], [], [], []
            for _ in range(max_steps or game.max_episode_steps):
                action = policy(observation)
                observation, reward, terminated, truncated, info = env.step(action)
                frames.append(info["frame"])
                actions.append(action)
                rewards.append(reward)
                dones.append(terminated)
                if terminated or truncated:
                    break
        finally:
            env.close()
            torch.set_num_threads(threads)
    return {
        "frames": np.stack(frames),
        "actions": np.array(actions, dtype=np.int64 if game.discrete else np.float32),
        "rewards": np.array(rewards, np.float32),
        "dones": np.array(dones, bool),
    }


def real_score(
    model: WorldModel,
    agent: Any,
    seeds: range,
    noise: float = 0.0,
    max_steps: int | None = None,
    *,
    sample: bool = False,
) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``agent`` (with exploration ``noise``, or drawing from its own
    distribution: ``sample``) on real episodes seeded ``seeds``."""
    returns, lengths = [], []
    for seed in seeds:
        episode = play_real(model, agent, seed, noise, max_steps, sample=sample)
        returns.append(float(episode["rewards"].sum()))
        lengths.append(len(episode["actions"]))
    return returns, lengths


# --------------------------------------------------------------------------- V and the latents

V_VERSION = "v_version"
"""The member of a latent file that names the V that encoded it: 0 the start model's, and one
more for each time the run refined V."""


def v_error(model: WorldModel, frames: np.ndarray, max_frames: int = 200) -> float:
    """V's mean summed squared error on up to ``max_frames`` evenly spaced frames."""
    picked = frames[np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))]
    return float(np.mean(frame_errors(model.vae, picked)))


def reference_error(run: Path, model: WorldModel, config: OnlineConfig) -> float:
    """V's error on up to four of round 0's episodes: the exploration policy's play, the kind of
    data V was trained on. New frames are measured against it."""
    count = min(4, config.explore_episodes)
    indices = np.unique(np.linspace(0, config.explore_episodes - 1, count).astype(int))
    frames = [read_episode(episode_path(RunDir(run).episodes, int(i)), model.game)["frames"] for i in indices]
    return float(np.mean([v_error(model, f) for f in frames]))


def refine_v(
    run: Path, model: WorldModel, episodes: int, config: OnlineConfig, round_index: int, reconstruction: str
) -> float:
    """``config.v_steps`` Adam steps on V -> its mean reconstruction error over them (the
    model's V, frozen for the dreams, gets the new weights). Each batch
    is half frames of the last ``recent_episodes`` episodes, half frames of as many older ones
    drawn at random, read from RUN/episodes (at most twice ``recent_episodes`` episodes in memory)."""
    rng = np.random.default_rng([config.seed, round_index, 13])
    recent_first = max(0, episodes - config.recent_episodes)
    older = sorted(rng.permutation(recent_first)[: config.recent_episodes].tolist())

    def frames_of(indices: Iterable[int]) -> np.ndarray:
        paths = [episode_path(RunDir(run).episodes, i) for i in indices]
        return np.concatenate([read_episode(path, model.game)["frames"] for path in paths])

    pools = [frames_of(range(recent_first, episodes))] + ([frames_of(older)] if older else [])
    half = config.v_batch_size // 2 if older else 0
    sizes = (config.v_batch_size - half, half)
    vae = ConvVAE(model.vae.config).to(model.device)
    vae.load_state_dict(model.vae.state_dict())
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.v_learning_rate)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + round_index)
    errors = []
    vae.train()
    for _ in range(config.v_steps):
        frames = np.concatenate([pool[rng.integers(len(pool), size=n)] for pool, n in zip(pools, sizes) if n])
        images = frames_to_tensor(frames, model.device)
        logits, mu, logvar = vae(images, generator)
        loss, error, _ = vae_loss(images, logits, mu, logvar, vae.config.kl_tolerance, reconstruction)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        errors.append(error.item())
    model.vae.load_state_dict(vae.state_dict())
    return float(np.mean(errors))


def encoded_by(path: Path) -> int:
    """The V version (``V_VERSION``) that encoded a latent file: 0 for a file that does not say
    (written before V could be refined), -1 for one that cannot be read (it is encoded again)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if f"{V_VERSION}.npy" not in archive.namelist():
                return 0
        version = read_npz(path, (V_VERSION,))[V_VERSION]
    except (zipfile.BadZipFile, OSError, EpisodeFileError):
        return -1
    return int(version) if version.shape == () and version.dtype.kind in "iu" else -1


def write_latents(
    run: Path, model: WorldModel, index: int, episode: dict[str, np.ndarray], v_version: int
) -> dict[str, np.ndarray]:
    """Encode a real episode's frames with V (version ``v_version``) and write its latent file ->
    the latents."""
    mu, logvar = encode_frames(model.vae, episode["frames"])
    latents = {"mu": mu, "logvar": logvar, **{key: episode[key] for key in ("actions", "rewards", "dones")}}
    payload = npz_bytes({**latents, V_VERSION: np.array(v_version, np.int64)})
    atomic_write(episode_path(RunDir(run).latents, index), lambda tmp: tmp.write_bytes(payload))
    return latents


def record(
    run: Path, model: WorldModel, index: int, episode: dict[str, np.ndarray], v_version: int
) -> dict[str, np.ndarray]:
    """Write a real episode and its latents (the episode file first: a latent file always has
    its episode) -> the latents."""
    payload = episode_bytes(episode["frames"], episode["actions"], episode["rewards"], episode["dones"])
    atomic_write(episode_path(RunDir(run).episodes, index), lambda tmp: tmp.write_bytes(payload))
    return write_latents(run, model, index, episode, v_version)


def encode_again(run: Path, model: WorldModel, v_version: int) -> int:
    """Encode again, from its frames, every recorded episode that V version ``v_version`` did not
    encode -> how many were."""
    stale = [path for path in latent_files(run) if encoded_by(path) != v_version]
    for path in stale:
        index = episode_index(path)
        write_latents(run, model, index, read_episode(episode_path(RunDir(run).episodes, index), model.game), v_version)
    return len(stale)


def first_frames_again(model: WorldModel, data: TrainingData) -> None:
    """The dream's resets (``starts="first"``): the first step of every episode in ``data``, as
    the model's V encoded it. After V changes, the start model's resets are latents of the old V."""
    model.initial_mu = torch.as_tensor(np.stack([e["mu"][0] for e in data.episodes]), device=model.device)
    model.initial_logvar = torch.as_tensor(np.stack([e["logvar"][0] for e in data.episodes]), device=model.device)


def load_latents(run: Path, model: WorldModel, data: TrainingData, replay: Replay) -> None:
    """Every recorded episode's latents into M's data and the replay, oldest first."""
    for path in latent_files(run):
        latents = read_latents(path, model.game)
        data.add(latents, model.game)
        replay.add(latents["mu"], model.game.encode_actions(latents["actions"]))


def v_record(model: WorldModel, resumed: bool, source: str | Path) -> tuple[int, str]:
    """The version of the run's V and the reconstruction loss V was trained with, from the
    model's record: what a resumed run saved, or the start model's build."""

    def part(record: Any, key: str) -> dict[str, Any]:
        value = record.get(key) if isinstance(record, dict) else None
        return value if isinstance(value, dict) else {}

    if resumed:
        online = part(model.metadata, "online")
        version, reconstruction = online.get("v_version", 0), online.get("v_reconstruction", "squared_error")
    else:
        version, reconstruction = 0, part(part(model.metadata, "run"), "vae").get("reconstruction", "squared_error")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise StageError(f"{source}: its record's V version is {version!r}, expected an integer >= 0")
    if reconstruction not in RECONSTRUCTION_LOSSES:
        raise StageError(
            f"{source}: its record's V loss is {reconstruction!r}, expected one of {list(RECONSTRUCTION_LOSSES)}"
        )
    return version, reconstruction
