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
import hashlib
import itertools
import os
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

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
        tensor = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        if self.discrete:
            vectors = torch.nn.functional.one_hot(tensor.long().reshape(-1) - int(self.actions.start), self.action_dim)
        else:
            vectors = tensor.reshape(-1, self.action_dim)
        vectors = vectors.float()
        return vectors if isinstance(actions, torch.Tensor) else vectors.numpy()

    @property
    def controller_output_dim(self) -> int:
        return self.controller_outputs or self.action_dim

    def controller_actions(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., controller_output_dim) tanh outputs -> game actions: (..., d) float32 or (...,) int64."""
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
        """The real game, with the same time limit as the dream."""
        kwargs = {**(self.setup() if self.setup else {}), **self.real_env_kwargs}
        return gym.make(self.real_env_id, render_mode=render_mode, max_episode_steps=self.max_episode_steps, **kwargs)

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
