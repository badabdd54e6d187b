"""M: the MDN-RNN that models P(z_{t+1} | a_t, z_t, h_t), plus the reward and episode end.

An LSTM reads (z_t, a_t) and its hidden state h_{t+1} feeds three heads:

* a mixture of ``num_mixtures`` Gaussians *per latent dimension* for z_{t+1}
  (each dimension has its own mixture weights, means and standard deviations);
* the reward r_t received for taking a_t (regression);
* the probability that the episode ends after this step (a logit; Bernoulli likelihood).

Temperature τ (Ha & Schmidhuber 2018): mixture logits are divided by τ and every σ is
multiplied by √τ before sampling. τ → 0 collapses onto the most likely component's mean; a
larger τ makes the dream noisier and harder to exploit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

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

    def to_dict(self) -> dict:
        return asdict(self)


class MDNOutput(NamedTuple):
    """Heads of M for every step; shapes (B, T, z_dim, K) for the mixture and (B, T) otherwise."""

    log_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor


LSTMState = tuple[torch.Tensor, torch.Tensor]
"""(h, c), each (B, hidden_dim)."""


class MDNRNN(nn.Module):
    def __init__(self, config: MDNRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.z_dim + config.action_dim, config.hidden_dim, batch_first=True)
        self.mixture_head = nn.Linear(config.hidden_dim, 3 * config.z_dim * config.num_mixtures)
        self.reward_head = nn.Linear(config.hidden_dim, 1)
        self.done_head = nn.Linear(config.hidden_dim, 1)

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> LSTMState:
        zeros = torch.zeros(batch_size, self.config.hidden_dim, device=device)
        return zeros, zeros.clone()

    def heads(self, hidden: torch.Tensor) -> MDNOutput:
        """(..., hidden_dim) -> the heads, mixture logits already log-softmaxed."""
        K, z_dim = self.config.num_mixtures, self.config.z_dim
        raw = self.mixture_head(hidden).view(*hidden.shape[:-1], z_dim, 3, K)
        logits, mu, log_sigma = raw.unbind(dim=-2)
        return MDNOutput(
            log_pi=torch.log_softmax(logits, dim=-1),
            mu=mu,
            log_sigma=log_sigma,
            reward=self.reward_head(hidden).squeeze(-1),
            done_logit=self.done_head(hidden).squeeze(-1),
        )

    def forward(
        self, z: torch.Tensor, actions: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[MDNOutput, LSTMState]:
        """z (B, T, z_dim), actions (B, T, action_dim) -> heads for each step, final (h, c)."""
        lstm_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        hidden, (h, c) = self.lstm(torch.cat([z, actions], dim=-1), lstm_state)
        return self.heads(hidden), (h.squeeze(0), c.squeeze(0))

    def step(self, z: torch.Tensor, actions: torch.Tensor, state: LSTMState) -> tuple[MDNOutput, LSTMState]:
        """One step for a batch: z (B, z_dim), actions (B, action_dim), (h, c) -> heads (B, ...), (h, c).

        A hand-written LSTM cell on the LSTM's own weights: identical to ``forward`` with T = 1,
        without the sequence machinery (this is the dream's hot path).
        """
        h, c = state
        gates = torch.addmm(self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0, torch.cat([z, actions], dim=-1), self.lstm.weight_ih_l0.t())
        gates = torch.addmm(gates, h, self.lstm.weight_hh_l0.t())
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self.heads(h), (h, c)


def mixture_nll(output: MDNOutput, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``target`` (..., z_dim) under the per-dimension mixtures.

    Returns (...,): summed over latent dimensions, computed with log-sum-exp on
    log-probabilities so that it neither under- nor overflows.
    """
    target = target.unsqueeze(-1)
    log_normal = -0.5 * ((target - output.mu) * torch.exp(-output.log_sigma)).pow(2) - output.log_sigma - LOG_SQRT_2PI
    return -torch.logsumexp(output.log_pi + log_normal, dim=-1).sum(dim=-1)


def sample_next_z(output: MDNOutput, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Draw z_{t+1} (B, z_dim) from mixture heads (B, z_dim, K) at temperature τ, vectorised.

    The component of every (batch, dimension) pair is drawn at once with the Gumbel-max trick
    on logits / τ; its Gaussian is then sampled with σ·√τ. Randomness comes only from
    ``generator``.
    """
    log_pi, mu, log_sigma = output.log_pi, output.mu, output.log_sigma
    uniform = torch.rand(log_pi.shape, generator=generator, device=log_pi.device, dtype=log_pi.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0 - 1e-7)))
    component = torch.argmax(log_pi / temperature + gumbel, dim=-1, keepdim=True)
    chosen_mu = mu.gather(-1, component).squeeze(-1)
    chosen_sigma = log_sigma.gather(-1, component).squeeze(-1).exp() * math.sqrt(temperature)
    noise = torch.randn(chosen_mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return chosen_mu + chosen_sigma * noise
