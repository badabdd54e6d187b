"""SB3 agents saved without pickle (``dreamgym.policy``): the same actions after a reload, a
model directory that ships its agent scored by name, and hostile files refused."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from stable_baselines3 import A2C, PPO

from dreamgym.envs.sb3 import make_sb3_vec_env
from dreamgym.evaluate import SampledPolicy, evaluate, load_policy
from dreamgym.policy import AGENT_FILE, PolicyFileError, load_policy_file, save_policy


@pytest.mark.parametrize(
    "env_id,algorithm,world",
    [
        ("DreamDoomTakeCover-v0", PPO, "doom"),
        ("DreamCarRacing-v0", PPO, "carracing"),
        ("DreamCarRacing-v0", A2C, "carracing"),
    ],
)
def test_an_agent_saved_without_pickle_reloads_to_identical_actions(
    tmp_path, model_dirs, monkeypatch, env_id, algorithm, world
):
    venv = make_sb3_vec_env(env_id, 4, world_model=str(model_dirs[world]), device="cpu")
    extra = {"batch_size": 8} if algorithm is PPO else {}
    agent = algorithm("MlpPolicy", venv, n_steps=8, seed=0, device="cpu", **extra, policy_kwargs={"net_arch": [32, 16]})
    agent.learn(64)
    path = save_policy(agent, tmp_path / AGENT_FILE, {"note": "test"})

    def refuse(*args, **kwargs):
        raise AssertionError("loading an agent file must not unpickle anything")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_policy_file(path)
    observations = np.random.default_rng(0).normal(size=(50, *venv.observation_space.shape)).astype(np.float32)
    mine, _ = agent.predict(observations, deterministic=True)
    theirs, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(mine, theirs)
    assert loaded.metadata == {"note": "test"} and loaded.algorithm == algorithm.__name__


def test_a_model_directory_that_ships_its_agent_is_scored_without_trust(tmp_path, model_dirs):
    model = shutil.copytree(model_dirs["doom"], tmp_path / "model")
    venv = make_sb3_vec_env("DreamDoomTakeCover-v0", 2, world_model=str(model), device="cpu")
    agent = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu")
    save_policy(agent, model / AGENT_FILE)
    policy, directory = load_policy(model)
    assert directory == str(model) and policy.algorithm == "PPO"
    result = evaluate("LatentDoomTakeCover-v0", model, episodes=1, workers=1, env_kwargs={"device": "cpu"})
    assert result.episodes == 1 and result.lengths[0] > 0


def _rewrite_header(path, **changes):
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
    header.update(changes)
    save_file(tensors, str(path), metadata=header)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"format": "other"}, "not a dreamgym agent file"),
        ({"algorithm": "DQN"}, "algorithm must be one of"),
        ({"observation_shape": "[1000000000]"}, "observation_shape must be"),
        (
            {
                "policy": json.dumps(
                    {
                        "net_arch": [10**7],
                        "activation_fn": "Tanh",
                        "ortho_init": True,
                        "log_std_init": 0.0,
                        "use_sde": False,
                        "squash_output": False,
                        "share_features_extractor": True,
                    }
                )
            },
            "net_arch layers must be",
        ),
        (
            {
                "policy": json.dumps(
                    {
                        "net_arch": [64, 64],
                        "activation_fn": "os.system",
                        "ortho_init": True,
                        "log_std_init": 0.0,
                        "use_sde": False,
                        "squash_output": False,
                        "share_features_extractor": True,
                    }
                )
            },
            "activation_fn must be one of",
        ),
        ({"action_space": json.dumps({"type": "Discrete", "n": 5, "start": 0})}, "do not fit"),
        ({"action_space": "{not json"}, "damaged header"),
    ],
)
def test_a_hostile_agent_file_is_refused_before_anything_is_built(tmp_path, model_dirs, change, message):
    venv = make_sb3_vec_env("DreamDoomTakeCover-v0", 2, world_model=str(model_dirs["doom"]), device="cpu")
    path = save_policy(PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu"), tmp_path / AGENT_FILE)
    _rewrite_header(path, **change)
    with pytest.raises(PolicyFileError, match=message):
        load_policy_file(path)


def test_broken_weights_and_missing_files_are_clear_errors(tmp_path, model_dirs):
    venv = make_sb3_vec_env("DreamDoomTakeCover-v0", 2, world_model=str(model_dirs["doom"]), device="cpu")
    path = save_policy(PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu"), tmp_path / AGENT_FILE)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(PolicyFileError, match="NaN or inf"):
        load_policy_file(path)
    path.write_bytes(b"garbage")
    with pytest.raises(PolicyFileError, match="not a readable agent file"):
        load_policy_file(path)
    with pytest.raises(PolicyFileError, match="missing"):
        load_policy_file(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="only PPO, A2C"):
        from stable_baselines3 import DQN

        save_policy(DQN("MlpPolicy", venv, device="cpu", buffer_size=100), tmp_path / "dqn.safetensors")


def test_evaluate_plays_a_policy_with_the_noise_its_rounds_record_it_with(tmp_path, model_dirs):
    from dreamgym.checkpoint import load_world_model, save_controller
    from dreamgym.controller import LinearController
    from dreamgym.evaluate import NoisyPolicy, evaluate

    model = load_world_model(model_dirs["carracing"], device="cpu")
    controller = LinearController.zeros(model.game, model.observation_dim)
    path = tmp_path / "controller.safetensors"
    save_controller(controller, path)
    observation = np.zeros(model.observation_dim, np.float32)
    noisy = NoisyPolicy(controller, model.game, 0.5, np.random.default_rng(0))
    actions = np.array([noisy.predict(observation)[0] for _ in range(200)])
    space = model.game.action_space()
    assert np.all((actions >= space.low) & (actions <= space.high)) and actions.std(0).min() > 0.1
    kwargs = {"world_model": str(model_dirs["carracing"]), "device": "cpu"}
    plain = evaluate("DreamCarRacing-v0", path, 2, seed=5, workers=1, env_kwargs=kwargs)
    shaken = evaluate("DreamCarRacing-v0", path, 2, seed=5, workers=1, env_kwargs=kwargs, noise=0.5)
    again = evaluate("DreamCarRacing-v0", path, 2, seed=5, workers=1, env_kwargs=kwargs, noise=0.5)
    assert (plain.noise, shaken.noise) == (0.0, 0.5) and "noise 0.5" in shaken.summary()
    low, high = sorted(shaken.returns)
    assert f"worst {low:.1f}, best {high:.1f}" in shaken.summary()  # the spread, beside mean ± std
    assert shaken.returns != plain.returns and shaken.returns == again.returns  # seeded by the episode
    with pytest.raises(ValueError, match="noise must be a number in"):
        evaluate("DreamCarRacing-v0", path, 1, env_kwargs=kwargs, noise=2.0)


def test_evaluate_samples_an_sb3_agents_actions_from_its_own_distribution_when_asked(tmp_path, model_dirs):
    kwargs = {"world_model": str(model_dirs["carracing"]), "device": "cpu"}
    venv = make_sb3_vec_env("DreamCarRacing-v0", 4, **kwargs)
    agent = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu", policy_kwargs={"net_arch": [16]})
    path = save_policy(agent, tmp_path / AGENT_FILE)
    plain = evaluate("DreamCarRacing-v0", path, 3, seed=5, workers=1, env_kwargs=kwargs)
    sampled = evaluate("DreamCarRacing-v0", path, 3, seed=5, workers=1, env_kwargs=kwargs, sample=True)
    again = evaluate("DreamCarRacing-v0", path, 3, seed=5, workers=1, env_kwargs=kwargs, sample=True)
    assert sampled.sample and "sampled" in sampled.summary() and not plain.sample
    assert sampled.returns != plain.returns and sampled.returns == again.returns  # seeded by the episode
    with pytest.raises(ValueError, match="either with noise or sampled"):
        evaluate("DreamCarRacing-v0", path, 1, env_kwargs=kwargs, noise=0.1, sample=True)
    with pytest.raises(ValueError, match="random play, which has none"):
        evaluate("DreamCarRacing-v0", "random", 1, env_kwargs=kwargs, sample=True)


def test_a_gsde_agent_sampled_draws_its_exploration_matrix_per_episode_and_every_sde_sample_freq_steps():
    """SB3 draws a gSDE agent's exploration matrix again only while it learns: sampled play
    must draw it as training did, with the learned std, not replay the one drawn at build."""
    agent = PPO(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=4,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [8], "log_std_init": -3.0},
    )
    with torch.no_grad():
        agent.policy.log_std.fill_(0.0)  # learned since: std 1, not e^-3
    observation = np.array([1.0, 0.0, 0.5], np.float32)

    def actions(seed: int, steps: int) -> list[float]:
        torch.manual_seed(seed)
        sampled = SampledPolicy(agent)
        return [float(sampled.predict(observation)[0][0]) for _ in range(steps)]

    first = actions(1, 9)
    assert first[:4] == [first[0]] * 4 and first[4:8] == [first[4]] * 4 and len({first[0], first[4], first[8]}) == 3
    assert actions(1, 9) == first and actions(2, 1)[0] != first[0]  # seeded by the episode, drawn per episode
    mean, _ = agent.predict(observation, deterministic=True)
    spread = np.std([actions(seed, 1)[0] - float(mean[0]) for seed in range(200)])
    assert spread > 0.1  # the learned std; the matrix drawn at build (std e^-3) moves it ~0.01
