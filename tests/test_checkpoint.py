from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from conftest import small_world_model

from dreamgym import checkpoint
from dreamgym.checkpoint import (
    ModelFileError,
    load_controller,
    load_world_model,
    read_model_config,
    save_controller,
    save_world_model,
)
from dreamgym.controller import LinearController
from dreamgym.games import lookup, pretrained_root, shipped_models


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
    model.controller = LinearController.from_flat(
        lookup("doom"), model.observation_dim, np.arange(model.observation_dim + 1.0)
    )
    loaded = load_world_model(save_world_model(model, tmp_path / "m"))
    np.testing.assert_array_equal(loaded.controller.flat(), model.controller.flat())


def test_controller_file_round_trip(tmp_path):
    controller = LinearController.from_flat(lookup("carracing"), 5, np.arange(18.0))
    save_controller(controller, tmp_path / "c.safetensors", {"generation": 3})
    loaded = load_controller(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(loaded.flat(), controller.flat())
    assert loaded.game is lookup("carracing")


def test_failed_save_leaves_the_previous_directory_intact(tmp_path, monkeypatch):
    target = save_world_model(small_world_model("doom", seed=1), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = []

    def failing_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(tensors, path, metadata=metadata)

    real_save = checkpoint.write_safetensors
    monkeypatch.setattr(checkpoint, "write_safetensors", failing_save)
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
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}


# --------------------------------------------------------------------------- hostile model directories


def _copy(tmp_path, game="doom"):
    directory = tmp_path / "model"
    model = small_world_model(game)
    model.controller = LinearController.zeros(model.game, model.observation_dim)
    return checkpoint.save_world_model(model, directory)


def _config(directory):
    return json.loads((directory / "config.json").read_text())


def _write_config(directory, config, *, redigest=True):
    if redigest:  # a crafted file: whoever edits it can recompute the digest too
        config["config_sha256"] = checkpoint.config_digest(config)
    (directory / "config.json").write_text(json.dumps(config))


def _rewrite_weights(directory, name, tensors):
    """Replace a weights file and record it, as a crafted directory would."""
    from safetensors.torch import save_file

    save_file(tensors, str(directory / name))
    config = _config(directory)
    config["files"][name] = {
        "sha256": checkpoint.sha256_of(directory / name),
        "bytes": (directory / name).stat().st_size,
    }
    _write_config(directory, config)


def test_editing_config_json_alone_is_noticed(tmp_path):
    directory = _copy(tmp_path)
    config = _config(directory)
    config["mdnrnn"]["done_logit_offset"] = 100.0
    _write_config(directory, config, redigest=False)
    with pytest.raises(ModelFileError, match="edited or corrupted"):
        load_world_model(directory, device="cpu")


@pytest.mark.parametrize(
    "section, field, value, words",
    [
        ("vae", "z_dim", 100_000, "vae.z_dim must be an integer in \\[1, 4096\\]"),
        ("mdnrnn", "hidden_dim", 10**6, "mdnrnn.hidden_dim"),
        ("mdnrnn", "done_logit_offset", 100.0, "done_logit_offset"),
        ("mdnrnn", "z_dim", 9, "mdnrnn.z_dim"),
        ("mdnrnn", "action_dim", 5, "mdnrnn.action_dim"),
        ("mdnrnn", "dropout", 0.95, "mdnrnn.dropout must be a number in \\[0, 0.9\\]"),
        ("mdnrnn", "dropout", -0.1, "mdnrnn.dropout"),
        ("vae", "kl_tolerance", "0.5", "kl_tolerance must be a number"),
        ("vae", "colour", 3, "unknown fields \\['colour'\\]"),
    ],
)
def test_a_crafted_size_is_refused_by_field_before_anything_is_allocated(tmp_path, section, field, value, words):
    directory = _copy(tmp_path)
    config = _config(directory)
    config[section][field] = value
    _write_config(directory, config)
    with pytest.raises(ModelFileError, match=words):
        load_world_model(directory, device="cpu")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda config: config.pop("files"), "field 'files' must be a JSON dict"),
        (lambda config: config.pop("vae"), "field 'vae'"),
        (lambda config: config.update(game="pong"), "field 'game': unknown game 'pong'"),
        (lambda config: config["files"].update({"vae.safetensors": {"sha256": 3}}), "files\\['vae.safetensors'\\]"),
        (lambda config: config.update(format_version=7), "format_version 7"),
    ],
)
def test_a_missing_or_malformed_field_is_named(tmp_path, edit, words):
    directory = _copy(tmp_path)
    config = _config(directory)
    edit(config)
    _write_config(directory, config)
    with pytest.raises(ModelFileError, match=words):
        load_world_model(directory, device="cpu")


def test_weights_of_the_wrong_shape_are_refused_from_the_header(tmp_path):
    directory = _copy(tmp_path)
    _rewrite_weights(
        directory, "controller.safetensors", {"weight": torch.zeros(1000, 1000), "bias": torch.zeros(1000)}
    )
    with pytest.raises(ModelFileError, match="does not fit config.json"):
        load_world_model(directory, device="cpu")


@pytest.mark.parametrize("name", ["mdnrnn.safetensors", "initial_latents.safetensors", "controller.safetensors"])
def test_non_finite_weights_latents_or_controllers_are_refused_at_load(tmp_path, name):
    from safetensors.torch import load_file

    directory = _copy(tmp_path)
    tensors = load_file(str(directory / name))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    _rewrite_weights(directory, name, tensors)
    with pytest.raises(ModelFileError, match="NaN or inf"):
        load_world_model(directory, device="cpu")


def test_non_finite_weights_are_refused_at_export_and_nothing_is_written(tmp_path):
    model = small_world_model("doom")
    with torch.no_grad():
        next(model.mdnrnn.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        checkpoint.save_world_model(model, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_of_another_format_version_is_refused_by_name(tmp_path):
    directory = _copy(tmp_path)
    config = _config(directory)
    config["format_version"] = 1
    del config["config_sha256"]
    _write_config(directory, config, redigest=False)
    with pytest.raises(checkpoint.ModelFileError, match="format_version 1; this dreamgym reads 2"):
        load_world_model(directory, device="cpu")


def test_the_dropout_rate_m_was_trained_with_is_stored_and_old_directories_read_zero(tmp_path):
    from dataclasses import replace

    model = small_world_model("doom")
    model.mdnrnn.config = replace(model.mdnrnn.config, dropout=0.1)
    directory = save_world_model(model, tmp_path / "m")
    assert _config(directory)["mdnrnn"]["dropout"] == 0.1
    assert load_world_model(directory, device="cpu").mdnrnn.config.dropout == 0.1
    config = _config(directory)
    del config["mdnrnn"]["dropout"]  # as written before the setting existed
    _write_config(directory, config)
    assert load_world_model(directory, device="cpu").mdnrnn.config.dropout == 0.0


def test_saves_that_hit_a_file_size_limit_are_clear_errors_and_keep_the_old_files(tmp_path):
    """A real limit (``ulimit -f``), in a process of its own: safetensors and torch.save fail
    as they would on a full disk."""
    import subprocess
    import sys
    from pathlib import Path

    target = save_world_model(small_world_model("doom"), tmp_path / "model")
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    script = f"""
import resource, signal, sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import small_world_model
from dreamgym.checkpoint import save_world_model
from dreamgym.files import WriteError, atomic_save_torch
model = small_world_model("doom", seed=1)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
for save in (lambda: save_world_model(model, {str(target)!r}),
             lambda: atomic_save_torch({{"w": torch.zeros(1 << 20)}}, {str(tmp_path / "checkpoint.pt")!r})):
    try:
        save()
    except WriteError as error:
        print("WriteError:", error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 2, result.stderr[-2000:]
    assert lines[0].startswith(f"WriteError: cannot write {target}: ") and "the model there is untouched" in lines[0]
    assert (
        lines[1].startswith(f"WriteError: cannot write {tmp_path / 'checkpoint.pt'}: ")
        and "nothing was written" in lines[1]
    )
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging directory, no temporary file


@pytest.mark.parametrize(
    "sizes, words",
    [
        (
            {"z_dim": 4096, "hidden_dim": 8192, "num_mixtures": 64},
            "more than the 400,000,000 a model may hold",
        ),  # ~26 GB
        ({"hidden_dim": 2048}, "mdnrnn.safetensors holds .* bytes, too few"),  # fits the bound, not the file
    ],
)
def test_sizes_that_each_pass_are_refused_together_or_against_the_file_before_m_is_built(
    tmp_path, monkeypatch, sizes, words
):
    directory = _copy(tmp_path)
    config = _config(directory)
    for key, value in sizes.items():
        config["mdnrnn"][key] = value
        if key == "z_dim":
            config["vae"]["z_dim"] = value
    _write_config(directory, config)
    monkeypatch.setattr(checkpoint, "MDNRNN", lambda config: pytest.fail("an M was allocated"))
    monkeypatch.setattr(checkpoint, "ConvVAE", lambda config: pytest.fail("V was allocated"))
    with pytest.raises(ModelFileError, match=words):
        load_world_model(directory, device="cpu")


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_no_shipped_model_records_a_path_of_the_machine_that_built_it(name):
    def strings(value):
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [value] if isinstance(value, str) else []

    config = read_model_config(pretrained_root() / name)
    assert not [s for s in strings(config["metadata"]) if os.path.isabs(s)]
