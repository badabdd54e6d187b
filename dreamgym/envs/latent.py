"""The latent twin: a real game seen through V and M, with the dream's spaces."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamgym.checkpoint import env_game
from dreamgym.envs.dream import check_actions, get_world_model
from dreamgym.world_model import DreamState, WorldModel, override_dream


class LatentObservation(gym.Wrapper):
    """Replace a real game's frames by the dream's observation, [z, h] or [z, c, h].

    Each frame is preprocessed with :meth:`dreamgym.games.Game.preprocess` (the function that
    made the training data), encoded with V (z = μ, deterministic), and M's LSTM is advanced
    with the previous z and the action taken. Observation and action spaces equal the dream's,
    so a policy trained in ``Dream*-v0`` runs here unchanged.

    ```python
    env = dreamgym.LatentObservation(gym.make("CarRacing-v3"), "car_racing")
    ```

    With ``keep_frame=True`` each ``info`` also carries ``"frame"``, the preprocessed
    (64, 64, 3) uint8 frame that V encoded (for recording data and pictures). ``observation``:
    ``"zh"`` or ``"zch"`` (None: the model's own, as its dreams show it; see
    :attr:`~dreamgym.config.DreamSettings.observation`).
    """

    def __init__(
        self,
        env: gym.Env,
        world_model: WorldModel | str | os.PathLike,
        device: str | torch.device = "auto",
        keep_frame: bool = False,
        observation: str | None = None,
    ) -> None:
        super().__init__(env)
        self.keep_frame = keep_frame
        if isinstance(world_model, WorldModel):
            self.model = world_model if device == "auto" else world_model.to(device)
        else:
            from dreamgym.checkpoint import load_world_model

            self.model = load_world_model(world_model, device=device)
        game = self.model.game
        if env.action_space != game.action_space():
            raise ValueError(
                f"the world model is for {game.real_env_id} with actions {game.action_space()}, "
                f"but the wrapped env's action space is {env.action_space}"
            )
        self.layout = override_dream(self.model.dream_defaults, observation=observation).observation
        self.observation_space = self.model.observation_space(self.layout)
        self._state: DreamState | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._state = DreamState(
            self._encode(observation, info), *self.model.mdnrnn.initial_state(1, self.model.device)
        )
        return self._observation(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = check_actions(self.action_space, action)
        observation, reward, terminated, truncated, info = self.env.step(action)
        state = self._state
        h, c = self.model.advance((state.h, state.c), state.z, self.model.action_tensor([action]))
        self._state = DreamState(self._encode(observation, info), h, c)
        return self._observation(), float(reward), bool(terminated), bool(truncated), info

    def _encode(self, observation: Any, info: dict) -> torch.Tensor:
        frame = self.model.game.preprocess(observation)
        if self.keep_frame:
            info["frame"] = frame
        return self.model.encode(frame[None])

    def _observation(self) -> np.ndarray:
        assert self._state is not None
        return self._state.observation(self.layout)[0].cpu().numpy().astype(np.float32, copy=True)


def make_latent_env(
    game: str,
    world_model: WorldModel | str | os.PathLike | None = None,
    render_mode: str | None = None,
    device: str | torch.device = "auto",
    observation: str | None = None,
) -> LatentObservation:
    """Entry point of ``Latent*-v0``: the real game with its time limit, through :class:`LatentObservation`."""
    spec = env_game(game, world_model)
    model = get_world_model(spec.name, world_model, device)
    return LatentObservation(spec.make_real_env(render_mode=render_mode), model, device, observation=observation)
