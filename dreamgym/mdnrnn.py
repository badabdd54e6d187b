"""M: the MDN-RNN that models P(z_{t+1} | a_t, z_t, h_t), plus the reward and episode end.

An LSTM reads (z_t, a_t) and its hidden state h_{t+1} feeds three heads:

* a mixture of ``num_mixtures`` Gaussians *per latent dimension* for z_{t+1}
  (each dimension has its own mixture weights, means and standard deviations);
* the reward r_t received for taking a_t (regression);
* the probability that the episode ends after this step (a logit; Bernoulli likelihood).

Temperature τ (Ha & Schmidhuber 2018): mixture logits are divided by τ and every σ is
multiplied by √τ before sampling. τ → 0 collapses onto the most likely component's mean; a
larger τ makes the dream noisier and harder to exploit.

Dropout (Wellmer & Kwok 2021, "Dropout's Dream Land"): M trained with dropout rate p is a family
of models, one per dropout mask, and a dream drawn with its own mask, fixed for the episode, is
one member of that family; an agent trained across many dreams cannot exploit one M's errors.
The mask multiplies the LSTM's output h_{t+1} on its way to the heads, and nothing else:

* one mask per sequence, the same at every step (variational dropout, Gal & Ghahramani 2016), in
  training as in the dream, so that M is trained on exactly the models the dream draws from;
* the LSTM itself (its input (z_t, a_t), its recurrence and the (h, c) it carries) is never
  masked, so h_t, the agent's observation, is computed by the same function in the dream and
  on the real game (where the latent twin runs M without a mask); masks change only what M
  predicts (next z, reward, end), which is what an agent would exploit. The original code also
  masked z_t at the input and h_{t-1} in the recurrence; that would make the observation itself
  differ between dream and real game, and cost a second mask on the dream's hot path.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dreamgym import rundir
from dreamgym.config import MDNTrainConfig
from dreamgym.devices import resolve_device
from dreamgym.episodes import (
    DATA_READERS,
    iter_valid,
    latent_files,
    read_latents,
    split_files,
)
from dreamgym.games import Game
from dreamgym.plots import frame_grid, plot_curves
from dreamgym.rundir import RunDir
from dreamgym.training import (
    Progress,
    Report,
    StageError,
    StageResult,
    load_trained,
    no_progress,
    no_report,
    train_epochs,
)
from dreamgym.vae import ConvVAE, VAEConfig, tensor_to_frames

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class MDNRNNConfig:
    """Shape of M."""

    z_dim: int = 32
    """Latent size (must equal V's)."""
    action_dim: int = 3
    """Width of the action vector (one-hot for discrete games)."""
    hidden_dim: int = 256
    """LSTM units (256 CarRacing, 512 Doom in the paper)."""
    num_mixtures: int = 5
    """Gaussian components per latent dimension."""
    done_logit_offset: float = 0.0
    """Subtracted from the done head's raw output so that sigmoid(done_logit) is the probability
    that the episode ends. A head trained with BCE weighting positives by w learns
    logit(p) + log w, so training sets this to log w. Models saved before this setting existed
    read 0: their dreams end where p > 1 / (1 + w), not p > 0.5."""
    dropout: float = 0.0
    """Dropout rate M was trained with, on h before the heads (one mask per sequence); the
    dream's default rate. Models saved before this setting existed read 0."""

    def to_dict(self) -> dict:
        return asdict(self)


class MDNOutput(NamedTuple):
    """Heads of M for every step; shapes (B, T, z_dim, K) for the mixture and (B, T) otherwise."""

    logits: torch.Tensor
    """Unnormalised mixture weights (log_softmax gives log π)."""
    mu: torch.Tensor
    log_sigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor


LSTMState = tuple[torch.Tensor, torch.Tensor]
"""(h, c), each (B, hidden_dim)."""


def dropout_masks(
    shape: tuple[int, ...], rate: float, generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """Inverted-dropout masks of ``shape``: 0 with probability ``rate``, else 1 / (1 - rate), so
    that a masked h keeps its mean. None (and nothing drawn from ``generator``) when rate is 0."""
    if rate == 0:
        return None
    keep = torch.rand(shape, generator=generator, device=device) >= rate
    return keep.float() / (1.0 - rate)


class MDNRNN(nn.Module):
    def __init__(self, config: MDNRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.z_dim + config.action_dim, config.hidden_dim, batch_first=True)
        # One linear layer for every head: [mixture logits | means | log σ] (each z_dim·K), reward, done.
        self.head = nn.Linear(config.hidden_dim, 3 * config.z_dim * config.num_mixtures + 2)
        self._fused_lstm: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> LSTMState:
        zeros = torch.zeros(batch_size, self.config.hidden_dim, device=device)
        return zeros, zeros.clone()

    def heads(self, hidden: torch.Tensor) -> MDNOutput:
        """(..., hidden_dim) -> the heads (mixture logits unnormalised: sampling does not need it)."""
        K, z_dim = self.config.num_mixtures, self.config.z_dim
        raw = self.head(hidden)
        mixture = raw[..., :-2].unflatten(-1, (3, z_dim, K))
        return MDNOutput(
            logits=mixture[..., 0, :, :],
            mu=mixture[..., 1, :, :],
            log_sigma=mixture[..., 2, :, :],
            reward=raw[..., -2],
            done_logit=raw[..., -1] - self.config.done_logit_offset,
        )

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        state: LSTMState | None = None,
        dropout_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[MDNOutput, LSTMState]:
        """z (B, T, z_dim), actions (B, T, action_dim) -> heads for each step, final (h, c).

        ``dropout_mask`` (B, hidden_dim) multiplies h before the heads at every step. Without
        one, a model in training mode with ``config.dropout`` > 0 draws one per sequence from
        ``generator``; in eval mode there is no dropout. The (h, c) returned is never masked.
        """
        lstm_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        hidden, (h, c) = self.lstm(torch.cat([z, actions], dim=-1), lstm_state)
        if dropout_mask is None and self.training:
            dropout_mask = dropout_masks((z.shape[0], self.config.hidden_dim), self.config.dropout, generator, z.device)
        if dropout_mask is not None:
            hidden = hidden * dropout_mask[:, None, :]  # (B, 1, hidden_dim): the same mask at every step
        return self.heads(hidden), (h.squeeze(0), c.squeeze(0))

    def step(
        self, z: torch.Tensor, actions: torch.Tensor, state: LSTMState, dropout_mask: torch.Tensor | None = None
    ) -> tuple[MDNOutput, LSTMState]:
        """One step for a batch: z (B, z_dim), actions (B, action_dim), (h, c) -> heads (B, ...), (h, c).

        A hand-written LSTM cell on the LSTM's own weights: identical to ``forward`` with T = 1,
        without the sequence machinery (this is the dream's hot path). ``dropout_mask``
        (B, hidden_dim), if given, multiplies h on its way to the heads only; it is never drawn
        here (a dream keeps one mask for its whole episode).
        """
        h, c = state
        weight, bias = self._fused_lstm_weights()
        gates = torch.addmm(bias, torch.cat([z, actions, h], dim=-1), weight)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self.heads(h if dropout_mask is None else h * dropout_mask), (h, c)

    def _fused_lstm_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[W_ih | W_hh]ᵀ and b_ih + b_hh as one matrix multiply, rebuilt only when the
        weights change (tracked through their in-place version counters)."""
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        w_ih, w_hh, b_ih, b_hh = (cast(torch.Tensor, getattr(self.lstm, name)) for name in names)
        parameters = (w_ih, w_hh, b_ih, b_hh)
        if torch.is_grad_enabled() and w_hh.requires_grad:  # training: keep the graph
            return torch.cat([w_ih, w_hh], dim=1).t(), b_ih + b_hh
        key = tuple(p._version for p in parameters) + tuple(p.data_ptr() for p in parameters)
        if self._fused_lstm is None or self._fused_lstm[0] != key:
            with torch.no_grad():
                weight = torch.cat([w_ih, w_hh], dim=1).t().contiguous()
                bias = b_ih + b_hh
            self._fused_lstm = (key, weight, bias)
        return self._fused_lstm[1], self._fused_lstm[2]


def mixture_nll(output: MDNOutput, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``target`` (..., z_dim) under the per-dimension mixtures.

    Returns (...,): summed over latent dimensions, computed with log-sum-exp on
    log-probabilities so that it neither under- nor overflows.
    """
    target = target.unsqueeze(-1)
    log_normal = -0.5 * ((target - output.mu) * torch.exp(-output.log_sigma)).pow(2) - output.log_sigma - LOG_SQRT_2PI
    log_pi = torch.log_softmax(output.logits, dim=-1)
    return -torch.logsumexp(log_pi + log_normal, dim=-1).sum(dim=-1)


def sample_next_z(output: MDNOutput, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Draw z_{t+1} (B, z_dim) from mixture heads (B, z_dim, K) at temperature τ, vectorised.

    The component of every (batch, dimension) pair is drawn at once with the Gumbel-max trick
    on logits / τ; its Gaussian is then sampled with σ·√τ. Randomness comes only from
    ``generator``.
    """
    logits, mu, log_sigma = output.logits, output.mu, output.log_sigma
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0 - 1e-7)))
    component = torch.argmax(logits / temperature + gumbel, dim=-1, keepdim=True)
    chosen_mu = mu.gather(-1, component).squeeze(-1)
    chosen_sigma = log_sigma.gather(-1, component).squeeze(-1).exp() * math.sqrt(temperature)
    noise = torch.randn(chosen_mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return chosen_mu + chosen_sigma * noise


# --------------------------------------------------------------------------- training


class SequenceBatch(NamedTuple):
    """B whole episodes padded to the longest, L steps; every sequence starts at its episode's
    first frame with a zero LSTM state, exactly as in the dream."""

    z: torch.Tensor
    """(B, L, z_dim) z_t, drawn from V's posterior N(μ, σ²)."""
    actions: torch.Tensor
    """(B, L, action_dim)"""
    next_z: torch.Tensor
    """(B, L, z_dim) z_{t+1}"""
    rewards: torch.Tensor
    """(B, L)"""
    dones: torch.Tensor
    """(B, L) float, 1 on the terminating step"""
    mask: torch.Tensor
    """(B, L) float, 1 on real (not padded) steps"""


@dataclass
class LatentEpisodes:
    """Every encoded episode of a set of files, concatenated frame by frame on one device: M's
    training data. Latents are small (z_dim 64: 0.5 KB a step; the paper's 10,000 Doom
    episodes ≈ 1.5 GB), so they are read once, not every epoch, and batches are gathered and
    z drawn from V's posterior on the device itself: a GPU is never kept waiting on the host.

    Episode e's frames are rows ``starts[e] .. starts[e] + lengths[e]`` (T + 1 frames for T
    steps); ``actions``, ``rewards`` and ``dones`` sit on the row of the frame they follow
    (the last frame's row holds zeros)."""

    mu: torch.Tensor
    """(S, z_dim) μ of every frame"""
    logvar: torch.Tensor
    """(S, z_dim) log σ² of every frame"""
    actions: torch.Tensor
    """(S, action_dim)"""
    rewards: torch.Tensor
    """(S,)"""
    dones: torch.Tensor
    """(S,) float"""
    starts: np.ndarray
    """(E,) row of each episode's first frame"""
    lengths: np.ndarray
    """(E,) steps of each episode (≥ 1)"""

    @classmethod
    def load(
        cls,
        files: list[Path],
        game: Game,
        device: torch.device,
        on_skip: Report | None = None,
        readers: int = DATA_READERS,
    ) -> LatentEpisodes:
        """Read ``files``; damaged or malformed ones (:func:`~dreamgym.episodes.read_latents`)
        are reported through ``on_skip`` and left out."""
        parts: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "actions": [], "rewards": [], "dones": []}
        lengths = []
        for _, latents in iter_valid(files, functools.partial(read_latents, game=game), on_skip, readers):
            lengths.append(len(latents["actions"]))
            parts["mu"].append(latents["mu"].astype(np.float32))
            parts["logvar"].append(latents["logvar"].astype(np.float32))
            parts["actions"].append(
                np.concatenate([game.encode_actions(latents["actions"]), np.zeros((1, game.action_dim), np.float32)])
            )
            parts["rewards"].append(np.append(latents["rewards"], 0).astype(np.float32))
            parts["dones"].append(np.append(latents["dones"], 0).astype(np.float32))
        lengths_array = np.array(lengths, np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths_array + 1)[:-1]]).astype(np.int64)
        tensors = {
            key: torch.from_numpy(np.concatenate(value)).to(device) if value else torch.zeros(0, device=device)
            for key, value in parts.items()
        }
        return cls(**tensors, starts=starts, lengths=lengths_array)

    def __len__(self) -> int:
        return len(self.lengths)

    def bootstrap(self, rng: np.random.Generator) -> LatentEpisodes:
        """A bootstrap resample: as many episodes, drawn with replacement (the tensors are shared)."""
        chosen = rng.integers(len(self), size=len(self))
        return dataclasses.replace(self, starts=self.starts[chosen], lengths=self.lengths[chosen])

    def batches(
        self, batch_size: int, rng: np.random.Generator, shuffle_buffer: int, generator: torch.Generator
    ) -> Iterator[SequenceBatch]:
        """Batches of whole episodes in a random order: within each group of ``shuffle_buffer``
        episodes they are sorted by length, so that a batch holds episodes of similar length
        (little padding). z_t is drawn from N(μ, σ²) with ``generator`` on the data's device."""
        order = rng.permutation(len(self))
        groups = []
        for first in range(0, len(order), shuffle_buffer):
            chunk = order[first : first + shuffle_buffer]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            groups += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        for index in rng.permutation(len(groups)):
            yield self._batch(groups[index], generator)

    def _batch(self, episodes: np.ndarray, generator: torch.Generator) -> SequenceBatch:
        device = self.mu.device
        lengths = torch.from_numpy(self.lengths[episodes]).to(device)
        L = int(self.lengths[episodes].max())
        t = torch.arange(L + 1, device=device)
        rows = torch.from_numpy(self.starts[episodes]).to(device)[:, None] + torch.minimum(
            t, lengths[:, None]
        )  # (B, L+1)
        noise = torch.randn((*rows.shape, self.mu.shape[1]), generator=generator, device=device)
        z = self.mu[rows] + torch.exp(0.5 * self.logvar[rows]) * noise
        step_rows = rows[:, :L]
        mask = (t[:L] < lengths[:, None]).float()
        return SequenceBatch(
            z[:, :-1],
            self.actions[step_rows],
            z[:, 1:],
            self.rewards[step_rows] * mask,
            self.dones[step_rows] * mask,
            mask,
        )


def build_mdnrnn(z_dim: int, game: Game, config: MDNTrainConfig) -> MDNRNN:
    """An untrained M for a run's settings (its done head calibrated for ``done_pos_weight``)."""
    return MDNRNN(
        MDNRNNConfig(
            z_dim=z_dim,
            action_dim=game.action_dim,
            hidden_dim=config.hidden_dim,
            num_mixtures=config.num_mixtures,
            done_logit_offset=math.log(config.done_pos_weight),
            dropout=config.dropout,
        )
    )


def mdnrnn_losses(
    model: MDNRNN, batch: SequenceBatch, done_pos_weight: float, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Mean losses per valid step: mixture NLL per latent dimension (terminal transitions, whose
    next frame is the game-over screen, excluded), reward MSE and weighted done BCE. In training
    mode with dropout, each sequence gets its own mask, drawn from ``generator``."""
    output, _ = model(batch.z, batch.actions, generator=generator)
    z_mask = batch.mask * (1.0 - batch.dones)
    steps = batch.mask.sum().clamp(min=1.0)
    nll = (mixture_nll(output, batch.next_z) * z_mask).sum() / (z_mask.sum().clamp(min=1.0) * model.config.z_dim)
    reward = ((output.reward - batch.rewards).pow(2) * batch.mask).sum() / steps
    done = F.binary_cross_entropy_with_logits(  # on the raw output: its optimum is logit(p) + offset
        output.done_logit + model.config.done_logit_offset,
        batch.dones,
        pos_weight=torch.tensor(done_pos_weight, device=batch.dones.device),
        reduction="none",
    )
    done = (done * batch.mask).sum() / steps
    return {"nll": nll, "reward": reward, "done": done}


def train_mdnrnn(
    run_dir: str | Path,
    game: Game,
    config: MDNTrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str | torch.device = "auto",
    member: int = 0,
    init: Path | None = None,
) -> tuple[MDNRNN, StageResult]:
    """Train M on ``run_dir/latents`` on ``device``; checkpoints in ``run_dir/mdnrnn`` (member
    k ≥ 1 of an ensemble: ``run_dir/mdnrnn_member_k``, seed + k, on a bootstrap resample of the
    training episodes). The epoch with the lowest validation loss is the one kept: the
    episode-end head over-fits long before the mixture stops improving. ``init``: the stage
    directory of a trained M of the same sizes to start from (a refinement round) instead of
    fresh weights; a resumed stage continues from its own checkpoint."""
    run_dir = Path(run_dir)
    stage_dir = RunDir(run_dir).mdnrnn(member)
    training_files, validation_files = split_files(latent_files(run_dir))
    if not training_files:
        raise StageError(f"no encoded episodes in {RunDir(run_dir).latents}: run `dreamgym encode` first")
    config = dataclasses.replace(config, seed=config.seed + member)
    torch.manual_seed(config.seed)
    device = resolve_device(device)
    data = LatentEpisodes.load(training_files, game, device, report)
    if len(data) == 0:
        raise StageError(f"no readable episodes with steps in {RunDir(run_dir).latents}")
    if member > 0:
        data = data.bootstrap(np.random.default_rng([config.seed, 7_919]))
    validation_data = LatentEpisodes.load(validation_files, game, device, report) if validation_files else None
    z_dim = data.mu.shape[1]
    model = build_mdnrnn(z_dim, game, config)
    if init is not None:
        load_trained(init, model)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    total_batches = math.ceil(len(data) / config.batch_size)
    generator = torch.Generator(device=device)

    def run_epoch(epoch: int) -> dict[str, float]:
        rng = np.random.default_rng([config.seed, epoch])
        progress_fraction = epoch / max(1, config.epochs - 1)
        lr = config.min_learning_rate + 0.5 * (config.learning_rate - config.min_learning_rate) * (
            1 + math.cos(math.pi * progress_fraction)
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        sums: dict[str, float] = {}
        count = 0
        generator.manual_seed(config.seed * 1_000_003 + epoch)
        batches = data.batches(config.batch_size, rng, config.shuffle_buffer, generator)
        for batch in batches:
            losses = mdnrnn_losses(model, batch, config.done_pos_weight, generator)
            loss = losses["nll"] + config.reward_weight * losses["reward"] + losses["done"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            for key, value in {"loss": loss, **losses}.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            count += 1
            progress(f"M epoch {epoch + 1}/{config.epochs}", count, total_batches)
        metrics = {key: value / max(count, 1) for key, value in sums.items()}
        metrics["learning_rate"] = lr
        validation = _validation_losses(model, validation_data, config) if validation_data else {}
        if validation:
            validation["loss"] = validation["nll"] + config.reward_weight * validation["reward"] + validation["done"]
        metrics.update({f"validation_{k}": v for k, v in validation.items()})
        return metrics

    vae = ConvVAE(VAEConfig(z_dim=z_dim))
    load_trained(RunDir(run_dir).vae, vae)
    vae.to(device)
    preview = read_latents((validation_files or training_files)[0])

    def on_epoch_end(epoch: int, history: list[dict[str, float]]) -> None:
        plot_curves(
            history,
            ["loss", "nll", "done", "validation_nll", "validation_done", "validation_loss"],
            rundir.picture(stage_dir, "loss"),
            "M training",
        )
        plot_predictions(
            model, vae, game, preview, rundir.picture(stage_dir, "predictions"), f"after epoch {epoch + 1}"
        )

    result = train_epochs(
        stage_dir,
        model,
        optimizer,
        config.epochs,
        run_epoch,
        {"mdnrnn": model.config.to_dict()},
        resume=resume,
        force=force,
        on_epoch_end=on_epoch_end,
        select="validation_loss",
        report=report,
    )
    return model, result


@torch.no_grad()
def _validation_losses(model: MDNRNN, data: LatentEpisodes, config: MDNTrainConfig) -> dict[str, float]:
    """Mean losses over the held-out episodes, with the same posterior draws every epoch."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=data.mu.device).manual_seed(config.seed)
    for batch in data.batches(config.batch_size, rng, config.shuffle_buffer, generator):
        for key, value in mdnrnn_losses(model, batch, config.done_pos_weight).items():
            sums[key] = sums.get(key, 0.0) + value.item()
        count += 1
    return {key: value / max(count, 1) for key, value in sums.items()}


@torch.no_grad()
def plot_predictions(
    model: MDNRNN, vae: ConvVAE, game: Game, latents: dict[str, np.ndarray], path: Path, title: str, columns: int = 10
) -> None:
    """Real frames (V's decoding of μ) beside M's one-step predictions (mean of the most likely
    component, given the real past) and an open-loop dream (τ = 1) driven by the real actions."""
    model.eval()
    T = len(latents["actions"])
    stride = max(1, min(T, 60) // columns)
    steps = np.arange(1, T + 1, stride)[:columns]
    device = next(model.parameters()).device
    mu = torch.from_numpy(latents["mu"]).float().to(device)
    actions = torch.from_numpy(game.encode_actions(latents["actions"])).to(device)
    output, _ = model(mu[None, :-1], actions[None])
    best = output.logits[0].argmax(-1, keepdim=True)
    predicted = output.mu[0].gather(-1, best).squeeze(-1)  # (T, z_dim): prediction of z_{t+1}
    generator = torch.Generator(device=device).manual_seed(0)
    z, state, dream = mu[:1], model.initial_state(1, device), [mu[0]]
    for t in range(T):
        out, state = model.step(z, actions[t : t + 1], state)
        z = sample_next_z(out, 1.0, generator)
        dream.append(z[0])
    rows = [
        ("V(real frame)", tensor_to_frames(vae.decode(mu[steps]))),
        ("M one-step", tensor_to_frames(vae.decode(predicted[steps - 1]))),
        ("dream, τ=1", tensor_to_frames(vae.decode(torch.stack(dream)[steps]))),
    ]
    frame_grid(rows, path, f"M: predictions and a dream on held-out actions, {title}", [f"t={t}" for t in steps])
