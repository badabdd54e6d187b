"""DreamVectorEnv: N dreams stepped together with one call to M, with numpy or on-device torch I/O."""

from __future__ import annotations

import os
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamgym.checkpoint import env_game
from dreamgym.envs.dream import check_actions, check_reset_options, load_dream
from dreamgym.replay import Replay
from dreamgym.world_model import (
    DreamState,
    WorldModel,
)

TensorStep = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]
"""(observations, rewards, terminated, truncated, info) of :meth:`DreamVectorEnv.step_tensor`."""

MAX_NUM_ENVS = 1 << 22
"""The most dreams one batch holds (4,194,304: ~16 GB of state for the paper's CarRacing M)."""


def autoreset_mode_of(value: str | AutoresetMode) -> AutoresetMode:
    """An AutoresetMode from itself or its name in any spelling: "same_step", "SAME_STEP", "SameStep"."""
    if isinstance(value, AutoresetMode):
        return value
    key = str(value).replace("_", "").lower()
    for mode in AutoresetMode:
        if key in (mode.value.lower(), mode.name.replace("_", "").lower()):
            return mode
    raise ValueError(
        f"autoreset_mode must be one of {[mode.name.lower() for mode in AutoresetMode]} "
        f"(or gymnasium.vector.AutoresetMode), got {value!r}"
    )


class DreamVectorEnv(VectorEnv):
    """``gym.make_vec("DreamDoomTakeCover-v0", num_envs=N)``: N dreams, one M call per step.

    Same per-env semantics as :class:`~dreamgym.envs.dream.DreamEnv` (observation [z, h],
    the real game's actions, reward and end from M's heads, truncation at the game's limit,
    which this env enforces itself). ``autoreset_mode`` is ``NEXT_STEP`` (default: an env that
    ended is reset on the following ``step``, whose action it ignores), ``SAME_STEP`` (reset
    at once; the last observation is in ``info["final_obs"]``) or ``DISABLED`` (never reset by
    ``step``: call ``reset(options={"reset_mask": ended})``). With ``gym.make_vec``, give it as a
    keyword, ``gym.make_vec(id, n, autoreset_mode="same_step")``: Gymnasium passes no
    ``vector_kwargs`` to a vector entry point. TorchRL's ``GymWrapper`` of a vector env wants
    ``SAME_STEP``.

    ## Two ways to step
    :meth:`reset` / :meth:`step` take and return numpy arrays, as every Gymnasium vector env.
    :meth:`reset_tensor` / :meth:`step_tensor` take and return torch tensors on the env's
    device, so that an agent on the GPU never copies through the host::

        envs = dreamgym.DreamVectorEnv("doom", num_envs=65536, device="cuda")
        obs, _ = envs.reset_tensor(seed=0)               # (N, obs_dim) float32 on cuda
        for _ in range(1000):
            actions = policy(obs)                        # (N,) int64 on cuda
            obs, r, term, trunc, info = envs.step_tensor(actions)

    Both are the same code: :meth:`step` is :meth:`step_tensor` plus the copies to numpy, so for
    the same seed and actions they give the same trajectories. In the tensor path rewards are
    float32 and ``terminated``/``truncated`` bool, all of shape (N,); ``info`` holds
    ``done_probability`` (N,) and its mask ``_done_probability`` (False for envs reset by this
    step in ``NEXT_STEP``), and in ``SAME_STEP`` always ``final_obs`` (N, obs_dim), the
    observation before the reset, with its mask ``_final_obs`` (the envs that ended; the other
    rows equal the returned observation), plus ``final_info`` / ``_final_info``. The numpy path
    adds these keys only on steps where some env ended, as Gymnasium does.

    Every step draws N fresh first states from the env's generator and keeps those of the envs
    that reset (``torch.where``), so nothing on the host decides which envs reset and the step
    never waits for the device (except for the action check below and M's NaN check). Each
    fresh state carries its own dropout mask and ensemble member: an env's mask and member
    change when it resets and at no other step.

    ## Arguments
    * ``game``: ``"carracing"`` or ``"doom"``; ``num_envs``: N ≥ 1.
    * ``world_model``, ``temperature``, ``sample_done``, ``render_mode``: as in
      :class:`~dreamgym.envs.dream.DreamEnv`.
    * ``dropout``, ``ensemble``, ``uncertainty_penalty``, ``done_threshold``, ``starts``,
      ``horizon``, ``warmup``, ``replay``: the defences and where data starts come from, as in
      :class:`~dreamgym.envs.dream.DreamEnv` (None: the model's
      default; ``envs.settings`` shows the result). ``envs.dropout_mask`` is the (N, hidden_dim)
      masks of the current episodes, ``envs.member`` the (N,) members, on the env's device, or
      None; with an ensemble in play ``info["uncertainty"]`` is (N,). Episodes are truncated at
      the smaller of ``horizon`` and ``max_episode_steps``. ``plain=True``: the paper's dream
      whatever the model's defaults, as in :class:`~dreamgym.envs.dream.DreamEnv`.
    * ``device``: where V, M and the tensor path's tensors live: ``"auto"`` (default: CUDA when
      there is a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``envs.device`` is
      the torch device it resolved to.
    * ``max_episode_steps``: truncation limit (default: the game's, 1000 or 2100).
    * ``autoreset_mode``: ``NEXT_STEP`` (default) or ``SAME_STEP``.
    * ``check_action_values``: :meth:`step_tensor` checks that actions are in range and not NaN
      (default True). The check reads one bool back from the device each step; pass False to
      skip it in a tight GPU loop whose policy cannot produce bad actions (an out-of-range
      discrete action then fails inside M's one-hot: on CUDA, a device-side assert). Type and
      shape are always checked, and :meth:`step` always checks its numpy actions on the host.
    """

    def __init__(
        self,
        game: str,
        num_envs: int = 1,
        world_model: WorldModel | str | os.PathLike | None = None,
        temperature: float | None = None,
        device: str | torch.device = "auto",
        sample_done: bool = False,
        max_episode_steps: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        check_action_values: bool = True,
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
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or not 1 <= num_envs <= MAX_NUM_ENVS
        ):
            raise ValueError(f"num_envs must be a whole number from 1 to {MAX_NUM_ENVS:,}, got {num_envs!r}")
        self.game = env_game(game, world_model)
        self.num_envs = int(num_envs)
        self.autoreset_mode = autoreset_mode_of(autoreset_mode)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.sample_done = bool(sample_done)
        self.check_action_values = bool(check_action_values)
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, (int, np.integer))
            or max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        self.max_episode_steps = int(self.game.max_episode_steps if max_episode_steps is None else max_episode_steps)
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
        if self.settings.horizon is not None:
            self.max_episode_steps = min(self.max_episode_steps, self.settings.horizon)
        self.device = self.model.device
        self.metadata = {
            "autoreset_mode": self.autoreset_mode,
            "render_modes": ["rgb_array"],
            "render_fps": self.game.render_fps,
        }
        self.single_observation_space = self.model.observation_space(self.settings.observation)
        self.single_action_space = self.game.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        if isinstance(self.single_action_space, gym.spaces.Box):
            self._action_bounds = (
                torch.as_tensor(self.single_action_space.low, device=self.device),
                torch.as_tensor(self.single_action_space.high, device=self.device),
            )
        self._generator = torch.Generator(device=self.device)
        self._state: DreamState | None = None
        self._steps = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        """(N,) steps since each env's last reset."""
        self._needs_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        """(N,) NEXT_STEP: the envs that ended on the last step and reset on the next."""

    # ------------------------------------------------------------------ numpy in and out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset every env (or those in ``options["reset_mask"]``, a bool array of shape (N,));
        ``seed`` seeds the whole batch."""
        mask = None
        if "reset_mask" in check_reset_options(options, ("reset_mask",)):
            given = np.asarray(cast(dict, options)["reset_mask"])
            if given.shape != (self.num_envs,) or given.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)")
            mask = torch.from_numpy(given).to(self.device)
        observations, info = self._reset(seed, mask)
        return to_numpy(observations, np.float32), info

    def close_extras(self, **kwargs: Any) -> None:
        """End the batch's episodes: ``step`` needs a ``reset`` again."""
        self._state = None

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every env with numpy ``actions``: (N,) ints for Doom, (N, 3) floats for CarRacing."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        checked = torch.from_numpy(check_actions(self.single_action_space, actions, self.num_envs))
        observations, rewards, terminated_tensor, truncated_tensor, info = self._step(checked.to(self.device))
        terminated, truncated = to_numpy(terminated_tensor, bool), to_numpy(truncated_tensor, bool)
        infos: dict[str, Any] = {
            "done_probability": to_numpy(info["done_probability"], np.float64),
            "_done_probability": to_numpy(info["_done_probability"], bool),
        }
        if "uncertainty" in info:
            infos["uncertainty"] = to_numpy(info["uncertainty"], np.float64)
            infos["_uncertainty"] = to_numpy(info["_uncertainty"], bool)
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            final, final_obs = to_numpy(info["final_obs"], np.float32), np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = final[i]
            infos["final_obs"] = final_obs
            infos["_final_obs"] = ended.copy()
            infos["final_info"] = {
                "done_probability": infos["done_probability"].copy(),
                "_done_probability": ended.copy(),
            }
            if "uncertainty" in infos:
                infos["final_info"].update(uncertainty=infos["uncertainty"].copy(), _uncertainty=ended.copy())
            infos["_final_info"] = ended.copy()
        return to_numpy(observations, np.float32), to_numpy(rewards, np.float64), terminated, truncated, infos

    # ------------------------------------------------------------------ torch in and out

    def reset_tensor(self, *, seed: int | None = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        """:meth:`reset`, returning observations (N, obs_dim) float32 on the env's device;
        ``options["reset_mask"]`` is a bool tensor of shape (N,) (moved to the env's device)."""
        mask = None
        if "reset_mask" in check_reset_options(options, ("reset_mask",)):
            mask = cast(dict, options)["reset_mask"]
            if not isinstance(mask, torch.Tensor) or mask.shape != (self.num_envs,) or mask.dtype != torch.bool:
                raise ValueError(f"options['reset_mask'] must be a bool tensor of shape ({self.num_envs},)")
            mask = mask.to(self.device)
        return self._reset(seed, mask)

    def step_tensor(self, actions: torch.Tensor) -> TensorStep:
        """:meth:`step` with torch tensors in and out, all on the env's device (see the class
        docstring): ``actions`` (N,) integers for Doom or (N, 3) floats for CarRacing, on any
        device (moved to the env's)."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset_tensor() before step_tensor()")
        return self._step(self._check_action_tensor(actions))

    def _check_action_tensor(self, actions: Any) -> torch.Tensor:
        """``actions`` checked and on the env's device: int64 (N,) for Doom, float32 (N, 3) for
        CarRacing. Type and shape checks cost nothing; the range and NaN/inf check (with
        ``check_action_values``) is one fused reduction read back once. TypeError/ValueError say
        what was expected."""
        space, num_envs = self.single_action_space, self.num_envs
        if not isinstance(actions, torch.Tensor):
            raise TypeError(
                f"step_tensor expects a torch.Tensor of actions, got {type(actions).__name__}; "
                f"use step() for numpy arrays"
            )
        dtype = actions.dtype
        if isinstance(space, gym.spaces.Discrete):
            if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
                raise TypeError(f"expected integer actions of shape ({num_envs},), got dtype {dtype}")
            if actions.shape != (num_envs,):
                raise ValueError(f"expected actions of shape ({num_envs},), got {tuple(actions.shape)}")
            actions = actions.to(self.device, torch.int64)
            if self.check_action_values and bool(((actions < 0) | (actions >= space.n)).any()):
                raise ValueError(
                    f"expected actions in [0, {space.n - 1}], got values from "
                    f"{int(actions.min())} to {int(actions.max())}"
                )
            return actions
        space = cast(gym.spaces.Box, space)
        if dtype.is_complex:
            raise TypeError(f"expected real actions of shape ({num_envs}, {space.shape[0]}), got dtype {dtype}")
        if actions.shape != (num_envs, *space.shape):
            raise ValueError(f"expected actions of shape ({num_envs}, {space.shape[0]}), got {tuple(actions.shape)}")
        actions = actions.to(self.device, torch.float32)
        if self.check_action_values:
            low, high = self._action_bounds
            if not bool(((actions >= low) & (actions <= high)).all()):  # False for NaN: one check covers both
                if not bool(torch.isfinite(actions).all()):
                    raise ValueError("actions contain NaN or inf")
                raise ValueError(f"actions outside the bounds low={space.low}, high={space.high}")
        return actions

    # ------------------------------------------------------------------ the shared core

    def _reset(self, seed: int | None, mask: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """Reseed from ``seed`` (or the env's own stream) and reset the envs in ``mask`` (all if None)."""
        if self._state is None and mask is not None and not bool(mask.all()):
            raise ValueError("the first reset must reset every env")
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self._generator.manual_seed(int(self._np_random.integers(2**63 - 1)))
        self._reset_envs(mask)
        assert self._state is not None
        return self._state.observation(self.settings.observation), {}

    def _step(self, actions: torch.Tensor) -> TensorStep:
        """One step of every env with checked ``actions`` on the env's device; no host sync here."""
        assert self._state is not None
        step = self.model.dream_step(
            self._state,
            self.model.action_tensor(actions),
            self._generator,
            self.sample_done,
            self.settings,
        )
        restarting = self._needs_reset  # NEXT_STEP: these envs ended last step; this step resets them
        self._state = step.state
        self._steps = self._steps + 1
        terminated = step.done & ~restarting
        truncated = (self._steps >= self.max_episode_steps) & ~step.done & ~restarting
        rewards = torch.where(restarting, 0.0, step.reward).float()
        ended = terminated | truncated
        info: dict[str, Any] = {"done_probability": step.done_probability, "_done_probability": ~restarting}
        if step.uncertainty is not None:
            info["uncertainty"], info["_uncertainty"] = step.uncertainty, ~restarting
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            info["final_obs"] = self._state.observation(self.settings.observation)
            info["_final_obs"] = ended
            info["final_info"] = {"done_probability": step.done_probability, "_done_probability": ended}
            if step.uncertainty is not None:
                info["final_info"].update(uncertainty=step.uncertainty, _uncertainty=ended)
            info["_final_info"] = ended
            self._reset_envs(ended)
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._reset_envs(restarting)
            self._needs_reset = ended
        # DISABLED: reset(options=...) does it
        return self._state.observation(self.settings.observation), rewards, terminated, truncated, info

    def _reset_envs(self, mask: torch.Tensor | None) -> None:
        """Fresh starts (with their dropout masks and members) and zero step counts for the envs
        in ``mask`` ((N,) bool on the env's device; None for all). Always draws N fresh states and
        selects with ``torch.where``, so the generator advances by the same amount whichever envs
        reset and nothing waits for the device."""
        # Checked for NaN at a full reset only: a per-step check would read back from the device
        # every step, and a NaN z drawn later still stops at M's own check in the next step.
        fresh = self.model.initial_state(
            self.num_envs, self._generator, self.settings, check=mask is None, replay=self.replay
        )
        if self._state is None or mask is None:
            self._state = fresh
            self._steps = torch.zeros_like(self._steps)
            self._needs_reset = torch.zeros_like(self._needs_reset)
            return
        self._state = self._state.where(mask, fresh)
        self._steps = self._steps.masked_fill(mask, 0)
        self._needs_reset = self._needs_reset & ~mask

    @property
    def temperature(self) -> float:
        """The dreams' temperature τ (``settings.temperature``: the keyword, else the model's, else the game's)."""
        return float(self.settings.temperature)  # type: ignore[arg-type]  # resolved by dream_settings

    @property
    def dropout(self) -> float:
        """The dreams' dropout rate (``settings.dropout``, resolved to a number)."""
        return float(self.settings.dropout or 0.0)

    @property
    def dropout_mask(self) -> torch.Tensor | None:
        """(N, hidden_dim) each env's dropout mask for its current episode, on the env's device;
        None when ``dropout`` is 0 or before the first reset."""
        return None if self._state is None else self._state.dropout_mask

    @property
    def member(self) -> torch.Tensor | None:
        """(N,) the M member that moves each env's episode (``ensemble="episode"``); else None."""
        return None if self._state is None else self._state.member

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        return tuple(self.model.decode(self._state.z))


def to_numpy(tensor: torch.Tensor, dtype: type | np.dtype) -> np.ndarray:
    """A host copy of ``tensor`` as a numpy array of ``dtype`` that owns its memory."""
    return tensor.cpu().numpy().astype(dtype, copy=True)
