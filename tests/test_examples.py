"""Every script in examples/ runs as written (tiny budgets, small models, the real games)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_command

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script,game,budget", [
    ("cmaes_doom.py", "doom", ["--generations", "2", "--population", "8", "--trials", "2"]),
    ("dqn_doom.py", "doom", ["--steps", "1024"]),
    ("ppo_doom.py", "doom", ["--steps", "1024"]),
    ("ppo_carracing.py", "carracing", ["--steps", "1024"]),
])
def test_example_trains_in_the_dream_and_reports_a_real_score(model_dirs, tmp_path, script, game, budget):
    out = tmp_path / ("out.zip" if "cmaes" not in script else "out")
    result = run_command(
        [sys.executable, str(EXAMPLES / script), "--world-model", str(model_dirs[game]), "--episodes", "2",
         "--out", str(out), *budget],
        cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 2 episodes" in result.stdout.splitlines()[-1]
