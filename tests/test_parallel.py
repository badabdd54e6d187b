from __future__ import annotations

import os

import pytest

from dreamgym.parallel import WorkerPool


def pid_of(job: object) -> int:
    return os.getpid()


def test_a_pool_keeps_its_workers_across_calls():
    """Each worker builds its game once per run, not once per generation."""
    with WorkerPool(2) as pool:
        first = set(pool.map(pid_of, [None] * 6))
        second = set(pool.map(pid_of, [None] * 6))
    # no new process in the second call (which workers take the jobs is up to the scheduler)
    assert second <= first and os.getpid() not in first and 1 <= len(first) <= 2


def test_a_pool_of_one_runs_jobs_in_this_process():
    with WorkerPool(1) as pool:
        assert list(pool.map(pid_of, [None, None])) == [os.getpid()] * 2


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool(0)
