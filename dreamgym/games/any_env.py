"""A :class:`Game` from any Gymnasium env with RGB frames (:func:`game_from_env`), and the
modules a file may ask dreamgym to import to register such an env."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np

from dreamgym.games import boxing
from dreamgym.games.spec import SMALL_PRESET, TINY_PRESET, Game
from dreamgym.validation import Rule, check_fields

GENERIC_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": TINY_PRESET,
    "small": SMALL_PRESET,
    "cpu": {
        "collect": {"episodes": 300},
        "vae": {"epochs": 3, "frames_per_epoch": 400_000},
        "mdnrnn": {"epochs": 40, "batch_size": 16},
        "controller": {"generations": 100, "population": 64, "trials": 8},
    },
    "paper": {  # Ha & Schmidhuber's budget: 10,000 episodes, V 10 epochs, M batch 100, CMA-ES 64 × 16
        "collect": {"episodes": 10_000},
        "vae": {"epochs": 10},
        "mdnrnn": {"epochs": 20, "batch_size": 100},
        "controller": {"generations": 200, "population": 64, "trials": 16},
    },
}
"""The presets of a game made from any env (V's and M's sizes are the game's, ``z_dim`` and
``hidden_dim``), unless ``ENV_PRESETS`` has the env's own."""

ENV_PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {boxing.ENV_ID: boxing.PRESETS}
"""Env id -> presets of the envs whose dreams dreamgym ships."""

GENERIC_RECIPES: dict[str, dict[str, Any]] = {
    "PPO": {
        "num_envs": 64,
        "n_steps": 128,
        "batch_size": 2048,
        "n_epochs": 4,
        "learning_rate": 3e-4,
        "gamma": 0.99,
        "ent_coef": 0.01,
    },
    "DQN": {
        "num_envs": 64,
        "learning_rate": 3e-4,
        "buffer_size": 200_000,
        "learning_starts": 10_000,
        "batch_size": 256,
        "train_freq": 1,
        "gradient_steps": 4,
        "target_update_interval": 2_000,
        "exploration_fraction": 0.2,
    },
}
"""The SB3 settings of a game made from any env: Doom's and CarRacing's, less their tuning."""


ENV_PACKAGES = ("ale_py",)
"""Packages that a run.json or model directory may ask dreamgym to import, to register its
game's env id; add your own to the environment variable ``DREAMGYM_ENV_PACKAGES`` (comma
separated), or import them in your own code first. A file must not be able to make dreamgym
import whatever it names."""

SPEC_SETTINGS: dict[str, Rule] = {
    "name": Rule("str"),
    "frame_key": Rule("str", optional=True),
    "crop_rows": Rule("list", optional=True),
    "max_episode_steps": Rule("int", minimum=1, maximum=1_000_000),
    "z_dim": Rule("int", minimum=1, maximum=4096),
    "hidden_dim": Rule("int", minimum=1, maximum=8192),
    "render_fps": Rule("int", minimum=1, maximum=1000),
    "dream_temperature": Rule("float", minimum=0.01, maximum=10.0),
    "reward_threshold": Rule("float", optional=True),
    "alive_reward": Rule("float", optional=True),
}
"""What :func:`game_from_env` lets a caller set, and what each may hold (bounded: a file must not
make dreamgym allocate an unchecked size)."""

DEFAULT_MAX_EPISODE_STEPS = 5_000
"""Episode cap of a game whose env declares none (Atari's runs 27,000 steps)."""


def _frame_key(space: gym.spaces.Space, env_id: str, wanted: str | None = None) -> str | None:
    """Where an observation holds its RGB screen: None for the observation itself, or a key of
    a ``Dict`` (``wanted``, or the only one that holds RGB frames)."""

    def is_rgb(box: gym.spaces.Space) -> bool:
        return isinstance(box, gym.spaces.Box) and box.dtype == np.uint8 and len(box.shape) == 3 and box.shape[2] == 3

    if is_rgb(space) and wanted is None:
        return None
    if wanted is not None and not isinstance(space, gym.spaces.Dict):
        raise ValueError(f"frame_key {wanted!r} picks an image out of Dict observations; {env_id} observes {space}")
    if isinstance(space, gym.spaces.Dict):
        keys = [key for key, sub in space.spaces.items() if is_rgb(sub)]
        if wanted is not None and wanted not in keys:
            raise ValueError(f"frame_key {wanted!r}: {env_id}'s observations hold RGB images under {keys}")
        if wanted is not None or len(keys) == 1:
            return wanted or keys[0]
        if len(keys) > 1:
            raise ValueError(f"{env_id}'s observations hold several RGB images {keys}: choose one with frame_key")
    raise ValueError(
        f"{env_id} observes {space}: dreamgym needs RGB frames, a Box of uint8 (H, W, 3) or a Dict "
        "holding one (for a game that renders but observes numbers, wrap it so that it observes its "
        "rendering first)"
    )


MAX_TRUST_FILE_BYTES = 1 << 16


def trust_file() -> Path:
    """Where dreamgym remembers the env modules this user named themselves (on the command line or
    in their code): ``$XDG_CONFIG_HOME/dreamgym/env_packages.json`` (``~/.config`` by default).
    It lives with the user, not with any run or model, so a downloaded directory cannot add to it."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "dreamgym" / "env_packages.json"


def trusted_modules() -> dict[str, str]:
    """Module -> the directory it was imported from, for each module this user named."""
    import json

    path = trust_file()
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_TRUST_FILE_BYTES:
            raise ValueError(f"larger than {MAX_TRUST_FILE_BYTES} bytes")
        modules = json.loads(path.read_text())
        if not isinstance(modules, dict) or not all(isinstance(v, str) for v in modules.values()):
            raise ValueError("expected a JSON object of module -> directory")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is damaged ({error}): delete it, then name your env modules again") from None
    return modules


def _remember(module: str) -> None:
    """Record that the user named ``module``, with the directory it came from, so that later
    commands on runs and models of its game import it without an environment variable."""
    import importlib.util
    import json
    import warnings

    from dreamgym.files import atomic_write_text

    root = module.partition(".")[0]
    spec = importlib.util.find_spec(root)
    if spec is None or spec.origin is None:
        return
    origin = Path(spec.origin).resolve()
    directory = str(origin.parent.parent if spec.submodule_search_locations else origin.parent)
    modules = trusted_modules()
    if modules.get(module) == directory:
        return
    try:
        atomic_write_text(trust_file(), json.dumps({**modules, module: directory}, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        warnings.warn(
            f"could not remember {module!r} as yours ({error}): later commands will need "
            f"DREAMGYM_ENV_PACKAGES={module}",
            stacklevel=3,
        )


def import_env_package(module: str, trusted: bool) -> None:
    """Import the package that registers an env id (``ale_py`` for ``ALE/...``). ``trusted``:
    named by the caller's own code or command line, not by a file; such a module is also found
    in the current directory (as ``python -m`` would). On a file's word alone, only
    :data:`ENV_PACKAGES`, ``$DREAMGYM_ENV_PACKAGES`` and the remembered modules are imported."""
    import importlib
    import sys

    if module in sys.modules:
        return
    remembered = trusted_modules()
    allowed = [
        *ENV_PACKAGES,
        *filter(None, (p.strip() for p in os.environ.get("DREAMGYM_ENV_PACKAGES", "").split(","))),
        *remembered,
    ]
    if not trusted and module not in allowed:
        raise ValueError(
            f"a file asks dreamgym to import {module!r} to make its game; only {allowed} are imported on "
            f"a file's word: name it yourself once (dreamgym ... --env {module}:ENV_ID, or game_from_env in "
            f"your code), add it to DREAMGYM_ENV_PACKAGES, or import {module} in your own code first"
        )
    places = [p for p in (remembered.get(module), os.getcwd() if trusted else None) if p and p not in sys.path]
    try:
        try:
            importlib.import_module(module)  # importing it registers its ids
        except ModuleNotFoundError as error:
            if error.name != module.partition(".")[0] or not places:
                raise
            sys.path.extend(places)  # where the user keeps it (spawned workers inherit sys.path)
            importlib.import_module(module)
    except ImportError as error:  # a ValueError: the command line reports it as a bad input
        extra = ' (pip install "dreamgym[atari]")' if module == "ale_py" else ""
        raise ValueError(f"the game needs the package {module!r}{extra}: {error}") from error


def _import_env_package(module: str) -> dict[str, Any]:
    """A generic game's ``setup``: its package, imported in whichever process makes the env."""
    import_env_package(module, trusted=True)  # checked when the game was built
    return {}


def env_names(env_id: str, name: str | None = None) -> tuple[str, str, str]:
    """(game name, dream id, latent id) of a game made from ``env_id``, without making the env:
    ``ALE/Boxing-v5`` -> ("boxing", "DreamBoxing-v0", "LatentBoxing-v0"); a given ``name``
    ("my-game") gives "DreamMyGame-v0"."""
    from gymnasium.envs.registration import parse_env_id

    try:
        _, env_name, _ = parse_env_id(env_id.rpartition(":")[2])
    except gym.error.Error as error:
        raise ValueError(f"{env_id!r} is not a Gymnasium env id: {error}") from None
    chosen = name or re.sub(r"[^a-z0-9_-]+", "-", env_name.lower()).strip("-")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", chosen):
        raise ValueError(
            f"a game's name is lower-case letters, digits, - and _ (it names directories and ids), got {chosen!r}"
        )
    base = (
        env_name
        if name is None
        else "".join(part[:1].upper() + part[1:] for part in chosen.replace("_", "-").split("-"))
    )
    return chosen, f"Dream{base}-v0", f"Latent{base}-v0"


def game_from_env(env_id: str, *, trusted: bool = True, **settings: Any) -> Game:
    """A :class:`Game` for any Gymnasium env id with RGB observations (a ``Box`` of uint8
    (H, W, 3), or a ``Dict`` holding one) and ``Discrete`` or 1-D ``Box`` actions. ``env_id``
    may name the package that registers it, ``"ale_py:ALE/Boxing-v5"`` (imported first; from a
    file only a package in :data:`ENV_PACKAGES`). ``settings`` (see :data:`SPEC_SETTINGS`)
    override what is read off the env: its name (default: the env's name in lower case), the
    frame's key and rows, the episode cap, V's and M's sizes, the render rate and the dream's
    temperature. Exploration is :class:`RandomHold`; the controller reads an argmax
    (``Discrete``) or scales to the bounds (``Box``); the reward comes from M's reward head."""
    if not isinstance(env_id, str) or not env_id.strip():
        raise ValueError(f"env_id must be a Gymnasium env id, got {env_id!r}")
    check_fields("game_from_env", settings, SPEC_SETTINGS)
    module, _, bare_id = env_id.rpartition(":")
    if module:
        import_env_package(module, trusted)
        if trusted and module not in ENV_PACKAGES:
            _remember(module)  # named by the user: later commands on its runs and models may import it
    try:
        env = gym.make(bare_id)
    except gym.error.Error as error:
        hint = " (name its package first, e.g. ale_py:ALE/Boxing-v5)" if ":" not in env_id else ""
        raise ValueError(f"cannot make {bare_id!r}: {error}{hint}") from None
    try:
        frame_key = _frame_key(env.observation_space, bare_id, settings.get("frame_key"))
        space = env.observation_space
        frame_space = space if frame_key is None else cast(gym.spaces.Dict, space)[frame_key]
        height = int(cast(tuple[int, ...], frame_space.shape)[0])  # an RGB Box: _frame_key checked it
        raw_actions = env.action_space
        spec_steps = env.spec.max_episode_steps if env.spec is not None else None
        render_fps = int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    actions = _check_actions(raw_actions, bare_id)
    crop = settings.get("crop_rows")
    if crop is not None and (
        len(crop) != 2
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in crop)
        or not 0 <= crop[0] < crop[1] <= height
    ):
        raise ValueError(
            f"crop_rows must be two rows [top, bottom) with 0 <= top < bottom <= {height} (the height "
            f"of {bare_id}'s frames), got {crop!r}"
        )
    name, dream_env_id, latent_env_id = env_names(env_id, settings.get("name"))
    # The spec records the episode cap it resolved: a model's ids are registered from its file alone.
    settings["max_episode_steps"] = settings.get("max_episode_steps") or spec_steps or DEFAULT_MAX_EPISODE_STEPS
    return Game(
        name=name,
        real_env_id=bare_id,
        actions=actions,
        dream_env_id=dream_env_id,
        latent_env_id=latent_env_id,
        max_episode_steps=settings["max_episode_steps"],
        frame_key=frame_key,
        crop_rows=None if crop is None else (int(crop[0]), int(crop[1])),
        reward_threshold=settings.get("reward_threshold"),
        z_dim=settings.get("z_dim", 32),
        hidden_dim=settings.get("hidden_dim", 256),
        alive_reward=settings.get("alive_reward"),
        render_fps=settings.get("render_fps", render_fps),
        dream_temperature=float(settings.get("dream_temperature", 1.0)),
        setup=functools.partial(_import_env_package, module) if module else None,
        presets={**GENERIC_PRESETS, **ENV_PRESETS.get(bare_id, {})},
        sb3_recipes=GENERIC_RECIPES,
        spec={"env_id": env_id, **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}},
    )


def _check_actions(space: gym.spaces.Space, env_id: str) -> gym.spaces.Discrete | gym.spaces.Box:
    """``space`` if a generic game can act with it: ``Discrete`` actions numbered from 0, or a 1-D
    float ``Box``."""
    if isinstance(space, gym.spaces.Discrete) and space.start == 0:
        return space
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return space
    raise ValueError(
        f"{env_id} acts with {space}: dreamgym plays Discrete actions numbered from 0 or a 1-D float Box "
        "(wrap the env to map its actions onto one of those first)"
    )
