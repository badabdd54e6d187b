"""The controller's input as a setting of the dream and its twin: [z, h] or the paper's Doom
[z, c, h], the same space and the same values on both, stored with the model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import dreamgym_cli, small_world_model

import dreamgym
from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.config import DreamSettings, RunConfig, preset
from dreamgym.controller import LinearController
from dreamgym.envs.vector import DreamVectorEnv
from dreamgym.replay import Replay

ZCH = DreamSettings(observation="zch")


def twin_trajectory(model, steps: int = 40, seed: int = 3):
    """Real VizDoom through the latent twin in [z, c, h]: its observations, the latents (μ) and
    M's action inputs of every step."""
    twin = dreamgym.LatentObservation(model.game.make_real_env(), model, device="cpu", observation="zch")
    rng = np.random.default_rng(seed)
    observation, _ = twin.reset(seed=seed)
    observations, actions = [observation], []
    for _ in range(steps):
        action = int(rng.integers(3))
        observation, _, terminated, truncated, _ = twin.step(action)
        observations.append(observation)
        actions.append(action)
        if terminated or truncated:
            break
    twin.close()
    observations = np.stack(observations)
    mu = torch.from_numpy(observations[:, : model.z_dim])
    return observations, mu, model.game.encode_actions(torch.tensor(actions))


def test_the_dream_and_the_twin_show_the_same_zch_for_the_same_real_trajectory():
    model = small_world_model("doom")
    z, hidden = model.z_dim, model.hidden_dim
    observations, mu, actions = twin_trajectory(model)
    assert observations.shape[1] == z + 2 * hidden
    # the twin's [z, c, h] is V's z and M's cell and hidden state after the steps before it
    state = model.mdnrnn.initial_state(1)
    for t in range(len(actions)):
        state = model.advance(state, mu[t : t + 1], actions[t : t + 1])
        expected = np.concatenate([mu[t + 1].numpy(), state[1][0].numpy(), state[0][0].numpy()])
        np.testing.assert_allclose(observations[t + 1], expected, rtol=0, atol=1e-5)
    # a dream started at any of those steps (warmed up on all the steps before it) shows what the twin showed
    replay = Replay(z, model.game.action_dim, capacity=1_000)
    replay.add(mu, actions)
    single = dreamgym.DreamEnv("doom", world_model=model, observation="zch", starts="data", replay=replay, warmup=10**4)
    vector = DreamVectorEnv("doom", 8, world_model=model, observation="zch", starts="data", replay=replay, warmup=10**4)
    assert single.observation_space == vector.single_observation_space
    assert single.observation_space.shape == (z + 2 * hidden,)
    starts = [single.reset(seed=seed)[0] for seed in range(10)] + list(vector.reset(seed=0)[0])
    deep = 0
    for start in starts:  # the game's first frames repeat: any step with this z may be the start
        rows = np.flatnonzero((observations[:, :z] == start[:z]).all(axis=1))
        assert len(rows) and np.abs(observations[rows] - start).max(axis=1).min() < 1e-5
        deep += rows.min() > 5
    assert deep > 5  # starts deep inside the trajectory, with a warmed-up c and h


def test_the_layout_is_the_models_default_and_a_keyword_of_every_env():
    model = small_world_model("doom")
    z, hidden = model.z_dim, model.hidden_dim
    assert dreamgym.DreamEnv("doom", world_model=model).observation_space.shape == (z + hidden,)
    model.dream_defaults = ZCH
    shapes = {
        "dream": dreamgym.DreamEnv("doom", world_model=model).observation_space.shape,
        "plain dream": dreamgym.DreamEnv("doom", world_model=model, plain=True).observation_space.shape,
        "vector": DreamVectorEnv("doom", 2, world_model=model).single_observation_space.shape,
        "twin": dreamgym.LatentObservation(model.game.make_real_env(), model).observation_space.shape,
    }
    assert set(shapes.values()) == {(z + 2 * hidden,)}, shapes
    env = dreamgym.DreamEnv("doom", world_model=model, observation="zh")
    assert env.observation_space.shape == (z + hidden,)
    assert env.reset(seed=0)[0].shape == (z + hidden,)
    with pytest.raises(ValueError, match="observation must be one of 'zh', 'zch', got 'hz'"):
        dreamgym.DreamEnv("doom", world_model=model, observation="hz")


def test_a_model_directory_says_which_input_its_controller_reads(tmp_path):
    model = small_world_model("doom")
    model.dream_defaults = ZCH
    inputs = model.z_dim + 2 * model.hidden_dim
    model.controller = LinearController(model.game, np.full((1, inputs), 0.01, np.float32), np.zeros(1, np.float32))
    save_world_model(model, tmp_path / "zch")
    loaded = load_world_model(tmp_path / "zch", device="cpu")
    assert loaded.dream_defaults.observation == "zch" and loaded.controller.obs_dim == inputs
    model.controller = LinearController.zeros(model.game, model.z_dim + model.hidden_dim)  # a [z, h] controller
    with pytest.raises(ValueError, match="its controller reads 24 inputs .* observation 'zch' has 40"):
        save_world_model(model, tmp_path / "mixed")
    config = json.loads((tmp_path / "zch" / "config.json").read_text())
    assert config["dream"]["observation"] == "zch"


def test_the_paper_preset_reads_zch_and_run_json_refuses_other_layouts():
    assert preset("doom", "paper").dream.observation == "zch"
    assert preset("doom", "cpu").dream.observation == "zh"
    with pytest.raises(ValueError, match="observation must be one of 'zh', 'zch'"):
        RunConfig.from_dict({"game": "doom", "preset": "paper", "dream": {"observation": "zcch"}})


def test_a_zch_run_trains_exports_and_plays_the_real_game_end_to_end(tiny_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_runs("doom"), run, ignore=shutil.ignore_patterns("model", "eval", "controller"))
    data = json.loads((run / "run.json").read_text())
    data["dream"]["observation"] = "zch"
    (run / "run.json").write_text(json.dumps(data))
    for command in (
        ["train-controller", str(run), "--generations", "2", "--population", "8", "--trials", "2"],
        ["export", str(run), "--to", str(tmp_path / "model")],
        ["evaluate", "LatentDoomTakeCover-v0", "--policy", str(tmp_path / "model"), "--episodes", "2"],
    ):
        result = dreamgym_cli(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    model = load_world_model(tmp_path / "model", device="cpu")
    assert model.dream_defaults.observation == "zch"
    assert model.controller.obs_dim == model.z_dim + 2 * model.hidden_dim
