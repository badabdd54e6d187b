"""Run independent jobs (episodes) across worker processes on this machine, or across a Ray
cluster.

A job function is a module-level function of one argument. Workers keep what they build
(games, policies) between jobs in module-level caches, so a worker holds one game for its whole
life; only the job (a seed, a controller's parameters) goes out and only the result comes back.

Backends:
- ``local`` (default): spawned processes of a ``ProcessPoolExecutor``.
- ``ray``: one Ray actor per worker (``pip install "dreamgym[ray]"``). ``address=None`` starts a
  local Ray instance; ``address="auto"`` or ``"host:port"`` joins a running cluster. An actor
  that dies is restarted by Ray and its job retried there; every job's result is yielded once.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Self

BACKENDS = ("local", "ray")
ACTOR_RESTARTS = 3
"""How often Ray restarts a dead actor (and retries its job) before the run fails."""


def worker_init() -> None:
    """Set up a local worker: one torch thread (the parallelism is across processes), and no
    VizDoom game process outliving it.

    The pool learns that a worker died when the worker's end of a pipe closes. A game process
    started by the worker would inherit that end and keep it open, so a killed worker would
    hang the pool instead of breaking it: the worker's inherited descriptors are therefore made
    private to it first. The envs the worker cached are closed when it exits, and also when the
    pool terminates it (SIGTERM), which is what happens to the others when one worker dies.
    """
    import signal

    import torch

    torch.set_num_threads(1)
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        try:
            os.set_inheritable(int(name), False)
        except OSError:  # the descriptor listdir itself used, already closed
            pass
    from dreamgym.evaluate import close_cached_envs

    def close_and_exit(signum: int, frame: object) -> None:
        close_cached_envs()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, close_and_exit)
    multiprocessing.util.Finalize(None, close_cached_envs, exitpriority=10)


def check_backend(backend: str, address: str | None = None) -> None:
    """ValueError for an unknown backend, ImportError with the install command for a missing Ray."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "local" and address is not None:
        raise ValueError("address only applies to backend='ray'")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as error:
            raise ImportError('backend "ray" needs Ray: pip install "dreamgym[ray]"') from error


def run_parallel(function: Callable, jobs: list, workers: int, backend: str = "local",
                 address: str | None = None) -> Iterator:
    """``function(job)`` for every job across ``workers`` workers, results as they finish; the
    workers exist for this call only (a ``WorkerPool`` keeps them for many calls)."""
    with WorkerPool(min(workers, max(1, len(jobs))), backend, address) as pool:
        yield from pool.map(function, jobs)


class WorkerPool:
    """Workers that live across many ``map`` calls, e.g. every generation of a CMA-ES run on
    the real game: each keeps its game, V and M between jobs instead of building them again.

    ``workers <= 1`` on the local backend runs jobs in this process. Local workers are spawned
    processes, which import the caller's main script again: a script that uses more than one
    must do so under ``if __name__ == "__main__":``. A local worker that dies raises an error
    saying so instead of hanging; workers always exit through a clean shutdown, never a
    terminate. Use as a context manager, or call ``close``.
    """

    def __init__(self, workers: int, backend: str = "local", address: str | None = None) -> None:
        check_backend(backend, address)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers, self.backend, self.address = workers, backend, address
        self._executor: ProcessPoolExecutor | None = None
        self._actors: list | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def map(self, function: Callable, jobs: list) -> Iterator:
        """``function(job)`` for every job, results in the order they finish."""
        if not jobs:
            return
        if self.backend == "ray":
            yield from self._map_ray(function, jobs)
        elif self.workers <= 1:
            for job in jobs:
                yield function(job)
        else:
            yield from self._map_local(function, jobs)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._actors is not None:
            import ray

            ray.get([actor.close.remote() for actor in self._actors])
            for actor in self._actors:
                ray.kill(actor)
            self._actors = None
        if self.backend == "local" and self.workers <= 1:
            from dreamgym.evaluate import close_cached_envs

            close_cached_envs()

    def _map_local(self, function: Callable, jobs: list) -> Iterator:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init
            )
        pending = set()
        try:
            pending = {self._executor.submit(function, job) for job in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool as error:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None  # the next map starts fresh workers
            raise RuntimeError(
                "a worker process died: its own output above says why (a game that crashed, memory). "
                "A script that starts workers must do so under `if __name__ == \"__main__\":` "
                "(workers are spawned and import the script again); workers=1 runs in this process."
            ) from error
        finally:
            for future in pending:
                future.cancel()

    def _map_ray(self, function: Callable, jobs: list) -> Iterator:
        """Keep every actor busy with one job; a job whose actor died is retried by Ray on the
        restarted actor, so each job's result arrives exactly once."""
        import ray

        if self._actors is None:
            self._actors = ray_workers(self.workers, self.address)
        queue = list(jobs)
        pending: dict[Any, Any] = {}
        try:
            while queue or pending:
                for actor in self._actors:
                    if queue and actor not in pending.values():
                        pending[actor.call.remote(function, queue.pop(0))] = actor
                ready, _ = ray.wait(list(pending), num_returns=1)
                pending.pop(ready[0])
                yield ray.get(ready[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


# --------------------------------------------------------------------------- Ray


class _Worker:
    """A Ray actor: runs job functions in its own process, keeping their caches between jobs."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)

    def call(self, function: Callable, job: Any) -> Any:
        return function(job)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        from dreamgym.evaluate import close_cached_envs

        close_cached_envs()


def ray_workers(workers: int, address: str | None = None) -> list:
    """``workers`` actors (Ray started on first use: locally, or joining ``address``)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actor = ray.remote(num_cpus=1, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)(_Worker)
    return [actor.remote() for _ in range(max(1, workers))]
