"""The epoch loop shared by V and M: resumable checkpoints, metrics CSV, loss curves.

A stage directory holds ``checkpoint.pt`` (model, optimiser, epoch, config, the metrics of
every finished epoch and, when a validation metric is named, the weights of the epoch where it
was lowest; written atomically after each epoch), the one before it as
``checkpoint.previous.pt``, and ``metrics.csv`` / ``loss.png`` regenerated from it. After a
crash, ``resume=True`` restarts from the last finished epoch: at most the epoch in progress is
lost, and the result has the same number of epochs as an uninterrupted run. A last checkpoint
damaged afterwards costs one epoch: the stage goes on from the previous one and says so. A
temporary file left by a write that was killed is removed by the next run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamgym import rundir
from dreamgym.files import (
    DamagedFileError,
    atomic_save_torch,
    atomic_write_text,
    link_or_copy,
    load_torch_checkpoint,
)

Report = Callable[[str], None]


def no_report(message: str) -> None:
    """The default report callback: library code stays quiet unless given one."""


Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)``, called as work advances (``total`` 0 while unknown; a task
ends with ``done == total``): the one progress protocol of every stage. Library code never
draws; the CLI turns calls into bars."""


def no_progress(task: str, done: int, total: int) -> None:
    """The default progress callback: nothing is shown."""


class StageError(RuntimeError):
    """A stage cannot run as asked (unfinished checkpoint without --resume, missing input...)."""


class EpisodeError(StageError):
    """An episode failed inside the env or the policy; the message names the env and the episode."""


@contextlib.contextmanager
def episode_errors(env_id: str, index: int, seed: int) -> Iterator[None]:
    """Turn a failure of a user's env (or of the policy playing it) into one EpisodeError line
    that names ``env_id`` and the episode; dreamgym's own clear errors pass unchanged."""
    try:
        yield
    except (StageError, DamagedFileError):
        raise
    except Exception as error:
        raise EpisodeError(f"{env_id}, episode {index} (seed {seed}): {type(error).__name__}: {error}") from error


@dataclass
class StageResult:
    epochs: int
    """Epochs in the final checkpoint."""
    trained_epochs: int
    """Epochs trained by this call (0 when the stage was already finished)."""
    seconds: float
    history: list[dict[str, float]]
    kept_epoch: int
    """The epoch whose weights ``load_trained`` returns (the best one when a metric was
    selected on, else the last)."""


def read_checkpoint(stage_dir: Path, report: Report = no_report) -> dict | None:
    """The last checkpoint of a stage directory; if it is damaged, the one before it (said
    through ``report``); None if there is none. DamagedFileError if neither can be read."""
    path, previous = rundir.checkpoint(stage_dir), rundir.previous_checkpoint(stage_dir)
    if not path.exists() and not previous.exists():
        return None
    try:
        return load_torch_checkpoint(path)
    except DamagedFileError as error:
        if not previous.exists():
            raise
        checkpoint = load_torch_checkpoint(previous)
        report(f"{stage_dir.name}: {error}; going on from {previous.name} (epoch {int(checkpoint['epoch'])})")
        return checkpoint


def remove_leftover_temporaries(directory: Path) -> None:
    """Delete the temporary files of writes that were killed (see :func:`dreamgym.files.atomic_write`)."""
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def keep_as_previous(path: Path, previous: Path) -> None:
    """Make ``previous`` hold what ``path`` holds now, before ``path`` is replaced (see
    :func:`~dreamgym.files.link_or_copy`). If writing the new ``path`` then fails, both still
    hold the last good checkpoint."""
    link_or_copy(path, previous)


def train_epochs(
    stage_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    run_epoch: Callable[[int], dict[str, float]],
    config: dict,
    *,
    resume: bool = False,
    force: bool = False,
    on_epoch_end: Callable[[int, list[dict[str, float]]], None] | None = None,
    select: str | None = None,
    report: Report = no_report,
) -> StageResult:
    """Run ``run_epoch(epoch)`` for every epoch not yet in the checkpoint of ``stage_dir``.

    ``run_epoch`` trains ``model`` in place and returns the epoch's mean metrics. A finished
    stage is a no-op unless ``force``; an unfinished one needs ``resume`` (or ``force`` to
    start over), so that a crash never silently throws work away. With ``select`` (a metric
    to minimise, e.g. a validation loss), the weights of the best epoch so far are kept beside
    the last ones, and ``load_trained`` returns them: training stays resumable from the last
    epoch while the model that is used is the one that generalised best.

    An epoch whose metrics are NaN or inf stops the stage with a StageError naming it; the
    checkpoint of the epoch before stays the last one.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    stage_dir.mkdir(parents=True, exist_ok=True)
    path = rundir.checkpoint(stage_dir)
    start = time.perf_counter()
    if force and stage_dir.exists():
        shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True)
    remove_leftover_temporaries(stage_dir)
    history: list[dict[str, float]] = []
    best: dict | None = None
    first_epoch = 0
    checkpoint = read_checkpoint(stage_dir, report)
    if checkpoint is not None:
        first_epoch = int(checkpoint["epoch"])
        best = checkpoint.get("best")
        if first_epoch >= epochs:
            model.load_state_dict((best or checkpoint)["model"])
            report(f"{stage_dir.name}: already finished ({first_epoch} epochs); --force retrains")
            return StageResult(first_epoch, 0, 0.0, checkpoint["history"], kept_epoch(checkpoint))
        if not resume:
            raise StageError(
                f"{path} holds an unfinished run ({first_epoch} of {epochs} epochs): "
                "pass --resume to continue it or --force to start over"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        history = list(checkpoint["history"])
        report(f"{stage_dir.name}: resuming after epoch {first_epoch} of {epochs}")
    for epoch in range(first_epoch, epochs):
        epoch_start = time.perf_counter()
        metrics = {"epoch": epoch + 1, **run_epoch(epoch)}
        broken = sorted(key for key, value in metrics.items() if not math.isfinite(value))
        if broken:
            raise StageError(
                f"{stage_dir.name}: epoch {epoch + 1} gave {', '.join(broken)} = NaN or inf (the data or "
                f"the settings drive the model to overflow); the checkpoint of epoch {epoch} is kept"
            )
        metrics["seconds"] = time.perf_counter() - epoch_start
        history.append(metrics)
        if select is not None and select in metrics and (best is None or metrics[select] < best["value"]):
            best = {
                "epoch": epoch + 1,
                "metric": select,
                "value": metrics[select],
                "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch + 1,
            "config": config,
            "history": history,
        }
        if best is not None:
            state["best"] = best
        if path.exists():
            keep_as_previous(path, rundir.previous_checkpoint(stage_dir))
        atomic_save_torch(state, path)
        write_metrics(rundir.metrics(stage_dir), history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch")
        report(f"{stage_dir.name}: epoch {epoch + 1}/{epochs}: {shown}")
    if best is not None:
        model.load_state_dict(best["model"])
        report(f"{stage_dir.name}: keeping epoch {best['epoch']} (lowest {best['metric']}, {best['value']:.4g})")
    return StageResult(epochs, epochs - first_epoch, time.perf_counter() - start, history, kept_epoch(state))


def prefetch(batches: Iterable, depth: int = 4) -> Iterator:
    """The items of ``batches``, produced ``depth`` ahead by a background thread.

    Reading and decompressing episode files (numpy and zlib release the GIL) then overlaps the
    model's step instead of alternating with it, which is what keeps a GPU fed. The items and
    their order are exactly those of ``batches``; an exception in the producer is raised here.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as error:  # handed to the consumer
            items.put((done, error))

    thread = threading.Thread(target=produce, name="dreamgym-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def write_metrics(path: Path, history: list[dict[str, float]], step: str = "epoch") -> None:
    """The whole history as CSV at ``path``, and its last row as TensorBoard scalars (see
    :func:`log_scalars`)."""
    if history:
        log_scalars(path.parent, history[-1], step)
    buffer = io.StringIO()
    names = list(dict.fromkeys(key for row in history for key in row))
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def logs_to_tensorboard(run_dir: Path) -> bool:
    """Whether work in ``run_dir`` also logs TensorBoard events: when it is a run directory
    (``pipeline``, a round of ``iterate``, ``online``) and the ``tensorboard`` package
    (``pip install "dreamgym[tensorboard]"``) is there. Elsewhere (a demo's output, an agent
    saved at a path of the user's) nothing is added."""
    import importlib.util

    return rundir.RunDir(run_dir).kind() is not None and importlib.util.find_spec("tensorboard") is not None


def set_agent_logging(agent: Any, run_dir: Path) -> None:
    """Where an SB3 ``agent`` trained for ``run_dir`` logs: in a run, to ``RUN/tensorboard/ALGO_1``
    beside the stages' own events (see :func:`logs_to_tensorboard`; a continued agent keeps its
    ``ALGO_N``); elsewhere, to the console only (when ``agent.verbose`` asks), since SB3 left to
    itself makes an empty ``SB3-<date>`` folder in the temp directory on every ``learn()``."""
    if logs_to_tensorboard(run_dir):
        agent.tensorboard_log = os.fspath(Path(run_dir) / rundir.TENSORBOARD)
    else:
        from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger

        formats: list[KVWriter] = [HumanOutputFormat(sys.stdout)] if agent.verbose >= 1 else []
        agent.set_logger(Logger(folder=None, output_formats=formats))


_WRITERS: dict[Path, Any] = {}  # torch SummaryWriters, one per directory, open for the process


def log_scalars(stage_dir: Path, row: dict[str, float], step: str) -> None:
    """One epoch's or generation's numbers as TensorBoard scalars in ``RUN/tensorboard/STAGE``,
    at step ``row[step]``, named as SB3 names its own (``train/loss``, ``validation/nll``); a
    no-op unless :func:`logs_to_tensorboard` for the stage's run."""
    if not logs_to_tensorboard(Path(stage_dir).parent):
        return
    from torch.utils.tensorboard import SummaryWriter

    directory = rundir.tensorboard(stage_dir)
    writer = _WRITERS.get(directory)
    if writer is None:
        writer = _WRITERS[directory] = SummaryWriter(os.fspath(directory))
    for name, value in row.items():
        if name != step and isinstance(value, (int, float)) and math.isfinite(value):
            group, _, metric = name.partition("_") if name.startswith("validation_") else ("train", "", name)
            writer.add_scalar(f"{group}/{metric}", value, int(row[step]))
    writer.flush()


def kept_epoch(checkpoint: dict) -> int:
    """The epoch whose weights a checkpoint's ``load_trained`` gives."""
    return checkpoint["best"]["epoch"] if "best" in checkpoint else int(checkpoint["epoch"])


def load_trained(stage_dir: Path, model: torch.nn.Module) -> dict:
    """Load the model of a finished (or partial) stage, its best-validation epoch when one was
    kept; StageError if it has none."""
    checkpoint = read_checkpoint(stage_dir)
    if checkpoint is None:
        raise StageError(f"{rundir.checkpoint(stage_dir)} does not exist: run the stage that writes it first")
    try:
        model.load_state_dict(checkpoint.get("best", checkpoint)["model"])
    except RuntimeError as error:
        raise StageError(
            f"{rundir.checkpoint(stage_dir)} does not fit the model built from run.json (settings changed "
            f"since?): {error}"
        ) from error
    return checkpoint
