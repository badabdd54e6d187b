"""The pipeline end to end on the real games (tiny preset), resumption after SIGKILL, damaged files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import dreamgym_cli
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamgym
from dreamgym.checkpoint import load_controller
from dreamgym.config import RunConfig
from dreamgym.files import load_torch_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(params=["doom", "carracing"])
def tiny_run(request, tiny_runs) -> tuple[str, Path]:
    return request.param, tiny_runs(request.param)


def test_tiny_pipeline_exports_a_model_that_passes_both_env_checkers(tiny_run):
    game, run = tiny_run
    assert (run / "model" / "config.json").is_file() and (run / "model" / "MODEL_CARD.md").is_file()
    for picture in ("vae/reconstructions.png", "vae/loss.png", "mdnrnn/predictions.png", "controller/fitness.png"):
        assert (run / picture).stat().st_size > 1000
    env_id = dreamgym.ENV_IDS[game][0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        gymnasium_check_env(gym.make(env_id, world_model=str(run / "model")).unwrapped)
        sb3_check_env(gym.make(env_id, world_model=str(run / "model")).unwrapped)
    model = dreamgym.load_world_model(run / "model")
    assert model.controller is not None and model.game.name == game
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert "Wall-clock time per stage" in card and "over 2 episodes" in card


def test_a_run_logs_every_epoch_and_generation_to_tensorboard_beside_the_csv(tiny_runs):
    """`tensorboard --logdir RUN` shows V, M and CMA-ES, named as SB3 names its scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tiny_runs("doom")
    config = RunConfig.load(run)
    for stage, tag, count in (
        ("vae", "train/reconstruction", config.vae.epochs),
        ("mdnrnn", "train/nll", config.mdnrnn.epochs),
        ("controller", "train/best_return", config.controller.generations),
    ):
        events = EventAccumulator(str(run / "tensorboard" / stage))
        events.Reload()
        assert [event.step for event in events.Scalars(tag)] == list(range(1, count + 1)), stage
    rows = list(csv.DictReader((run / "mdnrnn" / "metrics.csv").open()))
    events = EventAccumulator(str(run / "tensorboard" / "mdnrnn"))
    events.Reload()
    assert [event.value for event in events.Scalars("train/nll")] == pytest.approx([float(r["nll"]) for r in rows])


def test_an_ensemble_run_exports_its_members_real_episodes_and_dream_defaults(tiny_runs, tmp_path):
    run = copy_run(tiny_runs("doom"), tmp_path)
    trained = dreamgym_cli("train-mdnrnn", str(run), "--members", "2", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "M member 0 already finished" in trained.stdout and "M member 1 trained" in trained.stdout
    config = RunConfig.load(run)
    assert config.mdnrnn.members == 2
    config.with_overrides("dream", ensemble="episode", uncertainty_penalty=0.5, starts="data", horizon=20).save(run)
    exported = dreamgym_cli("export", str(run), "--to", str(run / "model"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    model = dreamgym.load_world_model(run / "model", device="cpu")
    assert len(model.all_members) == 2 and model.start_episodes is not None
    assert (model.dream_defaults.ensemble, model.dream_defaults.starts, model.dream_defaults.horizon) == (
        "episode",
        "data",
        20,
    )
    first, second = (member.state_dict()["head.weight"] for member in model.all_members)
    assert not torch.equal(first, second)  # another seed, another bootstrap sample
    assert len(model.start_episodes.lengths) == len(list((run / "latents").glob("*.npz")))  # tiny: all of them
    assert "members (bootstrap resamples)" in (run / "model" / "MODEL_CARD.md").read_text()
    env = gym.make("DreamDoomTakeCover-v0", world_model=str(run / "model"))
    assert env.unwrapped.settings.uncertainty_penalty == 0.5
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        gymnasium_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_finished_stages_are_no_ops(tiny_run):
    _, run = tiny_run
    result = dreamgym_cli("train-vae", str(run), cwd=run.parent)
    assert result.returncode == 0 and "already finished" in result.stdout


def test_evaluate_writes_json_with_every_return(tiny_run, tmp_path):
    game, run = tiny_run
    out = tmp_path / "eval.json"
    env_id = dreamgym.ENV_IDS[game][0]
    result = dreamgym_cli(
        "evaluate",
        env_id,
        "--policy",
        str(run / "model"),
        "--episodes",
        "3",
        "--seed",
        "5",
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["env_id"] == env_id and data["episodes"] == 3 and len(data["returns"]) == 3
    assert abs(data["mean"] - sum(data["returns"]) / 3) < 1e-6
    assert out.with_suffix(".png").stat().st_size > 1000


def sigkill_once_written(path: Path, *args: str, cwd: Path) -> None:
    """Run ``dreamgym ARGS`` and SIGKILL it as soon as ``path`` exists (its first checkpoint)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dreamgym.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("model", "eval"))
    return target


@pytest.mark.parametrize(
    "stage,directory,section,extra",
    [
        ("train-vae", "vae", "vae", {"frames_per_epoch": 1500}),
        ("train-mdnrnn", "mdnrnn", "mdnrnn", {"hidden_dim": 256, "batch_size": 1}),
        ("train-mdnrnn", "mdnrnn_member_1", "mdnrnn", {"hidden_dim": 256, "batch_size": 1, "members": 2}),
    ],
)
def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(tiny_runs, tmp_path, stage, directory, section, extra):
    """For an ensemble, the kill lands in member 1 and member 0 is left finished."""
    run = copy_run(tiny_runs("doom"), tmp_path)
    for stage_dir in {directory, section}:
        shutil.rmtree(run / stage_dir, ignore_errors=True)
    config = RunConfig.load(run)
    config.with_overrides(section, epochs=3, **extra).save(run)
    checkpoint = run / directory / "checkpoint.pt"
    sigkill_once_written(checkpoint, stage, str(run), cwd=tmp_path)
    saved = load_torch_checkpoint(checkpoint)
    assert 1 <= saved["epoch"] < 3, "the kill must land after the first checkpoint and before the end"
    refused = dreamgym_cli(stage, str(run), cwd=tmp_path)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = dreamgym_cli(stage, str(run), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {saved['epoch']} of 3" in resumed.stdout
    final = load_torch_checkpoint(checkpoint)
    assert final["epoch"] == 3
    assert [row["epoch"] for row in final["history"]] == [1, 2, 3]
    assert final["history"][: saved["epoch"]] == saved["history"]
    assert len((run / directory / "metrics.csv").read_text().strip().splitlines()) == 1 + 3


def test_truncated_episode_file_is_reported_by_name_and_skipped(tiny_runs, tmp_path):
    run = copy_run(tiny_runs("doom"), tmp_path)
    damaged = sorted((run / "episodes").glob("episode_*.npz"))[1]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    result = dreamgym_cli("encode", str(run), "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipping damaged file: {damaged}" in result.stdout
    assert "1 damaged files skipped" in result.stdout
    assert not (run / "latents" / damaged.name).exists()
    result = dreamgym_cli("train-vae", str(run), "--force", cwd=tmp_path)
    assert result.returncode == 0 and damaged.name in result.stdout


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path):
    from dreamgym.files import run_lock

    run = tmp_path / "run"
    with run_lock(run):
        result = dreamgym_cli("collect", "doom", "--out", str(run), "--preset", "tiny", cwd=tmp_path)
    assert result.returncode == 1
    assert f"in use by another dreamgym process (pid {os.getpid()})" in result.stderr
    assert not (run / "episodes").exists()
    with run_lock(run):  # released: can be taken again
        pass


def test_sigkill_during_cmaes_resumes_after_the_last_generation(tiny_runs, tmp_path):
    run = copy_run(tiny_runs("doom"), tmp_path)
    shutil.rmtree(run / "controller")
    RunConfig.load(run).with_overrides(
        "controller", generations=6, population=16, trials=4, max_steps=400, eval_every=2, eval_trials=8
    ).save(run)
    record = run / "controller" / "cma_state.json"
    sigkill_once_written(record, "train-controller", str(run), cwd=tmp_path)
    killed = json.loads(record.read_text())["history"]
    assert 1 <= len(killed) < 6, "the kill must land after the first generation and before the end"
    resumed = dreamgym_cli("train-controller", str(run), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"replaying the {len(killed)} recorded generations" in resumed.stdout
    history = json.loads(record.read_text())["history"]
    assert [row["generation"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert history[: len(killed)] == killed
    assert sorted(p.name for p in (run / "controller").glob("cma_state*")) == [
        "cma_state.000006.safetensors",
        "cma_state.json",
    ]
    # The same training, uninterrupted: the same generations and the same controller.
    straight = tmp_path / "straight"
    shutil.copytree(run, straight, ignore=shutil.ignore_patterns("controller"))
    assert dreamgym_cli("train-controller", str(straight), cwd=tmp_path).returncode == 0
    straight_history = json.loads((straight / "controller" / "cma_state.json").read_text())["history"]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in history] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in straight_history
    ]
    np.testing.assert_array_equal(
        load_controller(run / "controller" / "controller.safetensors").flat(),
        load_controller(straight / "controller" / "controller.safetensors").flat(),
    )


def test_a_full_disk_at_a_checkpoint_is_a_clear_error_and_the_last_checkpoint_survives(
    tiny_runs, tmp_path, monkeypatch
):
    import errno

    import torch

    from dreamgym.files import WriteError
    from dreamgym.pipeline import train_vae_stage

    run = copy_run(tiny_runs("doom"), tmp_path)
    shutil.rmtree(run / "vae")
    RunConfig.load(run).with_overrides("vae", epochs=2).save(run)
    real_save = torch.save

    def disk_fills_at_epoch_2(obj, file, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            Path(file).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_epoch_2)
    with pytest.raises(
        WriteError, match=r"cannot write .*checkpoint\.pt: No space left on device; its previous version is untouched"
    ):
        train_vae_stage(run)
    assert load_torch_checkpoint(run / "vae" / "checkpoint.pt")["epoch"] == 1
    assert not list((run / "vae").glob(".*.tmp")), "no half-written temporary file may remain"


def test_an_unwritable_run_directory_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    from dreamgym.cli import main

    run = tmp_path / "run"
    main(["collect", "doom", "--out", str(run), "--preset", "tiny", "--episodes", "1", "--max-steps", "5"])
    before = {p.name: p.read_bytes() for p in (run / "episodes").iterdir()}

    def permission_denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", permission_denied)  # root ignores chmod, so deny at the call
    code = main(["collect", "doom", "--out", str(run), "--preset", "tiny", "--episodes", "2", "--max-steps", "5"])
    assert code == 1
    assert "cannot write" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (run / "episodes").iterdir()} == before


def test_sweep_temperature_writes_the_table_beside_the_papers(tiny_runs, tmp_path):
    run = copy_run(tiny_runs("doom"), tmp_path)
    result = dreamgym_cli(
        "sweep-temperature",
        str(run),
        "--temperatures",
        "0.5",
        "1.15",
        "--generations",
        "1",
        "--population",
        "4",
        "--trials",
        "1",
        "--episodes",
        "2",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((run / "sweep" / "temperature.json").read_text())
    assert [row["temperature"] for row in rows] == [0.5, 1.15]
    assert all(row["generations"] == 1 and row["population"] == 4 and row["episodes"] == 2 for row in rows)
    table = (run / "sweep" / "temperature.md").read_text()
    assert "| 1.15 |" in table and "1092 ± 556" in table  # the paper's figure beside ours
    assert (run / "sweep" / "temperature.png").stat().st_size > 1000  # and a picture of the same
    assert "temperature.md" in result.stdout and "temperature.png" in result.stdout  # the command says where


def test_next_round_collects_with_the_parents_controller_and_retrains_on_old_and_new_episodes(tiny_runs, tmp_path):
    parent = copy_run(tiny_runs("doom"), tmp_path / "parent")
    assert dreamgym_cli("export", str(parent), "--to", str(parent / "model"), cwd=tmp_path).returncode == 0
    old = sorted(p.name for p in (parent / "episodes").iterdir())
    round2 = tmp_path / "round2"
    result = dreamgym_cli(
        "next-round", str(parent), "--out", str(round2), "--episodes", "3", "--noise", "0.1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    next_command = result.stdout.split("Next: ")[1].split()
    assert next_command == ["dreamgym", "pipeline", "--out", str(round2)]
    again = dreamgym_cli("next-round", str(parent), "--out", str(round2), cwd=tmp_path)
    assert again.returncode == 1 and "already a run directory" in again.stderr

    result = dreamgym_cli(*next_command[1:], cwd=tmp_path)  # the command it printed, as printed
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recorded 3 episodes" in result.stdout and "V already finished" in result.stdout
    assert f"[encode] encoded 3 episodes ({len(old)} already encoded)" in result.stdout
    episodes = sorted((round2 / "episodes").iterdir())
    assert [p.name for p in episodes[: len(old)]] == old and all(p.is_symlink() for p in episodes[: len(old)])
    assert len(episodes) == len(old) + 3 and not any(p.is_symlink() for p in episodes[len(old) :])
    assert sorted(p.name for p in (parent / "episodes").iterdir()) == old  # the parent is untouched
    config = RunConfig.load(round2)
    assert config.parent == str(parent.resolve()) and config.collect.policy == str(parent.resolve() / "model")
    assert (round2 / "model" / "controller.safetensors").is_file()


def test_next_round_needs_a_parent_with_a_controller(tiny_runs, tmp_path):
    parent = copy_run(tiny_runs("doom"), tmp_path)  # copy_run leaves model/ out
    result = dreamgym_cli("next-round", str(parent), "--out", str(tmp_path / "round2"), cwd=tmp_path)
    assert result.returncode == 1 and "has no controller" in result.stderr


def test_next_round_with_explore_records_with_the_exploration_policy_and_needs_no_controller(tiny_runs, tmp_path):
    parent = copy_run(tiny_runs("doom"), tmp_path / "parent")  # no model/, so no controller
    old = len(list((parent / "episodes").iterdir()))
    round2 = tmp_path / "round2"
    result = dreamgym_cli("next-round", str(parent), "--out", str(round2), "--episodes", "2", "--explore", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "played by the exploration policy" in result.stdout
    assert RunConfig.load(round2).collect.policy is None and RunConfig.load(round2).collect.noise == 0
    result = dreamgym_cli("collect", "doom", "--out", str(round2), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = sorted((round2 / "episodes").iterdir())
    assert len(episodes) == old + 2 and not any(p.is_symlink() for p in episodes[old:])


def test_next_round_records_with_an_sb3_agent_trained_in_the_parents_dream(tiny_runs, tmp_path):
    from stable_baselines3 import PPO

    from dreamgym.pipeline import next_round

    parent = copy_run(tiny_runs("doom"), tmp_path / "parent")
    assert dreamgym_cli("export", str(parent), "--to", str(parent / "model"), cwd=tmp_path).returncode == 0
    env = gym.make("LatentDoomTakeCover-v0", world_model=str(parent / "model"), device="cpu")
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, device="cpu").save(tmp_path / "agent.zip")
    with pytest.raises(ValueError, match="give one of them"):
        next_round(parent, tmp_path / "never", 1, explore=True, policy=tmp_path / "agent.zip")
    round2 = tmp_path / "round2"
    result = dreamgym_cli(
        "next-round",
        str(parent),
        "--out",
        str(round2),
        "--episodes",
        "2",
        "--policy",
        str(tmp_path / "agent.zip"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "agent.zip with noise 0.05" in result.stdout
    collect_config = RunConfig.load(round2).collect
    assert collect_config.policy == str((tmp_path / "agent.zip").resolve())
    assert collect_config.world_model == str(parent.resolve() / "model")  # the dream the agent was trained in
    refused = dreamgym_cli("pipeline", "doom", "--out", str(round2), cwd=tmp_path)
    assert refused.returncode == 1 and "--trust-zip" in refused.stderr
    result = dreamgym_cli("collect", "doom", "--out", str(round2), "--trust-zip", cwd=tmp_path)
    assert result.returncode == 0 and "recorded 2 episodes" in result.stdout, result.stderr[-2000:]


def test_next_round_needs_a_parent_with_a_trained_v(tiny_runs, tmp_path):
    parent = copy_run(tiny_runs("doom"), tmp_path / "parent")
    shutil.rmtree(parent / "vae")
    result = dreamgym_cli("next-round", str(parent), "--out", str(tmp_path / "round2"), "--explore", cwd=tmp_path)
    assert result.returncode == 1 and "has no trained V" in result.stderr
    assert not (tmp_path / "round2").exists()  # nothing set up half-way, not even an empty directory


def test_next_round_refuses_noise_with_explore(tiny_runs, tmp_path):
    parent = copy_run(tiny_runs("doom"), tmp_path / "parent")
    result = dreamgym_cli(
        "next-round", str(parent), "--out", str(tmp_path / "round2"), "--explore", "--noise", "0.2", cwd=tmp_path
    )
    assert result.returncode == 1 and "give one of them" in result.stderr
    assert not (tmp_path / "round2").exists()


def test_a_finished_run_is_not_evaluated_again_unless_its_weights_change(tiny_runs, tmp_path):
    from dreamgym.pipeline import evaluate_stage, export_stage

    run = tmp_path / "run"
    shutil.copytree(tiny_runs("doom"), run)
    again = evaluate_stage(run)
    assert again.summary.startswith("already evaluated") and again.seconds < 5
    export_stage(run, run / "model")  # a re-export (new card, same weights) keeps the result
    assert evaluate_stage(run).summary.startswith("already evaluated")
    provenance = json.loads((run / "model" / "config.json").read_text())["metadata"]
    assert provenance["evaluations"] and str(tmp_path) not in json.dumps(provenance)  # no path of this machine
    (run / "evaluated.json").write_text("{not json")
    with pytest.raises(Exception, match="evaluated.json is damaged: not valid JSON"):
        evaluate_stage(run)


def test_a_pipelines_budget_is_written_to_run_json_and_a_bad_one_refused_before(tmp_path):
    from dreamgym.config import RunConfig
    from dreamgym.pipeline import init_run

    run = tmp_path / "run"
    budget = {
        "collect": {"episodes": 3},
        "vae": {"epochs": 2},
        "mdnrnn": {"epochs": None},
        "controller": {"generations": 4},
    }
    config = init_run(run, "doom", "tiny", budget=budget)
    assert RunConfig.load(run) == config
    assert (config.collect.episodes, config.vae.epochs, config.controller.generations) == (3, 2, 4)
    assert config.mdnrnn.epochs == RunConfig.load(run).mdnrnn.epochs  # None keeps the preset's
    result = dreamgym_cli(
        "pipeline", "doom", "--out", str(tmp_path / "bad"), "--preset", "tiny", "--vae-epochs", "0", cwd=tmp_path
    )
    assert result.returncode != 0 and "--vae-epochs" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_a_round_moved_with_its_parent_still_finds_its_parent_episodes_and_v(tiny_runs, tmp_path):
    from dreamgym.pipeline import next_round

    parent = tmp_path / "before" / "parent"
    shutil.copytree(tiny_runs("doom"), parent, ignore=shutil.ignore_patterns("eval"))
    next_round(parent, tmp_path / "before" / "round2", episodes=2)
    stored = json.loads((tmp_path / "before" / "round2" / "run.json").read_text())
    assert (stored["parent"], stored["collect"]["policy"]) == ("../parent", "../parent/model")
    (tmp_path / "before").rename(tmp_path / "after")
    round2 = tmp_path / "after" / "round2"
    config = RunConfig.load(round2)
    assert config.parent == str((tmp_path / "after" / "parent").resolve())
    assert config.collect.policy == str((tmp_path / "after" / "parent" / "model").resolve())
    links = list((round2 / "episodes").iterdir())
    assert links and all(link.is_symlink() and link.exists() for link in links)  # relative links survive the move
    assert (round2 / "vae" / "checkpoint.pt").is_file()


def test_retraining_a_parent_after_a_round_was_set_up_leaves_the_rounds_v_as_it_was(tiny_runs, tmp_path):
    from dreamgym.files import atomic_save_torch, load_torch_checkpoint
    from dreamgym.pipeline import next_round

    parent = tmp_path / "parent"
    shutil.copytree(tiny_runs("doom"), parent, ignore=shutil.ignore_patterns("eval"))
    next_round(parent, tmp_path / "round2", episodes=2)
    before = (tmp_path / "round2" / "vae" / "checkpoint.pt").read_bytes()
    retrained = load_torch_checkpoint(parent / "vae" / "checkpoint.pt")
    retrained["epoch"] = 99
    atomic_save_torch(retrained, parent / "vae" / "checkpoint.pt")  # as train-vae --force replaces it
    assert load_torch_checkpoint(parent / "vae" / "checkpoint.pt")["epoch"] == 99
    assert (tmp_path / "round2" / "vae" / "checkpoint.pt").read_bytes() == before
