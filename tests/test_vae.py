from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamgym.vae import ConvVAE, VAEConfig, count_parameters, encode_frames, vae_loss


def test_parameter_counts_match_the_paper():
    assert count_parameters(ConvVAE(VAEConfig(z_dim=32))) == 4_348_547
    assert count_parameters(ConvVAE(VAEConfig(z_dim=64))) == 4_446_915


def test_shapes_round_trip():
    vae = ConvVAE(VAEConfig(z_dim=16))
    logits, mu, logvar = vae(torch.rand(3, 3, 64, 64))
    assert logits.shape == (3, 3, 64, 64) and mu.shape == logvar.shape == (3, 16)
    decoded = vae.decode(mu)
    assert 0 <= decoded.min() and decoded.max() <= 1
    torch.testing.assert_close(decoded, torch.sigmoid(vae.decode_logits(mu)))


def test_cross_entropy_still_pulls_a_wrong_pixel_where_the_sigmoid_saturates():
    """A V trained with squared error on mostly white frames (pixel CartPole) drives its logits
    to hundreds and paints every frame white: the gradient of a dark pixel it paints white
    vanishes through the saturated sigmoid. Cross-entropy keeps it."""
    images = torch.ones(1, 3, 64, 64)
    images[..., 30:34, 30:34] = 0.0  # the dark object
    zeros = torch.zeros(1, 4)
    gradients = {}
    for loss_name in ("squared_error", "cross_entropy"):
        logits = torch.full((1, 3, 64, 64), 20.0, requires_grad=True)  # saturated white
        total, squared_error, _ = vae_loss(images, logits, zeros, zeros, 0.5, loss_name)
        total.backward()
        assert squared_error.item() == pytest.approx(48.0, abs=1e-3)  # reported the same way by both
        gradients[loss_name] = logits.grad[0, 0, 31, 31].item()
    assert abs(gradients["squared_error"]) < 1e-6
    assert gradients["cross_entropy"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="squared_error or cross_entropy"):
        vae_loss(images, logits, zeros, zeros, 0.5, "l1")


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
