from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from conftest import small_world_model

from dreamgym import checkpoint
from dreamgym.checkpoint import (
    load_controller,
    load_world_model,
    save_controller,
    save_world_model,
)
from dreamgym.controller import LinearController
from dreamgym.games import get_game


def test_round_trip_restores_identical_weights(tmp_path):
    model = small_world_model("carracing", seed=1)
    loaded = load_world_model(save_world_model(model, tmp_path / "m"))
    for original, restored in ((model.vae, loaded.vae), (model.mdnrnn, loaded.mdnrnn)):
        for key, value in original.state_dict().items():
            torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(loaded.initial_mu, model.initial_mu, rtol=0, atol=0)
    assert loaded.game.name == "carracing" and loaded.controller is None


def test_float16_weights_load_back_as_float32_and_stay_close(tmp_path):
    model = small_world_model("doom")
    loaded = load_world_model(save_world_model(model, tmp_path / "m", weights_dtype=torch.float16))
    weight = loaded.mdnrnn.lstm.weight_hh_l0
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, model.mdnrnn.lstm.weight_hh_l0, atol=1e-3, rtol=1e-3)


def test_controller_is_saved_inside_the_model_directory(tmp_path):
    model = small_world_model("doom")
    model.controller = LinearController.from_flat("doom", model.observation_dim, np.arange(model.observation_dim + 1.0))
    loaded = load_world_model(save_world_model(model, tmp_path / "m"))
    np.testing.assert_array_equal(loaded.controller.flat(), model.controller.flat())


def test_controller_file_round_trip(tmp_path):
    controller = LinearController.from_flat("carracing", 5, np.arange(18.0))
    save_controller(controller, tmp_path / "c.safetensors", {"generation": 3})
    loaded = load_controller(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(loaded.flat(), controller.flat())
    assert loaded.game is get_game("carracing")


def test_failed_save_leaves_the_previous_directory_intact(tmp_path, monkeypatch):
    target = save_world_model(small_world_model("doom", seed=1), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []

    def failing_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(tensors, path, metadata=metadata)

    real_save = checkpoint.save_file
    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_world_model(small_world_model("doom", seed=2), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_an_exported_model_directory_gets_the_permissions_of_a_plain_mkdir(tmp_path, umask):
    """Readable by others under the usual umask 022 (not the 0o700/0o600 of a private temp dir),
    and no more open than the user's umask allows."""
    previous = os.umask(umask)
    try:
        target = save_world_model(small_world_model("doom"), tmp_path / "m", model_card="card")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    files = sorted(target.iterdir())
    assert {p.name for p in files} >= {"config.json", "vae.safetensors", "mdnrnn.safetensors", "MODEL_CARD.md"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.name: oct(0o666 & ~umask) for p in files
    }
