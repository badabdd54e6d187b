"""Stable-Baselines3 on the batched dream: an SB3 ``VecEnv`` over :class:`DreamVectorEnv`.

SB3 cannot take a Gymnasium ``VectorEnv``; this adapter gives it what it expects: same-step
reset, ``info["terminal_observation"]`` and ``info["TimeLimit.truncated"]`` for every env
that ended, and episode statistics through ``VecMonitor``.

```python
from stable_baselines3 import PPO
import dreamgym

venv = dreamgym.make_sb3_vec_env("DreamDoomTakeCover-v0", num_envs=256, temperature=1.15)
model = PPO("MlpPolicy", venv).learn(200_000)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import dreamgym
from dreamgym.envs.vector import DreamVectorEnv


class DreamSB3VecEnv(VecEnv):
    """An SB3 VecEnv stepping every dream with one call to M."""

    def __init__(self, vector_env: DreamVectorEnv) -> None:
        if vector_env.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError("DreamSB3VecEnv needs a DreamVectorEnv with autoreset_mode=SAME_STEP")
        self.vector_env = vector_env
        self.render_mode = vector_env.render_mode
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        observations, _ = self.vector_env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        observations, rewards, terminated, truncated, info = self.vector_env.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.vector_env.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.vector_env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} steps all dreams as one batch; it has no per-env methods")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def make_sb3_vec_env(env_id: str, num_envs: int, *, device: str = "auto", **kwargs: Any) -> VecMonitor:
    """An SB3 VecEnv of ``num_envs`` batched dreams of ``env_id`` (a ``Dream*-v0`` id), with
    ``VecMonitor`` episode statistics. ``device`` is where the dreams' M runs (``"auto"``: CUDA
    when there is a GPU; SB3 itself gets numpy arrays either way, and its policy's device is
    SB3's own ``device=``). Other keyword arguments go to the dream (``temperature``,
    ``world_model``, ...)."""
    if "autoreset_mode" in kwargs:
        raise ValueError("make_sb3_vec_env always uses same-step reset, as SB3 expects")
    dreamgym.ensure_registered(env_id, kwargs.get("world_model"))
    spec = gym.spec(env_id)
    if spec.vector_entry_point is None or "Dream" not in env_id:
        raise ValueError(f"{env_id} is not a dreamgym dream id; expected a Dream*-v0 id such as DreamDoomTakeCover-v0")
    vector_env = gym.make_vec(
        env_id, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, device=device, **kwargs
    )
    return VecMonitor(DreamSB3VecEnv(cast(DreamVectorEnv, vector_env)))
