"""C: the linear controller a_t = f(W [z_t, h_t] + b), with flat parameters in and out.

``f`` maps tanh outputs to the game's actions (``Game.controller_actions``), as the original
code did for its games:

* CarRacing (3 outputs): steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1);
* Doom (1 output): a < -1/3 -> MOVE_LEFT, a > 1/3 -> MOVE_RIGHT, else NO-OP;
* any other game: one output per action, read by argmax (``Discrete``), or one per dimension
  scaled to its bounds (``Box``).

CMA-ES evaluates a whole population at once through :func:`batched_actions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dreamgym.games import Game


def batched_actions(game: Game, parameters: torch.Tensor, observations: torch.Tensor) -> torch.Tensor:
    """Actions of P controllers, each on its own B observations.

    parameters (P, output_dim * obs_dim + output_dim), observations (P, B, obs_dim)
    -> actions (P, B, d) or (P, B).
    """
    P, _, obs_dim = observations.shape
    out = game.controller_output_dim
    weight = parameters[:, : out * obs_dim].view(P, out, obs_dim)
    bias = parameters[:, out * obs_dim :].view(P, 1, out)
    return game.controller_actions(torch.tanh(torch.baddbmm(bias, observations, weight.transpose(1, 2))))


@dataclass
class LinearController:
    """A trained controller: weight (output_dim, obs_dim), bias (output_dim,)."""

    game: Game
    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def zeros(cls, game: Game, obs_dim: int) -> LinearController:
        out = game.controller_output_dim
        return cls(game, np.zeros((out, obs_dim), np.float32), np.zeros(out, np.float32))

    @classmethod
    def from_flat(cls, game: Game, obs_dim: int, flat: np.ndarray) -> LinearController:
        out = game.controller_output_dim
        flat = np.asarray(flat, dtype=np.float32)
        expected = out * obs_dim + out
        if flat.shape != (expected,):
            raise ValueError(f"expected {expected} flat parameters for obs_dim={obs_dim}, got shape {flat.shape}")
        return cls(game, flat[: out * obs_dim].reshape(out, obs_dim).copy(), flat[out * obs_dim :].copy())

    @property
    def obs_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def num_parameters(self) -> int:
        return self.weight.size + self.bias.size

    def flat(self) -> np.ndarray:
        return np.concatenate([self.weight.ravel(), self.bias]).astype(np.float32)

    def act(self, observation: np.ndarray) -> np.ndarray | int:
        """One observation (obs_dim,) -> one action of the game's action space."""
        observation = np.asarray(observation, dtype=np.float32)
        if observation.shape != (self.obs_dim,):
            raise ValueError(f"expected an observation of shape ({self.obs_dim},), got {observation.shape}")
        raw = torch.from_numpy(np.tanh(self.weight @ observation + self.bias))
        action = self.game.controller_actions(raw).numpy()
        return int(action) if self.game.discrete else action.astype(np.float32)

    def predict(
        self, observation: np.ndarray, state: object = None, episode_start: object = None, deterministic: bool = True
    ) -> tuple[np.ndarray | int, None]:
        """The Stable-Baselines3 policy interface, so evaluation treats both kinds alike."""
        return self.act(observation), None
