"""The data collectors on the real games."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import dreamgym  # noqa: F401  (registers the ids)
from dreamgym.collect import collect
from dreamgym.config import CollectConfig, RunConfig
from dreamgym.episodes import episode_files, read_episode
from dreamgym.evaluate import act
from dreamgym.games import CarRacingPilot, lookup, on_road, signed_angle
from dreamgym.pipeline import collect_stage, init_run
from dreamgym.training import StageError


@pytest.fixture(scope="module")
def doom_agent(model_dirs, tmp_path_factory):
    """An untrained SB3 PPO agent on the small Doom model's latent observation, saved as a .zip."""
    env = gym.make("LatentDoomTakeCover-v0", world_model=str(model_dirs["doom"]), device="cpu")
    path = tmp_path_factory.mktemp("agent") / "ppo.zip"
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu").save(path)
    env.close()
    return path


def test_signed_angle_is_positive_counter_clockwise():
    assert np.isclose(signed_angle(np.array([1.0, 0.0]), np.array([0.0, 2.0])), np.pi / 2)
    assert np.isclose(signed_angle(np.array([1.0, 0.0]), np.array([0.0, -1.0])), -np.pi / 2)
    assert np.isclose(signed_angle(np.array([1.0, 1.0]), np.array([2.0, 2.0])), 0.0)


def test_the_carracing_pilot_drives_along_the_track_with_settings_drawn_per_episode():
    env = lookup("carracing").make_real_env()
    try:
        for seed in (0, 1):
            pilot = CarRacingPilot(np.random.default_rng(seed), env)
            env.reset(seed=seed)
            total, road_steps = 0.0, 0
            for _ in range(300):
                action = pilot(None)
                assert env.action_space.contains(action)
                _, reward, terminated, truncated, _ = env.step(action)
                total += reward
                road_steps += on_road(env.unwrapped)
                assert not (terminated or truncated)
            # Random actions earn about -30 in 300 steps and barely move the car.
            assert total > 100 and road_steps > 200, (seed, total, road_steps)
        assert CarRacingPilot(np.random.default_rng(0), env).target_speed != pilot.target_speed
    finally:
        env.close()


def test_the_carracing_pilot_stops_stands_and_drives_on():
    env = lookup("carracing").make_real_env()
    try:
        pilot = CarRacingPilot(np.random.default_rng(0), env)
        env.reset(seed=0)
        speeds = []
        for step in range(400):
            pilot.stop_rate = 1.0 if step == 150 else 0.0  # one stop, at speed, on the road
            env.step(pilot(None))
            speeds.append(float(np.linalg.norm(env.unwrapped.car.hull.linearVelocity)))
        assert speeds[149] > 20, speeds[149]
        assert min(speeds[150:270]) < 1.0, "braked to a standstill"
        assert speeds[-1] > 20, "and drove on"
    finally:
        env.close()


def test_an_sb3_agent_records_episodes_with_the_actions_it_takes_on_the_latent_twin(model_dirs, doom_agent, tmp_path):
    config = CollectConfig(
        episodes=2, workers=1, seed=7, max_steps=25, policy=str(doom_agent), world_model=str(model_dirs["doom"])
    )
    summaries = collect("doom", tmp_path, config)
    assert sorted(s.index for s in summaries) == [0, 1]
    agent = PPO.load(doom_agent, device="cpu")
    env = gym.make("LatentDoomTakeCover-v0", world_model=str(model_dirs["doom"]), device="cpu")
    try:
        for index, path in enumerate(episode_files(tmp_path)):
            recorded = read_episode(path, lookup("doom"))["actions"]
            observation, _ = env.reset(seed=7 + index)
            expected = []
            for _ in recorded:  # noise 0: every action is the agent's own
                expected.append(act(agent, observation))
                observation, *_ = env.step(expected[-1])
            assert list(recorded) == expected and 0 < len(recorded) <= 25
    finally:
        env.close()


def test_an_agent_must_come_with_the_world_model_it_was_trained_in(model_dirs, doom_agent, tmp_path):
    with pytest.raises(ValueError, match="needs the world model it was trained in"):
        collect("doom", tmp_path / "a", CollectConfig(episodes=1, policy=str(doom_agent)))
    with pytest.raises(ValueError, match="is a carracing model, not doom"):
        collect(
            "doom",
            tmp_path / "b",
            CollectConfig(episodes=1, policy=str(doom_agent), world_model=str(model_dirs["carracing"])),
        )
    with pytest.raises(ValueError, match="acts in Discrete"):
        collect(
            "carracing",
            tmp_path / "c",
            CollectConfig(episodes=1, policy=str(doom_agent), world_model=str(model_dirs["carracing"])),
        )
    assert not any((tmp_path / name).exists() for name in "abc")  # refused before anything is written


def test_a_run_loads_an_sb3_agent_only_when_trusted(model_dirs, doom_agent, tmp_path):
    init_run(
        tmp_path,
        "doom",
        "tiny",
        episodes=1,
        workers=1,
        max_steps=5,
        policy=str(doom_agent),
        world_model=str(model_dirs["doom"]),
    )
    with pytest.raises(StageError, match="--trust-zip"):
        collect_stage(tmp_path)
    assert not (tmp_path / "episodes").exists()
    assert "recorded 1 episodes" in str(collect_stage(tmp_path, trust_zip=True))
    assert RunConfig.load(tmp_path).collect.world_model == str(model_dirs["doom"])
