"""`dreamgym iterate`: rounds of collect -> refine M -> train the agent -> score, on the real games."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command

from dreamgym.config import IterateConfig, RunConfig
from dreamgym.evaluate import EvalResult
from dreamgym.files import LOCK_FILE
from dreamgym.games import CARRACING, DOOM
from dreamgym.iterate import (
    RoundRow,
    iterate,
    load_settings,
    save_settings,
    stop_reason,
)
from dreamgym.rundir import RunDir
from dreamgym.training import StageError


def row(k: int, real: float, steps: int = 1000) -> RoundRow:
    return RoundRow(
        round=k, data_steps=steps, eval_steps=0, dream_mean=real + 100, real_mean=real, real_std=1.0, seconds={}
    )


def test_the_rounds_stop_at_the_round_limit_the_step_budget_or_when_reality_stops_improving():
    config = IterateConfig(rounds=5, patience=2, max_real_steps=10_000)
    assert stop_reason([row(0, 100)], config) is None
    assert stop_reason([row(0, 100), row(1, 150), row(2, 140)], config) is None  # one round without gain
    assert "no better real score for 2 rounds (best: round 1)" in stop_reason(
        [row(0, 100), row(1, 150), row(2, 140), row(3, 150)], config
    )  # a tie is no gain
    assert "budget" in stop_reason([row(0, 100, steps=10_000)], config)
    assert "5 rounds done" in stop_reason([row(k, 100 + k) for k in range(5)], config)
    assert stop_reason([row(0, 100), row(1, 90), row(2, 80)], IterateConfig(rounds=5, patience=0)) is None


def test_settings_are_checked_before_anything_is_written_and_the_agent_stays_fixed(tmp_path):
    with pytest.raises(ValueError, match=r"rounds must be an integer in \[1, 1000\]"):
        load_settings(tmp_path / "a", DOOM, None, {"rounds": 0})
    with pytest.raises(StageError, match="dqn needs discrete actions"):
        load_settings(tmp_path / "b", CARRACING, None, {"agent": "dqn"})
    with pytest.raises(ValueError, match="needs members >= 2"):  # the defences of the robust-dreams issue
        load_settings(tmp_path / "b", DOOM, None, {"dream": {"ensemble": "pessimist"}})
    with pytest.raises(ValueError, match="unknown fields \\['bogus'\\]"):
        load_settings(tmp_path / "b", DOOM, None, {"dream": {"bogus": 1}})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(StageError, match="--trust-zip"):  # a PPO run loads back the agents it saves
        iterate(tmp_path / "d", "doom", preset="tiny", agent="ppo")
    assert not (tmp_path / "d").exists()
    config, preset = load_settings(tmp_path / "c", DOOM, "tiny", {"agent": "ppo", "rounds": 2})
    assert (config.agent, config.rounds, preset) == ("ppo", 2, "tiny")
    save_settings(tmp_path / "c", DOOM, preset, config)
    config, preset = load_settings(tmp_path / "c", DOOM, None, {"rounds": 4})  # stop rules may change
    assert (config.agent, config.rounds, preset) == ("ppo", 4, "tiny")
    save_settings(tmp_path / "c", DOOM, preset, config)
    with pytest.raises(StageError, match="has eval_seed 20000, not 0"):  # rounds compare on the same seeds
        load_settings(tmp_path / "c", DOOM, None, {"eval_seed": 0})
    with pytest.raises(StageError, match="has agent 'ppo', not 'cmaes'"):
        load_settings(tmp_path / "c", DOOM, None, {"agent": "cmaes"})
    with pytest.raises(StageError, match="iterates doom, not carracing"):
        load_settings(tmp_path / "c", CARRACING, None, {})
    assert json.loads((tmp_path / "c" / "iterate.json").read_text())["settings"]["rounds"] == 4


def test_an_edited_tuning_seed_in_iterate_json_is_refused_once_round_0_is_scored(tmp_path):
    run = tmp_path / "run"
    config, preset = load_settings(run, DOOM, "tiny", {})
    save_settings(run, DOOM, preset, config)
    scored = RunDir(run).round(0).tuning_result
    scored.parent.mkdir(parents=True)
    n = config.eval_episodes
    EvalResult("LatentDoomTakeCover-v0", n, 0.0, 0.0, [0.0] * n, [1] * n, config.eval_seed, "p").save(scored)
    assert load_settings(run, DOOM, None, {})[0] == config  # untouched: it loads
    stored = json.loads(RunDir(run).iterate_settings.read_text())
    stored["settings"]["eval_seed"] = 0  # edited by hand, past the FROZEN check on overrides
    RunDir(run).iterate_settings.write_text(json.dumps(stored))
    with pytest.raises(StageError, match="round 0 was scored on .* from seed 20000: the file was edited"):
        load_settings(run, DOOM, None, {})


def iterate_command(game: str, run: Path, agent: str, refresh_v: str) -> list[str]:
    defended = ["--members", "2", "--dream", "ensemble=pessimist", "--dream", "starts=data"] if game == "doom" else []
    return [
        sys.executable,
        "-m",
        "dreamgym.cli",
        "iterate",
        game,
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--agent",
        agent,
        "--rounds",
        "2",
        "--episodes",
        "3",
        "--eval-episodes",
        "2",
        "--refine-epochs",
        "1",
        "--agent-steps",
        "2048",
        "--patience",
        "5",
        "--device",
        "cpu",
        "--trust-zip",
        "--refresh-v",
        refresh_v,
        "--refine-v-frames",
        "64",
        *defended,
    ]


# Doom keeps V (0: never refreshed); CarRacing's round 2 always refines it (any ratio > 0.001)
@pytest.mark.parametrize("game,agent,refresh_v", [("doom", "cmaes", "0"), ("carracing", "ppo", "0.001")])
def test_two_rounds_on_the_real_game_resume_after_a_sigkill_in_round_two(tmp_path, game, agent, refresh_v):
    run = tmp_path / "run"
    command = iterate_command(game, run, agent, refresh_v)
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    new_episodes: list[Path] = []
    deadline = time.time() + 600
    while not new_episodes and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
        if (run / "round_1" / "episodes").is_dir():  # round 2's own recordings: files, not links to round 1's
            new_episodes = [p for p in (run / "round_1" / "episodes").glob("episode_*.npz") if not p.is_symlink()]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert new_episodes, "the kill must land while round 2 records its episodes"
    round_0 = {p: p.stat().st_mtime_ns for p in (run / "round_0").rglob("*") if p.is_file() and p.name != LOCK_FILE}
    kept = {p: p.stat().st_mtime_ns for p in new_episodes}
    settings = (run / "round_1" / "run.json").read_text()  # a run.json that names another agent is refused
    assert '"../round_0/' in settings  # run.json names round 0's agent relative to the round
    (run / "round_1" / "run.json").write_text(settings.replace('"../round_0/', f'"{tmp_path / "other"}/'))
    refused = run_command(command, cwd=tmp_path)
    assert refused.returncode == 1 and "but round 1 records with" in refused.stderr, refused.stderr[-2000:]
    (run / "round_1" / "run.json").write_text(settings)

    result = run_command(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {
        p: p.stat().st_mtime_ns for p in (run / "round_0").rglob("*") if p.is_file() and p.name != LOCK_FILE
    } == round_0  # untouched
    assert {p: p.stat().st_mtime_ns for p in new_episodes} == kept  # what was recorded is kept, not redone
    rows = json.loads((run / "rounds.json").read_text())
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["data_steps"] > rows[0]["data_steps"] > 0 and rows[1]["eval_steps"] > rows[0]["eval_steps"] > 0
    table = (run / "rounds.md").read_text()
    assert "| 1 " in table and "Stopped: 2 rounds done." in table and (run / "rounds.png").stat().st_size > 0
    collect = json.loads((run / "round_1" / "run.json").read_text())["collect"]
    agent_file = "model" if agent == "cmaes" else "agent.zip"
    assert collect["policy"] == f"../round_0/{agent_file}"  # stored relative to the round: a moved run goes on
    assert RunConfig.load(run / "round_1").collect.policy == str(run.resolve() / "round_0" / agent_file)
    round_1 = json.loads((run / "round_1" / "run.json").read_text())
    assert round_1["mdnrnn"]["epochs"] == 1  # refined, not retrained
    if game == "doom":  # every round trains in the defended dream, its members refined together
        assert round_1["mdnrnn"]["members"] == 2 and round_1["dream"]["ensemble"] == "pessimist"
        assert (run / "round_1" / "mdnrnn_member_1" / "checkpoint.pt").is_file()
        assert json.loads((run / "best" / "config.json").read_text())["dream"]["starts"] == "data"
    v_check = json.loads((run / "round_1" / "v_check.json").read_text())
    assert v_check["old_error"] > 0 and v_check["new_error"] > 0 and rows[1]["v_ratio"] > 0
    v_file, latents = run / "round_1" / "vae" / "checkpoint.pt", list((run / "round_1" / "latents").glob("*.npz"))
    assert len(latents) == 6
    if refresh_v == "0":  # round 0's V and latents, linked
        assert not v_check["refresh"] and sum(p.is_symlink() for p in latents) == 3
        assert os.path.samefile(v_file, run / "round_0" / "vae" / "checkpoint.pt")  # a hard link
    else:  # its own V, warm-started from round 0's for one pass of 64 frames; every episode encoded again
        assert v_check["refresh"] and rows[1]["v_refreshed"]
        assert not os.path.samefile(v_file, run / "round_0" / "vae" / "checkpoint.pt")
        assert not any(p.is_symlink() for p in latents) and "(V refined)" in table
        assert json.loads((run / "round_1" / "run.json").read_text())["vae"]["frames_per_epoch"] == 64
    best = max(rows, key=lambda r: r["real_mean"])
    assert json.loads((run / "best" / "round.json").read_text())["round"] == best["round"]
    best_agent = "controller.safetensors" if agent == "cmaes" else "agent.zip"
    assert (run / "best" / "config.json").is_file() and (run / "best" / best_agent).is_file()
    card = (run / "best" / "MODEL_CARD.md").read_text()
    assert "## Iterative rounds" in card and f"This model is round {best['round']}." in card
    assert f"Built with round {best['round']} of `dreamgym iterate {game} --out RUN " in card
    assert "--rounds 2 --episodes 3 " in card and "--preset tiny` (settings in config.json)" in card
    assert (run / "best" / "pictures" / "rounds.png").is_file()

    again = run_command(command, cwd=tmp_path)  # finished: nothing is redone
    assert again.returncode == 0 and "stopped: 2 rounds done" in again.stdout
    (run / "round_1" / "round.json").write_text('{"round": "one"')
    damaged = run_command(command, cwd=tmp_path)
    assert damaged.returncode == 1 and f"{run / 'round_1' / 'round.json'} is damaged" in damaged.stderr


def test_a_run_starts_from_a_finished_run_and_an_sb3_agent_of_any_algorithm(tmp_path, tiny_runs):
    from stable_baselines3 import A2C

    from dreamgym.envs.sb3 import make_sb3_vec_env
    from dreamgym.evaluate import sb3_algorithm

    start = tiny_runs("doom")
    agent = A2C(
        "MlpPolicy",
        make_sb3_vec_env("DreamDoomTakeCover-v0", 2, world_model=str(start / "model"), device="cpu"),
        n_steps=8,
        seed=0,
        device="cpu",
    )
    agent.learn(32)
    agent.save(tmp_path / "a2c.zip")
    before = {p: p.stat().st_mtime_ns for p in start.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dreamgym.cli",
        "iterate",
        "doom",
        "--out",
        str(run),
        "--agent",
        str(tmp_path / "a2c.zip"),
        "--start",
        str(start),
        "--rounds",
        "2",
        "--episodes",
        "2",
        "--eval-episodes",
        "2",
        "--refine-epochs",
        "1",
        "--agent-steps",
        "64",
        "--device",
        "cpu",
    ]
    refused = run_command(command, cwd=tmp_path)  # the agent's .zip is loaded: consent first
    assert refused.returncode == 1 and "--trust-zip" in refused.stderr and not run.exists()
    result = run_command(command + ["--trust-zip"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    after = {p: p.stat().st_mtime_ns for p in start.rglob("*") if p.is_file() and p.name != LOCK_FILE}
    assert after == before  # the start run is only read (and locked while the rounds run)
    round_0 = run / "round_0"
    assert all(p.is_symlink() for p in (round_0 / "episodes").glob("*.npz"))  # linked, not recorded again
    for stage in ("vae", "mdnrnn"):  # the start run's checkpoints as they were: hard links
        assert os.path.samefile(round_0 / stage / "checkpoint.pt", start / stage / "checkpoint.pt")
    rows = json.loads((run / "rounds.json").read_text())
    start_steps = sum(len(np.load(p)["actions"]) for p in (start / "episodes").glob("*.npz"))
    assert rows[0]["data_steps"] == start_steps and rows[0]["seconds"]["collect"] < 5  # its data counts, once
    assert rows[1]["data_steps"] > start_steps
    assert RunConfig.load(run / "round_1").collect.policy == str(round_0.resolve() / "agent.zip")
    assert sb3_algorithm(run / "round_1" / "agent.zip") == "A2C"  # trained on as what it is
    assert A2C.load(run / "round_1" / "agent.zip").num_timesteps >= 32 + 64
    assert "a2c from a2c.zip" in (run / "rounds.md").read_text()
    exported = run_command(
        [sys.executable, "-m", "dreamgym.cli", "export", str(run / "round_1"), "--to", str(tmp_path / "exported")],
        cwd=tmp_path,
    )  # after its evaluation: with its score
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = (tmp_path / "exported" / "MODEL_CARD.md").read_text()  # how the round was made, and who scored what
    assert "Built with round 1 of `dreamgym iterate doom --out RUN --agent a2c.zip" in card
    assert "--trust-zip --start RUN0`, RUN0 made by `dreamgym pipeline doom --preset tiny`" in card
    assert "- the SB3 agent agent.zip (not in this directory) on LatentDoomTakeCover-v0" in card

    wrong = A2C("MlpPolicy", "CartPole-v1", n_steps=8, device="cpu")  # another game's agent
    wrong.save(tmp_path / "cartpole.zip")
    other = run_command(
        [*command[:6], str(tmp_path / "other"), "--agent", str(tmp_path / "cartpole.zip"), *command[9:], "--trust-zip"],
        cwd=tmp_path,
    )
    assert other.returncode == 1 and "does not fit start" in other.stderr, other.stderr[-2000:]
    alone = run_command(
        [*command[:6], str(tmp_path / "alone"), "--agent", str(tmp_path / "a2c.zip"), "--trust-zip"], cwd=tmp_path
    )
    assert alone.returncode == 1 and "needs start" in alone.stderr and not (tmp_path / "alone").exists()


def test_a_round_linked_to_another_directory_is_refused(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_settings(run, DOOM, "tiny", IterateConfig(rounds=1))  # an iterate run, as a first call leaves it
    (run / "round_0").symlink_to(elsewhere)
    with pytest.raises(StageError, match="round_0 is a symbolic link"):
        iterate(run, "doom", preset="tiny", rounds=1)
    assert list(elsewhere.iterdir()) == []


def finished_round_record(round_number: int) -> str:
    """round.json of a finished round (what run_round writes), with made-up figures."""
    return json.dumps(
        {
            "round": round_number,
            "data_steps": 100,
            "eval_steps": 50,
            "dream_mean": 10.0,
            "real_mean": 9.0,
            "real_std": 1.0,
            "seconds": {},
            "v_ratio": None,
            "v_refreshed": False,
        }
    )


def test_a_round_copied_from_another_round_or_run_is_refused_by_name(tmp_path):
    from dreamgym.pipeline import init_run

    run = tmp_path / "run"
    save_settings(run, DOOM, "tiny", IterateConfig(rounds=3))
    init_run(run / "round_0", "doom", "tiny")
    (run / "round_0" / "round.json").write_text(finished_round_record(0))
    init_run(tmp_path / "other", "doom", "tiny")  # a run of its own, copied in as round 1
    shutil.copytree(tmp_path / "other", run / "round_1")
    before = (run / "round_1" / "run.json").read_bytes()
    with pytest.raises(StageError, match=r"round_1/run.json names no parent as its parent, but round 1 .* follows"):
        iterate(run, "doom", preset="tiny", rounds=3)
    assert (run / "round_1" / "run.json").read_bytes() == before  # refused before anything is written
    shutil.rmtree(run / "round_1")
    shutil.copytree(run / "round_0", run / "round_1")  # a finished round copied to the next number
    with pytest.raises(StageError, match=r"round_1/round.json is the record of round 0, not of round 1"):
        iterate(run, "doom", preset="tiny", rounds=3)


def test_iterate_holds_the_lock_of_its_rounds_and_of_its_start_run(tmp_path):
    from dreamgym.files import RunLockedError, run_lock
    from dreamgym.pipeline import init_run

    save_settings(tmp_path / "run", DOOM, "tiny", IterateConfig(rounds=1))
    with run_lock(tmp_path / "run" / "round_0"), pytest.raises(RunLockedError, match="round_0 is in use"):
        iterate(tmp_path / "run", "doom", preset="tiny", rounds=1)
    start = tmp_path / "start"
    init_run(start, "doom", "tiny")  # a run directory to start from (its stages are not needed to be refused)
    with run_lock(start), pytest.raises(RunLockedError, match="start is in use"):
        iterate(tmp_path / "run2", "doom", rounds=1, start=str(start))
    assert not (tmp_path / "run2" / "round_0").exists()
