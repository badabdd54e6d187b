"""DreamVectorEnv: N dreams stepped together with one call to M."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamgym.envs.dream import RENDER_FPS, get_world_model
from dreamgym.games import get_game
from dreamgym.world_model import DreamState, WorldModel, validate_temperature


def check_actions(space: gym.spaces.Space, actions: Any, num_envs: int) -> np.ndarray:
    """Validate a batch of actions for ``num_envs`` dreams; TypeError/ValueError say what was expected."""
    array = np.asarray(actions)
    if isinstance(space, gym.spaces.Discrete):
        if array.dtype.kind not in "iu":
            raise TypeError(f"expected integer actions of shape ({num_envs},), got dtype {array.dtype}")
        if array.shape != (num_envs,):
            raise ValueError(f"expected actions of shape ({num_envs},), got {array.shape}")
        if np.any(array < 0) or np.any(array >= space.n):
            raise ValueError(f"expected actions in [0, {space.n - 1}], got {array}")
        return array.astype(np.int64)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected numeric actions of shape ({num_envs}, {space.shape[0]}), got dtype {array.dtype}")
    if array.shape != (num_envs, *space.shape):
        raise ValueError(f"expected actions of shape ({num_envs}, {space.shape[0]}), got {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("actions contain NaN or inf")
    if np.any(array < space.low) or np.any(array > space.high):
        raise ValueError(f"actions outside the bounds low={space.low}, high={space.high}")
    return array


class DreamVectorEnv(VectorEnv):
    """``gym.make_vec("DreamDoomTakeCover-v0", num_envs=N)``: N dreams, one M call per step.

    Same per-env semantics as :class:`~dreamgym.envs.dream.DreamEnv` (observation [z, h],
    the real game's actions, reward and end from M's heads, truncation at the game's limit,
    which this env enforces itself). ``autoreset_mode`` is ``NEXT_STEP`` (default: an env that
    ended is reset on the following ``step``, whose action it ignores) or ``SAME_STEP`` (reset
    at once; the last observation is in ``info["final_obs"]``).
    """

    def __init__(
        self,
        game: str,
        num_envs: int = 1,
        world_model: WorldModel | str | os.PathLike | None = None,
        temperature: float = 1.0,
        device: str | torch.device = "cpu",
        sample_done: bool = False,
        max_episode_steps: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.game = get_game(game)
        self.num_envs = int(num_envs)
        self.temperature = validate_temperature(temperature)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {self.autoreset_mode}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.sample_done = bool(sample_done)
        self.max_episode_steps = int(max_episode_steps or self.game.max_episode_steps)
        self.model = get_world_model(self.game.name, world_model, device)
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": ["rgb_array"],
                         "render_fps": RENDER_FPS[self.game.name]}
        self.single_observation_space = self.model.observation_space()
        self.single_action_space = self.game.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._generator = torch.Generator(device=self.model.device)
        self._state: DreamState | None = None
        self._steps = np.zeros(self.num_envs, np.int64)
        self._needs_reset = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset every env (or those in ``options["reset_mask"]``); ``seed`` seeds the whole batch."""
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self._generator.manual_seed(int(self._np_random.integers(2**63 - 1)))
        mask = np.ones(self.num_envs, bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)")
            if self._state is None and not mask.all():
                raise ValueError("the first reset must reset every env")
        self._reset_envs(mask)
        return self._observations(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = check_actions(self.single_action_space, actions, self.num_envs)
        step = self.model.dream_step(self._state, self.model.action_tensor(actions), self.temperature,
                                     self._generator, self.sample_done)
        restarting = self._needs_reset.copy()
        self._state = step.state
        self._steps += 1
        rewards = step.reward.cpu().numpy().astype(np.float64)
        terminated = step.done.cpu().numpy()
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        infos: dict[str, Any] = {"done_probability": step.done_probability.cpu().numpy().astype(np.float64),
                                 "_done_probability": np.ones(self.num_envs, bool)}
        if restarting.any():  # NEXT_STEP: these envs ended last step; this step resets them
            self._reset_envs(restarting)
            rewards[restarting] = 0.0
            terminated[restarting] = truncated[restarting] = False
            infos["_done_probability"] = ~restarting
        ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            final, final_obs = self._observations(), np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = final[i]
            infos["final_obs"] = final_obs
            infos["_final_obs"] = ended.copy()
            infos["final_info"] = {"done_probability": infos["done_probability"].copy(), "_done_probability": ended.copy()}
            infos["_final_info"] = ended.copy()
            self._reset_envs(ended)
        else:
            self._needs_reset = ended
        return self._observations(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        return tuple(self.model.decode(self._state.z))

    def _reset_envs(self, mask: np.ndarray) -> None:
        """Fresh first latents and zero LSTM state for the envs in ``mask``."""
        fresh = self.model.initial_state(int(mask.sum()), self._generator)
        if self._state is None or mask.all():
            self._state = fresh
        else:
            index = torch.from_numpy(np.flatnonzero(mask)).to(self.model.device)
            for current, new in zip(self._state, fresh):
                current[index] = new
        self._steps[mask] = 0
        self._needs_reset[mask] = False

    def _observations(self) -> np.ndarray:
        assert self._state is not None
        return self._state.observation().cpu().numpy().astype(np.float32, copy=True)
