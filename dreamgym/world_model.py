"""A trained world model (V + M + first-frame latents) and the batched dream step.

:class:`WorldModel` is what a model directory holds once loaded. Its methods
:meth:`WorldModel.initial_state`, :meth:`WorldModel.dropout_masks` and
:meth:`WorldModel.dream_step` start and advance any number of dreams at once with one call to M;
the single Gymnasium env, the vector env and the CMA-ES trainer all step through them, so every
dream has exactly the same semantics.

Dropout dreams (Wellmer & Kwok 2021): a dream at rate p > 0 draws its own mask when it starts
and keeps it to its end; the mask multiplies M's h on its way to the heads only (see
:mod:`dreamgym.mdnrnn`), so the observation [z, h] is M's unmasked state, as on the real game.
At p = 0 nothing is drawn: the dream's random stream, and so its trajectories for a seed, are
those of the plain dream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from dreamgym.controller import LinearController
from dreamgym.devices import resolve_device
from dreamgym.games import Game
from dreamgym.mdnrnn import MDNRNN, LSTMState, dropout_masks, sample_next_z
from dreamgym.vae import ConvVAE, encode_frames, tensor_to_frames


class DreamState(NamedTuple):
    """State of B dreams: the current latent and M's LSTM state."""

    z: torch.Tensor
    """(B, z_dim)"""
    h: torch.Tensor
    """(B, hidden_dim)"""
    c: torch.Tensor
    """(B, hidden_dim)"""

    def observation(self) -> torch.Tensor:
        """(B, z_dim + hidden_dim): the dream's observation layout [z, h]."""
        return torch.cat([self.z, self.h], dim=-1)


class DreamStep(NamedTuple):
    state: DreamState
    reward: torch.Tensor
    """(B,) float"""
    done: torch.Tensor
    """(B,) bool: the episode ended (p(done) > 0.5, or a Bernoulli draw if sampled)."""
    done_probability: torch.Tensor
    """(B,) float"""


@dataclass
class WorldModel:
    """V, M and the latents of real first frames for one game."""

    game: Game
    vae: ConvVAE
    mdnrnn: MDNRNN
    initial_mu: torch.Tensor
    """(N, z_dim): μ of the first frame of N real episodes."""
    initial_logvar: torch.Tensor
    """(N, z_dim): log σ² of the same frames."""
    controller: LinearController | None = None
    """A controller trained in this dream, if the directory ships one."""
    metadata: dict = field(default_factory=dict)
    """Free-form provenance from the model directory's config (losses, sizes, scores)."""

    def __post_init__(self) -> None:
        self.vae.eval()
        self.mdnrnn.eval()
        for parameter in [*self.vae.parameters(), *self.mdnrnn.parameters()]:
            parameter.requires_grad_(False)

    @property
    def z_dim(self) -> int:
        return self.vae.config.z_dim

    @property
    def hidden_dim(self) -> int:
        return self.mdnrnn.config.hidden_dim

    @property
    def observation_dim(self) -> int:
        return self.z_dim + self.hidden_dim

    def observation_space(self) -> gym.spaces.Box:
        """The space of [z, h] shared by the dream, its vector env and the latent twin."""
        return gym.spaces.Box(-np.inf, np.inf, shape=(self.observation_dim,), dtype=np.float32)

    @property
    def device(self) -> torch.device:
        return self.initial_mu.device

    def to(self, device: str | torch.device) -> WorldModel:
        """Move V, M and the first-frame latents to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or a torch.device; see :func:`dreamgym.devices.resolve_device`)."""
        device = resolve_device(device)
        self.vae.to(device)
        self.mdnrnn.to(device)
        self.initial_mu = self.initial_mu.to(device)
        self.initial_logvar = self.initial_logvar.to(device)
        return self

    def action_tensor(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Game actions for B envs -> (B, action_dim) float32 input for M."""
        if isinstance(actions, torch.Tensor):  # a batch already on some device (CMA-ES, on-device agents)
            actions = actions.to(self.device)
        else:
            actions = torch.as_tensor(np.asarray(actions), device=self.device)
        if self.game.discrete:
            return torch.nn.functional.one_hot(actions.long().reshape(-1), self.game.action_dim).float()
        return actions.float().reshape(-1, self.game.action_dim)

    @torch.no_grad()
    def initial_state(self, batch_size: int, generator: torch.Generator, check: bool = True) -> DreamState:
        """B fresh dreams: z drawn from a random stored first-frame posterior, LSTM state zero.
        ``check`` refuses a non-finite z (one read back from the device); the batched dream skips
        it in its per-step draws, whose latents its full reset has checked already."""
        index = torch.randint(len(self.initial_mu), (batch_size,), generator=generator, device=self.device)
        noise = torch.randn((batch_size, self.z_dim), generator=generator, device=self.device)
        z = self.initial_mu[index] + torch.exp(0.5 * self.initial_logvar[index]) * noise
        if check and not bool(torch.isfinite(z).all()):
            raise FloatingPointError("the world model's first-frame latents give NaN or inf: its initial latents are broken")
        h, c = self.mdnrnn.initial_state(batch_size, self.device)
        return DreamState(z, h, c)

    @torch.no_grad()
    def dropout_masks(self, batch_size: int, rate: float, generator: torch.Generator) -> torch.Tensor | None:
        """(B, hidden_dim) dropout masks for B fresh dreams at ``rate`` (0 with probability p,
        else 1 / (1 - p)), drawn from ``generator``; None, drawing nothing, when rate is 0."""
        return dropout_masks((batch_size, self.hidden_dim), rate, generator, self.device)

    @torch.no_grad()
    def dream_step(
        self,
        state: DreamState,
        actions: torch.Tensor,
        temperature: float,
        generator: torch.Generator,
        sample_done: bool = False,
        dropout_mask: torch.Tensor | None = None,
    ) -> DreamStep:
        """Advance B dreams by one step with one call to M.

        ``actions`` is (B, action_dim) as made by :meth:`action_tensor`. ``dropout_mask``
        (B, hidden_dim) from :meth:`dropout_masks` is each dream's own mask on M's h before the
        heads (None: no dropout); the state returned, and so the observation, is never masked.
        The reward is the game's alive reward if it has one (Doom), else M's reward head.
        """
        output, (h, c) = self.mdnrnn.step(state.z, actions, (state.h, state.c), dropout_mask)
        z = sample_next_z(output, temperature, generator)
        if not (torch.isfinite(z).all() and torch.isfinite(output.reward).all() and torch.isfinite(output.done_logit).all()):
            raise FloatingPointError(
                "the world model produced NaN or inf (latent, reward or done logit); its weights are "
                "broken or its inputs are far outside what it was trained on"
            )
        done_probability = torch.sigmoid(output.done_logit)
        if sample_done:
            done = torch.rand(done_probability.shape, generator=generator, device=self.device) < done_probability
        else:
            done = done_probability > 0.5
        if self.game.alive_reward is None:
            reward = output.reward
        else:
            reward = torch.full_like(output.reward, self.game.alive_reward)
        return DreamStep(DreamState(z, h, c), reward, done, done_probability)

    @torch.no_grad()
    def advance(self, state: LSTMState, z: torch.Tensor, actions: torch.Tensor) -> LSTMState:
        """M's new (h, c) after seeing z (B, z_dim) and actions (B, action_dim); used on real games."""
        _, new_state = self.mdnrnn.step(z, actions, state)
        return new_state

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """(B, 64, 64, 3) preprocessed uint8 frames -> μ (B, z_dim): the deterministic latent."""
        mu, _ = encode_frames(self.vae, frames)
        if not np.all(np.isfinite(mu)):
            raise FloatingPointError("V encoded a frame to NaN or inf: its weights are broken")
        return torch.from_numpy(mu).to(self.device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        """(B, z_dim) -> (B, 64, 64, 3) uint8 frames."""
        return tensor_to_frames(self.vae.decode(z))


def validate_dropout(dropout: object, trained_rate: float) -> float:
    """A dream's dropout rate as a float: ``trained_rate`` (the rate M was trained with) for None;
    TypeError / ValueError unless a finite number with 0 <= p < 1."""
    value = trained_rate if dropout is None else dropout
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout must be a number in [0, 1) or None (the rate M was trained with), "
                        f"got {type(value).__name__} {value!r}")
    rate = float(value)
    if not math.isfinite(rate) or not 0 <= rate < 1:
        raise ValueError(f"dropout must be finite with 0 <= dropout < 1 (0: the plain dream; None: the rate M "
                         f"was trained with), got {rate}" + (" from M's config" if dropout is None else ""))
    return rate


def validate_temperature(temperature: object) -> float:
    """Temperature as a float; TypeError / ValueError unless a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__} {temperature!r}")
    value = float(temperature)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be finite and > 0, got {value}")
    return value
