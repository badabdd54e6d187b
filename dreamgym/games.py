"""Per-game facts: the real environment, how its frames become V's input, its actions, how the
controller and the exploration policy act in it, and how a person plays its dream.

``Game`` is the one place where games differ: the rest of the package (collection, training,
the dream, the latent twin) is written once and asks the game. CarRacing and Doom TakeCover
are two definitions of it below; a new game is one more, plus a preset in
:mod:`dreamgym.config`. :func:`preprocess_frame` is the *only* place where a raw game frame is
turned into the 64×64×3 uint8 image that V was trained on: collection, the latent twin and the
pictures all call it, so training and use cannot drift apart.
"""

from __future__ import annotations

import copy
import errno
import functools
import hashlib
import itertools
import math
import os
import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from PIL import Image

if TYPE_CHECKING:  # imported where used: ``import dreamgym`` registers its ids without torch
    import torch

FRAME_SIZE = 64
"""Side of the square RGB frames V sees."""

Policy = Callable[[Any], Any]
"""Observation -> action."""


class RandomHold:
    """Uniform random actions of a space, each held for 1-10 steps (the paper's Doom exploration,
    and every game's default): held actions move a game further than a new one every frame."""

    def __init__(self, space: gym.spaces.Space, rng: np.random.Generator, longest: int = 10) -> None:
        if not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise TypeError(f"RandomHold draws from a Discrete or Box space, got {space}")
        self.space, self.rng, self.longest = space, rng, longest
        self.action: Any = None
        self.remaining = 0

    def __call__(self, observation: Any) -> Any:
        if self.remaining == 0:
            if isinstance(self.space, gym.spaces.Discrete):
                self.action = int(self.space.start + self.rng.integers(self.space.n))
            else:
                self.action = self.rng.uniform(self.space.low, self.space.high).astype(self.space.dtype)
            self.remaining = int(self.rng.integers(1, self.longest + 1))
        self.remaining -= 1
        return self.action


@dataclass(frozen=True)
class Game:
    """What dreamgym needs to know about one real game. Only ``name``, the three env ids, the
    action space and the episode cap are required; every other field has a default that fits
    a game with RGB frames."""

    name: str
    """Short name used on the command line and in model directories (``doom``, ``carracing``)."""
    real_env_id: str
    """Gymnasium id of the real game."""
    actions: gym.spaces.Space
    """The real game's action space (``Discrete`` or a 1-D ``Box``); the dream declares the same."""
    dream_env_id: str
    """The registered dream."""
    latent_env_id: str
    """The registered latent twin (the real game through V and M)."""
    max_episode_steps: int
    """Truncation limit, identical in the dream and on the real game."""
    real_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gym.make(real_env_id, ...)``."""
    setup: Callable[[], dict[str, Any]] | None = None
    """Run before each real env is made (imports that register its id); returns more keyword
    arguments for ``gym.make``."""
    frame_key: str | None = None
    """The key of the RGB screen in a ``Dict`` observation (None: the observation is the screen)."""
    crop_rows: tuple[int, int] | None = None
    """Rows of the raw frame kept before resizing (a dashboard or HUD dropped); None: all."""
    reward_threshold: float | None = None
    """Score at which the task counts as solved."""
    z_dim: int = 32
    """Default latent size of V."""
    hidden_dim: int = 256
    """Default LSTM size of M."""
    alive_reward: float | None = None
    """Reward per step in the dream if it is a game rule (Doom: +1 per step alive), else None
    and the reward comes from M's reward head."""
    render_fps: int = 30
    """Frame rate of the dream's window and videos (``metadata["render_fps"]``)."""
    dream_temperature: float = 1.0
    """The temperature agents train at in this game's dream."""
    controller_outputs: int | None = None
    """Outputs of the linear controller (None: one per action for ``Discrete``, read by argmax;
    one per dimension for ``Box``)."""
    controller_map: Callable[[torch.Tensor], torch.Tensor] | None = None
    """(..., controller_outputs) tanh outputs -> actions (None: argmax for ``Discrete``; for a
    ``Box``, each output scaled from [-1, 1] to the dimension's bounds)."""
    exploration: Callable[[np.random.Generator, gym.Env], Policy] | None = None
    """(rng, the real env) -> the policy that records round 0's data (None: :class:`RandomHold`)."""
    buttons: tuple[tuple[tuple[str, ...], Any], ...] = ()
    """Keyboard play: (keys, action) pairs; keys are pygame names (``LEFT``) or characters.
    ``Discrete``: each button plays its action. ``Box``: buttons held together add up, but
    never two that set the same dimension. Empty: the digit keys play actions 1-9 of a
    ``Discrete`` game (no key: action 0)."""
    shipped_model: str | None = None
    """Name of this game's model in ``pretrained/`` (its envs' default ``world_model``)."""
    paper_temperatures: dict[float, tuple[str, str]] = field(default_factory=dict)
    """Ha & Schmidhuber (2018)'s scores per temperature: τ -> (dream score, real score)."""
    spec: dict[str, Any] | None = None
    """How a game made by :func:`game_from_env` was built (its env id and the settings given),
    saved in run.json and model directories so that any process can build it again; None for
    the games defined in this module."""

    def __post_init__(self) -> None:
        space = self.actions
        if not (isinstance(space, gym.spaces.Discrete) or (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)):
            raise TypeError(f"game {self.name!r}: dreamgym plays Discrete or 1-D Box actions, got {space}")
        if isinstance(space, gym.spaces.Box) and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"game {self.name!r}: a Box action space needs finite bounds, got {space}")

    @property
    def discrete(self) -> bool:
        return isinstance(self.actions, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Width of the action vector fed to M (one-hot for discrete actions)."""
        return int(self.actions.n) if self.discrete else int(self.actions.shape[0])

    @property
    def build_command(self) -> str:
        return f"dreamgym pipeline {self.name} --out runs/{self.name}"

    def action_space(self) -> gym.spaces.Space:
        """A fresh copy of the real game's action space (the dream declares the same one)."""
        return copy.deepcopy(self.actions)

    def encode_actions(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Actions (T,) or (T, d) -> (T, action_dim) float32 input for M: one-hot for discrete
        actions. NumPy in, NumPy out; a tensor stays on its device."""
        import torch

        tensor = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        if self.discrete:
            indices = tensor.long().reshape(-1)  # every dream step passes here: no work for a space starting at 0
            vectors = torch.nn.functional.one_hot(indices - int(self.actions.start) if self.actions.start else indices,
                                                  self.action_dim)
        else:
            vectors = tensor.reshape(-1, self.action_dim)
        vectors = vectors.float()
        return vectors if isinstance(actions, torch.Tensor) else vectors.numpy()

    @property
    def controller_output_dim(self) -> int:
        return self.controller_outputs or self.action_dim

    def controller_actions(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., controller_output_dim) tanh outputs -> game actions: (..., d) float32 or (...,) int64."""
        import torch

        if self.controller_map is not None:
            return self.controller_map(raw)
        if self.discrete:
            return raw.argmax(-1) + int(self.actions.start)
        low = torch.as_tensor(self.actions.low, device=raw.device)
        high = torch.as_tensor(self.actions.high, device=raw.device)
        return low + (raw + 1) / 2 * (high - low)

    def explorer(self, rng: np.random.Generator, env: gym.Env) -> Policy:
        """The exploration policy for one real episode of ``env``."""
        return (self.exploration or (lambda rng, env: RandomHold(self.action_space(), rng)))(rng, env)

    def make_real_env(self, render_mode: str | None = None) -> gym.Env:
        """The real game, with the same time limit as the dream. ``render_mode`` is passed only
        when set, so that an env whose factory fixes its own (``rgb_array`` for its pixels) or
        takes none is made as its author wrote it."""
        kwargs = {**(self.setup() if self.setup else {}), **self.real_env_kwargs}
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        return gym.make(self.real_env_id, max_episode_steps=self.max_episode_steps, **kwargs)

    def frame_of(self, observation: Any) -> np.ndarray:
        """The RGB screen inside a real observation."""
        return observation[self.frame_key] if self.frame_key is not None else observation

    def preprocess(self, observation: Any) -> np.ndarray:
        """Real observation -> (64, 64, 3) uint8 frame, exactly as V was trained."""
        return preprocess_frame(self.frame_of(observation), self.crop_rows)

    def key_actions(self, key_code: Callable[[str], int]) -> dict[tuple[int, ...], Any]:
        """Keyboard -> action for :func:`gymnasium.utils.play.play` (see ``buttons``):
        sorted tuples of key codes held together -> the action; ``key_code`` turns a key's
        name into its code (pygame's)."""
        buttons = self.buttons
        if not buttons and self.discrete:
            buttons = tuple(((str(i),), int(self.actions.start) + i) for i in range(1, min(self.action_dim, 10)))
        if self.discrete:
            return {(key_code(key),): action for keys, action in buttons for key in keys}
        mapping: dict[tuple[int, ...], Any] = {}
        for count in range(1, len(buttons) + 1):
            for held in itertools.combinations(buttons, count):
                parts = np.array([action for _, action in held], dtype=np.float32)
                if np.any((parts != 0).sum(axis=0) > 1):  # two buttons on one dimension (left and right)
                    continue
                for keys in itertools.product(*(keys for keys, _ in held)):
                    mapping[tuple(sorted(key_code(key) for key in keys))] = parts.sum(axis=0)
        return mapping


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


def preprocess_frame(frame: np.ndarray, crop_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Crop rows ``crop_rows`` (None: keep all) of an (H, W, 3) uint8 frame and resize it to
    (64, 64, 3) uint8.

    Bilinear resampling with antialiasing (PIL), used for every frame dreamgym ever encodes.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}"
        )
    top, bottom = crop_rows or (0, frame.shape[0])
    image = Image.fromarray(np.ascontiguousarray(frame[top:bottom]))
    return np.array(image.resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR), dtype=np.uint8)


# --------------------------------------------------------------------------- CarRacing


def car_racing_controls(raw: torch.Tensor) -> torch.Tensor:
    """The original code's mapping of 3 tanh outputs: steer = a0, gas = (a1 + 1) / 2,
    brake = clip(a2, 0, 1)."""
    import torch

    steer, gas, brake = raw.unbind(-1)
    return torch.stack([steer, (gas + 1) / 2, brake.clamp(0, 1)], dim=-1)


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


CARRACING = Game(
    name="carracing",
    real_env_id="CarRacing-v3",
    actions=gym.spaces.Box(np.array([-1.0, 0.0, 0.0], dtype=np.float32), np.array([1.0, 1.0, 1.0], dtype=np.float32),
                           dtype=np.float32),
    dream_env_id="DreamCarRacing-v0",
    latent_env_id="LatentCarRacing-v0",
    max_episode_steps=1000,
    crop_rows=(0, 84),  # the dashboard dropped
    reward_threshold=900.0,
    z_dim=32,
    hidden_dim=256,
    render_fps=50,
    dream_temperature=1.0,  # CarRacing's own M (the paper trained its controller without a dream)
    controller_map=car_racing_controls,
    exploration=CarRacingPilot,
    # As CarRacing-v3's own keyboard play: steer -1/+1, gas 1.0, brake 0.8
    buttons=((("LEFT", "a"), (-1.0, 0.0, 0.0)), (("RIGHT", "d"), (1.0, 0.0, 0.0)),
             (("UP", "w"), (0.0, 1.0, 0.0)), (("DOWN", "s"), (0.0, 0.0, 0.8))),
    shipped_model="car_racing",
)


# --------------------------------------------------------------------------- Doom TakeCover

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
    paper_temperatures={0.1: ("2086 ± 140", "193 ± 58"), 0.5: ("2060 ± 277", "196 ± 50"),
                        1.0: ("1145 ± 690", "868 ± 511"), 1.15: ("918 ± 546", "1092 ± 556"),
                        1.3: ("732 ± 269", "753 ± 139")},
)

GAMES: dict[str, Game] = {game.name: game for game in (CARRACING, DOOM)}
"""Every game this process knows: the two above, and those registered by :func:`register_game`."""


def get_game(name: str) -> Game:
    """Look a game up by name; a clear error lists the known ones."""
    try:
        return GAMES[name]
    except KeyError:
        raise ValueError(f"unknown game {name!r}; expected one of {sorted(GAMES)}, or the env id of a Gymnasium "
                         "game with RGB frames (dreamgym pipeline --env ENV_ID)") from None


def register_game(game: Game) -> Game:
    """Make ``game`` known to this process by its name (again is fine; another game of the same
    name is an error)."""
    known = GAMES.get(game.name)
    if known is not None and game.spec is not None and known.spec == game.spec:
        return known  # the same game, built again
    if known is not None and known != game:
        raise ValueError(f"another game is already named {game.name!r} (from {known.real_env_id}): give this one "
                         "another name")
    GAMES[game.name] = game
    return game


# --------------------------------------------------------------------------- shipped models


def pretrained_root() -> Path:
    """Where shipped model directories live: ``$DREAMGYM_PRETRAINED`` if set; else the copy an
    installed wheel carries (``dreamgym/pretrained/``); else, in a checkout or an editable
    install, the repository's ``pretrained/``."""
    if "DREAMGYM_PRETRAINED" in os.environ:
        return Path(os.environ["DREAMGYM_PRETRAINED"])
    package = Path(__file__).resolve().parent
    installed = package / "pretrained"
    return installed if installed.is_dir() else package.parent / "pretrained"


def shipped_models() -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Shipped model name -> (its game, the env it was built from): each defined game's own
    model, and every directory in :func:`pretrained_root` whose config.json records a game made
    by :func:`game_from_env` (a dream of another game, shipped like the others). Only JSON is
    read; a model is checked in full when it is loaded."""
    import json

    models: dict[str, tuple[str, dict[str, Any] | None]] = {
        game.shipped_model: (name, None) for name, game in GAMES.items() if game.shipped_model and game.spec is None}
    root = pretrained_root()
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        config = directory / "config.json"
        if directory.name in models or not config.is_file():
            continue
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue  # loading it names what is wrong
        if isinstance(data, dict) and isinstance(data.get("game"), str) and isinstance(data.get("env"), dict):
            models[directory.name] = (data["game"], data["env"])
    return models


# --------------------------------------------------------------------------- any Gymnasium game

ENV_PACKAGES = ("ale_py",)
"""Packages that a run.json or model directory may ask dreamgym to import, to register its
game's env id; add your own to the environment variable ``DREAMGYM_ENV_PACKAGES`` (comma
separated), or import them in your own code first. A file must not be able to make dreamgym
import whatever it names."""

SPEC_SETTINGS: dict[str, tuple[type, ...]] = {
    "name": (str,), "frame_key": (str, type(None)), "crop_rows": (list, tuple, type(None)),
    "max_episode_steps": (int,), "z_dim": (int,), "hidden_dim": (int,), "render_fps": (int,),
    "dream_temperature": (int, float), "reward_threshold": (int, float, type(None)),
    "alive_reward": (int, float, type(None)),
}
"""What :func:`game_from_env` lets a caller set, and the JSON types each may take."""

SPEC_LIMITS = {"max_episode_steps": (1, 1_000_000), "z_dim": (1, 4096), "hidden_dim": (1, 8192),
               "render_fps": (1, 1000), "dream_temperature": (0.01, 10.0)}
"""Bounds of the numeric settings (a file must not make dreamgym allocate an unchecked size)."""

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
    raise ValueError(f"{env_id} observes {space}: dreamgym needs RGB frames, a Box of uint8 (H, W, 3) or a Dict "
                     "holding one (for a game that renders but observes numbers, wrap it so that it observes its "
                     "rendering first)")


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
        warnings.warn(f"could not remember {module!r} as yours ({error}): later commands will need "
                      f"DREAMGYM_ENV_PACKAGES={module}", stacklevel=3)


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
    allowed = [*ENV_PACKAGES, *filter(None, (p.strip() for p in os.environ.get("DREAMGYM_ENV_PACKAGES", "").split(","))),
               *remembered]
    if not trusted and module not in allowed:
        raise ValueError(f"a file asks dreamgym to import {module!r} to make its game; only {allowed} are imported on "
                         f"a file's word: name it yourself once (dreamgym ... --env {module}:ENV_ID, or game_from_env in "
                         f"your code), add it to DREAMGYM_ENV_PACKAGES, or import {module} in your own code first")
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
        raise ValueError(f"a game's name is lower-case letters, digits, - and _ (it names directories and ids), "
                         f"got {chosen!r}")
    base = env_name if name is None else "".join(part[:1].upper() + part[1:] for part in chosen.replace("_", "-").split("-"))
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
    unknown = sorted(set(settings) - set(SPEC_SETTINGS))
    if unknown:
        raise ValueError(f"game_from_env: unknown settings {unknown}; expected some of {sorted(SPEC_SETTINGS)}")
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, SPEC_SETTINGS[key]):
            raise ValueError(f"game_from_env: {key} must be of type {' or '.join(t.__name__ for t in SPEC_SETTINGS[key])}, "
                             f"got {value!r}")
    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"game_from_env: {key} must be a finite number, got {value!r}")
    for key, (low, high) in SPEC_LIMITS.items():
        if key in settings and not low <= settings[key] <= high:
            raise ValueError(f"game_from_env: {key} must be in [{low}, {high}], got {settings[key]!r}")
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
        height = (env.observation_space if frame_key is None else env.observation_space[frame_key]).shape[0]
        actions = env.action_space
        spec_steps = env.spec.max_episode_steps if env.spec is not None else None
        render_fps = int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    _check_actions(actions, bare_id)
    crop = settings.get("crop_rows")
    if crop is not None and (len(crop) != 2 or not all(isinstance(r, int) and not isinstance(r, bool) for r in crop)
                             or not 0 <= crop[0] < crop[1] <= height):
        raise ValueError(f"crop_rows must be two rows [top, bottom) with 0 <= top < bottom <= {height} (the height "
                         f"of {bare_id}'s frames), got {crop!r}")
    name, dream_env_id, latent_env_id = env_names(env_id, settings.get("name"))
    # The spec records the episode cap it resolved: a model's ids are registered from its file alone.
    settings["max_episode_steps"] = settings.get("max_episode_steps") or spec_steps or DEFAULT_MAX_EPISODE_STEPS
    return Game(
        name=name, real_env_id=bare_id, actions=actions, dream_env_id=dream_env_id, latent_env_id=latent_env_id,
        max_episode_steps=settings["max_episode_steps"],
        frame_key=frame_key, crop_rows=None if crop is None else (int(crop[0]), int(crop[1])),
        reward_threshold=settings.get("reward_threshold"), z_dim=settings.get("z_dim", 32),
        hidden_dim=settings.get("hidden_dim", 256), alive_reward=settings.get("alive_reward"),
        render_fps=settings.get("render_fps", render_fps), dream_temperature=float(settings.get("dream_temperature", 1.0)),
        setup=functools.partial(_import_env_package, module) if module else None,
        spec={"env_id": env_id, **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}},
    )


def _check_actions(space: gym.spaces.Space, env_id: str) -> None:
    """What a generic game can act with: ``Discrete`` actions numbered from 0, or a 1-D float ``Box``."""
    if isinstance(space, gym.spaces.Discrete) and space.start == 0:
        return
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return
    raise ValueError(f"{env_id} acts with {space}: dreamgym plays Discrete actions numbered from 0 or a 1-D float Box "
                     "(wrap the env to map its actions onto one of those first)")


def resolve_game(name: Any, env: Any = None) -> Game:
    """The game a file names: by ``name`` alone for a known game, or built from its ``env``
    entry (``Game.spec``), which must give the same name."""
    if not isinstance(name, str):
        raise ValueError(f"game must be a name, got {name!r}")
    if env is None:
        return get_game(name)
    game = game_from_spec(env)
    if game.name != name:
        raise ValueError(f"game {name!r} does not match its env entry, which makes {game.name!r}")
    return game


def game_record(game: Game) -> dict[str, Any]:
    """What a file records to name ``game`` (read back by :func:`resolve_game`)."""
    return {"game": game.name, **({"env": game.spec} if game.spec is not None else {})}


def game_from_spec(spec: Any) -> Game:
    """The game a run.json or model directory describes (its ``env`` entry), registered in this
    process; checked like any file's contents (a bad entry is a ValueError naming it)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("env_id"), str):
        raise ValueError(f"env must be a JSON object with an env_id, got {spec!r}")
    for game in GAMES.values():  # built already in this process: making the env again is not needed
        if game.spec == spec:
            return game
    settings = {k: v for k, v in spec.items() if k != "env_id"}
    return register_game(game_from_env(spec["env_id"], trusted=False, **settings))


def game_of_env(env_id: str) -> Game:
    """The game behind a registered id (dream, latent twin or real game)."""
    for game in GAMES.values():
        if env_id.removeprefix("dreamgym:") in (game.dream_env_id, game.latent_env_id, game.real_env_id):
            return game
    raise ValueError(f"{env_id!r} is not a dreamgym game id; expected one of "
                     f"{sorted(i for g in GAMES.values() for i in (g.dream_env_id, g.latent_env_id))}")
