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
  Ray not installed, or no cluster answering at ``address``, is a :class:`BackendUnavailableError`
  (a ValueError) within seconds, saying what to do.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Self

BACKENDS = ("local", "ray")
ACTOR_RESTARTS = 3
"""How often Ray restarts a dead actor (and retries its job) before the run fails."""


_WORKER_CACHE: dict[Any, Any] = {}
"""This process's cache: what a worker builds once (a game, a policy) and keeps for every later job."""


def worker_cached(key: Any, make: Callable[[], Any]) -> Any:
    """The value cached under ``key`` in this process, made by ``make()`` the first time. Values
    with a ``close`` method (games) are closed by :func:`close_worker_cache`."""
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = make()
    return _WORKER_CACHE[key]


def close_worker_cache() -> None:
    """Close and forget what this process cached (a worker does it when it ends or is terminated)."""
    for value in _WORKER_CACHE.values():
        if callable(getattr(value, "close", None)):
            value.close()
    _WORKER_CACHE.clear()


def built_games() -> list[Any]:
    """The games this process built from env ids (``game_from_env``), for its workers to know."""
    from dreamgym.games import GAMES

    return [game for game in GAMES.values() if game.spec is not None]


def know_games(games: list[Any]) -> None:
    """Register in a worker the games its parent built (a game made from a test's or a user's
    own env id is known to the process that made it, and now to its workers)."""
    from dreamgym.games import register_game

    for game in games:
        register_game(game)


def worker_init(games: list[Any] | None = None) -> None:
    """Set up a local worker: the parent's games, one torch thread (the parallelism is across
    processes), and no VizDoom game process outliving it.

    The pool learns that a worker died when the worker's end of a pipe closes. A game process
    started by the worker would inherit that end and keep it open, so a killed worker would
    hang the pool instead of breaking it: the worker's inherited descriptors are therefore made
    private to it first. The games the worker cached are closed when it exits, and also when the
    pool terminates it (SIGTERM), which is what happens to the others when one worker dies.
    """
    import signal

    import torch

    know_games(games or [])
    torch.set_num_threads(1)
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        try:
            os.set_inheritable(int(name), False)
        except OSError:  # the descriptor listdir itself used, already closed
            pass

    def close_and_exit(signum: int, frame: object) -> None:
        close_worker_cache()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, close_and_exit)
    multiprocessing.util.Finalize(None, close_worker_cache, exitpriority=10)


class BackendUnavailableError(ValueError):
    """The Ray backend cannot run: Ray is not installed, or no Ray cluster answers at the address.
    The message says what to do instead."""


def check_backend(backend: str, address: str | None = None) -> None:
    """ValueError for an unknown backend, BackendUnavailableError (a ValueError) with the install
    command when Ray is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "local" and address is not None:
        raise ValueError("address only applies to backend='ray'")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as error:
            raise BackendUnavailableError(
                'backend "ray" needs Ray, which is not installed: pip install "dreamgym[ray]" '
                '(or use backend "local", the default)'
            ) from error


def run_parallel(
    function: Callable, jobs: list, workers: int, backend: str = "local", address: str | None = None
) -> Iterator:
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
            close_worker_cache()

    def _map_local(self, function: Callable, jobs: list) -> Iterator:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(built_games(),),
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
                'A script that starts workers must do so under `if __name__ == "__main__":` '
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

    def __init__(self, games: list[Any]) -> None:
        import torch

        know_games(games)
        torch.set_num_threads(1)

    def call(self, function: Callable, job: Any) -> Any:
        return function(job)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        close_worker_cache()


CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a Ray cluster's port to answer before giving up on it."""


def _no_cluster(address: str, why: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"no Ray cluster answers at address {address!r} ({why}): start one with `ray start --head` "
        "(then address 'auto' finds it) or give its host:port, or give no address to start Ray on "
        "this machine for this run"
    )


def check_ray_cluster(address: str | None) -> None:
    """Fail within seconds when nothing listens at a Ray cluster address, where ``ray.init`` would
    retry for minutes. ``None`` and ``"local"`` start Ray here; ``"auto"`` (and ``None``) use
    ``$RAY_ADDRESS`` when it is set, as Ray does; a bare ``"auto"`` is left to Ray, which fails
    fast by itself when it finds no cluster."""
    if address in (None, "auto"):
        address = os.environ.get("RAY_ADDRESS") or address
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BackendUnavailableError(f"expected a Ray address 'auto' or host:port, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise _no_cluster(address, error.strerror or str(error) or type(error).__name__) from error


def ray_workers(workers: int, address: str | None = None) -> list:
    """``workers`` actors (Ray started on first use: locally, or joining ``address``).

    BackendUnavailableError, saying what to do, when no cluster answers at ``address``.
    """
    import ray

    if not ray.is_initialized():
        check_ray_cluster(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as error:  # "auto" found no running cluster
            raise _no_cluster(address or "auto", str(error).split(".")[0]) from error
    actor = ray.remote(num_cpus=1, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS)(_Worker)
    games = built_games()
    return [actor.remote(games) for _ in range(max(1, workers))]
