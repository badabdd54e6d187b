"""Real steps that dreams start from: a bounded store of recorded episodes' latents and actions
that grows while an agent trains.

A dream with ``starts="data"`` begins at a stored real step: z is that frame's μ, and each M's
(h, c) is its state after the ``warmup`` real steps before it in the same episode (run from a
zero state, like a replay buffer's burn-in; a step fewer than ``warmup`` steps into its episode
gets exactly the state the latent twin would have there). Only μ and M's action input are
stored, ``(z_dim + action_dim)`` float32 per step: a million Doom steps take 268 MB.

```python
from dreamgym.replay import Replay
replay = Replay.from_run("runs/doom", model.game)          # every encoded episode of a run
envs = dreamgym.DreamVectorEnv("doom", 256, world_model=model, starts="data", horizon=15, replay=replay)
replay.add(mu, actions)                                   # a new real episode: the next reset may start in it
```
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from dreamgym.episodes import iter_valid, latent_files, read_latents
from dreamgym.games import Game
from dreamgym.rundir import RunDir

if TYPE_CHECKING:
    from dreamgym.mdnrnn import MDNRNN

MAX_STARTS = 4096
"""Start states warmed up at a time (evenly spaced over the stored steps; all of them when
fewer): each costs 2·K·hidden_dim floats on the device, and building them ``warmup`` steps of
M on that batch."""

DEFAULT_CAPACITY = 2_000_000
"""Steps a replay keeps by default before it drops its oldest episodes (536 MB for Doom)."""


class StartTable(NamedTuple):
    """The states of real steps, as a dream starts there: z = μ of the frame, and each member's
    (h, c) after the real steps before it."""

    z: torch.Tensor
    """(N, z_dim)"""
    h: torch.Tensor
    """(K, N, hidden_dim)"""
    c: torch.Tensor
    """(K, N, hidden_dim)"""


class Replay:
    """Recorded real episodes, step by step: μ of every frame followed by an action, and that
    action as M's input. :meth:`add` appends an episode; past ``capacity`` steps the oldest
    episodes are dropped. ``version`` counts the changes, so that the start states built from
    it (:meth:`start_table`) are built again after a change, or after :meth:`refresh` (call it
    when M's weights change)."""

    def __init__(self, z_dim: int, action_dim: int, capacity: int = DEFAULT_CAPACITY) -> None:
        for name, value in (("z_dim", z_dim), ("action_dim", action_dim), ("capacity", capacity)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.z_dim, self.action_dim, self.capacity = int(z_dim), int(action_dim), int(capacity)
        self._episodes: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._steps = 0
        self.version = 0
        """Bumped by every :meth:`add` and :meth:`refresh`."""
        self._flat: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._table: tuple[tuple, StartTable] | None = None

    def __len__(self) -> int:
        """Stored steps."""
        return self._steps

    @property
    def episodes(self) -> int:
        return len(self._episodes)

    @property
    def lengths(self) -> list[int]:
        return [len(actions) for _, actions in self._episodes]

    def add(self, mu: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor) -> None:
        """Append one episode: ``mu`` (T or T + 1, z_dim), μ of its frames (a last frame after the
        last action is dropped), and ``actions`` (T, action_dim), M's action input (what
        ``Game.encode_actions`` makes). ValueError for a wrong shape or a non-finite value."""
        mu = (
            torch.as_tensor(np.asarray(mu) if not isinstance(mu, torch.Tensor) else mu)
            .detach()
            .to("cpu", torch.float32)
        )
        actions = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
        actions = actions.detach().to("cpu", torch.float32)
        steps = len(actions)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or steps < 1:
            raise ValueError(f"actions must have shape (T >= 1, {self.action_dim}), got {tuple(actions.shape)}")
        if mu.ndim != 2 or mu.shape[1] != self.z_dim or len(mu) not in (steps, steps + 1):
            raise ValueError(
                f"mu must have shape ({steps} or {steps + 1}, {self.z_dim}) for {steps} actions, got {tuple(mu.shape)}"
            )
        if not (torch.isfinite(mu).all() and torch.isfinite(actions).all()):
            raise ValueError("mu and actions must be finite")
        if steps > self.capacity:
            raise ValueError(f"an episode of {steps} steps does not fit a replay of capacity {self.capacity}")
        self._episodes.append((mu[:steps].clone(), actions.clone()))
        self._steps += steps
        while self._steps > self.capacity:
            _, dropped = self._episodes.pop(0)
            self._steps -= len(dropped)
        self.refresh()

    def refresh(self) -> None:
        """Build the start states again at their next use (new steps, or M's weights changed)."""
        self.version += 1

    def clear(self) -> None:
        """Drop every episode (to add them again, encoded by a refined V)."""
        self._episodes, self._steps = [], 0
        self.refresh()

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        game: Game,
        capacity: int = DEFAULT_CAPACITY,
        report: Callable[[str], None] | None = None,
    ) -> Replay:
        """Every readable encoded episode of a run (``RUN/latents``), oldest first; damaged files
        are skipped (and named to ``report``, if given)."""
        files = latent_files(run_dir)
        if not files:
            raise ValueError(f"{run_dir} has no encoded episodes (RUN/latents/*.npz): run `dreamgym encode` first")
        replay: Replay | None = None
        for _, latents in iter_valid(files, functools.partial(read_latents, game=game), report):
            if replay is None:
                replay = cls(latents["mu"].shape[1], game.action_dim, capacity)
            replay.add(latents["mu"], game.encode_actions(latents["actions"]))
        if replay is None:
            raise ValueError(f"no readable encoded episode in {RunDir(run_dir).latents}")
        return replay

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ (S, z_dim), actions (S, action_dim), lengths (E,) int64) of every stored step."""
        mu, actions, _, lengths = self._flatten()
        return mu, actions, lengths

    def _flatten(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._flat is None or self._flat[0] != self.version:
            if not self._episodes:
                raise ValueError("the replay holds no episodes")
            lengths = torch.tensor(self.lengths, dtype=torch.int64)
            first = torch.cumsum(lengths, 0) - lengths
            episode_first = torch.repeat_interleave(first, lengths)  # (S,) the first row of each step's episode
            self._flat = (
                self.version,
                torch.cat([m for m, _ in self._episodes]),
                torch.cat([a for _, a in self._episodes]),
                episode_first,
                lengths,
            )
        _, mu, actions, episode_first, lengths = self._flat
        return mu, actions, episode_first, lengths

    @torch.no_grad()
    def start_table(
        self, members: list[MDNRNN], warmup: int, device: torch.device, max_starts: int = MAX_STARTS
    ) -> StartTable:
        """Start states at ``max_starts`` evenly spaced stored steps (every step when fewer; the
        grid moves with each :attr:`version`, so refreshes cover the whole replay): z is the
        step's μ, and each member's (h, c) its state after the ``warmup`` steps before it in its
        episode, run from zero. Kept until the replay changes."""
        key = (self.version, warmup, str(device), max_starts, tuple(id(m) for m in members))
        if self._table is not None and self._table[0] == key:
            return self._table[1]
        mu, actions, episode_first, _ = self._flatten()
        steps = len(mu)
        stride = max(1, math.ceil(steps / max_starts))
        rows = torch.arange(self.version % stride, steps, stride)
        table = warm_up(members, mu.to(device), actions.to(device), episode_first.to(device), rows.to(device), warmup)
        self._table = (key, table)
        return table


def as_replay(replay: Replay | str | os.PathLike | None, game: Game) -> Replay | None:
    """A dream's ``replay`` keyword: a :class:`Replay`, or a run directory whose encoded
    episodes fill one (:meth:`Replay.from_run`); None stays None."""
    if replay is None or isinstance(replay, Replay):
        return replay
    if isinstance(replay, (str, os.PathLike)):
        return Replay.from_run(replay, game)
    raise TypeError(
        f"replay must be a dreamgym.replay.Replay or a run directory, got {type(replay).__name__} {replay!r}"
    )


@torch.no_grad()
def warm_up(
    members: list[MDNRNN],
    mu: torch.Tensor,
    actions: torch.Tensor,
    episode_first: torch.Tensor,
    rows: torch.Tensor,
    warmup: int,
) -> StartTable:
    """The start states of ``rows`` (indices into the flat steps): each member run from zero
    over the steps max(episode's first, row − warmup) .. row − 1, all rows as one batch."""
    starts = torch.maximum(episode_first[rows], rows - warmup)
    table_h, table_c = [], []
    for member in members:
        h, c = member.initial_state(len(rows), mu.device)
        for k in range(warmup):
            index = rows - warmup + k
            live = (index >= starts)[:, None]  # the window's steps; before them the state stays zero
            safe = index.clamp(min=0)
            _, (new_h, new_c) = member.step(mu[safe], actions[safe], (h, c))
            h, c = torch.where(live, new_h, h), torch.where(live, new_c, c)
        table_h.append(h)
        table_c.append(c)
    return StartTable(mu[rows], torch.stack(table_h), torch.stack(table_c))
