"""Model directories and atomic files.

A model directory is what ``world_model=DIR`` and ``pretrained/`` hold::

    config.json                 game, V/M/controller configs, sha256 + size of every weights file
    vae.safetensors             V
    mdnrnn.safetensors          M
    initial_latents.safetensors μ and log σ² of real first frames (the dream's reset distribution)
    controller.safetensors      optional: a controller trained in this dream
    MODEL_CARD.md               optional: provenance, sizes, losses, scores

Nothing is unpickled: weights are safetensors, everything else JSON. Every weights file is
checked against the size and sha256 recorded in config.json before it is read, and the error
names the file and what is wrong. Writes go to a temporary name and are renamed into place,
so a crash never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dreamgym.controller import LinearController
from dreamgym.files import DamagedFileError, atomic_write, sha256_of
from dreamgym.games import get_game
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig
from dreamgym.world_model import WorldModel

FORMAT = "dreamgym-world-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "MODEL_CARD.md"

SHIPPED_MODELS = {"car_racing": "carracing", "doom_take_cover": "doom"}
"""Names accepted by ``world_model=`` -> game; their directories live in ``pretrained/``."""

_BUILD_HINT = {
    "carracing": "dreamgym pipeline carracing --out runs/carracing",
    "doom": "dreamgym pipeline doom --out runs/doom",
}


class ModelFileError(DamagedFileError):
    """A model directory or checkpoint file is missing, truncated, tampered with or malformed."""


# --------------------------------------------------------------------------- resolving names


def pretrained_root() -> Path:
    """Where shipped model directories live: ``$DREAMGYM_PRETRAINED`` if set; else the copy an
    installed wheel carries (``dreamgym/pretrained/``); else, in a checkout or an editable
    install, the repository's ``pretrained/``."""
    if "DREAMGYM_PRETRAINED" in os.environ:
        return Path(os.environ["DREAMGYM_PRETRAINED"])
    package = Path(__file__).resolve().parent
    installed = package / "pretrained"
    return installed if installed.is_dir() else package.parent / "pretrained"


def resolve_model_dir(world_model: str | os.PathLike, game: str | None = None) -> Path:
    """The directory for ``world_model``: a shipped name or a path. Errors say what to do instead."""
    if not isinstance(world_model, (str, os.PathLike)):
        raise TypeError(f"world_model must be a shipped model name or a path, got {type(world_model).__name__}")
    name = os.fspath(world_model)
    if name in SHIPPED_MODELS:
        directory = pretrained_root() / name
        if not (directory / CONFIG_FILE).is_file():
            shipped_game = SHIPPED_MODELS[name]
            raise FileNotFoundError(
                f"the pretrained world model {name!r} is not installed (no {directory / CONFIG_FILE}). "
                f"Build one with `{_BUILD_HINT[shipped_game]}` (it is exported to runs/{shipped_game}/model) "
                "and pass that directory as world_model."
            )
        return directory
    directory = Path(name).expanduser()
    if directory.is_dir():
        return directory
    hint = f"; for {game} build one with `{_BUILD_HINT[game]}`" if game in _BUILD_HINT else ""
    raise ValueError(
        f"unknown world_model {name!r}: expected one of the shipped models {sorted(SHIPPED_MODELS)} "
        f"or the path of an existing model directory{hint}"
    )


# --------------------------------------------------------------------------- model directories


def _tensors_to_cpu(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[key] = tensor.contiguous()
    return out


def save_world_model(
    model: WorldModel,
    directory: str | Path,
    *,
    model_card: str | None = None,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` as a model directory, atomically: a temporary sibling directory is filled,
    then swapped in. ``weights_dtype=torch.float16`` halves the files (loaded back as float32).

    The directory and its files get the permissions of any directory and file the user makes
    (0o777 and 0o666 less the umask: ``drwxr-xr-x`` and ``-rw-r--r--`` under the usual umask 022),
    so that a model can be shared or copied like other files.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, not tempfile.mkdtemp (which makes it private, 0o700): its mode is 0o777 & ~umask.
    staging = directory.parent / f".{directory.name}.{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        tensors = {
            "vae.safetensors": _tensors_to_cpu(model.vae.state_dict(), weights_dtype),
            "mdnrnn.safetensors": _tensors_to_cpu(model.mdnrnn.state_dict(), weights_dtype),
            "initial_latents.safetensors": _tensors_to_cpu(
                {"mu": model.initial_mu, "logvar": model.initial_logvar}, weights_dtype
            ),
        }
        if model.controller is not None:
            tensors["controller.safetensors"] = {
                "weight": torch.from_numpy(model.controller.weight.astype(np.float32)),
                "bias": torch.from_numpy(model.controller.bias.astype(np.float32)),
            }
        files = {}
        for name, content in tensors.items():
            save_file(content, str(staging / name))
            files[name] = {"sha256": sha256_of(staging / name), "bytes": (staging / name).stat().st_size}
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "game": model.game.name,
            "vae": model.vae.config.to_dict(),
            "mdnrnn": model.mdnrnn.config.to_dict(),
            "controller": None if model.controller is None else {"obs_dim": model.controller.obs_dim},
            "files": files,
            "metadata": model.metadata,
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if model_card is not None:
            (staging / MODEL_CARD_FILE).write_text(model_card)
        file_mode = staging.stat().st_mode & 0o666  # what open() gives under the same umask
        for path in staging.iterdir():
            path.chmod(file_mode)  # safetensors writes its files 0o600
        _swap_in(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _swap_in(staging: Path, directory: Path) -> None:
    """Replace ``directory`` by ``staging`` with renames only."""
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
        os.replace(staging, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, directory)


def read_model_config(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelFileError(f"{directory} is not a dreamgym model directory: {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a dreamgym model config (expected format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format_version {config.get('format_version')!r}; this dreamgym reads {FORMAT_VERSION}"
        )
    return config


def verified_tensors(directory: Path, name: str, config: dict) -> dict[str, torch.Tensor]:
    """Load one weights file after checking it exists and matches its recorded size and sha256."""
    path = directory / name
    record = config["files"].get(name)
    if record is None:
        raise ModelFileError(f"{path}: not listed in {CONFIG_FILE}, so it cannot be verified")
    if not path.is_file():
        raise ModelFileError(f"{path} is missing")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ModelFileError(f"{path} is truncated or padded: {size} bytes, expected {record['bytes']}")
    digest = sha256_of(path)
    if digest != record["sha256"]:
        raise ModelFileError(
            f"{path} was modified or corrupted: sha256 {digest[:12]}…, expected {record['sha256'][:12]}…"
        )
    try:
        return {key: value.float() for key, value in load_file(str(path)).items()}
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file ({error})") from error


def load_world_model(
    world_model: str | os.PathLike, *, game: str | None = None, device: str | torch.device = "auto"
) -> WorldModel:
    """Load a shipped model name or a model directory; ``game`` (if given) must match."""
    directory = resolve_model_dir(world_model, game)
    config = read_model_config(directory)
    model_game = get_game(config["game"])
    if game is not None and model_game.name != game:
        raise ValueError(f"world model {directory} is for {model_game.name!r}, not {game!r}")
    try:
        vae = ConvVAE(VAEConfig(**config["vae"]))
        mdnrnn = MDNRNN(MDNRNNConfig(**config["mdnrnn"]))
    except TypeError as error:
        raise ModelFileError(f"{directory / CONFIG_FILE} has unexpected model settings ({error})") from error
    for module, name in ((vae, "vae.safetensors"), (mdnrnn, "mdnrnn.safetensors")):
        try:
            module.load_state_dict(verified_tensors(directory, name, config))
        except RuntimeError as error:
            raise ModelFileError(f"{directory / name} does not fit the config ({error})") from error
    latents = verified_tensors(directory, "initial_latents.safetensors", config)
    controller = None
    if config.get("controller"):
        weights = verified_tensors(directory, "controller.safetensors", config)
        controller = LinearController(model_game, weights["weight"].numpy(), weights["bias"].numpy())
    model = WorldModel(
        game=model_game,
        vae=vae,
        mdnrnn=mdnrnn,
        initial_mu=latents["mu"],
        initial_logvar=latents["logvar"],
        controller=controller,
        metadata=config.get("metadata", {}),
    )
    return model.to(device)


# --------------------------------------------------------------------------- controllers alone


def save_controller(controller: LinearController, path: str | Path, metadata: dict | None = None) -> None:
    """A controller file: safetensors with its game and metadata in the header (strings only)."""
    header = {"format": "dreamgym-controller", "game": controller.game.name, "metadata": json.dumps(metadata or {})}
    tensors = {"weight": torch.from_numpy(controller.weight), "bias": torch.from_numpy(controller.bias)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_controller(path: str | Path) -> LinearController:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"controller file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
            weight, bias = file.get_tensor("weight"), file.get_tensor("bias")
    except Exception as error:  # safetensors raises several types for damaged files
        raise ModelFileError(f"{path} is not a readable controller file ({error})") from error
    if header.get("format") != "dreamgym-controller":
        raise ModelFileError(f"{path} is not a dreamgym controller file")
    return LinearController(get_game(header["game"]), weight.float().numpy(), bias.float().numpy())
