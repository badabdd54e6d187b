"""Run independent jobs (episodes) across worker processes."""

from __future__ import annotations

import multiprocessing
from typing import Callable, Iterator


def worker_init() -> None:
    """Each worker process uses one thread: the parallelism is across processes."""
    import torch

    torch.set_num_threads(1)


def run_parallel(function: Callable, jobs: list, workers: int) -> Iterator:
    """``function(job)`` for every job across ``workers`` spawned processes, results as they finish.

    The pool is closed and joined, never terminated by a context manager, so that the game
    processes VizDoom starts are shut down by their own env.close().
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield function(job)
        return
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=worker_init)
    try:
        yield from pool.imap_unordered(function, jobs)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
