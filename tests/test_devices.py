"""Device plumbing: ``auto`` resolves to what is there, ``cpu`` works everywhere it can be given,
bad devices are clear errors. Tests that need CUDA skip without it (run them on a GPU machine)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import dreamgym
from dreamgym.checkpoint import load_world_model
from dreamgym.cli import build_parser, main
from dreamgym.cmaes import dream_returns
from dreamgym.controller import LinearController
from dreamgym.devices import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DREAM_IDS = ["DreamCarRacing-v0", "DreamDoomTakeCover-v0"]
LATENT_IDS = ["LatentCarRacing-v0", "LatentDoomTakeCover-v0"]
COMMANDS_WITH_A_DEVICE = {
    "train-vae": ["RUN"],
    "encode": ["RUN"],
    "train-mdnrnn": ["RUN"],
    "train-controller": ["RUN"],
    "evaluate": ["LatentDoomTakeCover-v0", "--policy", "random"],
    "pipeline": ["doom", "--out", "RUN"],
    "sweep-temperature": ["RUN"],
    "demo": [],
}


def test_auto_takes_cuda_when_there_is_a_gpu_and_the_cpu_otherwise():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    "device, error, words",
    [
        ("tpu", ValueError, "unknown device 'tpu'"),
        ("mps", ValueError, "unsupported device 'mps'"),
        ("cuda:99", ValueError, "cuda:99"),
        (3, TypeError, "device must be"),
    ],
)
def test_bad_devices_are_clear_errors(device, error, words):
    with pytest.raises(error, match=words):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(ValueError, match="asks for CUDA, but"):
        resolve_device("cuda")


@pytest.mark.parametrize("env_id", DREAM_IDS + LATENT_IDS)
def test_every_id_runs_on_an_explicit_cpu_and_refuses_a_bad_device(env_id, model_dirs):
    game = "doom" if "Doom" in env_id else "carracing"
    env = gym.make(env_id, world_model=str(model_dirs[game]), device="cpu")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.get_wrapper_attr("model").device == torch.device("cpu")
    env.close()
    with pytest.raises(ValueError, match="unknown device"):
        gym.make(env_id, world_model=str(model_dirs[game]), device="tpu")


@pytest.mark.parametrize("env_id", DREAM_IDS)
def test_vector_dreams_and_the_sb3_adapter_take_a_device(env_id, model_dirs):
    game = "doom" if "Doom" in env_id else "carracing"
    envs = gym.make_vec(env_id, num_envs=3, world_model=str(model_dirs[game]), device="cpu")
    envs.reset(seed=0)
    envs.step(envs.action_space.sample())
    venv = dreamgym.make_sb3_vec_env(env_id, 3, world_model=str(model_dirs[game]), device="cpu")
    venv.reset()
    with pytest.raises(ValueError, match="unknown device"):
        dreamgym.make_sb3_vec_env(env_id, 3, world_model=str(model_dirs[game]), device="gpu")


def test_a_loaded_world_model_stays_on_its_device_unless_one_is_named(model_dirs):
    model = load_world_model(model_dirs["doom"], device="cpu")
    env = gym.make("DreamDoomTakeCover-v0", world_model=model)
    assert env.unwrapped.model is model and model.device.type == "cpu"


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_A_DEVICE))
def test_every_computing_command_takes_device_and_refuses_a_bad_one(command, capsys):
    args = [command, *COMMANDS_WITH_A_DEVICE[command]]
    assert build_parser().parse_args([*args, "--device", "cpu"]).device == "cpu"
    assert build_parser().parse_args(args).device == "auto"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "argument --device: unknown device 'tpu'" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_cmaes_in_the_dream_runs_on_the_models_device(model_dirs, device):
    model = load_world_model(model_dirs["doom"], device=device)
    controller = LinearController.zeros(model.game, model.observation_dim)
    parameters = np.stack([controller.flat() + 0.1 * i for i in range(3)])
    generator = torch.Generator(device=model.device).manual_seed(0)
    returns = dream_returns(model, parameters, trials=2, temperature=1.0, generator=generator, max_steps=20)
    assert returns.shape == (3, 2) and np.all(returns >= 1)


@needs_cuda
@pytest.mark.parametrize("env_id", DREAM_IDS)
def test_dreams_on_cuda_hand_out_numpy(env_id, model_dirs):
    game = "doom" if "Doom" in env_id else "carracing"
    env = gym.make(env_id, world_model=str(model_dirs[game]), device="cuda")
    observation, _ = env.reset(seed=0)
    assert env.unwrapped.model.device.type == "cuda"
    assert isinstance(observation, np.ndarray)
    observation, reward, *_ = env.step(env.action_space.sample())
    assert isinstance(observation, np.ndarray) and isinstance(reward, float)
