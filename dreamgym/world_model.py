"""A trained world model (V + M members + real latents) and the batched dream step.

:class:`WorldModel` is what a model directory holds once loaded. Its methods
:meth:`WorldModel.initial_state` and :meth:`WorldModel.dream_step` start and advance any number
of dreams at once; the single Gymnasium env, the vector env and the CMA-ES trainer all step
through them, so every dream has exactly the same semantics for the same
:class:`~dreamgym.config.DreamSettings` (:meth:`WorldModel.dream_settings` resolves them):

* dropout (Wellmer & Kwok 2021): a dream at rate p > 0 draws its own mask when it starts and
  keeps it to its end; the mask multiplies M's h on its way to the heads only, so the
  observation [z, h] is M's unmasked state, as on the real game;
* an ensemble of M members (PETS, MOPO, MOReL): every member sees the same z and actions; with
  ``ensemble="episode"`` the member each dream drew moves it; with ``"pessimist"`` member 0
  moves it, the reward is the lowest and the end the earliest any member predicts; an
  uncertainty penalty takes λ·u off each reward, u the members' disagreement on the next latent;
* a pessimistic end (``done_threshold`` below 0.5);
* starts from real states (``starts="data"``): z of a stored real step and each member's state
  warmed up on the steps before it; ``horizon`` truncates (the envs and CMA-ES apply it).

The plain settings draw nothing more than the paper's dream: its trajectories for a seed are
unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import gymnasium as gym
import numpy as np
import torch

from dreamgym.config import DreamSettings
from dreamgym.controller import LinearController
from dreamgym.devices import resolve_device
from dreamgym.games import Game
from dreamgym.mdnrnn import MDNRNN, LSTMState, MDNOutput, dropout_masks, sample_next_z
from dreamgym.replay import Replay, StartTable
from dreamgym.vae import ConvVAE, encode_frames, tensor_to_frames
from dreamgym.validation import KindError, Rule


class DreamState(NamedTuple):
    """State of B dreams: the current latent, M's LSTM state, and what each dream drew at its
    start (dropout mask, ensemble member, the other members' LSTM states)."""

    z: torch.Tensor
    """(B, z_dim)"""
    h: torch.Tensor
    """(B, hidden_dim): member 0's h, the one the observation shows (the latent twin runs member 0)"""
    c: torch.Tensor
    """(B, hidden_dim)"""
    member_h: torch.Tensor | None = None
    """(K - 1, B, hidden_dim): members 1.. of an ensemble dream, fed the same z and actions; None
    when the dream runs member 0 only."""
    member_c: torch.Tensor | None = None
    dropout_mask: torch.Tensor | None = None
    """(B, hidden_dim): each dream's dropout mask on h before the heads; None without dropout."""
    member: torch.Tensor | None = None
    """(B,) int64: the member that moves each dream (``ensemble="episode"``); None: member 0."""

    def observation(self, layout: str = "zh") -> torch.Tensor:
        """(B, obs_dim): [z, h], or [z, c, h] for ``layout="zch"`` (see
        :attr:`~dreamgym.config.DreamSettings.observation`)."""
        return torch.cat([self.z, self.c, self.h] if layout == "zch" else [self.z, self.h], dim=-1)

    def select(self, keep: torch.Tensor) -> DreamState:
        """The dreams at ``keep`` (indices or a (B,) bool mask)."""
        picked = (
            None if t is None else t[:, keep] if name.startswith("member_") else t[keep]
            for name, t in zip(self._fields, self)
        )
        return DreamState(*picked)  # type: ignore[arg-type]  # the optional fields stay None

    def where(self, mask: torch.Tensor, fresh: DreamState) -> DreamState:
        """``fresh``'s dreams where ``mask`` ((B,) bool) is set, this state's elsewhere."""

        def pick(name: str, new: torch.Tensor | None, old: torch.Tensor | None) -> torch.Tensor | None:
            if new is None or old is None:
                return None
            where = mask[None, :, None] if name.startswith("member_") else mask.view(-1, *[1] * (new.dim() - 1))
            return torch.where(where, new, old)

        picked = (pick(name, new, old) for name, new, old in zip(self._fields, fresh, self))
        return DreamState(*picked)  # type: ignore[arg-type]  # the optional fields stay None


class DreamStep(NamedTuple):
    state: DreamState
    reward: torch.Tensor
    """(B,) float: the game's reward (alive reward or M's reward head) less the uncertainty penalty"""
    done: torch.Tensor
    """(B,) bool: the episode ended (p(done) passed the threshold, or a Bernoulli draw if sampled)."""
    done_probability: torch.Tensor
    """(B,) float"""
    uncertainty: torch.Tensor | None = None
    """(B,) float: the members' disagreement on the next latent; None without an ensemble in play."""


PLAIN_DREAM = DreamSettings(dropout=0.0)
"""The paper's dream: member 0, no dropout, first-frame starts, ends at p(done) > 0.5."""


def observation_size(z_dim: int, hidden_dim: int, layout: str) -> int:
    """Values in an observation of ``layout``: [z, h] or [z, c, h]."""
    return z_dim + hidden_dim * (2 if layout == "zch" else 1)


@dataclass
class StartEpisodes:
    """Real episodes a dream can start in (``starts="data"``): μ of every frame followed by an
    action, and that action as M's input, episode after episode."""

    mu: torch.Tensor
    """(S, z_dim)"""
    actions: torch.Tensor
    """(S, action_dim) M's input encoding"""
    lengths: torch.Tensor
    """(E,) int64, steps of each episode (≥ 1), summing to S"""


@dataclass
class WorldModel:
    """V, M (one or several members) and the latents of real first frames for one game."""

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
    members: list[MDNRNN] = field(default_factory=list)
    """Ensemble members 1..K-1 (``mdnrnn`` is member 0), trained like it on bootstrap resamples."""
    start_episodes: StartEpisodes | None = None
    """Stored real episodes for ``starts="data"``; None if the model has none."""
    dream_defaults: DreamSettings = field(default_factory=DreamSettings)
    """The dream settings the model was built for: what its dreams use unless told otherwise."""

    def __post_init__(self) -> None:
        self._replay: Replay | None = None
        self.vae.eval()
        for module in (self.vae, *self.all_members):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    @property
    def all_members(self) -> list[MDNRNN]:
        """Every M: member 0 (``mdnrnn``) first."""
        return [self.mdnrnn, *self.members]

    @property
    def z_dim(self) -> int:
        return self.vae.config.z_dim

    @property
    def hidden_dim(self) -> int:
        return self.mdnrnn.config.hidden_dim

    @property
    def observation_dim(self) -> int:
        """Values in an observation of the model's own layout (``dream_defaults.observation``)."""
        return observation_size(self.z_dim, self.hidden_dim, self.dream_defaults.observation)

    def observation_space(self, layout: str | None = None) -> gym.spaces.Box:
        """The space of an observation of ``layout`` (default: the model's own), shared by the
        dream, its vector env and the latent twin."""
        size = observation_size(self.z_dim, self.hidden_dim, layout or self.dream_defaults.observation)
        return gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)

    @property
    def device(self) -> torch.device:
        return self.initial_mu.device

    def to(self, device: str | torch.device) -> WorldModel:
        """Move V, M and the first-frame latents to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or a torch.device; see :func:`dreamgym.devices.resolve_device`)."""
        device = resolve_device(device)
        for module in (self.vae, *self.all_members):
            module.to(device)
        self.initial_mu = self.initial_mu.to(device)
        self.initial_logvar = self.initial_logvar.to(device)
        if self.start_episodes is not None:
            self.start_episodes = StartEpisodes(*(t.to(device) for t in dataclasses.astuple(self.start_episodes)))
        return self

    def dream_settings(
        self, settings: DreamSettings | None = None, *, replay: Replay | None = None, **overrides: object
    ) -> DreamSettings:
        """The dream to run: ``settings`` (default: the model's own defaults) with ``overrides``
        (None values ignored), dropout and temperature resolved to numbers (M's trained rate, the
        game's temperature), and checked against what the model
        has: an ensemble or a penalty needs two members or more, data starts need stored episodes
        (the model's own, or ``replay``, which is checked against M's sizes). TypeError /
        ValueError say what was expected."""
        chosen = override_dream(self.dream_defaults if settings is None else settings, **overrides)
        chosen = dataclasses.replace(
            chosen,
            dropout=validate_dropout(chosen.dropout, self.mdnrnn.config.dropout),
            temperature=self.game.dream_temperature if chosen.temperature is None else chosen.temperature,
        )
        K = len(self.all_members)
        if chosen.needs_members and K < 2:
            raise ValueError(
                f"ensemble={chosen.ensemble!r} and uncertainty_penalty={chosen.uncertainty_penalty} need "
                f"a model with 2 or more M members; this one has {K} (train it with mdnrnn.members >= 2)"
            )
        if replay is not None:
            if not isinstance(replay, Replay):
                raise TypeError(f"replay must be a dreamgym.replay.Replay, got {type(replay).__name__}")
            if (replay.z_dim, replay.action_dim) != (self.z_dim, self.game.action_dim):
                raise ValueError(
                    f"the replay holds z of size {replay.z_dim} and actions of size {replay.action_dim}; "
                    f"this model has z {self.z_dim} and actions {self.game.action_dim}"
                )
            if len(replay) == 0:
                raise ValueError("the replay holds no episodes yet: add one before a dream starts in it")
        if chosen.starts == "data" and self.start_episodes is None and replay is None:
            raise ValueError(
                'starts="data" needs real steps to start from: a replay (replay=RUN or a '
                "dreamgym.replay.Replay), or a model directory that stores real episodes "
                "(`dreamgym export` without --start-episodes 0); this one has none"
            )
        return chosen

    def runs_members(self, settings: DreamSettings) -> bool:
        """Whether a dream with ``settings`` steps every member (an ensemble or a penalty)."""
        return bool(self.members) and settings.needs_members

    def action_tensor(self, actions: Any) -> torch.Tensor:
        """Game actions for B envs (a tensor, an array or a list of actions) -> (B, action_dim)
        float32 input for M."""
        if isinstance(actions, torch.Tensor):  # a batch already on some device (CMA-ES, on-device agents)
            tensor = actions.to(self.device)
        else:
            tensor = torch.as_tensor(np.asarray(actions), device=self.device)
        return self.game.encode_actions(tensor)

    @torch.no_grad()
    def initial_state(
        self,
        batch_size: int,
        generator: torch.Generator,
        settings: DreamSettings = PLAIN_DREAM,
        check: bool = True,
        replay: Replay | None = None,
    ) -> DreamState:
        """B fresh dreams for ``settings`` (resolved by :meth:`dream_settings`). Draws, in this
        order: the start (a stored first-frame posterior and its noise, or a stored real step),
        the dropout masks (p > 0), the ensemble members (``"episode"``); nothing else, so the
        plain dream's draws are those of earlier versions. ``check`` refuses a non-finite z (read
        back from the device); the batched dream skips it in its per-step draws, whose latents its
        full reset has checked already. Data starts come from ``replay`` if given, else from the
        model's stored episodes."""
        K, device = len(self.all_members), self.device
        running = K if self.runs_members(settings) else 1  # the members whose LSTM states the dreams carry
        if settings.starts == "data":
            table = self.start_table(settings, replay)
            index = torch.randint(len(table.z), (batch_size,), generator=generator, device=device)
            z, h, c = table.z[index], table.h[:running, index], table.c[:running, index]
        else:
            index = torch.randint(len(self.initial_mu), (batch_size,), generator=generator, device=device)
            noise = torch.randn((batch_size, self.z_dim), generator=generator, device=device)
            z = self.initial_mu[index] + torch.exp(0.5 * self.initial_logvar[index]) * noise
            h = torch.zeros(running, batch_size, self.hidden_dim, device=device)
            c = torch.zeros_like(h)
        if check and not bool(torch.isfinite(z).all()):
            raise FloatingPointError(
                "the world model's first-frame latents give NaN or inf: its initial latents are broken"
            )
        masks = dropout_masks((batch_size, self.hidden_dim), float(settings.dropout or 0.0), generator, device)
        member = None
        if settings.ensemble == "episode":
            member = torch.randint(K, (batch_size,), generator=generator, device=device)
        if not self.runs_members(settings):
            return DreamState(z, h[0], c[0], dropout_mask=masks)
        return DreamState(z, h[0], c[0], h[1:], c[1:], masks, member)

    @torch.no_grad()
    def dream_step(
        self,
        state: DreamState,
        actions: torch.Tensor,
        generator: torch.Generator,
        sample_done: bool = False,
        settings: DreamSettings = PLAIN_DREAM,
    ) -> DreamStep:
        """Advance B dreams by one step: one call to each M in play, at ``settings.temperature``
        (None: the game's).

        ``actions`` is (B, action_dim) as made by :meth:`action_tensor`. Each dream's dropout mask
        multiplies its members' h before the heads (the state returned, and so the observation, is
        never masked). With an ensemble in play every member sees the same z and action; the
        member each dream drew gives its next z, reward and end, and λ·u is taken off the reward.
        The reward is the game's alive reward if it has one (Doom), else M's reward head.
        """
        mask = state.dropout_mask
        output, (h, c) = self.mdnrnn.step(state.z, actions, (state.h, state.c), mask)
        member_h = member_c = uncertainty = None
        if state.member_h is not None:
            assert state.member_c is not None
            outputs, hs, cs = [output], [], []
            for k, member in enumerate(self.members):
                out, (hk, ck) = member.step(state.z, actions, (state.member_h[k], state.member_c[k]), mask)
                outputs.append(out)
                hs.append(hk)
                cs.append(ck)
            member_h, member_c = torch.stack(hs), torch.stack(cs)
            stacked = MDNOutput(*(torch.stack(parts) for parts in zip(*outputs)))  # (K, B, ...)
            uncertainty = disagreement(stacked)
            if state.member is not None:
                rows = torch.arange(len(state.member), device=self.device)
                output = MDNOutput(*(part[state.member, rows] for part in stacked))
            elif settings.ensemble == "pessimist":  # member 0's latent; the worst reward and end of any member
                output = output._replace(
                    reward=stacked.reward.min(dim=0).values, done_logit=stacked.done_logit.max(dim=0).values
                )
        temperature = self.game.dream_temperature if settings.temperature is None else settings.temperature
        z = sample_next_z(output, temperature, generator)
        if not (
            torch.isfinite(z).all() and torch.isfinite(output.reward).all() and torch.isfinite(output.done_logit).all()
        ):
            raise FloatingPointError(
                "the world model produced NaN or inf (latent, reward or done logit); its weights are "
                "broken or its inputs are far outside what it was trained on"
            )
        done_probability = torch.sigmoid(output.done_logit)
        if sample_done:
            done = torch.rand(done_probability.shape, generator=generator, device=self.device) < done_probability
        else:
            done = done_probability > settings.done_threshold
        if self.game.alive_reward is None:
            reward = output.reward
        else:
            reward = torch.full_like(output.reward, self.game.alive_reward)
        if uncertainty is not None and settings.uncertainty_penalty > 0:
            reward = reward - settings.uncertainty_penalty * uncertainty
        new_state = DreamState(z, h, c, member_h, member_c, mask, state.member)
        return DreamStep(new_state, reward, done, done_probability, uncertainty)

    def start_table(self, settings: DreamSettings | None = None, replay: Replay | None = None) -> StartTable:
        """The start states of ``starts="data"`` for ``settings``' warm-up (default: the model's
        own): every member run on the real steps before each start of ``replay`` (default: the
        model's stored episodes), kept on the model's device until the replay changes."""
        warmup = (self.dream_defaults if settings is None else settings).warmup
        return (replay or self.stored_replay()).start_table(self.all_members, warmup, self.device)

    def stored_replay(self) -> Replay:
        """The model directory's stored real episodes as a :class:`~dreamgym.replay.Replay`."""
        if self._replay is None:
            if self.start_episodes is None:
                raise ValueError("this model stores no real episodes to start dreams from; pass a replay")
            episodes = self.start_episodes
            replay = Replay(self.z_dim, self.game.action_dim, capacity=max(1, int(episodes.lengths.sum())))
            first = 0
            for length in episodes.lengths.tolist():
                replay.add(episodes.mu[first : first + length], episodes.actions[first : first + length])
                first += length
            self._replay = replay
        return self._replay

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


def disagreement(outputs: MDNOutput) -> torch.Tensor:
    """(B,) how much K members' heads (K, B, z_dim, mixtures) disagree on the next latent: the
    root mean square over z's dimensions of the standard deviation, across members, of each
    member's expected z (its mixture mean)."""
    expected = (torch.softmax(outputs.logits, dim=-1) * outputs.mu).sum(-1)  # (K, B, z_dim)
    return expected.var(dim=0, unbiased=False).mean(-1).sqrt()


def override_dream(settings: DreamSettings, **overrides: object) -> DreamSettings:
    """``settings`` with the keyword arguments of a dream (None: keep the setting) put in;
    TypeError / ValueError name the keyword and what it expects. Needs no model, so that a dream
    refuses a bad keyword before it loads one."""
    values: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    if "dropout" in values:
        values["dropout"] = validate_dropout(values["dropout"], 0.0)
    try:
        return dataclasses.replace(settings, **values)
    except ValueError as error:
        raise type(error)(str(error).replace("DreamSettings.", "")) from None  # a KindError stays a TypeError


_DROPOUT = Rule("float", minimum=0, below=1)


def validate_dropout(dropout: object, trained_rate: float) -> float:
    """A dream's dropout rate as a float: ``trained_rate`` (the rate M was trained with) for None;
    TypeError / ValueError unless a finite number with 0 <= p < 1."""
    value = trained_rate if dropout is None else dropout
    try:
        _DROPOUT.check("dropout", value)
    except KindError:
        raise
    except ValueError as error:
        where = " from M's config (None: the rate M was trained with)" if dropout is None else " (0: the plain dream)"
        raise ValueError(f"{error}{where}") from None
    return float(cast(float, value))
