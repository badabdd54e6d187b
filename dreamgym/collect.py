"""Rollouts of the real game -> one compressed episode file each (the format:
:mod:`dreamgym.episodes`). Files are written under a temporary name and renamed, so a file that
exists is complete.

Exploration (no ``policy``):

* Doom: a uniform random action held for 1-10 frames, as the paper.
* CarRacing: a random-parameter driver: per episode, a throttle level, a braking rate and a
  steering noise scale are drawn; steering follows a smoothed random walk. Uniform random
  actions brake as often as they accelerate and leave the car near the start, so the dataset
  would hold almost no cornering or off-track frames. The first ~50 frames (the camera zooming
  in) are kept: the dream starts from the same zoomed-out first frames as the real game.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.checkpoint import load_world_model
from dreamgym.config import CollectConfig
from dreamgym.episodes import episode_bytes, episode_path
from dreamgym.evaluate import act, load_policy
from dreamgym.files import atomic_write
from dreamgym.games import Game, get_game
from dreamgym.parallel import close_worker_cache, run_parallel, worker_cached
from dreamgym.training import Progress, no_progress

# --------------------------------------------------------------------------- policies


class DoomExploration:
    """A uniform random action held for 1-10 frames."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.action, self.remaining = 0, 0

    def __call__(self, observation: Any) -> int:
        if self.remaining == 0:
            self.action, self.remaining = int(self.rng.integers(3)), int(self.rng.integers(1, 11))
        self.remaining -= 1
        return self.action


def signed_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle from 2-D vector a to b, in radians, positive counter-clockwise."""
    return float(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))


def on_road(car_racing: Any) -> bool:
    """Whether any wheel of an (unwrapped) CarRacing car touches a track tile."""
    return any(wheel.tiles for wheel in car_racing.car.wheels)


class CarRacingPilot:
    """A noisy track follower: steers toward a point a few tiles ahead on the track, holds a
    target speed, and now and then swerves off for a while, so the data shows the whole lap,
    driving at speed, leaving the road and coming back. Speed, gain, throttle limit, noise,
    swerve rate and stop rate are drawn per episode. The steering noise is slow (an
    Ornstein-Uhlenbeck drift), so the car's path answers the action and not only the road, and
    some episodes open the throttle fully, even in turns, so M sees the car spin. Now and then
    it brakes to a standstill, waits and drives on, so M sees that the pedals set the speed (a
    dream that never saw the car stop moves it without gas). It reads the track from the
    simulator: it is a data collector only (controllers never see anything but [z, h])."""

    def __init__(self, rng: np.random.Generator, env: Any) -> None:
        self.rng, self.env = rng, env
        self.target_speed = rng.uniform(50.0, 110.0)
        self.gain = rng.uniform(0.8, 1.5)
        self.lookahead = int(rng.integers(4, 8))
        self.gas_limit = rng.uniform(0.5, 1.0)
        self.turn_easing = rng.uniform(0.0, 0.7)
        self.drift_scale = rng.uniform(0.0, 0.15)
        self.swerve_rate = rng.uniform(0.0, 0.004)
        self.drift, self.swerve, self.swerve_left = 0.0, 0.0, 0
        # Stops draw from their own stream, so the driving between them is what it was without.
        self.stop_rng = rng.spawn(1)[0]
        self.stop_rate, self.stop_left = self.stop_rng.uniform(0.0, 0.004), 0

    def __call__(self, observation: Any) -> np.ndarray:
        car_racing = self.env.unwrapped
        hull = car_racing.car.hull
        position = np.array(hull.position)
        track = np.array([(x, y) for _, _, x, y in car_racing.track])
        nearest = int(np.argmin(np.sum((track - position) ** 2, axis=1)))
        road = on_road(car_racing)
        # Off the road: aim just ahead and slow down, or pure pursuit circles the target forever.
        lookahead = self.lookahead if road else 2
        target = track[(nearest + lookahead) % len(track)] - position
        forward = np.array([-np.sin(hull.angle), np.cos(hull.angle)])
        # Positive angle: the target is to the left; CarRacing steers left with -1.
        error = signed_angle(forward, target)
        steer = -self.gain * error
        # Drift: correlation 0.95 per frame (about a second), stationary std drift_scale.
        self.drift = 0.95 * self.drift + self.rng.normal(0.0, self.drift_scale * np.sqrt(1 - 0.95**2))
        if road:
            steer += self.drift
            if self.swerve_left == 0 and self.rng.random() < self.swerve_rate:
                self.swerve = self.rng.choice([-1.0, 1.0]) * self.rng.uniform(0.5, 1.0)
                self.swerve_left = int(self.rng.integers(5, 30))
        if self.swerve_left > 0:
            steer, self.swerve_left = self.swerve, self.swerve_left - 1
        speed = float(np.linalg.norm(hull.linearVelocity))
        # Slow down for the turn ahead: the track's change of heading over the next ~12 tiles.
        here = track[(nearest + 1) % len(track)] - track[nearest]
        ahead = track[(nearest + 13) % len(track)] - track[(nearest + 12) % len(track)]
        turn = abs(signed_angle(here, ahead))
        target_speed = self.target_speed * max(0.3, 1.0 - turn / 2.0) if road else 15.0
        # A stop: brake to a standstill (~1 s from speed 60), stand, then drive on.
        if self.stop_left == 0 and road and self.stop_rng.random() < self.stop_rate:
            self.stop_left = int(self.stop_rng.integers(40, 120))
        if self.stop_left > 0:
            target_speed, self.stop_left = 0.0, self.stop_left - 1
        steer = float(np.clip(steer, -1.0, 1.0))
        # Full throttle in a turn spins the rear wheels: most episodes ease off as the wheel turns.
        gas = float(np.clip((target_speed - speed) / 5.0, 0.0, self.gas_limit) * (1.0 - self.turn_easing * abs(steer)))
        brake = float(np.clip((speed - target_speed) / 10.0, 0.0, 0.8))
        return np.array([steer, gas, brake], dtype=np.float32)


class NoisyPolicy:
    """A trained agent on the latent twin (a dreamgym controller or an SB3 model), with
    exploration noise (iterative rounds)."""

    def __init__(self, agent: Any, game: Game, noise: float, rng: np.random.Generator) -> None:
        self.agent, self.game, self.noise, self.rng = agent, game, noise, rng
        self.explore = DoomExploration(rng) if game.discrete else None

    def __call__(self, observation: np.ndarray) -> Any:
        action = act(self.agent, observation)
        if self.game.discrete:
            assert self.explore is not None
            if self.explore.remaining > 0 or self.rng.random() < self.noise:
                return self.explore(observation)
            return action
        space = self.game.action_space()
        noisy = np.asarray(action, dtype=np.float64) + self.rng.normal(0.0, self.noise, size=space.shape)
        return np.clip(noisy, space.low, space.high).astype(np.float32)


def acting_agent(game: Game, config: CollectConfig) -> tuple[Any, str]:
    """The agent ``config.policy`` names and the model directory whose V and M give it its latent
    observation, checked against the game: a clear error here, before any episode runs."""
    assert config.policy is not None
    agent, model_dir = load_policy(config.policy)
    model_dir = model_dir or config.world_model
    if model_dir is None:
        raise ValueError(f"collect --policy {config.policy} needs the world model it was trained in for its latent "
                         "observation (--world-model DIR; a model directory with a controller brings its own)")
    model = load_world_model(model_dir, device="cpu")
    if model.game.name != game.name:
        raise ValueError(f"world model {model_dir} is a {model.game.name} model, not {game.name}")
    if getattr(agent, "game", game).name != game.name:
        raise ValueError(f"policy {config.policy} is a {agent.game.name} controller, not {game.name}")
    actions = getattr(agent, "action_space", None)
    if actions is not None and actions != game.action_space():
        raise ValueError(f"policy {config.policy} acts in {actions}, but {game.name} takes {game.action_space()}")
    expected = (model.z_dim + model.hidden_dim,)
    space = getattr(agent, "observation_space", None)
    shape = space.shape if space is not None else (agent.obs_dim,)
    if tuple(shape) != expected:
        raise ValueError(f"policy {config.policy} takes observations of shape {tuple(shape)}, but {model_dir}'s latent "
                         f"observation has shape {expected} (z {model.z_dim} + h {model.hidden_dim}): "
                         "give the world model the agent was trained in")
    return agent, model_dir


# --------------------------------------------------------------------------- one episode


@dataclass(frozen=True)
class EpisodeSummary:
    index: int
    steps: int
    total_reward: float
    seconds: float


def record_episode(game_name: str, index: int, config: CollectConfig) -> tuple[EpisodeSummary, bytes]:
    """Play episode ``index`` (seed = config.seed + index): its summary and its file's bytes.
    The worker writes nothing: on a cluster it need not share the run directory's disk."""
    start = time.perf_counter()
    game = get_game(game_name)
    seed = config.seed + index
    rng = np.random.default_rng(seed)
    env = game.make_real_env()
    if config.policy is None:
        policy = DoomExploration(rng) if game.discrete else CarRacingPilot(rng, env)
    else:
        from dreamgym.envs.latent import LatentObservation

        agent, world_model = worker_cached(("agent", config.policy, config.world_model), lambda: acting_agent(game, config))
        env = LatentObservation(env, world_model, device="cpu", keep_frame=True)  # one frame a step: the CPU is enough
        policy = NoisyPolicy(agent, game, config.noise, rng)
    try:
        observation, info = env.reset(seed=seed)
        frames = [info["frame"] if "frame" in info else game.preprocess(observation)]
        actions, rewards, dones = [], [], []
        limit = config.max_steps or game.max_episode_steps
        for _ in range(limit):
            action = policy(observation)
            observation, reward, terminated, truncated, info = env.step(action)
            frames.append(info["frame"] if "frame" in info else game.preprocess(observation))
            actions.append(action)
            rewards.append(reward)
            dones.append(terminated)
            if terminated or truncated:
                break
    finally:
        env.close()
    action_array = np.array(actions, dtype=np.int64 if game.discrete else np.float32)
    payload = episode_bytes(np.stack(frames), action_array, np.array(rewards, np.float32), np.array(dones, bool))
    return EpisodeSummary(index, len(actions), float(np.sum(rewards)), time.perf_counter() - start), payload


def _record(args: tuple) -> tuple[EpisodeSummary, bytes]:
    return record_episode(*args)


# --------------------------------------------------------------------------- many episodes


def missing_episodes(out_dir: Path, config: CollectConfig) -> list[int]:
    """Indices this collection records whose file is absent (a complete file is never rewritten)."""
    indices = range(config.first_episode, config.first_episode + config.episodes)
    return [i for i in indices if not episode_path(out_dir, i).exists()]


def collect(
    game_name: str,
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
    game = get_game(game_name)
    if config.policy is not None:
        acting_agent(game, config)  # a wrong policy or world model fails here, not in every worker
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob(".episode_*.tmp"):  # from a worker killed mid-write
        leftover.unlink()
    jobs = [(game_name, i, config) for i in missing_episodes(out_dir, config)]
    summaries = []
    for summary, payload in run_parallel(_record, jobs, config.workers, backend, address):
        atomic_write(episode_path(out_dir, summary.index), lambda tmp, payload=payload: tmp.write_bytes(payload))
        summaries.append(summary)
        progress("collect", len(summaries), len(jobs))
    close_worker_cache()  # what this process cached when it played the episodes itself (workers=1)
    return summaries

