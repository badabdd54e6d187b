"""Shared fixtures: small untrained world models written with the package's own save code, and
tiny runs of the real pipeline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dreamgym.checkpoint import SHIPPED_MODELS, resolve_model_dir, save_world_model
from dreamgym.config import DreamSettings
from dreamgym.games import lookup
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig
from dreamgym.world_model import StartEpisodes, WorldModel

os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="dreamgym-config-")  # the env modules tests name stay here

SMALL_Z = 8
SMALL_HIDDEN = 16


def small_world_model(game_name: str, seed: int = 0) -> WorldModel:
    """An untrained V and M of small size, with done-logits pushed low so episodes last."""
    torch.manual_seed(seed)
    game = lookup(game_name)
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


def defended_world_model(game_name: str, members: int = 3, defaults: DreamSettings | None = None) -> WorldModel:
    """The small model with ``members`` - 1 more Ms (other seeds) and three stored "real"
    episodes (random latents and actions of 7, 12 and 5 steps) to start dreams from."""
    model = small_world_model(game_name)
    for seed in range(1, members):
        model.members.append(small_world_model(game_name, seed=100 + seed).mdnrnn)
    generator = torch.Generator().manual_seed(5)
    lengths = torch.tensor([7, 12, 5])
    actions = torch.rand(int(lengths.sum()), model.game.action_dim, generator=generator)
    if model.game.discrete:
        actions = torch.nn.functional.one_hot(actions.argmax(-1), model.game.action_dim).float()
    model.start_episodes = StartEpisodes(
        torch.randn(int(lengths.sum()), SMALL_Z, generator=generator), actions, lengths
    )
    model.dream_defaults = defaults or DreamSettings()
    model.__post_init__()  # the new members in eval mode, without gradients
    return model


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """game name -> a model directory: a small untrained world model of each game dreamgym
    defines; the shipped dream itself for each game made from an env id (none is shipped yet)."""
    root = tmp_path_factory.mktemp("models")
    dirs = {name: save_world_model(small_world_model(name), root / name) for name in ("carracing", "doom")}
    return {**dirs, **{game: resolve_model_dir(model) for model, game in SHIPPED_MODELS.items() if game not in dirs}}


def run_command(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command to completion and capture its output through files, not pipes, then kill
    whatever it left behind in its session: a game process orphaned by a dying worker would
    otherwise hold a pipe open and hang the test instead of failing it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read(), err.read())


def dreamgym_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "dreamgym.cli", *args], cwd=cwd)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Callable[[str], Path]:
    """game -> a run directory made by `dreamgym pipeline GAME --preset tiny` (built on first use)."""
    runs: dict[str, Path] = {}

    def build(game: str) -> Path:
        if game not in runs:
            root = tmp_path_factory.mktemp(f"tiny_{game}")
            device = ["--device", "cpu"] if game == "doom" else []  # explicit on one game, the default on the other
            result = dreamgym_cli("pipeline", game, "--out", str(root / "run"), "--preset", "tiny", *device, cwd=root)
            assert result.returncode == 0, result.stderr[-3000:]
            for stage in ("collect", "train-vae", "encode", "train-mdnrnn", "train-controller", "export", "evaluate"):
                assert f"[{stage}]" in result.stdout
            for task in ("collect", "V epoch 1/", "encode", "M epoch 1/", "CMA-ES", "evaluate Latent"):
                assert task in result.stderr, f"no progress bar for {task!r}"  # one protocol: every stage shows one
            runs[game] = root / "run"
        return runs[game]

    return build
