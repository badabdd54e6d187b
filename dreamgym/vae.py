"""V: the convolutional VAE that compresses a 64×64×3 frame into a latent vector z.

Architecture as in Ha & Schmidhuber (2018), appendix: four stride-2 convolutions
(32-64-128-256 channels, kernel 4, ReLU) down to 2×2×256, dense heads for μ and log σ², then a
dense layer to 1024 units and four stride-2 transposed convolutions (128 k5, 64 k5, 32 k6, 3 k6)
back to the image, with a sigmoid. Loss: summed squared pixel error plus the KL divergence to a
unit Gaussian, floored at ``kl_tolerance * z_dim`` so the posterior is not squeezed further.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    """Shape of V."""

    z_dim: int = 32
    """Size of the latent vector (32 for CarRacing, 64 for Doom in the paper)."""
    kl_tolerance: float = 0.5
    """The KL term is floored at ``kl_tolerance * z_dim`` nats per frame."""

    def to_dict(self) -> dict:
        return asdict(self)


class ConvVAE(nn.Module):
    """Frames (B, 3, 64, 64) in [0, 1] <-> latents (B, z_dim)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.mu = nn.Linear(2 * 2 * 256, config.z_dim)
        self.logvar = nn.Linear(2 * 2 * 256, config.z_dim)
        self.decoder_input = nn.Linear(config.z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )  # fmt: skip

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) in [0, 1] -> μ, log σ², each (B, z_dim)."""
        features = self.encoder(images)
        return self.mu(features), self.logvar(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z_dim) -> (B, 3, 64, 64) in [0, 1]."""
        return self.decoder(self.decoder_input(z).view(-1, 1024, 1, 1))

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction of a sampled z, with μ and log σ²."""
        mu, logvar = self.encode(images)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mu, logvar


def vae_loss(
    images: torch.Tensor,
    reconstruction: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total, reconstruction and (floored) KL loss, each averaged over the batch.

    Reconstruction: squared error summed over pixels and channels. KL: to N(0, I), summed over
    latent dimensions, then ``max(KL, kl_tolerance * z_dim)``.
    """
    reconstruction_loss = (reconstruction - images).pow(2).flatten(1).sum(dim=1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl_loss = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return reconstruction_loss + kl_loss, reconstruction_loss, kl_loss


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, 64, 64, 3) uint8 frames -> (B, 3, 64, 64) float32 in [0, 1]."""
    tensor = torch.as_tensor(np.asarray(frames), device=device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """(B, 3, 64, 64) in [0, 1] -> (B, 64, 64, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_frames(
    vae: ConvVAE, frames: np.ndarray, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """(T, 64, 64, 3) uint8 -> μ, log σ², each (T, z_dim) float32."""
    device = next(vae.parameters()).device
    mus, logvars = [], []
    for start in range(0, len(frames), batch_size):
        mu, logvar = vae.encode(frames_to_tensor(frames[start : start + batch_size], device))
        mus.append(mu.float().cpu().numpy())
        logvars.append(logvar.float().cpu().numpy())
    z_dim = vae.config.z_dim
    if not mus:
        return np.zeros((0, z_dim), np.float32), np.zeros((0, z_dim), np.float32)
    return np.concatenate(mus), np.concatenate(logvars)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

