"""DreamEnv: a trained world model as a Gymnasium environment."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import EzPickle

from dreamgym.checkpoint import SHIPPED_MODELS, env_game, load_world_model
from dreamgym.config import DreamSettings
from dreamgym.games import lookup
from dreamgym.replay import Replay, as_replay
from dreamgym.world_model import (
    PLAIN_DREAM,
    DreamState,
    WorldModel,
    override_dream,
)

DEFAULT_WORLD_MODEL = {game: name for name, game in reversed(SHIPPED_MODELS.items())}  # the first of a game wins
"""The shipped model each game's envs load when no ``world_model`` is given: the game's own
(``Game.shipped_model``), else the first of its directories."""

WINDOW_SCALE = 8
"""``render_mode="human"`` shows V's 64×64 frames in a window this many times larger (512×512)."""

_IMPORTING_PID = os.getpid()


def use_one_torch_thread_if_forked() -> None:
    """Run torch on one thread in a process forked from the one that imported dreamgym.

    Workers of ``gym.make_vec(..., vectorization_mode="async")`` are forked on Linux. torch's
    OpenMP threads do not survive a fork, so the worker's first parallel operation (loading the
    model) would wait for them forever; on one thread it runs no parallel region. A worker runs
    one env, so it loses nothing. Spawned processes import dreamgym afresh and are left alone.
    """
    if os.getpid() != _IMPORTING_PID and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


def get_world_model(
    game: str, world_model: WorldModel | str | os.PathLike | None, device: str | torch.device
) -> WorldModel:
    """A loaded model for ``game``: the one passed, a shipped name, a directory, or the default.
    A loaded :class:`WorldModel` stays on its device unless ``device`` names another."""
    use_one_torch_thread_if_forked()
    if isinstance(world_model, WorldModel):
        if world_model.game.name != game:
            raise ValueError(f"world model is for {world_model.game.name!r}, not {game!r}")
        return world_model if device == "auto" else world_model.to(device)
    if world_model is None and game not in DEFAULT_WORLD_MODEL:
        raise ValueError(
            f"{game} has no shipped model: pass world_model= (a model directory), or register the dream "
            "with dreamgym.register(model_dir)"
        )
    return load_world_model(DEFAULT_WORLD_MODEL[game] if world_model is None else world_model, game=game, device=device)


def load_dream(
    game: str,
    world_model: WorldModel | str | os.PathLike | None,
    device: str | torch.device,
    plain: object,
    replay: Replay | str | os.PathLike | None = None,
    **defences: object,
) -> tuple[WorldModel, DreamSettings, Replay | None]:
    """The model of a dream env, the dream's settings and its replay: ``defences`` (the env's
    keyword arguments; None keeps the model's default) on top of the model's defaults, or of the
    plain dream with ``plain``; ``replay`` a :class:`~dreamgym.replay.Replay` or a run directory
    (see :func:`~dreamgym.replay.as_replay`). Bad values are refused before the model is loaded."""
    if not isinstance(plain, (bool, np.bool_)):
        raise TypeError(f"plain must be True or False, got {type(plain).__name__} {plain!r}")
    override_dream(DreamSettings(), **defences)
    if replay is not None and not isinstance(replay, (Replay, str, os.PathLike)):
        raise TypeError(f"replay must be a dreamgym.replay.Replay or a run directory, got {type(replay).__name__}")
    model = get_world_model(game, world_model, device)
    replay = as_replay(replay, model.game)
    # the plain dream drops the defences, not the model's temperature and observation layout
    defaults = model.dream_defaults
    base = (
        dataclasses.replace(PLAIN_DREAM, temperature=defaults.temperature, observation=defaults.observation)
        if plain
        else None
    )
    return model, model.dream_settings(base, replay=replay, **defences), replay


def check_reset_options(options: Any, allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    """A reset's ``options``: None or a dict of the keys ``allowed`` only -> a dict;
    TypeError / ValueError otherwise (an option a dream does not know is not ignored)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"reset options must be a dict or None, got {type(options).__name__} {options!r}")
    unknown = sorted(str(key) for key in options if key not in allowed)
    if unknown:
        known = f"only {list(allowed)}" if allowed else "none"
        raise ValueError(f"unknown reset option(s) {unknown}: this env takes {known}")
    return options


def check_actions(space: gym.spaces.Space, actions: Any, num_envs: int | None = None) -> Any:
    """Validate one action (``num_envs`` None) or a batch of ``num_envs`` actions against the
    game's ``space``, and return it in canonical form: an int or an (N,) int64 array for
    ``Discrete``, float32 of shape ``space.shape`` or (N, *space.shape) for a ``Box``.

    Raises TypeError for a value of the wrong kind and ValueError for a wrong shape, a value
    out of range, NaN or inf; the message says what was expected.
    """
    one = num_envs is None
    batch = () if num_envs is None else (num_envs,)
    try:
        array = np.asarray(actions)
    except ValueError:  # ragged nested sequences
        array = np.asarray(None)
    if isinstance(space, gym.spaces.Discrete):
        expected = f"{'an integer action' if one else f'integer actions of shape ({num_envs},)'} in [0, {space.n - 1}]"
        if array.dtype.kind not in "iu" or (one and array.shape != ()):
            raise TypeError(f"expected {expected}, got {type(actions).__name__} {actions!r}")
        if array.shape != batch:
            raise ValueError(f"expected {expected}, got shape {array.shape}")
        if np.any(array < 0) or np.any(array >= space.n):
            raise ValueError(f"expected {expected}, got {actions}")
        return int(array) if one else array.astype(np.int64)
    box = cast(gym.spaces.Box, space)
    shape = (*batch, *box.shape)
    what = "a numeric action" if one else "numeric actions"
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected {what} of shape {shape}, got {type(actions).__name__} {actions!r}")
    array = array.astype(np.float32)
    if array.shape != shape:
        raise ValueError(f"expected {what} of shape {shape}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"actions contain NaN or inf: {array}")
    if np.any(array < box.low) or np.any(array > box.high):
        raise ValueError(f"action {array} is outside the bounds low={box.low}, high={box.high}")
    return array


def _import_pygame() -> Any:
    """pygame (installed with gymnasium[box2d]), imported without its greeting on stdout."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as error:
        raise ImportError('the keyboard and the "human" window need pygame: pip install "gymnasium[box2d]"') from error
    return pygame


def keys_to_action(game: str) -> dict[tuple[int, ...], int | np.ndarray]:
    """Keyboard -> action for :func:`gymnasium.utils.play.play`: sorted tuples of pygame key
    codes (``pygame.K_*``) held together -> the action (the game's ``buttons``).

    Doom: left arrow or ``a`` -> 2 (MOVE_LEFT), right arrow or ``d`` -> 1 (MOVE_RIGHT); no key
    is play's default ``noop=0``. CarRacing, as in CarRacing-v3's own keyboard play: left/right
    arrows or ``a``/``d`` steer -1/+1, up or ``w`` gas 1.0, down or ``s`` brake 0.8, and any
    combination of them but both steering keys; for no key pass ``noop=np.zeros(3, np.float32)``
    to play (its default 0 is not a CarRacing action).
    """
    pygame = _import_pygame()
    return lookup(game).key_actions(lambda key: ord(key) if len(key) == 1 else getattr(pygame, f"K_{key}"))


class DreamEnv(gym.Env, EzPickle):
    """## Description
    The dream of a trained World Model (Ha & Schmidhuber 2018): V's latent z and M's LSTM state
    h stand in for the game. Each step feeds (z, a) to M, samples the next z from M's Gaussian
    mixture at temperature τ, and reads the reward and the episode end from M's heads.

    ```python
    import gymnasium as gym, dreamgym
    env = gym.make("DreamDoomTakeCover-v0", temperature=1.15)
    ```

    A person can play a dream with the keyboard (arrows or WASD, see :func:`keys_to_action`):

    ```python
    import numpy as np
    from gymnasium.utils.play import play
    play(gym.make("DreamDoomTakeCover-v0", render_mode="rgb_array"), zoom=8)
    play(gym.make("DreamCarRacing-v0", render_mode="rgb_array"), zoom=8, noop=np.zeros(3, np.float32))
    ```

    ## Action Space
    Identical to the real game's: CarRacing-v3 ``Box([-1, 0, 0], [1, 1, 1])`` (steer, gas,
    brake); VizdoomTakeCover-v1 ``Discrete(3)`` (0 no-op, 1 MOVE_RIGHT, 2 MOVE_LEFT).

    ## Observation Space
    ``Box(-inf, inf, (z_dim + hidden_dim,), float32)``: ``obs[:z_dim]`` is z_t,
    ``obs[z_dim:]`` is M's hidden state h_t before it has seen (z_t, a_t). With
    ``observation="zch"`` (the paper's Doom controller input) it is [z, c, h], c the LSTM's cell
    state: ``(z_dim + 2 * hidden_dim,)``. The latent twins (``LatentCarRacing-v0``,
    ``LatentDoomTakeCover-v0``) declare the same space, and take the same keyword.

    ## Rewards
    Doom: +1 per step alive, as in the real game. CarRacing: M's reward head, trained on the
    real game's rewards (−0.1 per frame, +1000/N per new tile, −100 off the playfield).

    ## Starting State
    z is drawn from the posterior of the first frame of a random stored real episode; h = 0.
    With ``starts="data"``, the dream starts at a random stored real step instead: z is that
    frame's μ and h is M's state after the ``warmup`` real steps before it (what the latent twin
    would show there, exactly so for a step fewer than ``warmup`` steps into its episode). Then,
    at p > 0, the episode's dropout mask is drawn, and with ``ensemble="episode"`` the member
    that moves it; both are kept until the next reset.

    ## Episode End
    Terminated when M's done head gives p(done) > ``done_threshold`` (0.5 unless the model or the
    keyword says otherwise), or on a Bernoulli draw with ``sample_done=True``. Truncated after
    ``horizon`` steps if one is set, and at 1000 steps (CarRacing) or 2100 (Doom) by the
    registered time limit.

    A pickled or copied dream (``pickle``, ``copy.deepcopy``, Ray and subprocess vector envs) is
    made again from its arguments: it holds no episode, and its ``step`` raises ``ResetNeeded``
    until it is reset. A dream's state lives in M's tensors, which are not carried across.

    ## Arguments
    * ``temperature``: τ > 0, at most 1000 (default: the one the model directory records, else the
      game's: Doom the paper's 1.15, CarRacing 1.0; ``env.unwrapped.temperature`` shows it).
    * ``world_model``: a shipped model name (``"car_racing"``, ``"doom_take_cover"``), the path
      of a model directory, or a loaded :class:`~dreamgym.world_model.WorldModel`.
    * ``render_mode``: ``"rgb_array"``: ``render()`` returns V's decoding of z (64×64×3 uint8);
      ``"human"``: each ``reset`` and ``step`` shows it in a window, scaled 8× to 512×512
      (pygame), at the game's frame rate (``metadata["render_fps"]``: 35 Doom, 50 CarRacing).
    * ``device``: where V and M run: ``"auto"`` (default: CUDA when there is a GPU, else the CPU),
      ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Observations are numpy arrays either way.
    * ``sample_done``: draw the episode end instead of thresholding p(done).

    The defences against agents that exploit M's errors (:class:`~dreamgym.config.DreamSettings`).
    Each keyword left at ``None`` takes the value the model directory was built for
    (``env.unwrapped.settings`` shows the result). ``plain=True`` starts from the paper's plain
    dream instead (no dropout, member 0 alone, no penalty, ends at p(done) > 0.5, first-frame
    starts, no horizon), whatever the model was built for, so that it is one setting away for
    comparison; keywords given beside it still apply. Its trajectories for a seed are those of
    earlier versions.

    * ``dropout``: a dropout dream (Wellmer & Kwok 2021): each episode draws its own dropout mask
      on M, fixed until the next reset, so that an agent trained across episodes meets a family
      of dreams and cannot exploit one M's errors. The mask (0 with probability p, else
      1/(1 − p)) multiplies M's h on its way to the heads (next z, reward, end), not the h that
      M carries or that the observation shows: ``obs[z_dim:]`` stays M's state, as on the real
      game. ``None``: the model's default, else the rate M was trained with
      (``MDNRNNConfig.dropout``); else 0 ≤ p < 1, finite. ``env.unwrapped.dropout_mask`` is the
      episode's mask, (1, hidden_dim), or None.
    * ``ensemble``: ``"off"`` (member 0 alone) or ``"episode"``: each episode draws one of the
      model's M members (a model trained with ``mdnrnn.members`` ≥ 2), which draws its next
      latents, rewards and end; ``env.unwrapped.member`` is the episode's member; or
      ``"pessimist"``: member 0 draws the next latent, the reward is the lowest any member
      predicts and the episode ends where any member ends it (p(done) is the highest). Every member
      sees the same z and actions, and the observation's h is always member 0's, the M that the
      latent twin runs on the real game.
    * ``uncertainty_penalty``: λ ≥ 0; each step's reward is lowered by λ·u, where
      ``info["uncertainty"]`` u is the members' disagreement on the next latent (root mean square
      over z's dimensions of the spread of the members' expected z; MOPO's idea). Needs 2 or more
      members; u is in ``info`` whenever an ensemble is in play.
    * ``done_threshold``: 0 < t < 1: the dream ends when p(done) > t; lower is more pessimistic
      (the shipped Doom model, trained with a 10× weight on deaths and no offset, ends at a
      calibrated p of about 1/11).
    * ``starts``: ``"first"`` (the paper's) or ``"data"``: start at stored real steps (see Starting
      State); needs a ``replay`` or a model directory that stores real episodes.
    * ``horizon``: truncate each episode after this many steps (≥ 1; ``None``: the model's
      default, else the game's limit). Short dreams from real starts suit agents with a value
      function, which bootstrap the rest (SB3 does at truncation).
    * ``replay``: where data starts come from instead of the model's stored episodes: a run
      directory (every encoded episode in ``RUN/latents``) or a :class:`~dreamgym.replay.Replay`,
      which may grow while an agent trains (``replay.add(mu, actions)``: the next reset can start
      in the new episode). Many envs can share one.
    * ``warmup``: with data starts, M's state at a start is its state after at most this many real
      steps before it (default 32), run from zero.
    * ``observation``: ``"zh"`` ([z, h]) or ``"zch"`` ([z, c, h], the paper's Doom controller
      input); default: the model's own.

    ## Version History
    * v0: initial release; ``dropout``, ``ensemble``, ``uncertainty_penalty``, ``done_threshold``,
      ``starts``, ``horizon`` and ``observation`` added later (defaults: the model's own settings).
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(
        self,
        game: str,
        world_model: WorldModel | str | os.PathLike | None = None,
        temperature: float | None = None,
        render_mode: str | None = None,
        device: str | torch.device = "auto",
        sample_done: bool = False,
        dropout: float | None = None,
        ensemble: str | None = None,
        uncertainty_penalty: float | None = None,
        done_threshold: float | None = None,
        starts: str | None = None,
        horizon: int | None = None,
        plain: bool = False,
        warmup: int | None = None,
        replay: Replay | str | os.PathLike | None = None,
        observation: str | None = None,
    ) -> None:
        EzPickle.__init__(
            self,
            game,
            world_model,
            temperature,
            render_mode,
            device,
            sample_done,
            dropout,
            ensemble,
            uncertainty_penalty,
            done_threshold,
            starts,
            horizon,
            plain,
            warmup,
            replay,
            observation,
        )
        self.game = env_game(game, world_model)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.game.render_fps}
        self.sample_done = bool(sample_done)
        self.model, self.settings, self.replay = load_dream(
            self.game.name,
            world_model,
            device,
            plain,
            temperature=temperature,
            dropout=dropout,
            ensemble=ensemble,
            uncertainty_penalty=uncertainty_penalty,
            done_threshold=done_threshold,
            starts=starts,
            horizon=horizon,
            warmup=warmup,
            replay=replay,
            observation=observation,
        )
        """The dream's defences: the model's defaults with this env's keyword arguments."""
        self.observation_space = self.model.observation_space(self.settings.observation)
        self.action_space = self.game.action_space()
        self._generator = torch.Generator(device=self.model.device)
        self._state: DreamState | None = None
        self._steps = 0
        self._window: Any = None  # pygame's display surface, once render_mode="human" shows a frame
        self._clock: Any = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        check_reset_options(options)
        super().reset(seed=seed)
        self._generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        self._state = self.model.initial_state(1, self._generator, self.settings, replay=self.replay)
        self._steps = 0
        if self.render_mode == "human":
            self.render()
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = check_actions(self.action_space, action)
        step = self.model.dream_step(
            self._state,
            self.model.action_tensor([action]),
            self._generator,
            self.sample_done,
            self.settings,
        )
        self._state = step.state
        self._steps += 1
        info = {"done_probability": float(step.done_probability[0])}
        if step.uncertainty is not None:
            info["uncertainty"] = float(step.uncertainty[0])
        if self.render_mode == "human":
            self.render()
        terminated = bool(step.done[0])
        truncated = not terminated and self.settings.horizon is not None and self._steps >= self.settings.horizon
        return self._observation(), float(step.reward[0]), terminated, truncated, info

    @property
    def temperature(self) -> float:
        """The dream's temperature τ (``settings.temperature``: the keyword, else the model's, else the game's)."""
        return float(self.settings.temperature)  # type: ignore[arg-type]  # resolved by dream_settings

    @property
    def dropout(self) -> float:
        """The dream's dropout rate (``settings.dropout``, resolved to a number)."""
        return float(self.settings.dropout or 0.0)

    @property
    def dropout_mask(self) -> torch.Tensor | None:
        """This episode's dropout mask on M's h, (1, hidden_dim) on the model's device; None when
        ``dropout`` is 0 or before the first reset."""
        return None if self._state is None else self._state.dropout_mask

    @property
    def member(self) -> int | None:
        """The M member that moves this episode (``ensemble="episode"``); None otherwise."""
        return None if self._state is None or self._state.member is None else int(self._state.member[0])

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        frame = self.model.decode(self._state.z)[0]
        if self.render_mode == "rgb_array":
            return frame
        self._show(frame)
        return None

    def get_keys_to_action(self) -> dict[tuple[int, ...], int | np.ndarray]:
        """The key map :func:`gymnasium.utils.play.play` uses when given none (see :func:`keys_to_action`)."""
        return keys_to_action(self.game.name)

    def close(self) -> None:
        """Close the window, if any, and end the episode: ``step`` needs a ``reset`` again."""
        if self._window is not None:
            _import_pygame().display.quit()
            self._window = self._clock = None
        self._state = None
        super().close()

    def _show(self, frame: np.ndarray) -> None:
        """Draw a (64, 64, 3) frame in the window, scaled up, and keep to the game's frame rate."""
        pygame = _import_pygame()
        if self._window is None:
            pygame.display.init()  # the display only: no sound devices
            pygame.display.set_caption(self.spec.id if self.spec is not None else f"dreamgym {self.game.name} dream")
            self._window = pygame.display.set_mode((frame.shape[1] * WINDOW_SCALE, frame.shape[0] * WINDOW_SCALE))
            self._clock = pygame.time.Clock()
        image = pygame.surfarray.make_surface(frame.swapaxes(0, 1))  # surfarray is (width, height, 3)
        self._window.blit(pygame.transform.scale(image, self._window.get_size()), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])

    def _observation(self) -> np.ndarray:
        assert self._state is not None
        return self._state.observation(self.settings.observation)[0].cpu().numpy().astype(np.float32, copy=True)
