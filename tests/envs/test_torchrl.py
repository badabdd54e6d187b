"""TorchRL, as its users reach a Gymnasium env: ``GymEnv`` by id, ``GymWrapper`` of a vector env,
``check_env_specs`` and ``rollout``. TorchRL is a test dependency (``make install``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torchrl.envs import GymEnv, GymWrapper
from torchrl.envs.utils import check_env_specs

import dreamgym


def test_a_dream_id_passes_torchrl_spec_checks_and_rolls_out_as_gymnasium_steps_it(model_dirs):
    world_model = str(model_dirs["doom"])
    env = GymEnv("DreamDoomTakeCover-v0", world_model=world_model, temperature=0.5)
    check_env_specs(env, seed=3)
    env.set_seed(7)
    rollout = env.rollout(12, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([12])

    # the same steps through Gymnasium: TorchRL's set_seed is reset(seed=7), its rollout a
    # further reset(); then the same actions give the same observations and rewards
    plain = gym.make("DreamDoomTakeCover-v0", world_model=world_model, temperature=0.5)
    plain.reset(seed=7)
    observation, _ = plain.reset()
    np.testing.assert_allclose(rollout["observation"][0].numpy(), observation, atol=1e-6)
    for step in range(12):
        if step > 0 and bool(rollout["next", "done"][step - 1]):
            break  # the episode ended and TorchRL reset it
        action = int(rollout["action"][step].argmax())  # TorchRL's one-hot Discrete action
        observation, reward, *_ = plain.step(action)
        np.testing.assert_allclose(rollout["next", "observation"][step].numpy(), observation, atol=1e-6)
        assert float(rollout["next", "reward"][step]) == np.float32(reward)


def test_a_batched_dream_wrapped_by_torchrl_resets_its_ended_dreams(model_dirs):
    envs = gym.make_vec(
        "DreamDoomTakeCover-v0",
        num_envs=4,
        world_model=str(model_dirs["doom"]),
        autoreset_mode=AutoresetMode.SAME_STEP,
        max_episode_steps=5,
    )
    env = GymWrapper(envs)
    assert env.batch_size == torch.Size([4])
    check_env_specs(env, seed=0)
    rollout = env.rollout(12, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([4, 12])
    assert rollout["next", "truncated"][:, 4].all()  # the env's own time limit, seen by TorchRL
    assert torch.isfinite(rollout["next", "observation"]).all()


def test_the_real_games_latent_twin_passes_torchrl_spec_checks(model_dirs):
    env = GymEnv(dreamgym.ENV_IDS["doom"][1], world_model=str(model_dirs["doom"]), max_episode_steps=20)
    check_env_specs(env, seed=0)
