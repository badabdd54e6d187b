"""V: the convolutional VAE that compresses a 64×64×3 frame into a latent vector z.

Architecture as in Ha & Schmidhuber (2018), appendix: four stride-2 convolutions
(32-64-128-256 channels, kernel 4, ReLU) down to 2×2×256, dense heads for μ and log σ², then a
dense layer to 1024 units and four stride-2 transposed convolutions (128 k5, 64 k5, 32 k6, 3 k6)
back to the image, with a sigmoid. Loss: summed squared pixel error (or, as a setting, binary
cross-entropy on the logits) plus the KL divergence to a unit Gaussian, floored at
``kl_tolerance * z_dim`` so the posterior is not squeezed further.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dreamgym import rundir
from dreamgym.config import RECONSTRUCTION_LOSSES, VAETrainConfig
from dreamgym.devices import resolve_device
from dreamgym.episodes import (
    DATA_READERS,
    episode_files,
    iter_valid,
    read_episode,
    split_files,
)
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
    prefetch,
    train_epochs,
)


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
        self.decoder = nn.Sequential(  # logits: ``decode`` applies the sigmoid
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2),
        )  # fmt: skip

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) in [0, 1] -> μ, log σ², each (B, z_dim)."""
        features = self.encoder(images)
        return self.mu(features), self.logvar(features)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z_dim) -> (B, 3, 64, 64) logits of the pixels."""
        return self.decoder(self.decoder_input(z).view(-1, 1024, 1, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z_dim) -> (B, 3, 64, 64) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoding's logits for a sampled z, with μ and log σ²."""
        mu, logvar = self.encode(images)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * noise
        return self.decode_logits(z), mu, logvar


def vae_loss(
    images: torch.Tensor,
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float,
    reconstruction: str = "squared_error",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total loss, reconstruction error and (floored) KL loss, each averaged over the batch.

    The reconstruction error is the squared error of ``sigmoid(logits)`` summed over pixels and
    channels, whichever loss is trained (so runs compare). The total adds to the KL either that
    error or, with ``reconstruction="cross_entropy"``, the binary cross-entropy of the logits,
    summed likewise. KL: to N(0, I), summed over latent dimensions, then
    ``max(KL, kl_tolerance * z_dim)``.
    """
    squared_error = (torch.sigmoid(logits) - images).pow(2).flatten(1).sum(dim=1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl_loss = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    if reconstruction not in RECONSTRUCTION_LOSSES:
        expected = " or ".join(RECONSTRUCTION_LOSSES)
        raise ValueError(f"unknown reconstruction loss {reconstruction!r}; expected {expected}")
    if reconstruction == "cross_entropy":
        cross_entropy = nn.functional.binary_cross_entropy_with_logits(logits, images, reduction="none")
        trained = cross_entropy.flatten(1).sum(dim=1).mean()
    else:
        trained = squared_error
    return trained + kl_loss, squared_error, kl_loss


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, 64, 64, 3) uint8 frames -> (B, 3, 64, 64) float32 in [0, 1] on ``device``.

    The uint8 frames travel (a quarter of the float bytes), from pinned memory to a GPU, and
    become floats there."""
    tensor = torch.as_tensor(np.asarray(frames))
    device = torch.device(device)
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_frames(images: torch.Tensor) -> np.ndarray:
    """(B, 3, 64, 64) in [0, 1] -> (B, 64, 64, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_frames(vae: ConvVAE, frames: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- training


def frame_batches(
    files: list[Path],
    batch_size: int,
    rng: np.random.Generator,
    shuffle_buffer: int,
    limit: int | None = None,
    on_skip: Report | None = None,
    readers: int = DATA_READERS,
) -> Iterator[np.ndarray]:
    """Shuffled (batch_size, 64, 64, 3) uint8 batches streamed from episode files.

    Files are read in a random order; frames collect in a buffer of about ``shuffle_buffer``
    frames, which is shuffled and emitted in batches, so memory stays bounded whatever the
    dataset size. Without ``limit``: one pass over every frame. With it: exactly ``limit``
    frames (the last batch may be short), a subsample of one pass when the data holds more,
    further passes in new orders when it holds fewer, so a training budget does not shrink
    with the data. Damaged files are skipped and reported. ``readers`` threads read and
    decompress files ahead (the batches do not depend on it).
    """
    buffer: list[np.ndarray] = []
    buffered = emitted = 0

    def drain(final: bool):
        nonlocal buffer, buffered, emitted
        frames = np.concatenate(buffer)
        frames = frames[rng.permutation(len(frames))]
        usable = len(frames) if final else len(frames) - len(frames) % batch_size
        for start in range(0, usable, batch_size):
            if limit is not None and emitted >= limit:
                return
            batch = frames[start : start + min(batch_size, limit - emitted if limit is not None else batch_size)]
            emitted += len(batch)
            yield batch
        buffer = [frames[usable:]]
        buffered = len(buffer[0])

    while True:
        read = 0
        order = [files[i] for i in rng.permutation(len(files))]
        for _, episode in iter_valid(order, read_episode, on_skip, readers):
            buffer.append(episode["frames"])
            buffered += len(episode["frames"])
            read += len(episode["frames"])
            if buffered >= shuffle_buffer:
                yield from drain(final=False)
            if limit is not None and emitted >= limit:
                return
        if limit is None or read == 0:  # one pass asked for, or nothing readable: never loop forever
            break
        on_skip = None  # a damaged file is reported once, not once per pass
    if buffered:
        yield from drain(final=True)


def train_vae(
    run_dir: str | Path,
    config: VAETrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str | torch.device = "auto",
    init: Path | None = None,
) -> tuple[ConvVAE, StageResult]:
    """Train V on the episodes of ``run_dir/episodes`` on ``device``; checkpoints in ``run_dir/vae``.
    ``init``: the stage directory of a trained V of the same size to start from (a refinement
    round) instead of fresh weights; a resumed stage continues from its own checkpoint.

    Batches are read by a background thread (:func:`~dreamgym.training.prefetch`) and copied to
    the device from pinned memory, so file reading overlaps the GPU's step."""
    run = RunDir(run_dir)
    stage_dir = run.vae
    training_files, validation_files = split_files(episode_files(run.episodes))
    if not training_files:
        raise StageError(f"no episode files in {run.episodes}: run `dreamgym collect` first")
    torch.manual_seed(config.seed)
    device = resolve_device(device)
    vae = ConvVAE(VAEConfig(z_dim=config.z_dim, kl_tolerance=config.kl_tolerance))
    if init is not None:
        load_trained(init, vae)
    vae.to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.learning_rate)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    preview = _preview_frames(validation_files or training_files, report)

    def run_epoch(epoch: int) -> dict[str, float]:
        rng = np.random.default_rng([config.seed, epoch])
        vae.train()
        totals = np.zeros(3)
        count = 0
        batches = prefetch(
            frame_batches(
                training_files, config.batch_size, rng, config.shuffle_buffer, config.frames_per_epoch, report
            )
        )
        task = f"V epoch {epoch + 1}/{config.epochs}"
        total = math.ceil(config.frames_per_epoch / config.batch_size) if config.frames_per_epoch else 0
        for frames in batches:
            images = frames_to_tensor(frames, device)
            logits, mu, logvar = vae(images, generator)
            loss, reconstruction_loss, kl_loss = vae_loss(
                images, logits, mu, logvar, config.kl_tolerance, config.reconstruction
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals += [loss.item(), reconstruction_loss.item(), kl_loss.item()]
            count += 1
            progress(task, count, total)
        progress(task, count, count)  # the epoch's end, also when its length was not known ahead
        if count == 0:
            raise StageError("no readable frames in the training episodes")
        metrics = dict(zip(["loss", "reconstruction", "kl"], (totals / count).tolist()))
        if validation_files:
            metrics["validation_reconstruction"] = reconstruction_error(vae, validation_files, report)
        return metrics

    def on_epoch_end(epoch: int, history: list[dict[str, float]]) -> None:
        plot_curves(
            history,
            ["loss", "reconstruction", "kl", "validation_reconstruction"],
            rundir.picture(stage_dir, "loss"),
            "V training",
        )
        vae.eval()
        with torch.no_grad():
            mu, _ = vae.encode(frames_to_tensor(preview, device))
            decoded = tensor_to_frames(vae.decode(mu))
        frame_grid(
            [("input", preview), ("V(input)", decoded)],
            rundir.picture(stage_dir, "reconstructions"),
            f"V reconstructions of held-out frames after epoch {epoch + 1}",
        )

    result = train_epochs(
        stage_dir,
        vae,
        optimizer,
        config.epochs,
        run_epoch,
        {"vae": vae.config.to_dict()},
        resume=resume,
        force=force,
        on_epoch_end=on_epoch_end,
        report=report,
    )
    return vae, result


def _preview_frames(files: list[Path], report: Report, count: int = 8) -> np.ndarray:
    """``count`` frames spread over the first readable episodes, for reconstruction pictures."""
    picked: list[np.ndarray] = []
    for _, episode in iter_valid(files, read_episode, report):
        frames = episode["frames"][:-1]  # the frame after the last action may be a game-over screen
        picked.extend(frames[np.linspace(0, len(frames) - 1, 4).astype(int)])
        if len(picked) >= count:
            break
    return np.stack(picked[:count])


@torch.no_grad()
def frame_errors(vae: ConvVAE, frames: np.ndarray) -> list[float]:
    """The summed squared error of μ's decoding of each (H, W, 3) uint8 frame."""
    images = frames_to_tensor(frames, next(vae.parameters()).device)
    mu, _ = vae.encode(images)
    return (vae.decode(mu) - images).pow(2).flatten(1).sum(1).tolist()


@torch.no_grad()
def reconstruction_error(vae: ConvVAE, files: list[Path], report: Report = no_report, max_frames: int = 2000) -> float:
    """Mean summed squared error of μ's decoding, over about ``max_frames`` frames spread evenly
    over ``files`` (every episode counts, not only the first ones)."""
    vae.eval()
    errors: list[float] = []
    per_episode = max(1, max_frames // max(1, len(files)))
    for _, episode in iter_valid(files[:max_frames], read_episode, report):
        frames = episode["frames"]
        errors.extend(frame_errors(vae, frames[np.unique(np.linspace(0, len(frames) - 1, per_episode).astype(int))]))
    if not errors:
        raise StageError("no readable frames to measure V's reconstruction error on")
    return float(np.mean(errors))
