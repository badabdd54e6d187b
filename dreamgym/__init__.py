"""dreamgym: trained World Models (Ha & Schmidhuber 2018) as Gymnasium environments.

Importing the package registers four ids (and imports nothing heavier than Gymnasium: the
classes below, torch and Stable-Baselines3 load on first use):

* ``DreamCarRacing-v0``, ``DreamDoomTakeCover-v0``: the dreams (keyword ``temperature``);
* ``LatentCarRacing-v0``, ``LatentDoomTakeCover-v0``: the real games seen through V and M,
  with exactly the dreams' observation and action spaces.
"""

from __future__ import annotations

import importlib
from typing import Any

from gymnasium.envs.registration import register, registry

from dreamgym.games import GAMES, get_game

__all__ = [
    "GAMES",
    "DreamEnv",
    "DreamVectorEnv",
    "LatentObservation",
    "WorldModel",
    "get_game",
    "load_world_model",
    "make_latent_env",
    "make_sb3_vec_env",
    "save_world_model",
]
__version__ = "0.1.0"

ENV_IDS = {name: (game.dream_env_id, game.latent_env_id) for name, game in GAMES.items()}
"""game -> (dream id, latent twin id)."""


def _register() -> None:
    for game_name, game in GAMES.items():
        dream_id, latent_id = game.dream_env_id, game.latent_env_id
        limits = {"max_episode_steps": game.max_episode_steps, "reward_threshold": game.reward_threshold}
        if dream_id not in registry:
            register(
                id=dream_id,
                entry_point="dreamgym.envs.dream:DreamEnv",
                vector_entry_point="dreamgym.envs.vector:DreamVectorEnv",
                kwargs={"game": game_name},
                **limits,
            )
        if latent_id not in registry:
            register(id=latent_id, entry_point="dreamgym.envs.latent:make_latent_env", kwargs={"game": game_name}, **limits)


_LAZY = {
    "DreamEnv": "dreamgym.envs.dream",
    "DreamVectorEnv": "dreamgym.envs.vector",
    "LatentObservation": "dreamgym.envs.latent",
    "make_latent_env": "dreamgym.envs.latent",
    "make_sb3_vec_env": "dreamgym.envs.sb3",
    "WorldModel": "dreamgym.world_model",
    "load_world_model": "dreamgym.checkpoint",
    "save_world_model": "dreamgym.checkpoint",
}
"""Public names imported on first use: registering the ids needs neither torch nor SB3."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dreamgym' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


_register()

