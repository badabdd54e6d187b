"""Files that are either complete or absent: atomic writes, hashes, safe checkpoint loading."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file


class DamagedFileError(ValueError):
    """A file is missing, truncated, tampered with or malformed; the message names it."""


class WriteError(OSError):
    """A file could not be written (disk full, no permission...); its previous version is intact."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # the sentence, without OSError's "[Errno N]"


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.
    Either the new file is complete or the old one is untouched; a failure of the file system
    raises :class:`WriteError` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            kept = "its previous version is untouched" if path.exists() else "nothing was written"
            raise WriteError(error.errno, f"cannot write {path}: {error.strerror or error}; {kept}") from error
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_directory(
    directory: str | Path, fill: Callable[[Path], None], previous: str = "its previous version"
) -> Path:
    """Call ``fill(staging)`` on a new directory beside ``directory``, then put it in its place by
    renames only. Either the new directory is complete or the old one is untouched; a failure of
    the file system raises :class:`WriteError` naming ``directory`` (and saying that
    ``previous`` is untouched)."""
    directory = Path(directory)
    # A plain mkdir, not tempfile.mkdtemp (which makes it private, 0o700): its mode is 0o777 & ~umask.
    staging = directory.parent / f".{directory.name}.{os.getpid()}-{secrets.token_hex(4)}"
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        fill(staging)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            kept = f"{previous} is untouched" if directory.exists() else "nothing was written"
            raise WriteError(error.errno, f"cannot write {directory}: {error.strerror or error}; {kept}") from error
        raise
    return directory


MAX_JSON_BYTES = 1 << 26


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold what ``source`` holds now, atomically: a hard link (no bytes copied;
    a copy where links are not allowed). Files dreamgym rewrites are replaced, never written in
    place, so a later version of ``source`` leaves ``target`` as it was."""
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file dreamgym wrote (a record, a table, settings); DamagedFileError names the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DamagedFileError(f"{path} is {size} bytes: more than the {max_bytes} such a file may hold")
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged: not valid JSON ({error}); delete it, or restore it") from None
    except FileNotFoundError:
        raise DamagedFileError(f"{path} is missing") from None


def atomic_save_torch(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file (training checkpoints of a run directory)."""

    def write(tmp: Path) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as error:  # torch's writer reports a full disk as "unexpected pos ..."
            raise OSError(errno.EIO, f"torch.save failed ({error})") from error

    atomic_write(path, write)


def write_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """safetensors' save_file, its failures (a full disk, a size limit) raised as OSError."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as error:
        raise OSError(errno.EIO, f"{Path(path).name}: {error}") from error


def load_torch_checkpoint(path: str | Path) -> dict:
    """Load a training checkpoint with ``weights_only=True`` (tensors and plain data only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise DamagedFileError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from error


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DestinationError(ValueError):
    """A command was pointed at a place it does not own; nothing there was touched."""


LOCK_FILE = ".lock"


def check_destination(path: str | Path, what: str, owned: Callable[[Path], bool]) -> Path:
    """``path`` if a command that writes ``what`` may write there: an absent path, an empty
    directory (the command's own lock file aside), or a directory ``owned`` says is ``what``
    already. Anything else (a file, a directory of other things) raises DestinationError
    before anything is moved or written."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_dir():
        raise DestinationError(
            f"{path} exists and is not a directory: expected an absent path, an empty directory "
            f"or {what}; nothing was written"
        )
    if any(entry.name != LOCK_FILE for entry in path.iterdir()) and not owned(path):
        raise DestinationError(
            f"{path} is not empty and is not {what}: refusing to write there, so that nothing in it "
            f"is lost; give an absent path, an empty directory or {what}"
        )
    return path


class RunLockedError(RuntimeError):
    """Another process is working on the same run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` for as long as the block runs.

    A second process asking for the same run directory is refused at once with the first
    one's pid, so that two trainings never write the same checkpoints. The lock is released by
    the operating system if the holder dies, even by SIGKILL. A directory the lock had to create
    is removed again if the block left nothing in it (a refused command leaves no empty run).
    """
    path = Path(run_dir) / LOCK_FILE
    created = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+")  # noqa: SIM115  (closed by the with below)
    except OSError as error:
        raise WriteError(error.errno, f"cannot write in {run_dir}: {error.strerror or error}") from error
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            raise RunLockedError(
                f"{run_dir} is in use by another dreamgym process (pid {holder}); wait for it to finish"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        try:
            yield
        finally:
            if created and [p.name for p in path.parent.iterdir()] == [path.name]:
                path.unlink()
                path.parent.rmdir()
            fcntl.flock(file, fcntl.LOCK_UN)


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    """Arrays as the bytes of an npz file (to write atomically, or to send from a worker)."""
    buffer = io.BytesIO()
    if compressed:
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy reads the arrays as keywords
    else:
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()
