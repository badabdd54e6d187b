"""Each bad input gets a clear error and changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import dreamgym
from dreamgym.checkpoint import ModelFileError, sha256_of

BAD_BOX_ACTIONS = [
    (np.zeros(2, np.float32), ValueError, "shape"),
    (np.zeros((1, 3), np.float32), ValueError, "shape"),
    (np.array([0.0, np.nan, 0.0]), ValueError, "NaN"),
    (np.array([0.0, np.inf, 0.0]), ValueError, "NaN or inf"),
    (np.array([2.0, 0.5, 0.0]), ValueError, "outside the bounds"),
    (np.array([0.0, -0.5, 0.0]), ValueError, "outside the bounds"),
    ("left", TypeError, "numeric action"),
    (None, TypeError, "numeric action"),
]
BAD_DISCRETE_ACTIONS = [
    (3, ValueError, r"\[0, 2\]"),
    (-1, ValueError, r"\[0, 2\]"),
    (1.5, TypeError, "integer action"),
    (float("nan"), TypeError, "integer action"),
    (np.array([1, 2]), TypeError, "integer action"),
    ("1", TypeError, "integer action"),
    (True, TypeError, "integer action"),
]


def directory_digest(path: Path) -> dict[str, str]:
    return {p.name: sha256_of(p) for p in sorted(path.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    "game,env_id,action,error,message",
    [("carracing", env_id, *case) for env_id in dreamgym.ENV_IDS["carracing"] for case in BAD_BOX_ACTIONS]
    + [("doom", env_id, *case) for env_id in dreamgym.ENV_IDS["doom"] for case in BAD_DISCRETE_ACTIONS]
    # the shipped dreams of env ids (Boxing: 18 discrete actions)
    + [
        (game, env_id, *case)
        for game, ids in dreamgym.ENV_IDS.items()
        if game not in ("carracing", "doom")
        for env_id in ids
        for case in [(18, ValueError, r"\[0, 17\]"), (-1, ValueError, r"\[0, 17\]"), *BAD_DISCRETE_ACTIONS[2:]]
    ],
)
def test_bad_action_is_refused_and_leaves_the_episode_unchanged(model_dirs, game, env_id, action, error, message):
    env = gym.make(env_id, world_model=str(model_dirs[game]))
    reference = gym.make(env_id, world_model=str(model_dirs[game]))
    good = env.action_space.sample()
    env.reset(seed=5)
    reference.reset(seed=5)
    with pytest.raises(error, match=message):
        env.step(action)
    observation, reward, *_ = env.step(good)
    expected, expected_reward, *_ = reference.step(good)
    np.testing.assert_array_equal(observation, expected)
    assert reward == expected_reward
    env.close()
    reference.close()


@pytest.mark.parametrize("game", sorted(dreamgym.ENV_IDS))
def test_step_before_reset_is_refused(model_dirs, game):
    env = dreamgym.DreamEnv(game, world_model=model_dirs[game])
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


@pytest.mark.parametrize("game", sorted(dreamgym.ENV_IDS))
def test_step_after_close_is_refused_like_step_before_reset(model_dirs, game):
    env = dreamgym.DreamEnv(game, world_model=model_dirs[game])
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())
    envs = dreamgym.DreamVectorEnv(game, num_envs=2, world_model=model_dirs[game], device="cpu")
    envs.reset(seed=0)
    envs.close()
    with pytest.raises(gym.error.ResetNeeded):
        envs.step(np.stack([envs.single_action_space.sample()] * 2))


@pytest.mark.parametrize(
    "options, error, words",
    [
        ([1], TypeError, "reset options must be a dict or None"),
        ({"bogus": 1}, ValueError, r"unknown reset option\(s\) \['bogus'\]"),
    ],
)
def test_reset_options_a_dream_does_not_know_are_refused(model_dirs, options, error, words):
    single = dreamgym.DreamEnv("doom", world_model=model_dirs["doom"])
    with pytest.raises(error, match=words):
        single.reset(seed=0, options=options)
    assert single.reset(seed=0, options={})[0].shape == single.observation_space.shape  # empty is fine
    envs = dreamgym.DreamVectorEnv("doom", num_envs=2, world_model=model_dirs["doom"], device="cpu")
    with pytest.raises(error, match=words):
        envs.reset(seed=0, options=options)
    envs.reset(seed=0, options={"reset_mask": np.ones(2, bool)})  # the one it knows


@pytest.mark.parametrize(
    "temperature,error",
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (1e300, ValueError),  # finite, but M's σ·√τ would overflow: refused here, not blamed on the weights
        ("hot", TypeError),
        (True, TypeError),
    ],
)
def test_bad_temperature_is_refused(model_dirs, temperature, error):
    with pytest.raises(error, match="temperature"):
        gym.make("DreamDoomTakeCover-v0", world_model=str(model_dirs["doom"]), temperature=temperature)


def test_unknown_world_model_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown world_model 'no_such_model'.*doom_take_cover"):
        gym.make("DreamDoomTakeCover-v0", world_model="no_such_model")
    assert not Path("no_such_model").exists()


def test_shipped_name_that_is_not_installed_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DREAMGYM_PRETRAINED", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"not installed.*dreamgym pipeline doom"):
        gym.make("DreamDoomTakeCover-v0")


def test_world_model_of_another_game_is_refused(model_dirs):
    with pytest.raises(ValueError, match="'carracing', not 'doom'"):
        gym.make("DreamDoomTakeCover-v0", world_model=str(model_dirs["carracing"]))


@pytest.mark.parametrize(
    "damage,message",
    [
        ("missing", "is missing"),
        ("truncated", "truncated"),
        ("tampered", "modified or corrupted"),
    ],
)
@pytest.mark.parametrize("file", ["vae.safetensors", "mdnrnn.safetensors", "initial_latents.safetensors"])
def test_damaged_weights_file_is_refused_by_name(model_dirs, tmp_path, damage, message, file):
    directory = tmp_path / "model"
    shutil.copytree(model_dirs["doom"], directory)
    path = directory / file
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:
        data = bytearray(path.read_bytes())
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    before = directory_digest(directory)
    with pytest.raises(ModelFileError, match=f"{file}.*{message}"):
        gym.make("DreamDoomTakeCover-v0", world_model=str(directory))
    assert directory_digest(directory) == before


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="config.json is missing"):
        dreamgym.load_world_model(tmp_path)


def test_an_empty_world_model_is_an_error_not_the_shipped_model():
    with pytest.raises(ValueError, match="world_model is empty"):
        gym.make("DreamDoomTakeCover-v0", world_model="")


@pytest.mark.parametrize("vector", [False, True])
def test_a_model_whose_first_latents_are_nan_fails_at_reset(vector):
    import torch
    from conftest import small_world_model

    from dreamgym.envs.vector import DreamVectorEnv

    model = small_world_model("doom")
    model.initial_mu = torch.full_like(model.initial_mu, float("nan"))
    env = DreamVectorEnv("doom", 2, world_model=model) if vector else dreamgym.DreamEnv("doom", world_model=model)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        env.reset(seed=0)


def test_the_latent_twin_checks_what_v_makes_of_the_first_frame(model_dirs):
    import torch

    env = gym.make("LatentDoomTakeCover-v0", world_model=str(model_dirs["doom"]), device="cpu")
    model = env.get_wrapper_attr("model")
    with torch.no_grad():
        model.vae.mu.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        env.reset(seed=0)
    env.close()


@pytest.mark.parametrize("vector", [False, True])
def test_model_producing_nan_raises_instead_of_handing_nan_to_the_agent(vector):
    import torch
    from conftest import small_world_model

    from dreamgym.envs.vector import DreamVectorEnv

    model = small_world_model("carracing")
    with torch.no_grad():
        model.mdnrnn.head.bias[-2] = float("nan")  # the reward head
    env = (
        DreamVectorEnv("carracing", 2, world_model=model)
        if vector
        else dreamgym.DreamEnv("carracing", world_model=model)
    )
    env.reset(seed=0)
    action = np.zeros((2, 3), np.float32) if vector else np.zeros(3, np.float32)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        env.step(action)


def test_a_dream_copied_or_pickled_mid_episode_must_be_reset_and_then_runs(model_dirs):
    import copy
    import pickle

    from gymnasium.error import ResetNeeded

    env = gym.make("DreamDoomTakeCover-v0", world_model=str(model_dirs["doom"]), device="cpu")
    env.reset(seed=0)
    env.step(0)
    for again in (copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        with pytest.raises(ResetNeeded):
            again.step(0)
        observation, _ = again.reset(seed=1)
        assert again.observation_space.contains(observation)
        again.step(0)
    env.step(0)  # the original goes on
