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
from dreamgym.devices import resolve_device
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
    envs = DreamVectorEnv(
        "doom", num_envs=2, world_model=model, max_episode_steps=2, autoreset_mode=AutoresetMode.SAME_STEP
    )
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


@pytest.mark.parametrize(
    "actions,error",
    [
        (np.zeros(3, np.int64), ValueError),
        (np.array([0, 1, 3, 0]), ValueError),
        (np.zeros(4, np.float32), TypeError),
    ],
)
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


def random_actions(space: gym.spaces.Space, rng: np.random.Generator) -> np.ndarray:
    """A batch of valid actions for ``space`` (a batched Discrete or Box) drawn from ``rng``."""
    if isinstance(space, gym.spaces.MultiDiscrete):
        return rng.integers(0, space.nvec)
    return rng.uniform(space.low, space.high).astype(np.float32)


def assert_same_step(numpy_step: tuple, tensor_step: tuple, same_step: bool) -> None:
    """The numpy path's step equals the tensor path's, key by key, in the numpy path's conventions."""
    observations, rewards, terminated, truncated, info = numpy_step
    tensors, tensor_rewards, tensor_terminated, tensor_truncated, tensor_info = tensor_step
    np.testing.assert_array_equal(observations, tensors.numpy())
    np.testing.assert_array_equal(rewards, tensor_rewards.numpy().astype(np.float64))
    np.testing.assert_array_equal(terminated, tensor_terminated.numpy())
    np.testing.assert_array_equal(truncated, tensor_truncated.numpy())
    np.testing.assert_array_equal(info["done_probability"], tensor_info["done_probability"].numpy())
    np.testing.assert_array_equal(info["_done_probability"], tensor_info["_done_probability"].numpy())
    ended = terminated | truncated
    if same_step:
        final_mask = tensor_info["_final_obs"].numpy()
        np.testing.assert_array_equal(final_mask, ended)
        if ended.any():
            np.testing.assert_array_equal(info["_final_obs"], final_mask)
            np.testing.assert_array_equal(
                np.stack(info["final_obs"][ended]), tensor_info["final_obs"][final_mask].numpy()
            )
        else:
            assert "final_obs" not in info
        np.testing.assert_array_equal(tensor_info["final_obs"][~final_mask].numpy(), tensors[~final_mask].numpy())


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_tensor_path_gives_the_numpy_trajectories(geometric_dirs, game, mode):
    kwargs = {
        "world_model": geometric_dirs[game],
        "sample_done": True,
        "max_episode_steps": 12,
        "autoreset_mode": mode,
        "device": "cpu",
    }
    numpy_envs, tensor_envs = DreamVectorEnv(game, 6, **kwargs), DreamVectorEnv(game, 6, **kwargs)
    observations, _ = numpy_envs.reset(seed=5)
    tensors, _ = tensor_envs.reset_tensor(seed=5)
    np.testing.assert_array_equal(observations, tensors.numpy())
    rng = np.random.default_rng(5)
    terminations = truncations = 0
    for step in range(60):
        actions = random_actions(numpy_envs.action_space, rng)
        numpy_step = numpy_envs.step(actions)
        tensor_step = tensor_envs.step_tensor(torch.from_numpy(actions))
        assert_same_step(numpy_step, tensor_step, mode == AutoresetMode.SAME_STEP)
        terminations += numpy_step[2].sum()
        truncations += numpy_step[3].sum()
        if step == 30:  # a partial reset through options, as numpy and as a tensor mask
            mask = np.array([True, False, True, False, False, True])
            observations, _ = numpy_envs.reset(options={"reset_mask": mask})
            tensors, _ = tensor_envs.reset_tensor(options={"reset_mask": torch.from_numpy(mask)})
            np.testing.assert_array_equal(observations, tensors.numpy())
    assert terminations > 10 and truncations > 0, (terminations, truncations)


def check_tensor_step_types(envs: DreamVectorEnv, device: torch.device) -> None:
    observations, _ = envs.reset_tensor(seed=0)
    assert observations.device == device and observations.dtype == torch.float32
    actions = torch.zeros(envs.num_envs, dtype=torch.int64, device=device)
    for _ in range(3):
        observations, rewards, terminated, truncated, info = envs.step_tensor(actions)
    assert observations.shape == (envs.num_envs, envs.single_observation_space.shape[0])
    assert rewards.dtype == torch.float32 and terminated.dtype == truncated.dtype == torch.bool
    assert rewards.shape == terminated.shape == truncated.shape == (envs.num_envs,)
    tensors = [
        observations,
        rewards,
        terminated,
        truncated,
        info["final_obs"],
        info["_final_obs"],
        info["done_probability"],
        info["_done_probability"],
        envs._steps,
        envs._needs_reset,
    ]
    assert all(tensor.device == device for tensor in tensors)


def test_tensor_path_returns_tensors_on_the_env_device(model_dirs):
    envs = DreamVectorEnv(
        "doom", num_envs=4, world_model=str(model_dirs["doom"]), autoreset_mode=AutoresetMode.SAME_STEP
    )
    assert envs.device == resolve_device("auto")  # the default device is "auto"
    check_tensor_step_types(
        DreamVectorEnv(
            "doom",
            num_envs=4,
            world_model=str(model_dirs["doom"]),
            device="cpu",
            autoreset_mode=AutoresetMode.SAME_STEP,
        ),
        torch.device("cpu"),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tensor_path_stays_on_the_gpu_and_matches_the_numpy_path(model_dirs):
    kwargs = {"world_model": str(model_dirs["doom"]), "device": "cuda", "autoreset_mode": AutoresetMode.SAME_STEP}
    check_tensor_step_types(DreamVectorEnv("doom", num_envs=4, **kwargs), torch.device("cuda", 0))
    numpy_envs, tensor_envs = DreamVectorEnv("doom", 4, **kwargs), DreamVectorEnv("doom", 4, **kwargs)
    numpy_envs.reset(seed=1)
    tensor_envs.reset_tensor(seed=1)
    for actions in ([0, 1, 2, 1], [2, 2, 0, 1]):
        observations = numpy_envs.step(np.array(actions))[0]
        tensors = tensor_envs.step_tensor(torch.tensor(actions, device="cuda"))[0]
        np.testing.assert_array_equal(observations, tensors.cpu().numpy())


@pytest.mark.parametrize(
    "game,actions,error,message",
    [
        ("doom", torch.zeros(3, dtype=torch.int64), ValueError, "shape"),
        ("doom", torch.zeros(4, 1, dtype=torch.int64), ValueError, "shape"),
        ("doom", torch.zeros(4), TypeError, "integer"),
        ("doom", torch.zeros(4, dtype=torch.bool), TypeError, "integer"),
        ("doom", torch.tensor([0, 1, 3, 0]), ValueError, r"\[0, 2\]"),
        ("doom", torch.tensor([0, -1, 2, 0]), ValueError, r"\[0, 2\]"),
        ("doom", np.zeros(4, np.int64), TypeError, "torch.Tensor"),
        ("carracing", torch.zeros(4, 2), ValueError, "shape"),
        ("carracing", torch.zeros(4, 3, dtype=torch.complex64), TypeError, "real"),
        ("carracing", torch.tensor([[0, 0.5, 0]] * 3 + [[float("nan"), 0, 0]]), ValueError, "NaN"),
        ("carracing", torch.tensor([[0, 0.5, 0]] * 3 + [[0, float("inf"), 0]]), ValueError, "NaN or inf"),
        ("carracing", torch.tensor([[0, 0.5, 0]] * 3 + [[0, 1.5, 0]]), ValueError, "bounds"),
    ],
)
def test_bad_tensor_actions_are_refused_and_change_nothing(model_dirs, game, actions, error, message):
    envs = DreamVectorEnv(game, num_envs=4, world_model=str(model_dirs[game]), device="cpu")
    reference = DreamVectorEnv(game, num_envs=4, world_model=str(model_dirs[game]), device="cpu")
    envs.reset_tensor(seed=2)
    reference.reset_tensor(seed=2)
    with pytest.raises(error, match=message):
        envs.step_tensor(actions)
    good = torch.tensor([0, 1, 2, 1]) if game == "doom" else torch.tensor([[0.0, 0.5, 0.0]] * 4)
    torch.testing.assert_close(envs.step_tensor(good)[0], reference.step_tensor(good)[0], rtol=0, atol=0)


def test_unchecked_tensor_actions_still_get_type_and_shape_checks(model_dirs):
    envs = DreamVectorEnv(
        "carracing", num_envs=2, world_model=str(model_dirs["carracing"]), device="cpu", check_action_values=False
    )
    envs.reset_tensor(seed=0)
    envs.step_tensor(torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0]]))  # out of bounds, not checked
    with pytest.raises(ValueError, match="shape"):
        envs.step_tensor(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="real"):
        envs.step_tensor(torch.zeros(2, 3, dtype=torch.complex64))


def test_tensor_path_needs_a_reset_and_a_tensor_mask(model_dirs):
    envs = DreamVectorEnv("doom", num_envs=3, world_model=str(model_dirs["doom"]), device="cpu")
    with pytest.raises(gym.error.ResetNeeded):
        envs.step_tensor(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="first reset"):
        envs.reset_tensor(seed=0, options={"reset_mask": torch.tensor([True, False, True])})
    envs.reset_tensor(seed=0)
    with pytest.raises(ValueError, match="bool tensor"):
        envs.reset_tensor(options={"reset_mask": np.ones(3, bool)})
    with pytest.raises(ValueError, match="bool tensor"):
        envs.reset_tensor(options={"reset_mask": torch.ones(2, dtype=torch.bool)})


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


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"num_envs": 0}, "num_envs must be a whole number from 1 to 4,194,304"),
        ({"num_envs": 10**9}, "num_envs must be a whole number from 1 to 4,194,304"),  # not numpy's MemoryError
        ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps must be a positive integer"),
        ({"num_envs": 2, "max_episode_steps": -3}, "max_episode_steps must be a positive integer"),
    ],
)
def test_bad_vector_settings_are_refused(model_dirs, kwargs, words):
    with pytest.raises(ValueError, match=words):
        DreamVectorEnv("doom", world_model=str(model_dirs["doom"]), device="cpu", **kwargs)


def test_autoreset_disabled_leaves_ended_envs_to_the_callers_reset(model_dirs):
    envs = gym.make_vec(
        "DreamDoomTakeCover-v0",
        num_envs=2,
        world_model=str(model_dirs["doom"]),
        device="cpu",
        max_episode_steps=3,
        autoreset_mode="disabled",
    )
    assert envs.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    envs.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, _ = envs.step(np.zeros(2, np.int64))
    ended = terminated | truncated
    assert ended.all()
    _, rewards, terminated, truncated, _ = envs.step(np.zeros(2, np.int64))  # not reset by step: still over the cap
    assert (truncated | terminated).all()
    envs.reset(options={"reset_mask": np.array([True, False])})
    _, _, terminated, truncated, _ = envs.step(np.zeros(2, np.int64))
    assert not truncated[0] and (truncated[1] or terminated[1])
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        gym.make_vec(
            "DreamDoomTakeCover-v0", num_envs=2, world_model=str(model_dirs["doom"]), autoreset_mode="sometimes"
        )
