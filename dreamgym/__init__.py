"""dreamgym: trained World Models (Ha & Schmidhuber 2018) as Gymnasium environments.

Importing the package registers the shipped dreams' ids (and imports nothing heavier than
Gymnasium: the classes below, torch and Stable-Baselines3 load on first use):

* ``DreamCarRacing-v0``, ``DreamDoomTakeCover-v0``: the dreams (keyword ``temperature``);
* ``LatentCarRacing-v0``, ``LatentDoomTakeCover-v0``: the real games seen through V and M,
  with exactly the dreams' observation and action spaces;
* ``DreamBoxing-v0``, ``LatentBoxing-v0``: the same for Atari Boxing, a game made from its env
  id (making them needs ``ale-py``: ``pip install "dreamgym[atari]"``).

``dreamgym.register(model_dir)`` registers the same pair for a model of any other game.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any

from gymnasium.envs.registration import register as register_id
from gymnasium.envs.registration import registry

from dreamgym.games import GAMES, Game, env_names, shipped_models
from dreamgym.games import lookup as get_game
from dreamgym.validation import check_fields

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
    "ensure_registered",
    "register",
    "save_world_model",
]
__version__ = "0.1.0"

ENV_IDS = {name: (game.dream_env_id, game.latent_env_id) for name, game in GAMES.items()}
"""game -> (dream id, latent twin id), for every shipped dream (those of other games added by _register)."""


def _register_ids(
    ids: tuple[str, str], kwargs: dict[str, Any], limits: dict[str, Any], replace: bool = False
) -> tuple[str, str]:
    """Register a dream (with its vector entry point) and its latent twin, both made with
    ``kwargs``. An id registered already for the same game is kept, or with ``replace`` made
    anew for these ``kwargs`` (another model of that game, with a warning, as Gymnasium gives
    on an override); for another game it is an error. The dream gets no ``reward_threshold``:
    the real game's would tell SB3's ``StopTrainingOnRewardThreshold`` to stop on dream scores."""
    dream_limits = {**limits, "reward_threshold": None}
    replaced: list[tuple[str, str]] = []
    for env_id, entry_point, vector, env_limits in (
        (ids[0], "dreamgym.envs.dream:DreamEnv", "dreamgym.envs.vector:DreamVectorEnv", dream_limits),
        (ids[1], "dreamgym.envs.latent:make_latent_env", None, limits),
    ):
        if env_id in registry:
            if registry[env_id].kwargs.get("game") != kwargs["game"]:
                raise ValueError(
                    f"{env_id} is registered already for the game {registry[env_id].kwargs.get('game')!r}: "
                    f"build the model of {kwargs['game']!r} under another name "
                    "(--env-setting name=... or game_from_env(name=...))"
                )
            if not replace or registry[env_id].kwargs == kwargs:
                continue
            replaced.append(
                (env_id, registry[env_id].kwargs.get("world_model") or f"the shipped {kwargs['game']} model")
            )
            del registry[env_id]
        register_id(id=env_id, entry_point=entry_point, vector_entry_point=vector, kwargs=dict(kwargs), **env_limits)
    if replaced:
        warnings.warn(
            f"{' and '.join(env_id for env_id, _ in replaced)} now use the world model {kwargs.get('world_model')} "
            f"(they used {replaced[0][1]})",
            stacklevel=3,
        )
    return ids


def _limits(game: Game) -> dict[str, Any]:
    return {"max_episode_steps": game.max_episode_steps, "reward_threshold": game.reward_threshold}


def register(world_model: str | os.PathLike) -> tuple[str, str]:
    """Make a model directory's dream and latent twin registered Gymnasium ids, in one call:
    ``dream_id, latent_id = dreamgym.register("runs/boxing/model")``, then
    ``gym.make(dream_id, temperature=1.0)`` (and ``gym.make_vec``, the latent twin, SB3) as for
    the shipped dreams, with the same keyword arguments. The ids are the game's
    (``Dream<Name>-v0``, ``Latent<Name>-v0``); the model directory records the env it was built
    from, so its game is rebuilt from it (only config.json is read here). Registering another
    model of the same game (a later round) points the ids at it."""
    from dreamgym.checkpoint import model_game, resolve_model_dir

    directory = resolve_model_dir(world_model).resolve()
    game = model_game(directory)
    return _register_ids(
        (game.dream_env_id, game.latent_env_id),
        {"game": game.name, "world_model": str(directory)},
        _limits(game),
        replace=True,
    )


def ensure_registered(env_id: str, world_model: Any) -> None:
    """Register ``world_model``'s ids when ``env_id`` is not registered yet (the dream of a game
    made by ``game_from_env``, in a process that has not called ``register`` for it: a spawned
    worker, or ``train_sb3`` given the model directory)."""
    if env_id not in registry and isinstance(world_model, (str, os.PathLike)):
        register(world_model)


def _shipped_limits(env: dict[str, Any]) -> dict[str, Any] | None:
    """The episode cap and reward threshold a shipped model's env entry records, or None when
    they are missing or out of range (loading the model by name then says what is wrong)."""
    from dreamgym.games import SPEC_SETTINGS

    limits = {"max_episode_steps": env.get("max_episode_steps"), "reward_threshold": env.get("reward_threshold")}
    try:
        return check_fields("env", limits, SPEC_SETTINGS)
    except ValueError:
        return None


def _register() -> None:
    for game_name, game in GAMES.items():
        _register_ids((game.dream_env_id, game.latent_env_id), {"game": game_name}, _limits(game))
    for model, (game_name, env) in shipped_models().items():  # shipped dreams of games made from env ids
        if env is None:
            continue
        try:
            name, dream_id, latent_id = env_names(env["env_id"], env.get("name"))
        except (KeyError, TypeError, ValueError):
            continue  # a damaged shipped model: loading it by name says what is wrong
        limits = _shipped_limits(env)
        if name != game_name or limits is None:
            continue
        try:
            ENV_IDS[name] = _register_ids((dream_id, latent_id), {"game": name, "world_model": model}, limits)
        except ValueError as error:  # a data directory never breaks the import
            warnings.warn(f"shipped model {model!r} not registered: {error}", stacklevel=2)


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
