"""dreamgym: trained World Models (Ha & Schmidhuber 2018) as Gymnasium environments.

Importing the package registers four ids:

* ``DreamCarRacing-v0``, ``DreamDoomTakeCover-v0``: the dreams (keyword ``temperature``);
* ``LatentCarRacing-v0``, ``LatentDoomTakeCover-v0``: the real games seen through V and M,
  with exactly the dreams' observation and action spaces.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.envs import DreamEnv, DreamVectorEnv, LatentObservation, make_latent_env
from dreamgym.games import GAMES, get_game
from dreamgym.world_model import WorldModel

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


def __getattr__(name: str):
    """``dreamgym.make_sb3_vec_env`` is imported on first use (Stable-Baselines3 is slow to import)."""
    if name == "make_sb3_vec_env":
        from dreamgym.envs.sb3 import make_sb3_vec_env

        return make_sb3_vec_env
    raise AttributeError(f"module 'dreamgym' has no attribute {name!r}")


_register()

