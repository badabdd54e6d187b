"""`gym.make_vec(id, n, vectorization_mode="async")`: Gymnasium's own vectorizer runs a dream in
worker processes, including workers forked after torch started its threads in the parent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_command

from dreamgym.checkpoint import CONFIG_FILE, pretrained_root

# The shipped model: its loading runs parallel torch operations, which a small test model's does not.
ASYNC_DREAM = """
import gymnasium as gym, numpy as np, torch
import dreamgym
a = torch.randn(512, 512)
(a @ a).sum()  # torch's thread pool is running before the workers fork
env = gym.make_vec("DreamDoomTakeCover-v0", 2, vectorization_mode="async", vector_kwargs={"context": "fork"})
first, _ = env.reset(seed=0)
observations, rewards, terminated, truncated, _ = env.step(np.array([1, 2]))
env.close()
assert first.shape == observations.shape == (2, env.single_observation_space.shape[0])
print("stepped", rewards.tolist())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_async_make_vec_of_a_dream_with_forked_workers_resets_and_steps(tmp_path):
    if not (pretrained_root() / "doom_take_cover" / CONFIG_FILE).is_file():
        pytest.skip("the shipped Doom model is not installed")
    result = run_command([sys.executable, "-c", ASYNC_DREAM], cwd=Path(__file__).parents[2], timeout=120)
    assert result.returncode == 0, f"exit {result.returncode} (-9: hung and was killed)\n{result.stderr[-3000:]}"
    assert result.stdout.strip() == "stepped [1.0, 1.0]"
