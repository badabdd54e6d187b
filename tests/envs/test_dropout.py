"""Dropout dreams (Wellmer & Kwok 2021): each dream its own dropout mask on M, fixed for the episode."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_world_model
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamgym
from dreamgym.checkpoint import save_world_model
from dreamgym.envs.vector import DreamVectorEnv
from dreamgym.mdnrnn import dropout_masks
from dreamgym.world_model import WorldModel

STEPS = 50


def trained_with_dropout(game: str, rate: float, **kwargs) -> WorldModel:
    """The small model as if M had been trained with dropout ``rate`` (the same weights)."""
    model = small_world_model(game, **kwargs)
    model.mdnrnn.config = replace(model.mdnrnn.config, dropout=rate)
    return model


def actions_for(game: str, rng: np.random.Generator, num_envs: int | None = None) -> np.ndarray | int:
    """Valid actions drawn from ``rng``: one (``num_envs`` None) or a batch."""
    shape = () if num_envs is None else (num_envs,)
    if game == "doom":
        return rng.integers(0, 3, shape) if num_envs is not None else int(rng.integers(0, 3))
    return rng.uniform([-1, 0, 0], [1, 1, 1], (*shape, 3)).astype(np.float32)


RECORDED_TEMPERATURE = 1.0
"""The temperature the recorded trajectories were drawn at (the dream envs' default then, for
every game; now a game's own, 1.15 for Doom)."""


def single_trajectory(game: str, trained_rate: float = 0.0, model: WorldModel | None = None, **kwargs) -> np.ndarray:
    """50 steps of one seeded dream of the small model, or ``model`` (reset when it ends): every
    observation, reward, end and p(done), flat, float64."""
    model = model or trained_with_dropout(game, trained_rate)
    kwargs = {"temperature": RECORDED_TEMPERATURE, **kwargs}
    env = dreamgym.DreamEnv(game, world_model=model, sample_done=True, device="cpu", **kwargs)
    observation, _ = env.reset(seed=7)
    parts: list[object] = [observation]
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        observation, reward, terminated, _, info = env.step(actions_for(game, rng))
        parts += [observation, reward, terminated, info["done_probability"]]
        if terminated:
            observation, _ = env.reset()
            parts.append(observation)
    return flat(parts)


def vector_trajectory(game: str, trained_rate: float = 0.0, model: WorldModel | None = None, **kwargs) -> np.ndarray:
    """50 steps of 4 seeded batched dreams of the small model, or ``model``, with resets of every kind."""
    model = model or trained_with_dropout(game, trained_rate)
    kwargs = {"temperature": RECORDED_TEMPERATURE, **kwargs}
    envs = DreamVectorEnv(game, 4, world_model=model, sample_done=True, max_episode_steps=20, device="cpu", **kwargs)
    observations, _ = envs.reset(seed=7)
    parts: list[object] = [observations]
    rng = np.random.default_rng(0)
    for step in range(STEPS):
        observations, rewards, terminated, truncated, info = envs.step(actions_for(game, rng, 4))
        parts += [observations, rewards, terminated, truncated, info["done_probability"]]
        if step == 25:  # a partial reset through options
            observations, _ = envs.reset(options={"reset_mask": np.array([True, False, False, True])})
            parts.append(observations)
    return flat(parts)


def flat(parts: list[object]) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(part, dtype=np.float64)) for part in parts])


TRAJECTORIES = {"single": single_trajectory, "vector": vector_trajectory}
PLAIN_DREAMS = Path(__file__).with_name("plain_dreams.npz")
"""The plain dream's trajectories, as values: the same functions run on the code before dropout
existed (commit 0d2b3eb) give exactly these on the CPU that wrote them. A sha256 of them was kept
first, but another CPU's float kernels round differently in the last bits, so they are compared
to float32 rounding."""


def assert_plain_dream(trajectory: np.ndarray, kind: str, game: str) -> None:
    """``trajectory`` is the recorded plain dream: the same length (the same resets) and values
    equal to float32 rounding; a dream that drew one more number from its generator is far off."""
    with np.load(PLAIN_DREAMS) as recorded:
        np.testing.assert_allclose(trajectory, recorded[f"{kind}_{game}"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["single", "vector"])
@pytest.mark.parametrize("game", ["carracing", "doom"])
@pytest.mark.parametrize("trained_rate, dropout", [(0.0, None), (0.0, 0.0), (0.3, 0.0)])
def test_dropout_zero_reproduces_the_plain_dream(kind, game, trained_rate, dropout):
    """Seeded trajectories recorded before dropout existed: the plain dream (a model trained without
    dropout, or dropout=0.0 whatever M was trained with) draws nothing more from the generator."""
    assert_plain_dream(TRAJECTORIES[kind](game, trained_rate, dropout=dropout), kind, game)


@pytest.mark.parametrize("kind", ["single", "vector"])
def test_a_dropout_dream_is_another_trajectory(kind):
    with pytest.raises(AssertionError):
        assert_plain_dream(TRAJECTORIES[kind]("doom", dropout=0.3), kind, "doom")


def test_each_episode_draws_its_own_mask_and_keeps_it_to_its_end():
    env = dreamgym.DreamEnv("carracing", world_model=small_world_model("carracing"), dropout=0.5, device="cpu")
    assert env.dropout == 0.5 and env.dropout_mask is None
    env.reset(seed=3)
    first = env.dropout_mask.clone()
    assert first.shape == (1, env.model.hidden_dim)
    assert set(first.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    for _ in range(20):
        env.step(env.action_space.sample())
        assert torch.equal(env.dropout_mask, first)
    env.reset()
    assert not torch.equal(env.dropout_mask, first)
    env.reset(seed=3)
    assert torch.equal(env.dropout_mask, first)  # seeded like everything else in the dream


def test_every_step_of_an_episode_uses_the_mask_drawn_at_its_reset():
    """The env's trajectory equals M stepped by hand with the reset's mask at every step."""
    env = dreamgym.DreamEnv(
        "doom", world_model=small_world_model("doom"), dropout=0.5, temperature=1.2, sample_done=True, device="cpu"
    )
    observation, _ = env.reset(seed=4)
    model, mask, state = env.model, env.dropout_mask.clone(), env._state
    generator = torch.Generator().set_state(env._generator.get_state())
    for action in [0, 1, 2, 2, 1, 0, 1, 1, 2, 0]:
        observation, _, terminated, _, info = env.step(action)
        step = model.dream_step(state, model.action_tensor([action]), generator, True, env.unwrapped.settings)
        state = step.state
        assert torch.equal(state.dropout_mask, mask)
        np.testing.assert_array_equal(observation, state.observation()[0].numpy())
        assert info["done_probability"] == float(step.done_probability[0]) and terminated == bool(step.done[0])
        if terminated:
            break


def test_the_observation_shows_ms_unmasked_state():
    """Dropout acts on what M predicts; the h in the observation is M's state, as on the real game."""
    env = dreamgym.DreamEnv("doom", world_model=small_world_model("doom"), dropout=0.5, device="cpu")
    env.reset(seed=0)
    state = env._state
    observation, *_ = env.step(1)
    _, (h, _) = env.model.mdnrnn.step(state.z, env.model.action_tensor([1]), (state.h, state.c))
    np.testing.assert_array_equal(observation[env.model.z_dim :], h[0].numpy())


def same_state_predictions(dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and p(done) of 8 batched dreams put in the same state and given the same action."""
    envs = DreamVectorEnv("carracing", 8, world_model=small_world_model("carracing"), dropout=dropout, device="cpu")
    envs.reset(seed=0)
    envs.step(np.tile([[0.3, 0.5, 0.0]], (8, 1)).astype(np.float32))
    state = envs._state  # every dream in dream 0's state, each with its own mask:
    envs._state = state.select(torch.zeros(8, dtype=torch.int64))._replace(dropout_mask=state.dropout_mask)
    _, rewards, _, _, info = envs.step(np.tile([[-0.5, 1.0, 0.2]], (8, 1)).astype(np.float32))
    return rewards, info["done_probability"]


def test_dreams_with_their_own_masks_predict_differently_from_the_same_state():
    rewards, done_probability = same_state_predictions(0.5)
    assert len(np.unique(rewards)) == 8 and len(np.unique(done_probability)) == 8
    rewards, done_probability = same_state_predictions(0.0)
    assert len(np.unique(rewards)) == 1 and len(np.unique(done_probability)) == 1


def test_same_state_dreams_diverge_in_their_next_latent_mean():
    """M's predicted mean of z_{t+1} (the most likely component's μ) differs between two masks."""
    model = small_world_model("carracing")
    generator = torch.Generator().manual_seed(0)
    state = model.initial_state(1, generator)
    masks = dropout_masks((2, model.hidden_dim), 0.5, generator)
    action = model.action_tensor([[0.0, 1.0, 0.0]])
    means = []
    for mask in masks:
        output, _ = model.mdnrnn.step(state.z, action, (state.h, state.c), mask[None])
        means.append((output.logits.softmax(-1) * output.mu).sum(-1))
    assert not torch.allclose(means[0], means[1])


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_envs_draw_a_mask_per_env_when_it_resets_and_at_no_other_step(mode):
    model = small_world_model("doom")
    with torch.no_grad():
        model.mdnrnn.head.bias[-1].fill_(-50.0)  # episodes end only by truncation
    envs = DreamVectorEnv(
        "doom", 6, world_model=model, dropout=0.5, max_episode_steps=5, autoreset_mode=mode, device="cpu"
    )
    assert envs.dropout_mask is None
    envs.reset(seed=1)
    masks = envs.dropout_mask.clone()
    assert masks.shape == (6, model.hidden_dim)
    assert len({tuple(row.tolist()) for row in masks}) == 6  # each dream its own
    reset_step = 5 if mode == AutoresetMode.SAME_STEP else 6
    for step in range(1, reset_step + 1):
        envs.step(np.ones(6, np.int64))
        changed = (envs.dropout_mask != masks).any(dim=1)
        assert changed.all() if step == reset_step else not changed.any()
    masks = envs.dropout_mask.clone()
    envs.reset(options={"reset_mask": np.array([True, False, False, True, False, False])})
    changed = (envs.dropout_mask != masks).any(dim=1)
    assert changed.tolist() == [True, False, False, True, False, False]


def test_the_tensor_path_draws_the_numpy_paths_masks():
    kwargs = {"world_model": small_world_model("doom"), "dropout": 0.2, "sample_done": True, "device": "cpu"}
    numpy_envs, tensor_envs = DreamVectorEnv("doom", 5, **kwargs), DreamVectorEnv("doom", 5, **kwargs)
    numpy_envs.reset(seed=2)
    tensor_envs.reset_tensor(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(30):
        actions = rng.integers(0, 3, 5)
        observations = numpy_envs.step(actions)[0]
        tensors = tensor_envs.step_tensor(torch.from_numpy(actions))[0]
        np.testing.assert_array_equal(observations, tensors.numpy())
        assert torch.equal(numpy_envs.dropout_mask, tensor_envs.dropout_mask)


@pytest.mark.parametrize(
    "dropout, error",
    [
        (-0.1, ValueError),
        (1.0, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("0.1", TypeError),
        (True, TypeError),
        ([0.1], TypeError),
    ],
)
@pytest.mark.parametrize("vector", [False, True])
def test_bad_dropout_is_refused(model_dirs, dropout, error, vector):
    env_id = dreamgym.ENV_IDS["doom"][0]
    with pytest.raises(error, match="dropout"):
        if vector:
            gym.make_vec(env_id, num_envs=2, world_model=str(model_dirs["doom"]), dropout=dropout)
        else:
            gym.make(env_id, world_model=str(model_dirs["doom"]), dropout=dropout)


def test_a_model_built_in_python_with_an_impossible_rate_is_refused_at_make():
    with pytest.raises(ValueError, match="from M's config"):
        dreamgym.DreamEnv("doom", world_model=trained_with_dropout("doom", 1.0), device="cpu")
    envs = DreamVectorEnv("doom", 2, world_model=trained_with_dropout("doom", 1.0), dropout=0.0, device="cpu")
    assert envs.dropout == 0.0  # an explicit rate overrides it


@pytest.fixture(scope="module")
def dropout_dirs(tmp_path_factory) -> dict[str, str]:
    """Small models saved as if M had been trained with dropout 0.1."""
    root = tmp_path_factory.mktemp("dropout")
    return {game: str(save_world_model(trained_with_dropout(game, 0.1), root / game)) for game in ("carracing", "doom")}


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_a_model_trained_with_dropout_dreams_at_its_rate_unless_told_otherwise(dropout_dirs, game):
    env_id = dreamgym.ENV_IDS[game][0]
    env = gym.make(env_id, world_model=dropout_dirs[game])
    env.reset(seed=0)
    assert env.unwrapped.dropout == 0.1 and env.unwrapped.dropout_mask is not None
    plain = gym.make(env_id, world_model=dropout_dirs[game], dropout=0.0)
    plain.reset(seed=0)
    assert plain.unwrapped.dropout == 0.0 and plain.unwrapped.dropout_mask is None
    assert gym.make(env_id, world_model=dropout_dirs[game], dropout=0.25).unwrapped.dropout == 0.25
    envs = gym.make_vec(env_id, num_envs=3, world_model=dropout_dirs[game])
    envs.reset(seed=0)
    assert envs.dropout == 0.1 and envs.dropout_mask.shape == (3, envs.model.hidden_dim)
    assert gym.make_vec(env_id, num_envs=3, world_model=dropout_dirs[game], dropout=0.0).dropout == 0.0


def test_sb3_vec_env_passes_dropout_through(dropout_dirs):
    venv = dreamgym.make_sb3_vec_env(
        "DreamDoomTakeCover-v0", num_envs=2, world_model=dropout_dirs["doom"], dropout=0.0, device="cpu"
    )
    assert venv.venv.vector_env.dropout == 0.0
    venv = dreamgym.make_sb3_vec_env(
        "DreamDoomTakeCover-v0", num_envs=2, world_model=dropout_dirs["doom"], device="cpu"
    )
    assert venv.venv.vector_env.dropout == 0.1


def test_a_dropout_dream_pickles_with_its_rate(dropout_dirs):
    env = gym.make("DreamDoomTakeCover-v0", world_model=dropout_dirs["doom"], dropout=0.3)
    assert pickle.loads(pickle.dumps(env)).unwrapped.dropout == 0.3


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_a_dropout_dream_passes_both_env_checkers(dropout_dirs, game):
    env = gym.make(dreamgym.ENV_IDS[game][0], world_model=dropout_dirs[game], dropout=0.2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        gymnasium_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
