"""The Ray backend on a local Ray instance (loopback, 2 CPUs): the same episodes and returns as
local processes for the same seeds, a killed actor survived, CMA-ES on a real game."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamgym.collect import collect
from dreamgym.config import CollectConfig, ControllerTrainConfig
from dreamgym.episodes import episode_files, read_episode
from dreamgym.evaluate import evaluate, run_episode
from dreamgym.parallel import run_parallel

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1", configure_logging=False
    )
    # The crash job below lives in this test module, which Ray's workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def test_collect_on_ray_records_the_same_episodes_as_local_processes(local_ray, tmp_path):
    config = CollectConfig(episodes=3, max_steps=40, workers=2, seed=7)
    collect("doom", tmp_path / "local", config)
    collect("doom", tmp_path / "ray", config, backend="ray")
    local, remote = episode_files(tmp_path / "local"), episode_files(tmp_path / "ray")
    assert [p.name for p in local] == [p.name for p in remote]
    for a, b in zip(local, remote):
        first, second = read_episode(a), read_episode(b)
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=f"{a.name}: {key}")


def test_evaluate_on_ray_gives_the_same_returns_as_local_processes(local_ray, model_dirs):
    kwargs = {"world_model": os.fspath(model_dirs["doom"])}
    local = evaluate("LatentDoomTakeCover-v0", "random", episodes=4, seed=123, env_kwargs=kwargs)
    remote = evaluate("LatentDoomTakeCover-v0", "random", episodes=4, seed=123, env_kwargs=kwargs, backend="ray")
    assert remote.returns == local.returns and remote.lengths == local.lengths


def crash_once_then_play(job: tuple) -> tuple[int, float, int]:
    """Play a real episode, except that the first attempt at episode 1 kills its own process."""
    marker, episode_job = job
    if episode_job[5] == 1 and not Path(marker).exists():  # the job's episode index
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_episode(episode_job)


def test_an_actor_killed_mid_run_is_restarted_and_no_episode_is_lost_or_duplicated(local_ray, model_dirs, tmp_path):
    kwargs_json = json.dumps({"world_model": os.fspath(model_dirs["doom"])})
    jobs = [("LatentDoomTakeCover-v0", kwargs_json, "random", None, 500, i, 0.0, False) for i in range(4)]
    expected = sorted(run_parallel(run_episode, jobs, workers=1))
    marker = tmp_path / "killed"
    results = list(run_parallel(crash_once_then_play, [(os.fspath(marker), job) for job in jobs], 2, backend="ray"))
    assert marker.exists(), "the crash never happened: the test proves nothing"
    assert sorted(results) == expected  # every episode once, the killed one retried with the same seed


def test_cmaes_on_the_real_game_runs_on_ray_and_resumes(local_ray, model_dirs, tmp_path):
    from dreamgym.cmaes import train_controller_real

    config = ControllerTrainConfig(generations=2, population=4, trials=1, eval_every=1, eval_trials=2)
    first = train_controller_real(model_dirs["doom"], tmp_path / "c", config, backend="ray")
    assert first.generations == 2 and np.isfinite(first.best_score) and first.best_score > 0
    more = ControllerTrainConfig(generations=3, population=4, trials=1, eval_every=1, eval_trials=2)
    resumed = train_controller_real(model_dirs["doom"], tmp_path / "c", more, backend="ray", resume=True)
    assert resumed.trained_generations == 1 and resumed.generations == 3


def test_unknown_backend_and_missing_address_use_are_clear_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        list(run_parallel(abs, [1], 1, backend="dask"))
    with pytest.raises(ValueError, match="address only applies"):
        list(run_parallel(abs, [1], 1, address="auto"))
