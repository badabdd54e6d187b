"""VizDoom's TakeCover: where the engine keeps its files, the paper's one-output controls, its
presets and its SB3 recipes."""

from __future__ import annotations

import errno
import hashlib
import os
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from dreamgym.games.spec import SMALL_PRESET, TINY_PRESET, Game

if TYPE_CHECKING:
    import torch


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {**TINY_PRESET, "collect": {"episodes": 6, "max_steps": 60}},
    "small": {  # measured in docs/results.md: its controllers do not beat random play on Doom
        "collect": {"episodes": 300},
        "vae": {**SMALL_PRESET["vae"], "z_dim": 32, "reconstruction": "squared_error"},
        "mdnrnn": {**SMALL_PRESET["mdnrnn"], "hidden_dim": 256},
        "controller": SMALL_PRESET["controller"],
    },
    "cpu": {
        "collect": {"episodes": 2000},
        "vae": {"epochs": 3, "frames_per_epoch": 400_000},
        "mdnrnn": {"epochs": 65, "batch_size": 32},
        "controller": {"generations": 200, "population": 64, "trials": 16},
    },
    "paper": {
        "collect": {"episodes": 10_000},
        "vae": {"epochs": 10},
        "mdnrnn": {"epochs": 1200, "batch_size": 100},
        "controller": {"generations": 200, "population": 64, "trials": 16},
        "dream": {"observation": "zch"},  # the original code's controller input [z, c, h]
    },
}
"""``dreamgym pipeline doom --preset NAME``; V's and M's sizes are the game's own (z 64, LSTM 512)."""

SB3_RECIPES: dict[str, dict[str, Any]] = {
    # 256 × 128 = 32k steps per rollout, 10 passes in batches of 2048 (examples/ppo_doom.py)
    "PPO": {
        "num_envs": 256,
        "n_steps": 128,
        "batch_size": 2048,
        "n_epochs": 10,
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
        "policy_kwargs": {"net_arch": [256, 256]},
    },
}
"""The settings of ``examples/ppo_doom.py`` and ``examples/dqn_doom.py``."""


def vizdoom_home() -> Path:
    """Where VizDoom's engine runs and keeps its own files (``_vizdoom.ini``, ``_vizdoom/``):
    ``$XDG_CACHE_HOME/dreamgym/vizdoom``, by default ``~/.cache/dreamgym/vizdoom``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dreamgym" / "vizdoom"


def vizdoom_file_kwargs() -> dict[str, str]:
    """Settings for a VizDoom env that keep the engine's files out of the current directory.

    The engine writes its settings where ``doom_config_path`` says, but also creates
    ``./_vizdoom/`` relative to the directory it runs in, which it inherits from the process that
    starts it. So it is started through a launcher script that first enters
    :func:`vizdoom_home` (every path the engine is given is absolute): this process's working
    directory never changes. ``_vizdoom/`` is made here beforehand, because an engine exits its
    whole process if another engine created it in the same instant (workers starting together).
    """
    import vizdoom

    home, engine = vizdoom_home(), os.path.abspath(vizdoom.exe_path)
    if not os.access(engine, os.X_OK):
        raise FileNotFoundError(
            f"VizDoom's engine {engine} is missing or not executable: pip install --force-reinstall vizdoom"
        )
    script = f'#!/bin/sh\ncd "$(dirname "$0")" || exit 1\nexec {shlex.quote(engine)} "$@"\n'
    # One launcher per engine: environments with different VizDoom versions share the directory.
    launcher = home / f"vizdoom-{hashlib.sha256(engine.encode()).hexdigest()[:12]}.sh"
    try:
        (home / "_vizdoom").mkdir(parents=True, exist_ok=True)
        if not (launcher.is_file() and os.access(launcher, os.X_OK) and launcher.read_text() == script):
            fd, tmp = tempfile.mkstemp(prefix=f".{launcher.name}.", dir=home)
            with os.fdopen(fd, "w") as file:
                file.write(script)
            os.chmod(tmp, 0o755)
            os.replace(tmp, launcher)  # atomic: workers starting together may all write it
    except OSError as error:
        from dreamgym.files import WriteError

        raise WriteError(
            error.errno,
            f"cannot write VizDoom's files in {home} ({error.strerror or error}); "
            "set XDG_CACHE_HOME to a writable directory",
        ) from error
    if os.statvfs(home).f_flag & getattr(os, "ST_NOEXEC", 0):
        from dreamgym.files import WriteError

        raise WriteError(
            errno.EACCES,
            f"{home} is on a file system mounted noexec, so VizDoom cannot be started "
            "from there; set XDG_CACHE_HOME to a directory on another one",
        )
    return {"vizdoom_path": str(launcher), "doom_config_path": str(home / "_vizdoom.ini")}


DOOM_NOOP, DOOM_RIGHT, DOOM_LEFT = 0, 1, 2
"""The discrete actions of VizdoomTakeCover-v1."""


def doom_controls(raw: torch.Tensor) -> torch.Tensor:
    """The paper's mapping of one tanh output: a < -1/3 -> MOVE_LEFT, a > 1/3 -> MOVE_RIGHT,
    else NO-OP."""
    import torch

    a = raw[..., 0]
    actions = torch.full(a.shape, DOOM_NOOP, dtype=torch.int64, device=raw.device)
    actions[a > 1 / 3] = DOOM_RIGHT
    actions[a < -1 / 3] = DOOM_LEFT
    return actions


def vizdoom_setup() -> dict[str, str]:
    """Register the Vizdoom ids, and keep VizDoom's files in :func:`vizdoom_home`."""
    import vizdoom.gymnasium_wrapper  # noqa: F401  (registers the Vizdoom ids)

    return vizdoom_file_kwargs()


DOOM = Game(
    name="doom",
    real_env_id="VizdoomTakeCover-v1",
    actions=gym.spaces.Discrete(3),
    dream_env_id="DreamDoomTakeCover-v0",
    latent_env_id="LatentDoomTakeCover-v0",
    max_episode_steps=2100,
    setup=vizdoom_setup,
    frame_key="screen",
    # The old gym-doom frame was 640x480 and rows 0:400 were kept; at 320x240 that is 0:200.
    crop_rows=(0, 200),
    reward_threshold=750.0,
    z_dim=64,
    hidden_dim=512,
    alive_reward=1.0,
    render_fps=35,
    dream_temperature=1.15,  # the paper's
    controller_outputs=1,
    controller_map=doom_controls,
    buttons=((("LEFT", "a"), DOOM_LEFT), (("RIGHT", "d"), DOOM_RIGHT)),
    shipped_model="doom_take_cover",
    paper_temperatures={
        0.1: ("2086 ± 140", "193 ± 58"),
        0.5: ("2060 ± 277", "196 ± 50"),
        1.0: ("1145 ± 690", "868 ± 511"),
        1.15: ("918 ± 546", "1092 ± 556"),
        1.3: ("732 ± 269", "753 ± 139"),
    },
    presets=PRESETS,
    sb3_recipes=SB3_RECIPES,
)
