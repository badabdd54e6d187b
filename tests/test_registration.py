"""Every registered id: both env checkers, spaces, seeding, pickling."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamgym

ALL_IDS = [(game, env_id) for game, ids in dreamgym.ENV_IDS.items() for env_id in ids]


@pytest.fixture
def make(model_dirs):
    created = []

    def _make(game: str, env_id: str, **kwargs) -> gym.Env:
        env = gym.make(env_id, world_model=str(model_dirs[game]), **kwargs)
        created.append(env)
        return env

    yield _make
    for env in created:
        env.close()


@pytest.mark.parametrize("game,env_id", ALL_IDS)
def test_passes_gymnasium_and_sb3_env_checkers(make, game, env_id):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        gymnasium_check_env(make(game, env_id).unwrapped, skip_render_check=False)
        sb3_check_env(make(game, env_id).unwrapped, warn=True)


@pytest.mark.parametrize("game", sorted(dreamgym.ENV_IDS))
def test_dream_and_latent_twin_declare_identical_spaces(make, game):
    dream_id, latent_id = dreamgym.ENV_IDS[game]
    dream, twin = make(game, dream_id), make(game, latent_id)
    assert dream.observation_space == twin.observation_space
    assert dream.action_space == twin.action_space == dreamgym.get_game(game).action_space()
    assert dream.observation_space.dtype == np.float32


@pytest.mark.parametrize("game,env_id", ALL_IDS)
def test_registered_limits(game, env_id):
    spec = gym.spec(env_id)
    limits = {"carracing": (1000, 900), "doom": (2100, 750), "boxing": (2000, None)}  # Boxing: a bout is ~1,790 steps
    steps, threshold = limits[game]
    is_dream = env_id.startswith("Dream")  # the real game's threshold would stop SB3's callbacks on dream scores
    assert (spec.max_episode_steps, spec.reward_threshold) == (steps, None if is_dream else threshold)


def rollout(env: gym.Env, seed: int, steps: int = 50) -> tuple[np.ndarray, np.ndarray]:
    env.action_space.seed(1234)
    actions = [env.action_space.sample() for _ in range(steps)]
    observation, _ = env.reset(seed=seed)
    observations, rewards = [observation], []
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        rewards.append(reward)
        if terminated or truncated:
            observation, _ = env.reset()
    return np.stack(observations), np.array(rewards)


@pytest.mark.parametrize("game,env_id", ALL_IDS)
def test_same_seed_same_trajectory_and_different_seed_different(make, game, env_id):
    env = make(game, env_id)
    first, first_rewards = rollout(env, seed=7)
    second, second_rewards = rollout(make(game, env_id), seed=7)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_rewards, second_rewards)
    other, _ = rollout(env, seed=8)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("game,env_id", ALL_IDS)
def test_pickle_round_trip_gives_the_same_env(make, game, env_id):
    env = make(game, env_id)
    clone = pickle.loads(pickle.dumps(env))
    try:
        np.testing.assert_array_equal(rollout(env, seed=3, steps=10)[0], rollout(clone, seed=3, steps=10)[0])
    finally:
        clone.close()


def test_make_with_module_prefix_needs_no_prior_import(model_dirs):
    code = (
        "import gymnasium as gym, sys\n"
        "assert 'dreamgym' not in sys.modules\n"
        f"env = gym.make('dreamgym:DreamDoomTakeCover-v0', world_model={str(model_dirs['doom'])!r}, temperature=1.15)\n"
        "env.reset(seed=0); env.step(1); print(env.unwrapped.temperature)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.15"


@pytest.mark.parametrize("game", sorted(dreamgym.ENV_IDS))
def test_dream_renders_v_decoding(make, game):
    env = make(game, dreamgym.ENV_IDS[game][0], render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    human = gym.wrappers.HumanRendering(make(game, dreamgym.ENV_IDS[game][0], render_mode="rgb_array"))
    assert human.render_mode == "human"


def test_registering_another_model_over_a_shipped_id_warns(tmp_path):
    import shutil

    from dreamgym.games import pretrained_root

    shipped = {env_id: gym.registry[env_id] for env_id in dreamgym.ENV_IDS["boxing"]}
    mine = shutil.copytree(pretrained_root() / "boxing", tmp_path / "my_boxing")
    try:
        with pytest.warns(UserWarning, match="DreamBoxing-v0 and LatentBoxing-v0 now use the world model .*my_boxing"):
            assert dreamgym.register(mine) == dreamgym.ENV_IDS["boxing"]
        assert gym.spec("DreamBoxing-v0").kwargs["world_model"] == str(mine.resolve())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dreamgym.register(mine)  # the same model again: nothing changes, nothing to say
    finally:
        gym.registry.update(shipped)
