"""The native batched dream and its Stable-Baselines3 adapter."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_world_model
from gymnasium.vector import AutoresetMode

import dreamgym
from dreamgym.checkpoint import save_world_model
from dreamgym.envs.vector import DreamVectorEnv


@pytest.fixture(scope="module")
def geometric_dirs(tmp_path_factory) -> dict[str, str]:
    """Models whose episodes end with probability sigmoid(-2.2) ≈ 0.1 per step (sample_done=True)."""
    root = tmp_path_factory.mktemp("geometric")
    dirs = {}
    for game in ("carracing", "doom"):
        model = small_world_model(game, seed=3)
        with torch.no_grad():
            model.mdnrnn.head.weight[-1].zero_()
            model.mdnrnn.head.bias[-1].fill_(-2.2)
        dirs[game] = str(save_world_model(model, root / game))
    return dirs


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_make_vec_uses_the_native_batched_dream(model_dirs, game):
    env_id = dreamgym.ENV_IDS[game][0]
    envs = gym.make_vec(env_id, num_envs=8, world_model=str(model_dirs[game]), temperature=1.3)
    assert isinstance(envs, DreamVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.temperature == 1.3 and envs.max_episode_steps == gym.spec(env_id).max_episode_steps
    single = gym.make(env_id, world_model=str(model_dirs[game]))
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    observations, _ = envs.reset(seed=0)
    assert observations.shape == (8, single.observation_space.shape[0]) and observations.dtype == np.float32
    observations, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert rewards.shape == terminated.shape == truncated.shape == (8,)


def test_vector_env_enforces_its_own_time_limit_and_resets_next_step(model_dirs):
    model = small_world_model("doom")
    with torch.no_grad():
        model.mdnrnn.head.bias[-1].fill_(-50.0)
    envs = DreamVectorEnv("doom", num_envs=3, world_model=model, max_episode_steps=4)
    envs.reset(seed=1)
    for step in range(1, 5):
        observations, rewards, terminated, truncated, _ = envs.step(np.zeros(3, np.int64))
        assert truncated.all() == (step == 4) and not terminated.any()
    observations, rewards, terminated, truncated, _ = envs.step(np.zeros(3, np.int64))
    assert (rewards == 0).all() and not terminated.any() and not truncated.any()
    np.testing.assert_array_equal(observations[:, 8:], 0.0)  # fresh LSTM state after the reset


def test_same_step_autoreset_reports_the_final_observation(model_dirs):
    model = small_world_model("doom")
    with torch.no_grad():
        model.mdnrnn.head.bias[-1].fill_(-50.0)
    envs = DreamVectorEnv("doom", num_envs=2, world_model=model, max_episode_steps=2, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=0)
    envs.step(np.array([1, 2]))
    observations, _, _, truncated, info = envs.step(np.array([1, 2]))
    assert truncated.all() and info["_final_obs"].all()
    assert not np.array_equal(info["final_obs"][0], observations[0])
    np.testing.assert_array_equal(observations[:, 8:], 0.0)


def episode_statistics(envs: gym.vector.VectorEnv, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of finished episodes (NEXT_STEP reset steps excluded) and every step's reward."""
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    current = np.zeros(envs.num_envs)
    lengths, rewards = [], []
    for _ in range(steps):
        _, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        current += 1
        rewards.append(reward[current > 0])
        ended = terminated | truncated
        lengths.extend(current[ended])
        current[ended] = -1
    return np.array(lengths), np.concatenate(rewards)


def standard_error(values: np.ndarray) -> float:
    return float(np.std(values) / np.sqrt(len(values)))


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_native_statistics_match_the_sync_vector_env(geometric_dirs, game):
    env_id = dreamgym.ENV_IDS[game][0]
    kwargs = {"world_model": geometric_dirs[game], "sample_done": True, "temperature": 1.0}
    native = episode_statistics(gym.make_vec(env_id, num_envs=32, **kwargs), 500, seed=11)
    sync = episode_statistics(gym.make_vec(env_id, num_envs=32, vectorization_mode="sync", **kwargs), 500, seed=11)
    for a, b in zip(native, sync):  # episode lengths (geometric, mean 1/p ≈ 10), then rewards
        tolerance = 4 * np.hypot(standard_error(a), standard_error(b)) + 1e-9
        assert abs(a.mean() - b.mean()) < tolerance, (a.mean(), b.mean(), tolerance)
    assert 9 < native[0].mean() < 11


@pytest.mark.parametrize("actions,error", [
    (np.zeros(3, np.int64), ValueError),
    (np.array([0, 1, 3, 0]), ValueError),
    (np.zeros(4, np.float32), TypeError),
])
def test_bad_batched_actions_are_refused_and_change_nothing(model_dirs, actions, error):
    envs = DreamVectorEnv("doom", num_envs=4, world_model=str(model_dirs["doom"]))
    reference = DreamVectorEnv("doom", num_envs=4, world_model=str(model_dirs["doom"]))
    envs.reset(seed=2)
    reference.reset(seed=2)
    with pytest.raises(error):
        envs.step(actions)
    good = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(envs.step(good)[0], reference.step(good)[0])


def test_box_actions_with_nan_are_refused(model_dirs):
    envs = DreamVectorEnv("carracing", num_envs=2, world_model=str(model_dirs["carracing"]))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        envs.step(np.array([[0, 0.5, 0], [np.nan, 0, 0]], np.float32))
    with pytest.raises(gym.error.ResetNeeded):
        DreamVectorEnv("carracing", num_envs=2, world_model=str(model_dirs["carracing"])).step(np.zeros((2, 3)))


def test_sb3_adapter_reports_terminal_observation_and_truncation(model_dirs):
    model = small_world_model("doom")
    with torch.no_grad():
        model.mdnrnn.head.bias[-1].fill_(-50.0)
    venv = dreamgym.make_sb3_vec_env("DreamDoomTakeCover-v0", num_envs=3, world_model=model, max_episode_steps=2)
    first = venv.reset()
    assert first.shape == (3, 24)
    venv.step(np.array([0, 1, 2]))
    _, rewards, dones, infos = venv.step(np.array([0, 1, 2]))
    assert dones.all() and rewards.dtype == np.float32
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (24,)
        assert info["episode"]["l"] == 2


def test_sb3_ppo_trained_in_the_dream_loads_on_the_latent_twin(model_dirs, tmp_path):
    from stable_baselines3 import PPO

    venv = dreamgym.make_sb3_vec_env("DreamDoomTakeCover-v0", num_envs=16, world_model=str(model_dirs["doom"]))
    PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0).learn(512).save(tmp_path / "ppo")
    twin = gym.make("LatentDoomTakeCover-v0", world_model=str(model_dirs["doom"]))
    model = PPO.load(tmp_path / "ppo", env=twin)
    observation, _ = twin.reset(seed=0)
    action, _ = model.predict(observation, deterministic=True)
    twin.step(int(action))
    twin.close()
