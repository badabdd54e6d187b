"""Per-game facts: the real environment, how its frames become V's input, and its actions.

Everything that differs between CarRacing and Doom TakeCover lives here, so that the rest of
the package (collection, training, the dream, the latent twin) is written once. In particular
:func:`preprocess_frame` is the *only* place where a raw game frame is turned into the
64×64×3 uint8 image that V was trained on: collection, the latent twin and the pictures all
call it, so training and use cannot drift apart.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

FRAME_SIZE = 64
"""Side of the square RGB frames V sees."""


@dataclass(frozen=True)
class Game:
    """What dreamgym needs to know about one real game."""

    name: str
    """Short name used on the command line and in model directories (``doom``, ``carracing``)."""
    dream_env_id: str
    """The registered dream."""
    latent_env_id: str
    """The registered latent twin (the real game through V and M)."""
    real_env_id: str
    """Gymnasium id of the real game."""
    real_env_kwargs: dict[str, Any]
    """Keyword arguments for ``gym.make(real_env_id, ...)``."""
    crop_rows: tuple[int, int]
    """Rows of the raw frame kept before resizing (drops CarRacing's dashboard, Doom's HUD)."""
    max_episode_steps: int
    """Truncation limit, identical in the dream and on the real game."""
    reward_threshold: float
    """Score at which the task counts as solved."""
    z_dim: int
    """Default latent size of V (the paper's)."""
    hidden_dim: int
    """Default LSTM size of M (the paper's)."""
    action_dim: int
    """Width of the action vector fed to M (one-hot for discrete actions)."""
    alive_reward: float | None
    """Reward per step in the dream if it is a game rule (Doom: +1 per step alive), else None
    and the reward comes from M's reward head."""

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space(), gym.spaces.Discrete)

    def action_space(self) -> gym.spaces.Space:
        """A fresh copy of the real game's action space (the dream declares the same one)."""
        if self.name == "carracing":
            return gym.spaces.Box(
                np.array([-1.0, 0.0, 0.0], dtype=np.float32),
                np.array([1.0, 1.0, 1.0], dtype=np.float32),
                dtype=np.float32,
            )
        return gym.spaces.Discrete(3)

    def make_real_env(self, render_mode: str | None = None) -> gym.Env:
        """The real game, with the same time limit as the dream.

        VizDoom keeps its files in :func:`vizdoom_home`, not in the current directory.
        """
        kwargs = dict(self.real_env_kwargs)
        if self.name == "doom":
            import vizdoom.gymnasium_wrapper  # noqa: F401  (registers the Vizdoom ids)

            kwargs = {**vizdoom_file_kwargs(), **kwargs}
        return gym.make(self.real_env_id, render_mode=render_mode, max_episode_steps=self.max_episode_steps, **kwargs)

    def frame_of(self, observation: Any) -> np.ndarray:
        """The RGB screen inside a real observation (VizDoom returns a dict)."""
        if isinstance(observation, dict):
            return observation["screen"]
        return observation

    def preprocess(self, observation: Any) -> np.ndarray:
        """Real observation -> (64, 64, 3) uint8 frame, exactly as V was trained."""
        return preprocess_frame(self.frame_of(observation), self.crop_rows)

    def action_to_vector(self, actions: np.ndarray) -> np.ndarray:
        """Actions as stored in episode files -> (T, action_dim) float32 input for M."""
        actions = np.asarray(actions)
        if self.discrete:
            return np.eye(self.action_dim, dtype=np.float32)[actions.astype(np.int64).reshape(-1)]
        return actions.astype(np.float32).reshape(-1, self.action_dim)


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
        raise FileNotFoundError(f"VizDoom's engine {engine} is missing or not executable: pip install --force-reinstall vizdoom")
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
            error.errno, f"cannot write VizDoom's files in {home} ({error.strerror or error}); "
            "set XDG_CACHE_HOME to a writable directory"
        ) from error
    if os.statvfs(home).f_flag & getattr(os, "ST_NOEXEC", 0):
        from dreamgym.files import WriteError

        raise WriteError(errno.EACCES, f"{home} is on a file system mounted noexec, so VizDoom cannot be started "
                                       "from there; set XDG_CACHE_HOME to a directory on another one")
    return {"vizdoom_path": str(launcher), "doom_config_path": str(home / "_vizdoom.ini")}


def preprocess_frame(frame: np.ndarray, crop_rows: tuple[int, int]) -> np.ndarray:
    """Crop rows ``crop_rows`` of an (H, W, 3) uint8 frame and resize it to (64, 64, 3) uint8.

    Bilinear resampling with antialiasing (PIL), used for every frame dreamgym ever encodes.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}"
        )
    top, bottom = crop_rows
    image = Image.fromarray(np.ascontiguousarray(frame[top:bottom]))
    return np.array(image.resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR), dtype=np.uint8)


CARRACING = Game(
    name="carracing",
    dream_env_id="DreamCarRacing-v0",
    latent_env_id="LatentCarRacing-v0",
    real_env_id="CarRacing-v3",
    real_env_kwargs={},
    crop_rows=(0, 84),
    max_episode_steps=1000,
    reward_threshold=900.0,
    z_dim=32,
    hidden_dim=256,
    action_dim=3,
    alive_reward=None,
)

DOOM = Game(
    name="doom",
    dream_env_id="DreamDoomTakeCover-v0",
    latent_env_id="LatentDoomTakeCover-v0",
    real_env_id="VizdoomTakeCover-v1",
    real_env_kwargs={},
    # The old gym-doom frame was 640x480 and rows 0:400 were kept; at 320x240 that is 0:200.
    crop_rows=(0, 200),
    max_episode_steps=2100,
    reward_threshold=750.0,
    z_dim=64,
    hidden_dim=512,
    action_dim=3,
    alive_reward=1.0,
)

GAMES: dict[str, Game] = {game.name: game for game in (CARRACING, DOOM)}


def get_game(name: str) -> Game:
    """Look a game up by name; a clear error lists the known ones."""
    try:
        return GAMES[name]
    except KeyError:
        raise ValueError(f"unknown game {name!r}; expected one of {sorted(GAMES)}") from None



def game_of_env(env_id: str) -> Game:
    """The game behind a registered id (dream, latent twin or real game)."""
    for game in GAMES.values():
        if env_id.removeprefix("dreamgym:") in (game.dream_env_id, game.latent_env_id, game.real_env_id):
            return game
    raise ValueError(f"{env_id!r} is not a dreamgym game id; expected one of "
                     f"{sorted(i for g in GAMES.values() for i in (g.dream_env_id, g.latent_env_id))}")
