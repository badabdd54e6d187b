"""Every script in examples/ runs as written (tiny budgets, small models, the real games)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_command

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "script,game,budget",
    [
        ("cmaes_doom.py", "doom", ["--generations", "2", "--population", "8", "--trials", "2"]),
        ("dqn_doom.py", "doom", ["--steps", "1024"]),
        ("ppo_doom.py", "doom", ["--steps", "1024"]),
        ("ppo_carracing.py", "carracing", ["--steps", "1024"]),
    ],
)
def test_example_trains_in_the_dream_and_reports_a_real_score(model_dirs, tmp_path, script, game, budget):
    out = tmp_path / ("out.zip" if "cmaes" not in script else "out")
    result = run_command(
        [
            sys.executable,
            str(EXAMPLES / script),
            "--world-model",
            str(model_dirs[game]),
            "--episodes",
            "2",
            "--out",
            str(out),
            *budget,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 2 episodes" in result.stdout.splitlines()[-1]


def test_ppo_boxing_trains_each_seed_in_the_shipped_boxing_dream_and_scores_it_against_random_play(
    model_dirs, tmp_path
):
    result = run_command(
        [
            sys.executable,
            str(EXAMPLES / "ppo_boxing.py"),
            "--world-model",
            str(model_dirs["boxing"]),
            "--steps",
            "1024",
            "--seeds",
            "0,1",
            "--episodes",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith(("random", "seed"))] == [
        "random actions",
        "seed 0",
        "seed 1",
    ]
    assert lines[-1].startswith("mean over 2 training seeds: ") and "(random: " in lines[-1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ppo_seed0.zip", "ppo_seed1.zip"]
