"""The shipped models: their controllers beat random play on a few real episodes (a quick check;
the 100-episode scores are benchmarks in the model cards)."""

from __future__ import annotations

import pytest

from dreamgym.checkpoint import CONFIG_FILE, SHIPPED_MODELS, pretrained_root
from dreamgym.evaluate import evaluate
from dreamgym.games import get_game

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_controller_beats_random_play_on_the_real_game(name):
    directory = pretrained_root() / name
    if not (directory / CONFIG_FILE).is_file():
        pytest.skip(f"{name} is not shipped yet (pretrained/{name} has no {CONFIG_FILE})")
    env_id = get_game(SHIPPED_MODELS[name]).latent_env_id
    kwargs = {"world_model": str(directory)}
    controller = evaluate(env_id, directory, episodes=6, seed=777, workers=2, env_kwargs=kwargs)
    random = evaluate(env_id, "random", episodes=6, seed=777, workers=2, env_kwargs=kwargs)
    assert controller.mean > random.mean, (controller.summary(), random.summary())
