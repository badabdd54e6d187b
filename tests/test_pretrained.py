"""The shipped models with a controller or an agent: it beats random play on a few real
episodes (a quick check; the 100-episode scores are benchmarks in the model cards). A dream
shipped with neither (an env-id game whose agents are SB3 ones, e.g. `examples/ppo_boxing.py`)
has its agents' scores in its card instead."""

from __future__ import annotations

import pytest

import dreamgym
from dreamgym.checkpoint import SHIPPED_MODELS, pretrained_root
from dreamgym.evaluate import evaluate, load_policy
from dreamgym.policy import AGENT_FILE, SavedPolicy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "name", sorted(name for name in SHIPPED_MODELS if (pretrained_root() / name / "controller.safetensors").exists())
)
def test_shipped_controller_beats_random_play_on_the_real_game(name):
    directory = pretrained_root() / name
    env_id = dreamgym.ENV_IDS[SHIPPED_MODELS[name]][1]
    kwargs = {"world_model": str(directory)}
    controller = evaluate(env_id, directory, episodes=6, seed=777, workers=2, env_kwargs=kwargs)
    random = evaluate(env_id, "random", episodes=6, seed=777, workers=2, env_kwargs=kwargs)
    assert controller.mean > random.mean, (controller.summary(), random.summary())


@pytest.mark.parametrize(
    "name", sorted(name for name in SHIPPED_MODELS if (pretrained_root() / name / AGENT_FILE).exists())
)
def test_shipped_agent_loads_without_pickle_and_beats_random_play_on_the_real_game(name):
    """The agent a model directory ships (``agent.safetensors``) is what ``--policy DIR`` plays,
    loaded without --trust-zip, and played with the noise its card scores it with."""
    directory = pretrained_root() / name
    env_id = dreamgym.ENV_IDS[SHIPPED_MODELS[name]][1]
    policy, source = load_policy(directory)
    assert source == str(directory) and isinstance(policy, SavedPolicy), policy  # the weights, not an SB3 .zip
    kwargs = {"world_model": str(directory)}
    agent = evaluate(env_id, directory, episodes=4, seed=777, workers=2, env_kwargs=kwargs, noise=0.1)
    random = evaluate(env_id, "random", episodes=4, seed=777, workers=2, env_kwargs=kwargs)
    assert agent.mean > random.mean + 100, (agent.summary(), random.summary())
