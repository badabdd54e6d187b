"""What dreamgym knows about a game (:class:`Game`), and how a raw frame becomes V's input.

:func:`preprocess_frame` is the *only* place where a raw game frame is turned into the 64×64×3
uint8 image that V was trained on: collection, the latent twin and the pictures all call it, so
training and use cannot drift apart.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import gymnasium as gym
import numpy as np
from PIL import Image

from dreamgym.commands import command_line

if TYPE_CHECKING:  # imported where used: ``import dreamgym`` registers its ids without torch
    import torch


FRAME_SIZE = 64
"""Side of the square RGB frames V sees."""

TINY_PRESET: dict[str, dict[str, Any]] = {
    "collect": {"episodes": 4, "max_steps": 60},
    "vae": {"epochs": 1, "batch_size": 32, "frames_per_epoch": 128},
    "mdnrnn": {"hidden_dim": 32, "epochs": 2, "batch_size": 4},
    "controller": {"generations": 2, "population": 6, "trials": 2, "max_steps": 50, "eval_every": 1, "eval_trials": 4},
    "evaluate": {"episodes": 2},
}
"""The preset every game has: each stage in seconds, a smoke test of the pipeline that learns
nothing."""

SMALL_PRESET: dict[str, dict[str, Any]] = {
    "collect": {"episodes": 1000, "max_steps": 300},
    "vae": {
        "epochs": 1,
        "frames_per_epoch": 100_000,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "reconstruction": "cross_entropy",
    },
    "mdnrnn": {"epochs": 20, "batch_size": 16},
    "controller": {"generations": 20, "population": 32, "trials": 4, "sample_done": True},
}
"""Between ``tiny`` and ``cpu``: minutes on 2 cores for a game with short episodes (8 for pixel
CartPole; docs/results.md has what it learns on each game)."""

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
    actions: gym.spaces.Discrete | gym.spaces.Box
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
    presets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Preset name -> the run.json sections the preset sets (``dreamgym.config.preset`` fills in
    the rest from the settings' defaults, and V's and M's sizes from ``z_dim`` and ``hidden_dim``)."""
    sb3_recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """SB3 algorithm (``PPO``, ``DQN``) -> the settings its agents train with in this game's dream
    (``num_envs``: dreams stepped together); an algorithm without one is refused for the game."""
    spec: dict[str, Any] | None = None
    """How a game made by :func:`game_from_env` was built (its env id and the settings given),
    saved in run.json and model directories so that any process can build it again; None for
    the games defined in this module."""

    def __post_init__(self) -> None:
        space = self.actions
        if not (
            isinstance(space, gym.spaces.Discrete) or (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)
        ):
            raise TypeError(f"game {self.name!r}: dreamgym plays Discrete or 1-D Box actions, got {space}")
        if isinstance(space, gym.spaces.Box) and not (
            np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
        ):
            raise ValueError(f"game {self.name!r}: a Box action space needs finite bounds, got {space}")

    @property
    def discrete(self) -> bool:
        return isinstance(self.actions, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Width of the action vector fed to M (one-hot for discrete actions)."""
        space = self.actions
        return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(space.shape[0])

    @property
    def first_action(self) -> int:
        """The first action of a ``Discrete`` space (its ``start``; 0 for a ``Box``)."""
        return int(self.actions.start) if isinstance(self.actions, gym.spaces.Discrete) else 0

    @property
    def build_command(self) -> str:
        return command_line("pipeline", self.name, f"--out runs/{self.name}")

    def action_space(self) -> gym.spaces.Discrete | gym.spaces.Box:
        """A fresh copy of the real game's action space (the dream declares the same one)."""
        return copy.deepcopy(self.actions)

    @property
    def box(self) -> gym.spaces.Box:
        """The action space of a game with continuous actions."""
        if not isinstance(self.actions, gym.spaces.Box):
            raise TypeError(f"{self.name} acts with {self.actions}, not a Box")
        return self.actions

    @overload
    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor: ...

    @overload
    def encode_actions(self, actions: np.ndarray) -> np.ndarray: ...

    def encode_actions(self, actions: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Actions (T,) or (T, d) -> (T, action_dim) float32 input for M: one-hot for discrete
        actions. NumPy in, NumPy out; a tensor stays on its device."""
        import torch

        tensor = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        if self.discrete:
            indices = tensor.long().reshape(-1)  # every dream step passes here: no work for a space starting at 0
            vectors = torch.nn.functional.one_hot(
                indices - self.first_action if self.first_action else indices, self.action_dim
            )
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
        space = self.actions
        if isinstance(space, gym.spaces.Discrete):
            return raw.argmax(-1) + self.first_action
        low = torch.as_tensor(space.low, device=raw.device)
        high = torch.as_tensor(space.high, device=raw.device)
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
            buttons = tuple(((str(i),), self.first_action + i) for i in range(1, min(self.action_dim, 10)))
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


def preprocess_frame(frame: np.ndarray, crop_rows: tuple[int, int] | None = None) -> np.ndarray:
    """Crop rows ``crop_rows`` (None: keep all) of an (H, W, 3) uint8 frame and resize it to
    (64, 64, 3) uint8.

    Bilinear resampling with antialiasing (PIL), used for every frame dreamgym ever encodes.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}")
    top, bottom = crop_rows or (0, frame.shape[0])
    image = Image.fromarray(np.ascontiguousarray(frame[top:bottom]))
    return np.array(image.resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.BILINEAR), dtype=np.uint8)
