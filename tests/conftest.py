"""Shared fixtures: small untrained world models written with the package's own save code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamgym.checkpoint import save_world_model
from dreamgym.games import get_game
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig
from dreamgym.world_model import WorldModel

SMALL_Z = 8
SMALL_HIDDEN = 16


def small_world_model(game_name: str, seed: int = 0) -> WorldModel:
    """An untrained V and M of small size, with done-logits pushed low so episodes last."""
    torch.manual_seed(seed)
    game = get_game(game_name)
    vae = ConvVAE(VAEConfig(z_dim=SMALL_Z))
    mdnrnn = MDNRNN(MDNRNNConfig(z_dim=SMALL_Z, action_dim=game.action_dim, hidden_dim=SMALL_HIDDEN))
    with torch.no_grad():
        mdnrnn.head.bias[-1].fill_(-3.0)
    return WorldModel(
        game=game,
        vae=vae,
        mdnrnn=mdnrnn,
        initial_mu=torch.randn(10, SMALL_Z),
        initial_logvar=torch.full((10, SMALL_Z), -2.0),
    )


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """game name -> a model directory holding a small untrained world model."""
    root = tmp_path_factory.mktemp("models")
    return {name: save_world_model(small_world_model(name), root / name) for name in ("carracing", "doom")}
