"""Learning online in short dreams: the loop of the agents that learn in imagination and still
work on the real game (DreamerV3, MBPO, RWM), built from dreamgym's parts.

Every round:

1. the current agent plays a few real episodes through the latent twin (with exploration
   noise); each is encoded with V and added to the run's replay and to M's training data;
2. M is refined for a bounded number of gradient steps on windows of real play, half of them
   from the most recent episodes (the agent's own mistakes are what M must learn); V too, when it
   reconstructs the new frames ``refresh_v`` times worse than the exploration episodes of round
   0, and then every recorded episode is encoded again;
3. the agent (Stable-Baselines3 PPO) goes on learning in short dreams that start at real steps
   of the replay (``starts="data"``) and are cut at ``horizon`` steps as a truncation, where
   PPO's critic bootstraps the value of the rest;
4. every ``eval_every`` rounds the agent plays ``eval_episodes`` real episodes on tuning seeds
   (with its exploration noise unless ``eval_noise`` says otherwise); the best of those scores
   chooses the agent kept in ``best/`` (a measure an agent that exploits M cannot inflate); with
   ``confirm_episodes`` a new best is played on more tuning seeds before it is kept. Every real
   step is counted.

Layout of ``RUN``::

    online.json      the settings (``OnlineConfig``) and the game
    episodes/        every real episode (frames), as ``dreamgym collect`` writes them
    latents/         their encodings, the replay and M's data (a resumed run reads them back;
                     each says which V encoded it, and one a refined V did not is encoded again)
    model/           the world model now (V, M) with the agent's policy (agent.safetensors, no pickle)
    agent.zip        the agent now, with its optimiser (SB3's own format: what a resumed run loads)
    rounds.json      one row per finished round (``OnlineRound``); curve.png the learning curve
    best/            the model directory and agent.zip of the best tuning score

A round's state is written once it is complete: a run killed mid-round resumes from the last
complete round, keeping the real episodes the lost round recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.commands import command_line, game_arguments, settings_arguments
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
from dreamgym.evaluate import NoisyPolicy
from dreamgym.files import (
    atomic_directory,
    atomic_write,
    atomic_write_text,
    check_destination,
    npz_bytes,
    read_json,
)
from dreamgym.games import Game, game_record, lookup
from dreamgym.mdnrnn import MDNRNN, SequenceBatch, mdnrnn_losses
from dreamgym.policy import AGENT_FILE as POLICY_FILE
from dreamgym.policy import save_policy
from dreamgym.replay import Replay
from dreamgym.rundir import RunDir
from dreamgym.training import Report, StageError, log_agent_to_tensorboard, no_report
from dreamgym.vae import ConvVAE, encode_frames, frames_to_tensor, vae_loss
from dreamgym.validation import Rule, check_fields, rules_of
from dreamgym.world_model import WorldModel


@dataclass(frozen=True)
class OnlineRound:
    """One finished round."""

    round: int
    episodes: int
    """Real episodes recorded so far (the data of V and M)."""
    data_steps: int
    """Their real steps."""
    eval_steps: int
    """Real steps of the tuning evaluations so far."""
    train_return: float
    """Mean real return of this round's recorded episodes (the agent with exploration noise)."""
    dream_return: float
    """Mean return of the agent's last dreams (short: ``horizon`` steps)."""
    agent_steps: int
    """Dream steps the agent has learned from so far."""
    m_loss: float
    """M's mean training loss over this round's refinement."""
    v_error: float
    """V's mean summed squared reconstruction error on this round's new frames."""
    eval_mean: float | None = None
    """Tuning score of the agent (``eval_episodes`` real episodes, ``eval_noise``), if evaluated."""
    eval_std: float | None = None
    eval_count: int | None = None
    """Real episodes that score is the mean of (``eval_episodes``, plus ``confirm_episodes`` when
    it was confirmed)."""
    v_ratio: float | None = None
    """``v_error`` over V's error on round 0's frames (None: round 0, or no check)."""
    v_refreshed: bool = False
    """V was refined this round (``v_ratio`` > ``refresh_v``) and every episode encoded again."""
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def real_steps(self) -> int:
        return self.data_steps + self.eval_steps


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
    model: WorldModel, agent: Any, seed: int, noise: float, max_steps: int | None = None
) -> dict[str, np.ndarray]:
    """One real episode (at most ``max_steps``) through the latent twin with ``agent`` (None: the
    game's exploration policy) and exploration ``noise`` -> frames, actions, rewards and ends."""
    from dreamgym.envs.latent import LatentObservation

    game = model.game
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one frame and one LSTM step at a time: more threads only wait on each other
    real = game.make_real_env()
    env = LatentObservation(real, model, keep_frame=True)
    policy = game.explorer(rng, real) if agent is None else NoisyPolicy(agent, game, noise, rng)
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
    model: WorldModel, agent: Any, seeds: range, noise: float = 0.0, max_steps: int | None = None
) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``agent`` (with exploration ``noise``) on real episodes seeded ``seeds``."""
    returns, lengths = [], []
    for seed in seeds:
        episode = play_real(model, agent, seed, noise, max_steps)
        returns.append(float(episode["rewards"].sum()))
        lengths.append(len(episode["actions"]))
    return returns, lengths


def tuning_score(
    play: Callable[[range], tuple[list[float], list[int]]], config: OnlineConfig, best: float
) -> tuple[list[float], int]:
    """A round's tuning returns and their real steps: ``play`` (seeds -> returns, lengths) on the
    ``eval_episodes`` tuning seeds, then on the ``confirm_episodes`` seeds after them when the
    first mean beats ``best``."""
    seeds = range(config.eval_seed, config.eval_seed + config.eval_episodes)
    returns, lengths = play(seeds)
    if config.confirm_episodes and np.mean(returns) > best:
        more, more_lengths = play(range(seeds.stop, seeds.stop + config.confirm_episodes))
        returns, lengths = returns + more, lengths + more_lengths
    return returns, sum(lengths)


# --------------------------------------------------------------------------- V and the latents

V_VERSION = "v_version"
"""The member of a latent file that names the V that encoded it: 0 the start model's, and one
more for each time the run refined V."""


@torch.no_grad()
def v_error(model: WorldModel, frames: np.ndarray, max_frames: int = 200) -> float:
    """V's mean summed squared error on up to ``max_frames`` evenly spaced frames."""
    picked = frames[np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))]
    images = frames_to_tensor(picked, model.device)
    mu, _ = model.vae.encode(images)
    return float((model.vae.decode(mu) - images).pow(2).flatten(1).sum(1).mean())


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


# --------------------------------------------------------------------------- the agent


def make_agent(model: WorldModel, replay: Replay, config: OnlineConfig, init: Path | None) -> Any:
    """PPO in short dreams of ``model`` started from ``replay``: the saved agent ``init`` (a
    resumed run), else a fresh one of the game's recipe."""
    from stable_baselines3 import PPO

    from dreamgym.agents import recipe
    from dreamgym.envs.sb3 import make_sb3_vec_env

    settings = recipe("ppo", model.game)
    num_envs = settings.pop("num_envs")
    settings["n_steps"] = max(config.horizon, settings.get("n_steps", 128))
    venv = make_sb3_vec_env(
        model.game.dream_env_id,
        num_envs,
        world_model=model,
        temperature=config.temperature,
        sample_done=config.sample_done,
        starts="data",
        horizon=config.horizon,
        warmup=config.warmup,
        replay=replay,
        device="cpu",
    )
    if init is not None:
        agent = PPO.load(init, env=venv, device="cpu")
    else:
        agent = PPO("MlpPolicy", venv, seed=config.seed, device="cpu", **settings)
    if config.fixed_std:  # also for an agent that learned its noise until now
        with torch.no_grad():
            agent.policy.log_std.fill_(math.log(config.noise))
        agent.policy.log_std.requires_grad_(False)  # no gradient: Adam leaves it
    return agent


def dream_return(agent: Any) -> float:
    buffer = agent.ep_info_buffer or []
    return float(np.mean([e["r"] for e in buffer])) if buffer else float("nan")


# --------------------------------------------------------------------------- the run


def load_settings(run: Path, game: Game, overrides: dict[str, Any]) -> OnlineConfig:
    """RUN's stored settings with ``overrides`` (None: keep) on top; a new run takes the defaults."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    path = RunDir(run).online_settings
    if not path.exists():
        if "world_model" not in overrides:
            raise StageError(
                "a new online run needs --world-model: the model directory (or shipped name) it starts from"
            )
        return OnlineConfig(**overrides)
    stored, config = _stored(run)
    if stored["game"] != game.name:
        raise StageError(f"{run} learns {stored['game']}, not {game.name}")
    for name in ("world_model", "seed", "eval_seed", "eval_episodes", "confirm_episodes", "eval_noise"):
        if name in overrides and overrides[name] != getattr(config, name):
            raise StageError(
                f"{run} has {name} {getattr(config, name)!r}, not {overrides[name]!r}: it is fixed for a "
                "run; give a new RUN"
            )
    return dataclasses.replace(config, **overrides)


def _stored(run: Path) -> tuple[dict[str, Any], OnlineConfig]:
    """RUN's online.json and the settings in it; StageError when it is damaged."""
    path = RunDir(run).online_settings
    try:
        stored = read_json(path)
        Rule("dict").check("online.json", stored)
        Rule("str").check("game", stored.get("game"))
        return stored, OnlineConfig(**stored["settings"])
    except (ValueError, KeyError, TypeError) as error:
        raise StageError(f"{path} is damaged ({error}): expected what `dreamgym online` writes") from None


def stored_game(run: Path) -> Game:
    """The game RUN learns."""
    stored, _ = _stored(run)
    try:
        return lookup(stored["game"])
    except ValueError as error:
        raise StageError(f"{RunDir(run).online_settings} is damaged ({error})") from None


def read_rounds(run: Path) -> list[OnlineRound]:
    path = RunDir(run).rounds_record
    if not path.exists():
        return []
    rows = read_json(path)
    try:
        Rule("list").check("rounds", rows)
        rules = rules_of(OnlineRound, finite=False)
        return [OnlineRound(**check_fields(f"round {k}", row, rules)) for k, row in enumerate(rows)]
    except (ValueError, TypeError) as error:
        raise StageError(f"{path} is damaged ({error}): expected what `dreamgym online` writes") from None


def stop_reason(rows: list[OnlineRound], config: OnlineConfig) -> str | None:
    if len(rows) >= config.rounds:
        return f"{config.rounds} rounds done"
    if config.max_real_steps and rows and rows[-1].real_steps >= config.max_real_steps:
        return f"real-step budget reached ({rows[-1].real_steps:,} ≥ {config.max_real_steps:,})"
    return None


def model_card(game: Game, config: OnlineConfig, rows: list[OnlineRound]) -> str:
    """The card of an online run's model directory: how it was made, the real and dream steps it
    used, and its last tuning scores (on tuning seeds: not a test score)."""
    start = Path(cast(str, config.world_model)).name
    command = command_line(
        "online",
        game_arguments(game.name, game.spec),
        "--out RUN",
        *settings_arguments(dataclasses.replace(config, world_model=start)),
    )
    last = rows[-1]
    lines = [
        f"# dreamgym world model: {game.name}",
        "",
        f"Built with round {last.round} of `{command}`.",
        "",
        "## What is in it",
        f"- V and M of `{start}`; M refined in each of {len(rows)} rounds on the agent's own real episodes"
        + (f", V in {refined} of them" if (refined := sum(r.v_refreshed for r in rows)) else ""),
        f"- the agent: `{POLICY_FILE}`, SB3 PPO saved without pickle, trained only in dreams of this M "
        f"(`dreamgym evaluate {game.latent_env_id} --policy DIR --noise {config.noise}` plays it as it learned)",
        f"- real steps: {last.real_steps:,} ({last.data_steps:,} recorded, {last.eval_steps:,} of tuning episodes); "
        f"dream steps: {last.agent_steps:,}",
    ]
    scored = [r for r in rows if r.eval_mean is not None and r.eval_std is not None]
    if scored:
        lines += ["", f"## Tuning scores ({config.eval_episodes} real episodes from seed {config.eval_seed})"]
        lines += [
            f"- round {r.round}: {r.eval_mean:.1f} ± {r.eval_std:.1f}"
            + (f" ({r.eval_count} episodes)" if r.eval_count and r.eval_count != config.eval_episodes else "")
            for r in scored[-5:]
        ]
    return "\n".join(lines) + "\n"


def save_round(run: Path, model: WorldModel, agent: Any, rows: list[OnlineRound], config: OnlineConfig) -> None:
    """The round's model (with its card), agent and rows, in that order (the rows say the round
    is complete)."""
    files = RunDir(run)
    model.metadata["online"].update(rounds=len(rows), real_steps=rows[-1].real_steps)
    save_world_model(model, files.model, model_card=model_card(model.game, config, rows))
    save_policy(agent, files.model / POLICY_FILE, {"algorithm": "PPO", "agent_steps": int(agent.num_timesteps)})
    atomic_write(files.agent, lambda tmp: agent.save(tmp))
    atomic_write_text(files.rounds_record, json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")


def keep_best(run: Path) -> None:
    """Copy the current model and agent to RUN/best, replacing the last best only once complete."""
    files = RunDir(run)

    def fill(staging: Path) -> None:
        shutil.copytree(files.model, staging, dirs_exist_ok=True)
        shutil.copyfile(files.agent, RunDir(staging).agent)

    atomic_directory(files.best, fill)


def plot_curve(run: Path, rows: list[OnlineRound], title: str) -> None:
    """Real return against real steps: the recorded episodes (with noise), the tuning scores,
    and the dream's own return beside them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    steps = [r.real_steps for r in rows]
    axis.plot(steps, [r.train_return for r in rows], ".", alpha=0.4, label="real: recorded episodes (with noise)")
    scored = [r for r in rows if r.eval_mean is not None]
    if scored:
        axis.errorbar(
            [r.real_steps for r in scored],
            [r.eval_mean or 0.0 for r in scored],
            yerr=[r.eval_std or 0.0 for r in scored],
            marker="o",
            capsize=3,
            label="real: tuning score",
        )
    dream_axis = axis.twinx()
    dream_axis.plot(steps, [r.dream_return for r in rows], color="tab:green", alpha=0.6, label="dream (short)")
    dream_axis.set_ylabel("dream return (per short dream)")
    axis.set_xlabel("real game steps used")
    axis.set_ylabel("real return")
    axis.grid(alpha=0.3)
    handles = axis.get_legend_handles_labels()[0] + dream_axis.get_legend_handles_labels()[0]
    axis.legend(handles=handles, fontsize=8, loc="upper left")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(RunDir(run).curve, dpi=100)


def online(
    run: str | Path, game: str, *, report: Report = no_report, trust_zip: bool = False, **settings: Any
) -> list[OnlineRound]:
    """Run rounds until ``rounds`` or the real-step budget is spent; resumes RUN. ``settings``:
    ``OnlineConfig`` values (None: keep the stored or default one). The agent is saved as an SB3
    ``.zip`` and loaded back on resume, which runs code from it: a run with rounds needs
    ``trust_zip`` (the consent to load the agent this run saved). The CLI holds RUN's lock
    (``dreamgym.files.run_lock``) while it runs."""
    run, game_spec = Path(run), lookup(game)
    config = load_settings(run, game_spec, settings)
    rows = read_rounds(run)
    if rows and not trust_zip:
        raise StageError(
            f"{run} resumes from its agent {RunDir(run).agent}, an SB3 .zip whose loading runs code "
            "from the file: pass --trust-zip (trust_zip=True) to continue a run you made"
        )
    source = RunDir(run).model if rows else cast(str, config.world_model)  # load_settings asked for it
    model = load_world_model(source, device="cpu")  # checked before any write
    if model.game.name != game_spec.name:
        raise StageError(f"world model {config.world_model} is a {model.game.name} model, not {game_spec.name}")
    # The start model's controller read its M's h and its record describes its own build: this
    # run's M is refined every round and its agent is the PPO saved beside it.
    if config.fixed_std and (model.game.discrete or config.noise <= 0):
        raise StageError(
            "--fixed-std fixes the std of PPO's Gaussian actions at --noise: it needs a game with "
            f"continuous actions ({model.game.name}'s are {'discrete' if model.game.discrete else 'continuous'}) "
            f"and --noise > 0 (got {config.noise:g})"
        )
    model.controller = None
    v_version, reconstruction = v_record(model, bool(rows), source)
    model.metadata = {
        "online": {"world_model": config.world_model, "v_version": v_version, "v_reconstruction": reconstruction}
    }
    check_destination(run, "a dreamgym online run", lambda path: RunDir(path).online_settings.is_file())
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        RunDir(run).online_settings,
        json.dumps({**game_record(game_spec), "settings": dataclasses.asdict(config)}, indent=2) + "\n",
    )
    encode_again(run, model, v_version)  # a round killed after it refined V: back to the saved V
    data, replay = TrainingData(), Replay(model.z_dim, model.game.action_dim, capacity=config.replay_capacity)
    load_latents(run, model, data, replay)  # every episode recorded so far, the lost round's included
    references: dict[int, float] = {}  # V version -> its error on round 0's episodes
    agent = make_agent(model, replay, config, RunDir(run).agent if rows else None) if rows else None
    while (stop := stop_reason(rows, config)) is None:
        k = len(rows)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        wanted = config.explore_episodes if k == 0 else config.episodes
        first = rows[-1].episodes if rows else 0
        new_returns, new_errors = [], []
        for index in range(first, first + wanted):
            path = episode_path(RunDir(run).latents, index)
            if path.exists():  # recorded by a round that was killed: real data, kept
                latents = read_latents(path, model.game)
                new_returns.append(float(latents["rewards"].sum()))
                continue
            episode = play_real(model, agent, recorded_seed(config, index), config.noise, config.max_steps)
            new_errors.append(v_error(model, episode["frames"]))
            latents = record(run, model, index, episode, v_version)
            data.add(latents, model.game)
            replay.add(latents["mu"], model.game.encode_actions(latents["actions"]))
            new_returns.append(float(episode["rewards"].sum()))
        timings["collect"] = time.perf_counter() - clock
        v_ratio, v_refreshed = None, False
        if k > 0 and new_errors:
            clock = time.perf_counter()
            if v_version not in references:
                references[v_version] = reference_error(run, model, config)
            v_ratio = float(np.mean(new_errors)) / references[v_version]
            if config.refresh_v and v_ratio > config.refresh_v:
                refine_v(run, model, first + wanted, config, k, reconstruction)
                v_version, v_refreshed = v_version + 1, True
                model.metadata["online"]["v_version"] = v_version
                encode_again(run, model, v_version)
                data = TrainingData()
                replay.clear()
                load_latents(run, model, data, replay)
            timings["V"] = time.perf_counter() - clock
        clock = time.perf_counter()
        m_loss = refine_m(model, data, config, k, config.refresh_m_steps if v_refreshed else None)
        replay.refresh()  # M changed: the start states are warmed up again
        timings["M"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if agent is None:
            agent = make_agent(model, replay, config, None)
        log_agent_to_tensorboard(agent, run)
        agent.learn(config.agent_steps, reset_num_timesteps=agent.num_timesteps == 0)  # one ALGO_1 over the rounds
        timings["agent"] = time.perf_counter() - clock
        eval_steps = rows[-1].eval_steps if rows else 0
        eval_mean = eval_std = eval_count = None
        best = max((r.eval_mean for r in rows if r.eval_mean is not None), default=-math.inf)
        if (k + 1) % config.eval_every == 0:
            clock = time.perf_counter()
            noise = config.noise if config.eval_noise is None else config.eval_noise
            returns, steps = tuning_score(
                lambda seeds: real_score(model, agent, seeds, noise, config.max_steps), config, best
            )
            eval_mean, eval_std, eval_count = float(np.mean(returns)), float(np.std(returns)), len(returns)
            eval_steps += steps
            timings["evaluate"] = time.perf_counter() - clock
        row = OnlineRound(
            round=k,
            episodes=first + wanted,
            data_steps=data.steps,
            eval_steps=eval_steps,
            train_return=float(np.mean(new_returns)),
            dream_return=dream_return(agent),
            agent_steps=int(agent.num_timesteps),
            m_loss=m_loss,
            v_error=float(np.mean(new_errors)) if new_errors else float("nan"),
            eval_mean=eval_mean,
            eval_std=eval_std,
            eval_count=eval_count,
            v_ratio=v_ratio,
            v_refreshed=v_refreshed,
            seconds={key: round(value, 1) for key, value in timings.items()},
        )
        rows.append(row)
        save_round(run, model, agent, rows, config)
        if eval_mean is not None and eval_mean > best:
            keep_best(run)
        plot_curve(run, rows, f"{game_spec.name}: PPO in short dreams from real play")
        report(
            f"round {k}: {row.real_steps:,} real steps; recorded {row.train_return:.1f}, dream "
            f"{row.dream_return:.1f}"
            + (f"; V refined (its error on the new frames ×{v_ratio:.2f})" if v_refreshed else "")
            + ("" if eval_mean is None else f", tuning {eval_mean:.1f} ± {eval_std:.1f} ({eval_count} episodes)")
            + f" ({sum(timings.values()):.0f} s)"
        )
    report(f"stopped: {stop}")
    return rows
