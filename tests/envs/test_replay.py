"""Dreams that start at any recorded real step (``dreamgym.replay``): the start is the step's
latent with M's state warmed up on the steps before it, the store grows while agents train and
stays bounded, and SB3 bootstraps the value at a horizon cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_world_model
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper

import dreamgym
from dreamgym.envs.sb3 import make_sb3_vec_env
from dreamgym.envs.vector import DreamVectorEnv
from dreamgym.files import npz_bytes
from dreamgym.replay import Replay

LENGTHS = (40, 9, 70)


def random_replay(model, lengths=LENGTHS, seed=0, capacity=10_000) -> Replay:
    generator = torch.Generator().manual_seed(seed)
    replay = Replay(model.z_dim, model.game.action_dim, capacity=capacity)
    for length in lengths:
        actions = torch.randint(model.game.action_dim, (length,), generator=generator)
        replay.add(torch.randn(length + 1, model.z_dim, generator=generator), model.game.encode_actions(actions))
    return replay


def twin_state(model, mu, actions, first, row, warmup):
    """What M's state is at ``row`` after the ``warmup`` steps before it (the latent twin's, if
    the window reaches the episode's first step)."""
    state = model.mdnrnn.initial_state(1)
    for t in range(max(first, row - warmup), row):
        state = model.advance(state, mu[t : t + 1], actions[t : t + 1])
    return state[0][0].numpy()


def locate(replay, z):
    mu, _, lengths = replay.arrays()
    row = int(np.flatnonzero((mu.numpy() == z).all(axis=1))[0])
    firsts = np.concatenate([[0], np.cumsum(lengths.numpy())[:-1]])
    return row, int(firsts[np.searchsorted(firsts, row, side="right") - 1])


@pytest.mark.parametrize("warmup", [5, 100])
def test_a_dream_started_at_a_stored_step_has_its_latent_and_ms_warmed_up_state(warmup):
    model = small_world_model("doom")
    replay = random_replay(model)
    mu, actions, _ = replay.arrays()
    env = dreamgym.DreamEnv("doom", world_model=model, starts="data", replay=replay, warmup=warmup, device="cpu")
    envs = DreamVectorEnv("doom", 16, world_model=model, starts="data", replay=replay, warmup=warmup, device="cpu")
    observations = [env.reset(seed=seed)[0] for seed in range(20)] + list(envs.reset(seed=0)[0])
    deep = 0
    for observation in observations:
        z, h = observation[: model.z_dim], observation[model.z_dim :]
        row, first = locate(replay, z)
        np.testing.assert_allclose(h, twin_state(model, mu, actions, first, row, warmup), rtol=0, atol=1e-5)
        deep += row - first > 5
    assert deep > 5  # starts deep inside episodes, not only first frames
    if warmup == 100:  # longer than every episode: exactly the latent twin's state
        row, first = locate(replay, observations[0][: model.z_dim])
        np.testing.assert_allclose(
            observations[0][model.z_dim :], twin_state(model, mu, actions, first, row, 10**6), rtol=0, atol=1e-5
        )


def test_the_replay_grows_while_a_dream_runs_without_a_new_model():
    model = small_world_model("doom")
    replay = random_replay(model, lengths=(30,))
    envs = DreamVectorEnv("doom", 32, world_model=model, starts="data", replay=replay, horizon=2, device="cpu")
    envs.reset(seed=0)
    marker = torch.full((50, model.z_dim), 7.0)  # an episode no dream could start in before
    replay.add(marker, model.game.encode_actions(torch.ones(49, dtype=torch.int64)))
    seen = False
    for _ in range(6):
        observations, *_ = envs.step(np.zeros(32, dtype=np.int64))
        seen |= bool((observations[:, : model.z_dim] == 7.0).all(axis=1).any())
    assert seen and replay.episodes == 2


def test_the_replay_is_bounded_and_drops_its_oldest_episodes():
    model = small_world_model("carracing")
    replay = Replay(model.z_dim, model.game.action_dim, capacity=100)
    for index in range(5):
        replay.add(torch.full((31, model.z_dim), float(index)), torch.zeros(30, model.game.action_dim))
    assert len(replay) == 90 and replay.lengths == [30, 30, 30]
    assert set(replay.arrays()[0][:, 0].tolist()) == {2.0, 3.0, 4.0}
    with pytest.raises(ValueError, match="does not fit"):
        replay.add(torch.zeros(200, model.z_dim), torch.zeros(200, model.game.action_dim))
    with pytest.raises(ValueError, match="shape"):
        replay.add(torch.zeros(10, model.z_dim + 1), torch.zeros(10, model.game.action_dim))
    with pytest.raises(ValueError, match="finite"):
        replay.add(torch.full((10, model.z_dim), float("nan")), torch.zeros(10, model.game.action_dim))
    assert len(replay) == 90  # a refused episode changes nothing


def test_a_cleared_replay_starts_dreams_only_from_what_is_added_after():
    model = small_world_model("doom")
    replay = random_replay(model, lengths=(30,))
    envs = DreamVectorEnv("doom", 8, world_model=model, starts="data", replay=replay, horizon=2, device="cpu")
    envs.reset(seed=0)
    replay.clear()  # a refined V: every episode is encoded again and added anew
    assert len(replay) == 0 and replay.episodes == 0
    replay.add(torch.full((21, model.z_dim), 7.0), model.game.encode_actions(torch.ones(20, dtype=torch.int64)))
    observations, _ = envs.reset(seed=1)
    assert (observations[:, : model.z_dim] == 7.0).all()


def test_a_million_steps_fit_in_a_few_hundred_megabytes():
    replay = Replay(64, 3, capacity=1_000_000)
    for _ in range(1000):
        replay.add(torch.zeros(1000, 64), torch.zeros(1000, 3))
    mu, actions, _ = replay.arrays()
    assert len(replay) == 1_000_000 and mu.nbytes + actions.nbytes <= 300e6


def test_a_dream_reads_the_replay_of_a_run_directory(tmp_path):
    model = small_world_model("doom")
    latents = tmp_path / "run" / "latents"
    latents.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, length in enumerate((12, 20)):
        arrays = {
            "mu": rng.normal(size=(length + 1, model.z_dim)).astype(np.float32),
            "logvar": np.zeros((length + 1, model.z_dim), np.float32),
            "actions": rng.integers(0, 3, length),
            "rewards": np.ones(length, np.float32),
            "dones": np.zeros(length, bool),
        }
        (latents / f"episode_{index:06d}.npz").write_bytes(npz_bytes(arrays))
    env = dreamgym.DreamEnv("doom", world_model=model, starts="data", replay=str(tmp_path / "run"), device="cpu")
    assert env.replay.lengths == [12, 20]
    observation, _ = env.reset(seed=0)
    locate(env.replay, observation[: model.z_dim])  # a stored step
    with pytest.raises(TypeError, match="replay must be"):
        dreamgym.DreamEnv("doom", world_model=model, starts="data", replay=42, device="cpu")
    with pytest.raises(ValueError, match="z of size"):
        dreamgym.DreamEnv("doom", world_model=model, starts="data", replay=Replay(5, 3), device="cpu")
    with pytest.raises(ValueError, match="needs real steps"):
        dreamgym.DreamEnv("doom", world_model=model, starts="data", device="cpu")


class RecordTerminals(VecEnvWrapper):
    """Keeps the terminal observations SB3's rollout sees, step by step."""

    def __init__(self, venv):
        super().__init__(venv)
        self.terminals: list[dict[int, np.ndarray]] = []

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        observations, rewards, dones, infos = self.venv.step_wait()
        self.terminals.append(
            {i: info["terminal_observation"] for i, info in enumerate(infos) if info.get("TimeLimit.truncated")}
        )
        return observations, rewards, dones, infos


class ValuesAtRolloutEnd(BaseCallback):
    """The value of every terminal observation, by the value function that collected them (SB3
    calls this after the rollout, before it trains)."""

    def __init__(self, venv: RecordTerminals) -> None:
        super().__init__()
        self.venv, self.values, self.rewards = venv, [], None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        with torch.no_grad():
            self.values = [
                {
                    env: self.model.policy.predict_values(torch.as_tensor(obs[None]))[0, 0].item()
                    for env, obs in terminals.items()
                }
                for terminals in self.venv.terminals
            ]
        self.rewards = self.model.rollout_buffer.rewards.copy()  # (n_steps, n_envs)


def test_ppo_bootstraps_gamma_times_the_value_at_a_horizon_cut():
    model = small_world_model("doom")
    venv = RecordTerminals(
        make_sb3_vec_env(
            "DreamDoomTakeCover-v0",
            4,
            world_model=model,
            starts="data",
            horizon=3,
            done_threshold=0.999,
            replay=random_replay(model),
            device="cpu",
        )
    )
    agent = PPO("MlpPolicy", venv, n_steps=9, batch_size=36, n_epochs=1, gamma=0.9, seed=0, device="cpu")
    check = ValuesAtRolloutEnd(venv)
    agent.learn(36, callback=check)  # one rollout of 9 steps x 4 dreams
    cuts = 0
    for step, values in enumerate(check.values):
        for env in range(4):
            if env in values:
                assert check.rewards[step, env] == pytest.approx(1.0 + 0.9 * values[env], abs=1e-5)
                assert abs(values[env]) > 1e-4  # the bootstrap is really there
                cuts += 1
            else:
                assert check.rewards[step, env] == 1.0  # Doom's alive reward, untouched
    assert cuts == 12  # every dream cut at steps 3, 6 and 9
