from __future__ import annotations

import os
import time

import pytest

from dreamgym.games import lookup, vizdoom_home
from dreamgym.parallel import WorkerPool


def pid_of(job: object) -> int:
    return os.getpid()


def test_a_pool_keeps_its_workers_across_calls():
    """Each worker builds its game once per run, not once per generation."""
    with WorkerPool(2) as pool:
        pids = set().union(*(set(pool.map(pid_of, [None] * 6)) for _ in range(5)))
    # the executor may start its second worker late, but never more than two across five calls
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


def test_a_pool_of_one_runs_jobs_in_this_process():
    with WorkerPool(1) as pool:
        assert list(pool.map(pid_of, [None, None])) == [os.getpid()] * 2


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool(0)


def start_doom_in(job: tuple[str, float]) -> int:
    """Start a game whose VizDoom files go to a fresh cache directory."""
    directory, start_time = job
    os.environ["XDG_CACHE_HOME"] = directory
    env = lookup("doom").make_real_env()
    time.sleep(max(0.0, start_time - time.time()))
    env.reset(seed=0)  # the game process starts here
    env.close()
    return os.getpid()


def test_doom_games_starting_together_with_a_fresh_vizdoom_directory_all_start(tmp_path, monkeypatch):
    """VizDoom exits the whole worker if another game creates its _vizdoom directory in the same
    instant (about one start in twenty, racing): the directory is made before any game starts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lookup("doom").make_real_env().close()
    assert (vizdoom_home() / "_vizdoom").is_dir()
    with WorkerPool(4) as pool:
        list(pool.map(pid_of, [None] * 4))  # the workers are up
        for attempt in range(8):
            directory = tmp_path / str(attempt)
            directory.mkdir()
            start_time = time.time() + 1.0
            assert len(list(pool.map(start_doom_in, [(str(directory), start_time)] * 4))) == 4
            assert (directory / "dreamgym" / "vizdoom" / "_vizdoom").is_dir()
    assert not list(tmp_path.glob("_vizdoom*"))  # the workers' working directory
