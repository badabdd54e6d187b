"""Stable-Baselines3 actor-critic agents (PPO, A2C) saved without pickle: the policy's weights in
safetensors, what rebuilds it (its algorithm, spaces and network settings) as JSON in the same
file's header. Loading one runs no code from the file, so a model directory can ship its agent
(``agent.safetensors``) and ``dreamgym evaluate`` scores it without ``--trust-zip``.

```python
from dreamgym.policy import save_policy, load_policy_file
save_policy(ppo, "runs/car/model/agent.safetensors")     # ppo: a trained stable_baselines3.PPO
agent = load_policy_file("runs/car/model/agent.safetensors")
action, _ = agent.predict(observation, deterministic=True)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors import safe_open

from dreamgym.files import atomic_write, write_safetensors

AGENT_FILE = "agent.safetensors"
FORMAT = "dreamgym-sb3-policy"
ALGORITHMS = ("PPO", "A2C")
ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU")
MAX_UNITS = 4096
MAX_LAYERS = 8
MAX_INPUTS = 1 << 16
MAX_ACTIONS = 1 << 12


class PolicyFileError(ValueError):
    """An agent file is missing, damaged or not one dreamgym wrote; the message names it."""


def save_policy(agent: Any, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``agent``'s policy (an SB3 PPO or A2C with an MLP policy on a flat Box observation)
    to ``path``, atomically. ValueError for an agent this format cannot hold."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor

    algorithm = type(agent).__name__
    policy = agent.policy
    if algorithm not in ALGORITHMS or not isinstance(policy, ActorCriticPolicy):
        raise ValueError(
            f"only {', '.join(ALGORITHMS)} agents with an actor-critic policy are saved without pickle, got {algorithm}"
        )
    if policy.features_extractor_class is not FlattenExtractor or not isinstance(
        policy.observation_space, gym.spaces.Box
    ):
        raise ValueError("only MLP policies on a flat Box observation are saved without pickle")
    activation = policy.activation_fn.__name__
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation} is not one of {ACTIVATIONS}")
    settings = {
        "net_arch": policy.net_arch,
        "activation_fn": activation,
        "ortho_init": bool(policy.ortho_init),
        "log_std_init": float(policy.log_std_init),
        "use_sde": bool(policy.use_sde),
        "squash_output": bool(policy.squash_output),
        "share_features_extractor": bool(policy.share_features_extractor),
    }
    header = {
        "format": FORMAT,
        "algorithm": algorithm,
        "policy": json.dumps(settings),
        "observation_shape": json.dumps(list(policy.observation_space.shape)),
        "action_space": json.dumps(_space_record(policy.action_space)),
        "metadata": json.dumps(metadata or {}),
    }
    tensors = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: write_safetensors(tensors, tmp, metadata=header))
    return path


def _space_record(space: gym.spaces.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1:
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist()}
    raise ValueError(f"only Discrete and 1-D float32 Box action spaces are saved without pickle, got {space}")


def _space(record: Any, path: Path) -> gym.spaces.Space:
    if not isinstance(record, dict):
        raise PolicyFileError(f"{path}: action_space must be a JSON object")
    if record.get("type") == "Discrete":
        n, start = record.get("n"), record.get("start", 0)
        if (
            not (isinstance(n, int) and isinstance(start, int))
            or isinstance(n, bool)
            or isinstance(start, bool)
            or not 1 <= n <= MAX_ACTIONS
        ):
            raise PolicyFileError(f"{path}: a Discrete action space needs an integer n in [1, {MAX_ACTIONS}]")
        return gym.spaces.Discrete(n, start=start)
    if record.get("type") == "Box":
        low, high = record.get("low"), record.get("high")
        if (
            not isinstance(low, list)
            or not isinstance(high, list)
            or len(low) != len(high)
            or not 1 <= len(low) <= MAX_ACTIONS
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low + high)
        ):
            raise PolicyFileError(f"{path}: a Box action space needs lists low and high of equal length")
        low_array, high_array = np.array(low, np.float32), np.array(high, np.float32)
        if not (np.all(np.isfinite(low_array)) and np.all(np.isfinite(high_array)) and np.all(low_array <= high_array)):
            raise PolicyFileError(f"{path}: a Box action space needs finite bounds with low <= high")
        return gym.spaces.Box(low_array, high_array, dtype=np.float32)
    raise PolicyFileError(f"{path}: action_space type must be 'Discrete' or 'Box', got {record.get('type')!r}")


def _net_arch(value: Any, path: Path) -> list[int] | dict[str, list[int]]:
    def layers(sizes: Any) -> list[int]:
        if (
            not isinstance(sizes, list)
            or len(sizes) > MAX_LAYERS
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_UNITS for s in sizes)
        ):
            raise PolicyFileError(f"{path}: net_arch layers must be at most {MAX_LAYERS} integers in [1, {MAX_UNITS}]")
        return sizes

    if isinstance(value, dict) and set(value) <= {"pi", "vf"}:
        return {key: layers(sizes) for key, sizes in value.items()}
    return layers(value)


class SavedPolicy:
    """An SB3 policy rebuilt from an agent file: ``predict`` as SB3's, on the CPU."""

    def __init__(self, policy: Any, algorithm: str, metadata: dict[str, Any]) -> None:
        self.policy, self.algorithm, self.metadata = policy, algorithm, metadata
        self.observation_space, self.action_space = policy.observation_space, policy.action_space

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[Any, None]:
        action, _ = self.policy.predict(observation, deterministic=deterministic)
        return action, None


def load_policy_file(path: str | os.PathLike) -> SavedPolicy:
    """An agent file written by :func:`save_policy`, every field checked before the network is
    built and every tensor's shape against it; nothing is unpickled."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"agent file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise PolicyFileError(f"{path} is not a readable agent file ({error})") from error
    if header.get("format") != FORMAT:
        raise PolicyFileError(f"{path} is not a dreamgym agent file (format {header.get('format')!r})")
    algorithm = header.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise PolicyFileError(f"{path}: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    try:
        settings = json.loads(header["policy"])
        shape = json.loads(header["observation_shape"])
        action_record = json.loads(header["action_space"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, ValueError) as error:
        raise PolicyFileError(f"{path}: damaged header ({error})") from None
    if (
        not isinstance(shape, list)
        or len(shape) != 1
        or not isinstance(shape[0], int)
        or isinstance(shape[0], bool)
        or not 1 <= shape[0] <= MAX_INPUTS
    ):
        raise PolicyFileError(f"{path}: observation_shape must be [n] with 1 <= n <= {MAX_INPUTS}, got {shape!r}")
    if not isinstance(settings, dict) or set(settings) != {
        "net_arch",
        "activation_fn",
        "ortho_init",
        "log_std_init",
        "use_sde",
        "squash_output",
        "share_features_extractor",
    }:
        raise PolicyFileError(f"{path}: the policy settings are not the ones dreamgym writes")
    if settings["activation_fn"] not in ACTIVATIONS:
        raise PolicyFileError(f"{path}: activation_fn must be one of {ACTIVATIONS}")
    log_std = settings["log_std_init"]
    if isinstance(log_std, bool) or not isinstance(log_std, (int, float)) or not np.isfinite(log_std):
        raise PolicyFileError(f"{path}: log_std_init must be a finite number")
    if not all(
        isinstance(settings[key], bool)
        for key in ("ortho_init", "use_sde", "squash_output", "share_features_extractor")
    ):
        raise PolicyFileError(
            f"{path}: ortho_init, use_sde, squash_output and share_features_extractor must be booleans"
        )
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(shape[0],), dtype=np.float32)
    policy = ActorCriticPolicy(
        observation_space,
        _space(action_record, path),
        lambda _: 0.0,
        net_arch=_net_arch(settings["net_arch"], path),
        activation_fn=getattr(torch.nn, settings["activation_fn"]),
        ortho_init=settings["ortho_init"],
        log_std_init=float(log_std),
        use_sde=settings["use_sde"],
        squash_output=settings["squash_output"],
        share_features_extractor=settings["share_features_extractor"],
    )
    expected = {key: tuple(value.shape) for key, value in policy.state_dict().items()}
    if shapes != expected:
        raise PolicyFileError(f"{path}: its tensors do not fit the policy its header describes")
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        raise PolicyFileError(f"{path}: the agent's weights hold NaN or inf")
    policy.load_state_dict(tensors)
    policy.set_training_mode(False)
    return SavedPolicy(policy, algorithm, metadata if isinstance(metadata, dict) else {})
