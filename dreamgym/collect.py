"""Rollouts of the real game -> one compressed episode file each (the format:
:mod:`dreamgym.episodes`). Files are written under a temporary name and renamed, so a file that
exists is complete.

Exploration (no ``policy``) is the game's own (``Game.explorer``): by default a uniform random
action held for 1-10 frames, as the paper did for Doom; CarRacing's is a noisy track follower
(:class:`dreamgym.games.CarRacingPilot`), since uniform random actions brake as often as they
accelerate and leave the car near the start. The first frames of every episode are kept
(CarRacing's camera zooming in): the dream starts from the same first frames as the real game.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamgym.checkpoint import load_world_model
from dreamgym.config import CollectConfig
from dreamgym.episodes import episode_bytes, episode_path
from dreamgym.evaluate import NoisyPolicy, load_policy
from dreamgym.files import atomic_write
from dreamgym.games import Game, lookup
from dreamgym.parallel import close_worker_cache, run_parallel, worker_cached
from dreamgym.training import Progress, episode_errors, no_progress

# --------------------------------------------------------------------------- policies


def acting_agent(game: Game, config: CollectConfig) -> tuple[Any, str]:
    """The agent ``config.policy`` names and the model directory whose V and M give it its latent
    observation, checked against the game: a clear error here, before any episode runs."""
    assert config.policy is not None
    agent, model_dir = load_policy(config.policy)
    model_dir = model_dir or config.world_model
    if model_dir is None:
        raise ValueError(
            f"collect --policy {config.policy} needs the world model it was trained in for its latent "
            "observation (--world-model DIR; a model directory with a controller brings its own)"
        )
    model = load_world_model(model_dir, device="cpu")
    if model.game.name != game.name:
        raise ValueError(f"world model {model_dir} is a {model.game.name} model, not {game.name}")
    if getattr(agent, "game", game).name != game.name:
        raise ValueError(f"policy {config.policy} is a {agent.game.name} controller, not {game.name}")
    actions = getattr(agent, "action_space", None)
    if actions is not None and actions != game.action_space():
        raise ValueError(f"policy {config.policy} acts in {actions}, but {game.name} takes {game.action_space()}")
    expected = (model.observation_dim,)
    space = getattr(agent, "observation_space", None)
    shape = space.shape if space is not None else (agent.obs_dim,)
    if tuple(shape) != expected:
        raise ValueError(
            f"policy {config.policy} takes observations of shape {tuple(shape)}, but {model_dir}'s latent "
            f"observation {model.dream_defaults.observation!r} has shape {expected}: "
            "give the world model the agent was trained in"
        )
    return agent, model_dir


# --------------------------------------------------------------------------- one episode


@dataclass(frozen=True)
class EpisodeSummary:
    index: int
    steps: int
    total_reward: float
    seconds: float


def record_episode(game: Game, index: int, config: CollectConfig) -> tuple[EpisodeSummary, bytes]:
    """Play episode ``index`` (seed = config.seed + index): its summary and its file's bytes.
    The worker writes nothing: on a cluster it need not share the run directory's disk."""
    start = time.perf_counter()
    seed = config.seed + index
    rng = np.random.default_rng(seed)
    with episode_errors(game.real_env_id, index, seed):
        env = game.make_real_env()
        try:
            actions, frames, rewards, dones = _play_recorded(game, env, config, rng, seed)
        finally:
            env.close()
    action_array = np.array(actions, dtype=np.int64 if game.discrete else np.float32)
    payload = episode_bytes(np.stack(frames), action_array, np.array(rewards, np.float32), np.array(dones, bool))
    return EpisodeSummary(index, len(actions), float(np.sum(rewards)), time.perf_counter() - start), payload


def _play_recorded(
    game: Game, env: gym.Env, config: CollectConfig, rng: np.random.Generator, seed: int
) -> tuple[list, list, list, list]:
    """One episode of ``env`` by the exploration policy or ``config.policy``: actions, frames,
    rewards and terminations."""
    if config.policy is None:
        policy = game.explorer(rng, env)
    else:
        from dreamgym.envs.latent import LatentObservation

        agent, world_model = worker_cached(
            ("agent", config.policy, config.world_model), lambda: acting_agent(game, config)
        )
        env = LatentObservation(env, world_model, device="cpu", keep_frame=True)  # one frame a step: the CPU is enough
        policy = NoisyPolicy(agent, game, config.noise, rng)
    observation, info = env.reset(seed=seed)
    frames = [info["frame"] if "frame" in info else game.preprocess(observation)]
    actions, rewards, dones = [], [], []
    for _ in range(config.max_steps or game.max_episode_steps):
        action = policy(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        frames.append(info["frame"] if "frame" in info else game.preprocess(observation))
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated)
        if terminated or truncated:
            break
    return actions, frames, rewards, dones


def _record(args: tuple) -> tuple[EpisodeSummary, bytes]:
    return record_episode(*args)


# --------------------------------------------------------------------------- many episodes


def missing_episodes(out_dir: Path, config: CollectConfig) -> list[int]:
    """Indices this collection records whose file is absent (a complete file is never rewritten)."""
    indices = range(config.first_episode, config.first_episode + config.episodes)
    return [i for i in indices if not episode_path(out_dir, i).exists()]


def collect(
    game: Game | str,
    out_dir: str | Path,
    config: CollectConfig,
    progress: Progress = no_progress,
    backend: str = "local",
    address: str | None = None,
) -> list[EpisodeSummary]:
    """Record ``config.episodes`` episodes (from index ``config.first_episode``) into ``out_dir``,
    skipping those already there.
    Episodes are played on ``backend`` workers (see :mod:`dreamgym.parallel`) and each is
    written here, atomically, as it arrives."""
    game = lookup(game)
    if config.policy is not None:
        acting_agent(game, config)  # a wrong policy or world model fails here, not in every worker
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob(".episode_*.tmp"):  # from a worker killed mid-write
        leftover.unlink()
    jobs = [(game, i, config) for i in missing_episodes(out_dir, config)]  # the game itself: a worker may not know it
    summaries = []
    for summary, payload in run_parallel(_record, jobs, config.workers, backend, address):
        atomic_write(episode_path(out_dir, summary.index), functools.partial(Path.write_bytes, data=payload))
        summaries.append(summary)
        progress("collect", len(summaries), len(jobs))
    close_worker_cache()  # what this process cached when it played the episodes itself (workers=1)
    return summaries
