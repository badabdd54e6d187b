"""Run independent jobs (episodes) across worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool


def worker_init() -> None:
    """Each worker uses one torch thread (the parallelism is across processes) and closes the
    envs it cached when it exits, so that no VizDoom game process is orphaned."""
    import torch

    torch.set_num_threads(1)
    from dreamgym.evaluate import close_cached_envs

    multiprocessing.util.Finalize(None, close_cached_envs, exitpriority=10)


def run_parallel(function: Callable, jobs: list, workers: int) -> Iterator:
    """``function(job)`` for every job across ``workers`` fresh (spawned) processes, results as
    they finish.

    Spawned workers import the caller's main script again, as every spawn-based pool does:
    a script that calls this with ``workers > 1`` must do so under
    ``if __name__ == "__main__":``. A worker that dies raises an error saying so instead of
    hanging; workers always exit through a clean shutdown, never a terminate.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield function(job)
        return
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
    )
    try:
        pending = {executor.submit(function, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                yield future.result()
    except BrokenProcessPool as error:
        raise RuntimeError(
            "a worker process died. If this was called from a script, put the call under "
            "`if __name__ == \"__main__\":` (workers are spawned and import the script again), "
            "or pass workers=1."
        ) from error
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
