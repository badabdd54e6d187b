"""Stable-Baselines3 agents trained inside a dream: each game's recipe (the one its example in
``examples/`` uses), warm starts from an earlier agent, and saves that are never half-written.

```python
from dreamgym.agents import train_sb3
agent, dream_score = train_sb3("ppo", "doom_take_cover", 4_000_000, "runs/ppo.zip", seed=0)
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.checkpoint import load_world_model
from dreamgym.files import atomic_write
from dreamgym.games import Game
from dreamgym.training import set_agent_logging

ALGORITHMS = ("PPO", "DQN")
"""The SB3 algorithms a game may have a recipe for (``Game.sb3_recipes``)."""

DEFAULT_NUM_ENVS = 64
"""Dreams stepped together for an agent of an algorithm without a recipe for its game."""


def recipe(algorithm: str, spec: Game) -> dict[str, Any]:
    """The settings ``train_sb3`` uses for ``algorithm`` (any case) on the game ``spec``."""
    name = algorithm.upper()
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(a.lower() for a in ALGORITHMS)}")
    if name == "DQN" and not spec.discrete:
        raise ValueError(f"DQN needs discrete actions; {spec.name}'s are continuous: choose ppo")
    if name not in spec.sb3_recipes:
        raise ValueError(
            f"{name} has no recipe for {spec.name}; choose one of {', '.join(a.lower() for a in spec.sb3_recipes)}"
        )
    return dict(spec.sb3_recipes[name])


def train_sb3(
    algorithm: str,
    world_model: str | os.PathLike,
    steps: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    init: str | os.PathLike | None = None,
    temperature: float | None = None,
    device: str = "cpu",
    dream: dict[str, Any] | None = None,
) -> tuple[Any, float]:
    """Train an SB3 ``algorithm`` for ``steps`` dream steps in ``world_model``'s dream and save it
    at ``out`` (written whole or not at all) -> (the agent, its mean dream return over the last
    episodes). ``init``: an agent of the same algorithm to continue from (its policy, optimiser
    and settings; any SB3 algorithm; a warm start: ``seed`` is then not used, and an off-policy
    agent refills its replay buffer, which is not saved, before it learns again), else a fresh
    one of the game's recipe. ``dream``: the dream's
    keyword arguments (the defences), on top of the model directory's defaults; ``temperature``
    (None: the model's, else the game's) overrides its temperature. The agent runs
    on the CPU (an MLP on a small latent); the dream on ``device``. Loading ``init`` unpickles
    part of it: pass only agents you made."""
    import stable_baselines3

    from dreamgym.envs.sb3 import make_sb3_vec_env

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    game = load_world_model(world_model, device="cpu").game
    if init is not None and algorithm.upper() not in ALGORITHMS:
        settings = {"num_envs": DEFAULT_NUM_ENVS}  # a warm start keeps the agent's own settings
    else:
        settings = recipe(algorithm, game)
    num_envs = settings.pop("num_envs")
    dream = dict(dream or {})
    if temperature is not None:
        dream["temperature"] = temperature
    venv = make_sb3_vec_env(
        game.dream_env_id, num_envs=num_envs, world_model=os.fspath(world_model), device=device, **dream
    )
    cls = getattr(stable_baselines3, algorithm.upper())
    if init is not None:
        agent = cls.load(init, env=venv, device="cpu")
        agent.ep_info_buffer = None  # the dream score is this dream's, not the last one's
        if hasattr(agent, "learning_starts"):  # off-policy: the saved agent has no replay buffer
            agent.learning_starts = agent.num_timesteps + settings.get("learning_starts", agent.learning_starts)
    else:
        agent = cls("MlpPolicy", venv, seed=seed, device="cpu", **settings)
    out = Path(out)
    set_agent_logging(agent, out.parent)
    agent.learn(steps, reset_num_timesteps=init is None)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: agent.save(tmp))
    buffer = agent.ep_info_buffer or []
    return agent, float(np.mean([e["r"] for e in buffer])) if buffer else float("nan")
