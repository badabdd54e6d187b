"""Run a policy for N episodes on any registered env, in parallel -> mean ± std and every return.

A policy is a dreamgym controller file (``*.safetensors``), a model directory that ships a
controller, or a Stable-Baselines3 ``.zip``. Episode i is seeded with ``seed + i``, so a result
is reproducible and its seeds are known (keep them away from the seeds used for tuning).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from dreamgym.checkpoint import (
    CONFIG_FILE,
    SHIPPED_MODELS,
    load_controller,
    load_world_model,
    resolve_model_dir,
)
from dreamgym.controller import LinearController
from dreamgym.files import atomic_write_text
from dreamgym.games import Game, RandomHold, lookup
from dreamgym.parallel import (
    WorkerPool,
    close_worker_cache,
    run_parallel,
    worker_cached,
)
from dreamgym.training import Progress, episode_errors, no_progress

SB3_ALGORITHMS = ("PPO", "DQN", "A2C", "SAC", "TD3", "DDPG")


@dataclass
class EvalResult:
    env_id: str
    episodes: int
    mean: float
    std: float
    returns: list[float]
    lengths: list[int]
    seed: int
    policy: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    noise: float = 0.0
    """Exploration noise the policy played with (see :class:`NoisyPolicy`; 0: deterministic)."""
    sample: bool = False
    """The SB3 agent's actions were drawn from its own distribution (:class:`SampledPolicy`)."""

    def summary(self) -> str:
        played = f", noise {self.noise:g}" if self.noise else ", sampled" if self.sample else ""
        spread = f"median {np.median(self.returns):.1f}, worst {min(self.returns):.1f}, best {max(self.returns):.1f}"
        return (
            f"{self.env_id}: {self.mean:.1f} ± {self.std:.1f} over {self.episodes} episodes ({spread}; "
            f"seeds {self.seed}..{self.seed + self.episodes - 1}{played})"
        )

    def save(self, path: str | Path) -> None:
        """JSON at ``path`` and a histogram of the returns beside it (same name, .png)."""
        from dreamgym.plots import histogram

        path = Path(path)
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        histogram(self.returns, path.with_suffix(".png"), f"{self.env_id}: {self.mean:.1f} ± {self.std:.1f}")


SB3_ZIP_WARNING = (
    "a Stable-Baselines3 .zip is partly pickled: loading it runs code from the file. Load only files you made or trust"
)


def check_trusted(policy: str | os.PathLike | None, trust_zip: bool, where: str = "") -> None:
    """StageError unless ``policy`` is no SB3 ``.zip`` or the caller consented to load one."""
    from dreamgym.training import StageError

    if policy is not None and Path(policy).suffix == ".zip" and not trust_zip:
        raise StageError(f"{where}{policy}: {SB3_ZIP_WARNING}; pass --trust-zip (trust_zip=True) to load it")


def sb3_algorithm(path: Path) -> str:
    """Name of the SB3 algorithm that saved ``path``, from the module of its policy class (and,
    for the actor-critic policy PPO and A2C share, from PPO's clip range)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a Stable-Baselines3 model archive ({error})") from error
    module = data.get("policy_class", {}).get("__module__", "")
    for name in SB3_ALGORITHMS:
        if f".{name.lower()}." in module:
            return name
    return "PPO" if "clip_range" in data else "A2C"  # both save an ActorCriticPolicy; only PPO clips


def load_policy(path: str | os.PathLike, algorithm: str | None = None) -> tuple[Any, str | None]:
    """(policy with ``predict``/``act``, the model directory it belongs to or None).

    A model directory or controller file is plain safetensors and JSON. An SB3 ``.zip`` is
    loaded by Stable-Baselines3, which unpickles parts of it: that runs code from the file, so
    pass only archives you made or trust (the CLI asks for ``--trust-zip``)."""
    from dreamgym.policy import AGENT_FILE, FORMAT, load_policy_file

    path = Path(path)
    if not path.exists() and os.fspath(path) in SHIPPED_MODELS:  # a shipped model by name, as gym.make takes it
        path = resolve_model_dir(os.fspath(path))
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ValueError(f"{path} is a directory but not a dreamgym model directory (no {CONFIG_FILE})")
        if (path / AGENT_FILE).is_file():  # the agent a model directory ships comes first
            load_world_model(path)  # the directory itself is checked, as for a controller
            return load_policy_file(path / AGENT_FILE), os.fspath(path)
        model = load_world_model(path)
        if model.controller is None:
            raise ValueError(
                f"model directory {path} has no controller or agent: train one with `dreamgym "
                "train-controller` or `dreamgym online`"
            )
        return model.controller, os.fspath(path)
    if path.suffix == ".safetensors":
        if _safetensors_format(path) == FORMAT:
            return load_policy_file(path), None
        return load_controller(path), None
    if path.suffix == ".zip":
        import stable_baselines3

        name = (
            sb3_algorithm(path) if algorithm is None else {a.lower(): a for a in SB3_ALGORITHMS}.get(algorithm.lower())
        )
        if name is None:
            raise ValueError(f"unknown SB3 algorithm {algorithm!r}; expected one of {', '.join(SB3_ALGORITHMS)}")
        return getattr(stable_baselines3, name).load(path, device="cpu"), None
    raise ValueError(f"unknown policy {path}: expected a model directory, a controller .safetensors or an SB3 .zip")


def _safetensors_format(path: Path) -> str | None:
    """The ``format`` a safetensors file's header names (None when unreadable: the loader says why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format")
    except Exception:  # damaged: load_controller reports it
        return None


def act(policy: Any, observation: np.ndarray) -> Any:
    """One deterministic action from a dreamgym controller or an SB3 model."""
    action, _ = policy.predict(observation, deterministic=True)
    if isinstance(action, np.ndarray) and action.shape == ():
        return int(action)
    return action


class NoisyPolicy:
    """A trained agent (a dreamgym controller or an SB3 model) with exploration noise: Gaussian
    noise of std ``noise`` on each action component, clipped to the bounds (Box actions), or
    with probability ``noise`` a random action held 1-10 steps (Discrete). It acts through
    :func:`act` like the agent itself."""

    def __init__(self, agent: Any, game: Game, noise: float, rng: np.random.Generator) -> None:
        self.agent, self.game, self.noise, self.rng = agent, game, noise, rng
        self.explore = RandomHold(game.action_space(), rng) if game.discrete else None

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[Any, None]:
        return self(observation), None

    def __call__(self, observation: np.ndarray) -> Any:
        action = act(self.agent, observation)
        if self.game.discrete:
            assert self.explore is not None
            if self.explore.remaining > 0 or self.rng.random() < self.noise:
                return self.explore(observation)
            return action
        space = self.game.box
        noisy = np.asarray(action, dtype=np.float64) + self.rng.normal(0.0, self.noise, size=space.shape)
        return np.clip(noisy, space.low, space.high).astype(np.float32)


class SampledPolicy:
    """An SB3 agent that acts by drawing from its own action distribution, as it learned (SB3's
    ``deterministic=False``), instead of taking its most likely action, for one episode (make one
    per episode). The draws come from torch's global generator: seed it (``torch.manual_seed``)
    for a repeatable episode.

    An agent trained with gSDE draws its noise from an exploration matrix that SB3 draws again at
    the start of every rollout and every ``sde_sample_freq`` steps while it learns, but never
    while it predicts: left alone, every episode would replay the one matrix drawn when the
    policy was built, with the initial std. So the matrix is drawn at the episode's first step
    and every ``sde_sample_freq`` steps after it (a policy saved without its algorithm: at the
    first step only), as in training."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        policy = getattr(agent, "policy", agent)
        self.redraw = policy.reset_noise if getattr(policy, "use_sde", False) else None
        self.every = int(getattr(agent, "sde_sample_freq", -1))
        self.steps = 0

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[Any, None]:
        if self.redraw is not None and (self.steps == 0 or (self.every > 0 and self.steps % self.every == 0)):
            self.redraw()
        self.steps += 1
        action, _ = self.agent.predict(observation, deterministic=False)
        return action, None


class RandomPolicy:
    """Uniformly random actions from the env's action space (the baseline)."""

    def __init__(self, action_space: gym.spaces.Space) -> None:
        self.action_space = action_space

    def seed(self, seed: int) -> None:
        self.action_space.seed(seed)

    def predict(self, observation: Any, deterministic: bool = True) -> tuple[Any, None]:
        return self.action_space.sample(), None


def check_env_id(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """A clear error for an unknown id, after registering the ids of the model the env is made
    with when it has its own (a game made by ``game_from_env``, in a process that has not
    registered its model yet, e.g. a spawned worker)."""
    import dreamgym  # registers the shipped ids

    dreamgym.ensure_registered(env_id, env_kwargs.get("world_model"))
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        ids = sorted(i for pair in dreamgym.ENV_IDS.values() for i in pair)
        raise ValueError(
            f"unknown env id {env_id!r} ({error}): dreamgym registers {ids}; an id of your own "
            "package is found as 'module:EnvId-v0'"
        ) from None


def cached_env(env_id: str, env_kwargs_json: str) -> gym.Env:
    """The env this worker made for these arguments (made on first use, kept for later jobs)."""

    def make() -> gym.Env:
        kwargs = json.loads(env_kwargs_json)
        check_env_id(env_id, kwargs)
        return gym.make(env_id, **kwargs)

    return worker_cached(("env", env_id, env_kwargs_json), make)


def play(env: gym.Env, policy: Any, seed: int) -> tuple[float, int]:
    """(return, length) of one episode of ``policy`` on ``env`` seeded with ``seed``."""
    observation, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(act(policy, observation))
        total += float(reward)
        length += 1
        done = terminated or truncated
    return total, length


def run_episode(job: tuple) -> tuple[int, float, int]:
    """(index, return, length) of episode ``index``; the policy and env are made once per process."""
    env_id, env_kwargs_json, policy_path, algorithm, seed, index, noise, sample = job
    with episode_errors(env_id, index, seed + index):
        env = cached_env(env_id, env_kwargs_json)
        policy: Any
        if policy_path == "random":
            random = RandomPolicy(env.action_space)
            random.seed(seed + index)
            policy = random
        else:
            policy = worker_cached(("policy", policy_path, algorithm), lambda: load_policy(policy_path, algorithm)[0])
            if noise > 0:
                policy = NoisyPolicy(policy, lookup(env_id), noise, np.random.default_rng(seed + index))
            elif sample:
                torch.manual_seed(seed + index)
                policy = SampledPolicy(policy)
        return (index, *play(env, policy, seed + index))


def run_controller_episode(job: tuple) -> tuple[int, int, float]:
    """(candidate, trial, return) of a linear controller given by its flat parameters."""
    env_id, env_kwargs_json, parameters, seed, candidate, trial = job
    env = cached_env(env_id, env_kwargs_json)
    obs_dim = int(np.prod(cast(tuple[int, ...], env.observation_space.shape)))
    controller = LinearController.from_flat(lookup(env_id), obs_dim, np.asarray(parameters))
    return candidate, trial, play(env, controller, seed)[0]


def controller_returns(
    env_id: str, env_kwargs: dict[str, Any], parameters: np.ndarray, seeds: list[int], pool: WorkerPool
) -> np.ndarray:
    """Return of each of P controllers (flat parameters, (P, n)) on each seed: (P, len(seeds)).
    Candidate p's trial t is seeded with ``seeds[t]`` (common seeds lower the variance of the
    comparison); the episodes run on ``pool``'s workers."""
    kwargs_json = json.dumps(env_kwargs, sort_keys=True)
    jobs = [
        (env_id, kwargs_json, row, seed, p, t)
        for p, row in enumerate(np.asarray(parameters))
        for t, seed in enumerate(seeds)
    ]
    returns = np.full((len(parameters), len(seeds)), np.nan)
    for p, t, value in pool.map(run_controller_episode, jobs):
        returns[p, t] = value
    return returns


def evaluate(
    env_id: str,
    policy: str | os.PathLike,
    episodes: int = 100,
    seed: int = 10_000,
    workers: int = 2,
    env_kwargs: dict[str, Any] | None = None,
    algorithm: str | None = None,
    progress: Progress = no_progress,
    backend: str = "local",
    address: str | None = None,
    noise: float = 0.0,
    trust_zip: bool = False,
    sample: bool = False,
) -> EvalResult:
    """Run ``policy`` for ``episodes`` episodes of ``env_id`` across ``workers`` workers
    (processes here, or Ray actors with ``backend="ray"``: see :mod:`dreamgym.parallel`).

    ``policy`` may also be ``"random"``: uniform random actions, the baseline.

    If ``policy`` is a model directory, the env uses that world model unless ``env_kwargs``
    names another. ``progress("evaluate ENV_ID", done, total)`` is called after each episode.
    ``noise`` > 0 plays the policy with exploration noise (:class:`NoisyPolicy`, seeded by the
    episode's seed), as rounds record it; ``sample`` plays an SB3 agent by drawing its actions
    from its own distribution, as it learned (:class:`SampledPolicy`, seeded by the episode's
    seed). An SB3 ``.zip`` policy needs ``trust_zip=True``: loading one runs code from the file.
    """
    check_trusted(policy, trust_zip)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise ValueError(f"noise must be a number in [0, 1], got {noise!r}")
    start = time.perf_counter()
    env_kwargs = dict(env_kwargs or {})
    if sample and noise:
        raise ValueError("play a policy either with noise or sampled from its own distribution, not both")
    loaded, model_dir = (None, None) if policy == "random" else load_policy(policy, algorithm)
    if sample and (loaded is None or isinstance(loaded, LinearController)):
        raise ValueError(
            f"sample draws an SB3 agent's actions from its own distribution; {os.fspath(policy)!r} is "
            f"{'random play' if loaded is None else 'a linear controller'}, which has none"
        )
    if model_dir is not None and env_id.startswith(("Dream", "Latent")):
        env_kwargs.setdefault("world_model", model_dir)
    check_env_id(env_id, env_kwargs)  # a clear error now, not in a worker
    registered_model = gym.spec(env_id).kwargs.get("world_model")
    if registered_model is not None:  # a worker may not have the registration that names it (dreamgym.register)
        env_kwargs.setdefault("world_model", registered_model)
    kwargs_json = json.dumps(env_kwargs, sort_keys=True)
    jobs = [
        (env_id, kwargs_json, os.fspath(policy), algorithm, seed, i, float(noise), bool(sample))
        for i in range(episodes)
    ]
    results = []
    for result in run_parallel(run_episode, jobs, workers, backend, address):
        results.append(result)
        progress(f"evaluate {env_id}", len(results), episodes)
    results.sort()
    close_worker_cache()  # what this process cached when it ran the episodes itself (workers=1)
    returns = [r for _, r, _ in results]
    return EvalResult(
        env_id=env_id,
        episodes=episodes,
        mean=float(np.mean(returns)),
        std=float(np.std(returns)),
        returns=returns,
        lengths=[n for _, _, n in results],
        seed=seed,
        policy=os.fspath(policy),
        env_kwargs=env_kwargs,
        seconds=time.perf_counter() - start,
        noise=float(noise) if policy != "random" else 0.0,
        sample=bool(sample),
    )
