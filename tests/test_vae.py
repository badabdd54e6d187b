from __future__ import annotations

import numpy as np
import torch

from dreamgym.vae import ConvVAE, VAEConfig, count_parameters, encode_frames, vae_loss


def test_parameter_counts_match_the_paper():
    assert count_parameters(ConvVAE(VAEConfig(z_dim=32))) == 4_348_547
    assert count_parameters(ConvVAE(VAEConfig(z_dim=64))) == 4_446_915


def test_shapes_round_trip():
    vae = ConvVAE(VAEConfig(z_dim=16))
    reconstruction, mu, logvar = vae(torch.rand(3, 3, 64, 64))
    assert reconstruction.shape == (3, 3, 64, 64) and mu.shape == logvar.shape == (3, 16)
    assert 0 <= reconstruction.min() and reconstruction.max() <= 1


def test_kl_is_floored_at_tolerance_times_z_dim():
    images = torch.rand(2, 3, 64, 64)
    zeros = torch.zeros(2, 10)
    _, _, kl = vae_loss(images, images, zeros, zeros, kl_tolerance=0.5)
    assert kl.item() == 5.0
    _, _, kl = vae_loss(images, images, torch.full((2, 10), 3.0), zeros, kl_tolerance=0.5)
    assert kl.item() == 45.0


def test_encode_frames_takes_uint8_frames_in_batches():
    vae = ConvVAE(VAEConfig(z_dim=8))
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    mu, logvar = encode_frames(vae, frames, batch_size=2)
    mu_all, _ = encode_frames(vae, frames, batch_size=5)
    assert mu.shape == logvar.shape == (5, 8)
    np.testing.assert_allclose(mu, mu_all, atol=1e-5)
