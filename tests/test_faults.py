"""Faults outside the training stages: a killed collection, a dead worker, a tampered CMA-ES state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy
from conftest import run_command, small_world_model

from dreamgym.cmaes import train_controller
from dreamgym.config import ControllerTrainConfig
from dreamgym.episodes import episode_files, read_episode
from dreamgym.files import DamagedFileError
from dreamgym.parallel import run_parallel
from dreamgym.rundir import CMA_STATE as STATE_FILE


def test_sigkill_during_collect_loses_only_the_episodes_in_progress(tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dreamgym.cli",
        "collect",
        "doom",
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--episodes",
        "40",
        "--max-steps",
        "300",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while len(episode_files(run / "episodes")) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers
    process.wait()
    kept = episode_files(run / "episodes")
    assert 2 <= len(kept) < 40, "the kill must land mid-collection"
    for path in kept:
        read_episode(path)  # every file present is complete
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"recorded {40 - len(kept)} episodes" in finished.stdout
    assert [p.name for p in episode_files(run / "episodes")] == [f"episode_{i:06d}.npz" for i in range(40)]
    assert not list((run / "episodes").glob(".*.tmp"))


def die(job: int) -> int:
    if job == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return job


def test_a_dead_local_worker_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="a worker process died"):
        list(run_parallel(die, [0, 1, 2, 3], workers=2))


def game_then_die(job: int) -> int:
    """Each job opens its worker's real Doom game; job 1 then kills its worker."""
    from dreamgym.evaluate import cached_env

    cached_env("LatentDoomTakeCover-v0", "{}").reset(seed=job)
    if job == 1:
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
    return job


def test_a_dead_worker_with_a_game_open_is_an_error_not_a_hang(tmp_path, monkeypatch):
    # The game process inherits descriptors from its worker; one of them tells the pool that
    # the worker died, so the pool must not let the game hold it open. run_command kills what
    # is left in the session afterwards: the dead worker's own game outlives it.
    (tmp_path / "run.py").write_text(
        "from dreamgym.parallel import run_parallel\n"
        "from test_faults import game_then_die\n"
        "if __name__ == '__main__':\n"
        "    try:\n"
        "        list(run_parallel(game_then_die, [0, 1, 2, 3], workers=2))\n"
        "    except RuntimeError as error:\n"
        "        print(error)\n"
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    result = run_command([sys.executable, "run.py"], cwd=tmp_path, timeout=120)  # a hang raises TimeoutExpired
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a worker process died" in result.stdout


def test_a_tampered_cmaes_state_is_refused(tmp_path):
    model = small_world_model("doom")
    config = ControllerTrainConfig(generations=2, population=4, trials=1, max_steps=20, eval_every=1, eval_trials=2)
    train_controller(model, tmp_path, config)
    more = ControllerTrainConfig(generations=3, population=4, trials=1, max_steps=20, eval_every=1, eval_trials=2)
    arrays = tmp_path / json.loads((tmp_path / STATE_FILE).read_text())["arrays"]
    original = arrays.read_bytes()
    data = bytearray(original)
    data[-5] ^= 0xFF  # a value told to CMA-ES
    arrays.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="does not match the sha256"):
        train_controller(model, tmp_path, more, resume=True)
    # An edit that also rewrites the recorded sha256 is caught by the replay: the worst
    # candidate of generation 1 made the best moves the mean elsewhere than the run recorded.
    told = safetensors.numpy.load(original)
    told["told"][0, np.argmax(told["told"][0])] = told["told"][0].min() - 1.0
    safetensors.numpy.save_file(told, arrays)
    record = json.loads((tmp_path / STATE_FILE).read_text())
    record["arrays_sha256"] = hashlib.sha256(arrays.read_bytes()).hexdigest()
    (tmp_path / STATE_FILE).write_text(json.dumps(record))
    with pytest.raises(DamagedFileError, match="at generation 1, the replay .* cannot be continued exactly"):
        train_controller(model, tmp_path, more, resume=True)
    assert not list(tmp_path.glob("*.pkl"))


def wait_for_marker(job: tuple) -> str:
    """Job 0 returns at once; job 1 waits until the consumer has seen job 0's result."""
    index, marker = job
    if index == 0:
        return "first"
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(marker):
            return "released"
        time.sleep(0.05)
    return "never released"


def test_results_arrive_as_jobs_finish_not_all_at_the_end(tmp_path):
    marker = tmp_path / "seen"
    results = []
    for result in run_parallel(wait_for_marker, [(0, str(marker)), (1, str(marker))], workers=2):
        results.append(result)
        marker.touch()
    assert results == ["first", "released"]


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_damaged_record_is_an_error_that_names_its_file(tmp_path, content):
    """timings.json, a round's tuning score and a stage's checkpoint: each damaged file is named."""
    from dreamgym.evaluate import EvalResult
    from dreamgym.iterate import _read_record
    from dreamgym.pipeline import timed
    from dreamgym.rundir import RunDir
    from dreamgym.training import StageError, read_checkpoint

    run = RunDir(tmp_path)
    run.timings.write_bytes(content)
    with pytest.raises(DamagedFileError, match="timings.json"):
        timed(tmp_path, "collect", lambda: None)
    run.tuning_result.parent.mkdir(parents=True, exist_ok=True)
    run.tuning_result.write_bytes(content)
    with pytest.raises((StageError, DamagedFileError), match=run.tuning_result.name):
        _read_record(run.tuning_result, EvalResult)
    stage = tmp_path / "vae"
    stage.mkdir()
    (stage / "checkpoint.pt").write_bytes(content)
    with pytest.raises(DamagedFileError, match="checkpoint.pt"):
        read_checkpoint(stage)
