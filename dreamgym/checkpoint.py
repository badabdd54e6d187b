"""Model directories and atomic files.

A model directory is what ``world_model=DIR`` and ``pretrained/`` hold::

    config.json                 game, V/M/controller configs, the dream's default settings, sha256 +
                                size of every weights file
    vae.safetensors             V
    mdnrnn.safetensors          M (member 0)
    mdnrnn_member_K.safetensors optional: members 1.. of an ensemble (``members`` in config.json)
    initial_latents.safetensors μ and log σ² of real first frames (the dream's reset distribution)
    start_episodes.safetensors  optional: real episodes' μ and actions (``starts="data"``)
    controller.safetensors      optional: a controller trained in this dream
    MODEL_CARD.md               optional: provenance, sizes, losses, scores

Nothing is unpickled: weights are safetensors, everything else JSON. Every weights file is
checked against the size and sha256 recorded in config.json before it is read, and the error
names the file and what is wrong. Writes go to a temporary name and are renamed into place,
so a crash never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from dreamgym.config import (
    MAX_HIDDEN_DIM,
    MAX_MEMBERS,
    MAX_MIXTURES,
    MAX_Z_DIM,
    DreamSettings,
)
from dreamgym.controller import LinearController
from dreamgym.devices import resolve_device
from dreamgym.files import (
    LOCK_FILE,
    DamagedFileError,
    atomic_directory,
    atomic_write,
    check_destination,
    sha256_of,
    write_safetensors,
)
from dreamgym.games import (
    GAMES,
    Game,
    game_record,
    lookup,
    pretrained_root,
    resolve_game,
    shipped_models,
)
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig
from dreamgym.validation import check_fields, rules_of
from dreamgym.world_model import StartEpisodes, WorldModel, observation_size

FORMAT = "dreamgym-world-model"
FORMAT_VERSION = 2
"""The version of the format this dreamgym writes and reads: config.json records the sha256 of
its own contents."""
MAX_INITIAL_LATENTS = 1_000_000
"""More stored first frames than this is no model dreamgym wrote."""
MAX_START_STEPS = 200_000
MAX_START_EPISODES = 1024
"""More stored real steps or episodes for ``starts="data"`` than these is no model dreamgym wrote
(it stores 32 episodes); they bound the warm-up's work and memory."""
MAX_M_PARAMETERS = 400_000_000
"""Weights of all of a model's M together (1.6 GB as float32; the paper's Doom M has 1.7 million)."""
START_FILE = "start_episodes.safetensors"
WEIGHT_DTYPES = ("F32", "F16", "BF16")
CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
PICTURES_DIR = "pictures"
MAX_CONFIG_BYTES = 1 << 24
"""A config.json larger than this (16 MiB) is no model dreamgym wrote: it is not read."""

SHIPPED_MODELS = {name: game for name, (game, _) in shipped_models().items()}
"""Names accepted by ``world_model=`` -> game; their directories live in ``pretrained/``."""


class ModelFileError(DamagedFileError):
    """A model directory or checkpoint file is missing, truncated, tampered with or malformed."""


# --------------------------------------------------------------------------- resolving names


def resolve_model_dir(world_model: str | os.PathLike, game: str | None = None) -> Path:
    """The directory for ``world_model``: a shipped name or a path. Errors say what to do instead."""
    if not isinstance(world_model, (str, os.PathLike)):
        raise TypeError(f"world_model must be a shipped model name or a path, got {type(world_model).__name__}")
    name = os.fspath(world_model)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"world_model is empty: give a shipped model name {sorted(SHIPPED_MODELS)} or the path of a "
            "model directory (or leave it out for the game's shipped model)"
        )
    if name in SHIPPED_MODELS:
        directory = pretrained_root() / name
        if not (directory / CONFIG_FILE).is_file():
            shipped_game = SHIPPED_MODELS[name]
            raise FileNotFoundError(
                f"the pretrained world model {name!r} is not installed (no {directory / CONFIG_FILE}). "
                f"Build one with `{lookup(shipped_game).build_command}` (it is exported to runs/{shipped_game}/model) "
                "and pass that directory as world_model."
            )
        return directory
    directory = Path(name).expanduser()
    if directory.is_dir():
        return directory
    hint = f"; for {game} build one with `{GAMES[game].build_command}`" if game in GAMES else ""
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
    directory = check_destination(directory, "a dreamgym model directory", is_model_directory)
    if model.controller is not None and (
        model.controller.game.name != model.game.name or model.controller.obs_dim != model.observation_dim
    ):
        raise ValueError(
            f"cannot save {directory}: its controller reads {model.controller.obs_dim} inputs of "
            f"{model.controller.game.name}, but this {model.game.name} model's observation "
            f"{model.dream_defaults.observation!r} has {model.observation_dim} (was it trained in another dream?)"
        )

    def fill(staging: Path) -> None:
        tensors = {
            "vae.safetensors": _tensors_to_cpu(model.vae.state_dict(), weights_dtype),
            "mdnrnn.safetensors": _tensors_to_cpu(model.mdnrnn.state_dict(), weights_dtype),
            "initial_latents.safetensors": _tensors_to_cpu(
                {"mu": model.initial_mu, "logvar": model.initial_logvar}, weights_dtype
            ),
        }
        for k, member in enumerate(model.members, start=1):
            tensors[f"mdnrnn_member_{k}.safetensors"] = _tensors_to_cpu(member.state_dict(), weights_dtype)
        if model.start_episodes is not None:
            starts = model.start_episodes
            tensors[START_FILE] = {
                **_tensors_to_cpu({"mu": starts.mu, "actions": starts.actions}, weights_dtype),
                "lengths": starts.lengths.detach().cpu().float(),
            }  # exact below 2**24
        if model.controller is not None:
            tensors["controller.safetensors"] = {
                "weight": torch.from_numpy(model.controller.weight.astype(np.float32)),
                "bias": torch.from_numpy(model.controller.bias.astype(np.float32)),
            }
        files = {}
        for name, content in tensors.items():
            write_safetensors(content, staging / name)
            files[name] = {"sha256": sha256_of(staging / name), "bytes": (staging / name).stat().st_size}
        for name, content in tensors.items():
            broken = [key for key, tensor in content.items() if not bool(torch.isfinite(tensor).all())]
            if broken:
                raise ValueError(f"cannot save {directory}: {name} would hold NaN or inf in {broken}")
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **game_record(model.game),
            "vae": model.vae.config.to_dict(),
            "mdnrnn": model.mdnrnn.config.to_dict(),
            "members": len(model.all_members),
            "dream": dataclasses.asdict(model.dream_defaults),
            "controller": None if model.controller is None else {"obs_dim": model.controller.obs_dim},
            "files": files,
            "metadata": model.metadata,
        }
        config["config_sha256"] = config_digest(config)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if model_card is not None:
            (staging / MODEL_CARD_FILE).write_text(model_card)
        file_mode = staging.stat().st_mode & 0o666  # what open() gives under the same umask
        for path in staging.iterdir():
            path.chmod(file_mode)  # safetensors writes its files 0o600

    return atomic_directory(directory, fill, "the model there")


def is_model_directory(directory: Path) -> bool:
    """Whether ``directory`` is a model directory dreamgym may replace: a readable model config,
    and nothing in it but a model's files (anything else would be lost in the swap)."""
    try:
        read_model_config(directory)
    except ModelFileError:
        return False
    return all(
        entry.name in (CONFIG_FILE, MODEL_CARD_FILE, PICTURES_DIR, LOCK_FILE) or entry.name.endswith(".safetensors")
        for entry in directory.iterdir()
    )


def config_digest(config: dict) -> str:
    """sha256 of a model config's contents (all but the digest itself), in canonical JSON."""
    contents = {key: value for key, value in config.items() if key != "config_sha256"}
    return hashlib.sha256(json.dumps(contents, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def model_game(world_model: str | os.PathLike) -> Game:
    """The game of a model directory (or shipped name), from its config.json alone (a game made
    by ``game_from_env`` is built again from the env it records, and registered)."""
    directory = resolve_model_dir(world_model)
    return _config_game(directory / CONFIG_FILE, read_model_config(directory))


def _config_game(path: Path, config: dict) -> Game:
    try:
        return resolve_game(config.get("game"), config.get("env"))
    except (ValueError, ImportError) as error:
        raise ModelFileError(f"{path}: field 'game': {error}") from None


def env_game(game: str, world_model: Any) -> Game:
    """The game of an env made with ``game=`` and ``world_model=``: known by name, or else (a game
    made by ``game_from_env``, in a process that has not built it yet, e.g. a worker) read from
    the model directory, which must be of the same game."""
    if game in GAMES or not isinstance(world_model, (str, os.PathLike)):
        return lookup(game)
    found = model_game(world_model)
    if found.name != game:
        raise ValueError(f"world model {world_model} is for {found.name!r}, not {game!r}")
    return found


def read_model_config(directory: str | Path) -> dict:
    """config.json of a model directory, checked: JSON object, format and version, its own
    digest (version 2), and every field the loader uses present and of the right type."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelFileError(f"{directory} is not a dreamgym model directory: {CONFIG_FILE} is missing")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{path} is {size} bytes: a model config is at most {MAX_CONFIG_BYTES}")
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
    if config.get("config_sha256") != config_digest(config):
        raise ModelFileError(
            f"{path} was edited or corrupted: its contents do not match their recorded sha256 "
            "(config_sha256); every setting in it changes the dream, so it is refused"
        )
    for key, kind in (("game", str), ("vae", dict), ("mdnrnn", dict), ("files", dict)):
        if not isinstance(config.get(key), kind):
            raise ModelFileError(f"{path}: field {key!r} must be a JSON {kind.__name__}, got {config.get(key)!r}")
    for name, record in config["files"].items():
        if not (
            isinstance(record, dict) and isinstance(record.get("sha256"), str) and isinstance(record.get("bytes"), int)
        ):
            raise ModelFileError(f"{path}: files[{name!r}] must hold 'sha256' (string) and 'bytes' (integer)")
    if config.get("controller") is not None and not isinstance(config["controller"], dict):
        raise ModelFileError(f"{path}: field 'controller' must be null or a JSON object")
    if not isinstance(config.get("metadata", {}), dict):
        raise ModelFileError(f"{path}: field 'metadata' must be a JSON object")
    return config


def _model_settings(path: Path, config: dict, key: str, cls: type, limits: dict[str, tuple[float, float]]):
    """``cls(**config[key])`` after checking every field: known, a number of the right kind, in range."""
    rules = rules_of(cls, {name: {"minimum": low, "maximum": high} for name, (low, high) in limits.items()})
    try:
        return cls(**check_fields(f"{path}: {key}", config[key], rules))
    except ValueError as error:
        raise ModelFileError(str(error)) from None


def _recorded_file(directory: Path, name: str, config: dict) -> tuple[Path, dict]:
    """(path, record) of a weights file listed in config.json and on disk at its recorded size."""
    path = directory / name
    record = config["files"].get(name)
    if record is None:
        raise ModelFileError(f"{path}: not listed in {CONFIG_FILE}, so it cannot be verified")
    if not path.is_file():
        raise ModelFileError(f"{path} is missing")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ModelFileError(f"{path} is truncated or padded: {size} bytes, expected {record['bytes']}")
    return path, record


def verified_tensors(
    directory: Path, name: str, config: dict, shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, torch.Tensor]:
    """One weights file as float32 tensors, read only after every check has passed: it is listed
    in config.json, its size and sha256 match the record, and its header (read without loading
    any tensor) holds exactly the tensors of ``shapes`` in a float dtype; then every value must
    be finite. ModelFileError names the file and what is wrong."""
    path, record = _recorded_file(directory, name, config)
    digest = sha256_of(path)
    if digest != record["sha256"]:
        raise ModelFileError(
            f"{path} was modified or corrupted: sha256 {digest[:12]}…, expected {record['sha256'][:12]}…"
        )
    try:
        with safe_open(str(path), framework="pt") as file:
            header = {
                key: (tuple(file.get_slice(key).get_shape()), file.get_slice(key).get_dtype()) for key in file.keys()
            }
        if shapes is not None:
            found = {key: shape for key, (shape, _) in header.items()}
            if found != shapes:
                raise ModelFileError(f"{path} does not fit {CONFIG_FILE}: tensors {found}, expected {shapes}")
        odd = {key: dtype for key, (_, dtype) in header.items() if dtype not in WEIGHT_DTYPES}
        if odd:
            raise ModelFileError(f"{path}: tensors of dtype {odd}, expected one of {WEIGHT_DTYPES}")
        tensors = {key: value.float() for key, value in load_file(str(path)).items()}
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file ({error})") from error
    broken = [key for key, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]
    if broken:
        raise ModelFileError(f"{path} holds NaN or inf in {broken}")
    return tensors


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def load_world_model(
    world_model: str | os.PathLike, *, game: str | None = None, device: str | torch.device = "auto"
) -> WorldModel:
    """Load a shipped model name or a model directory; ``game`` (if given) must match.

    Everything is checked before it is used: config.json's fields and sizes (within the limits
    of :mod:`dreamgym.config`, before anything is allocated), each weights file's record, header
    shapes and dtypes, and finiteness. Nothing is unpickled."""
    device = resolve_device(device)
    directory = resolve_model_dir(world_model, game)
    path = directory / CONFIG_FILE
    config = read_model_config(directory)
    model_game = _config_game(path, config)
    if game is not None and model_game.name != game:
        raise ValueError(f"world model {directory} is for {model_game.name!r}, not {game!r}")
    vae_config = _model_settings(path, config, "vae", VAEConfig, {"z_dim": (1, MAX_Z_DIM), "kl_tolerance": (0, 1e6)})
    mdnrnn_config = _model_settings(
        path,
        config,
        "mdnrnn",
        MDNRNNConfig,
        {
            "z_dim": (vae_config.z_dim, vae_config.z_dim),
            "action_dim": (model_game.action_dim, model_game.action_dim),
            "hidden_dim": (1, MAX_HIDDEN_DIM),
            "num_mixtures": (1, MAX_MIXTURES),
            "done_logit_offset": (-20, 20),
            "dropout": (0, 0.9),
        },
    )
    count = config.get("members", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_MEMBERS:
        raise ModelFileError(f"{path}: members must be an integer in [1, {MAX_MEMBERS}], got {count!r}")
    dream = _dream_settings(path, config.get("dream", {}))
    member_files = [f"mdnrnn_member_{k}.safetensors" for k in range(1, count)]
    parameters = mdnrnn_parameter_count(mdnrnn_config)
    if count * parameters > MAX_M_PARAMETERS:  # sizes that pass one by one can still ask too much together
        raise ModelFileError(
            f"{path}: {count} M of {parameters:,} weights each ({count * parameters:,} in all) is more "
            f"than the {MAX_M_PARAMETERS:,} a model may hold"
        )
    for name in (
        "mdnrnn.safetensors",
        *member_files,
    ):  # before any M is allocated: a config cannot ask for memory its files lack
        _check_weights_size(directory, name, config, parameters)
    vae, mdnrnn = ConvVAE(vae_config), MDNRNN(mdnrnn_config)
    named = [(vae, "vae.safetensors"), (mdnrnn, "mdnrnn.safetensors")]
    members = []
    for name in member_files:
        members.append(MDNRNN(mdnrnn_config))
        named.append((members[-1], name))
    for module, name in named:
        module.load_state_dict(verified_tensors(directory, name, config, _shapes(module)))
    latents = verified_tensors(directory, "initial_latents.safetensors", config)
    count = latents["mu"].shape[0] if "mu" in latents else 0
    expected = {"mu": (count, vae_config.z_dim), "logvar": (count, vae_config.z_dim)}
    if {key: tuple(value.shape) for key, value in latents.items()} != expected or not 1 <= count <= MAX_INITIAL_LATENTS:
        raise ModelFileError(
            f"{directory / 'initial_latents.safetensors'} must hold mu and logvar of shape "
            f"(N, {vae_config.z_dim}) with 1 <= N <= {MAX_INITIAL_LATENTS}"
        )
    controller = None
    if config.get("controller"):
        outputs = model_game.controller_output_dim
        inputs = observation_size(vae_config.z_dim, mdnrnn_config.hidden_dim, dream.observation)
        weights = verified_tensors(
            directory, "controller.safetensors", config, {"weight": (outputs, inputs), "bias": (outputs,)}
        )
        controller = LinearController(model_game, weights["weight"].numpy(), weights["bias"].numpy())
    model = WorldModel(
        game=model_game,
        vae=vae,
        mdnrnn=mdnrnn,
        initial_mu=latents["mu"],
        initial_logvar=latents["logvar"],
        controller=controller,
        metadata=config.get("metadata", {}),
        members=members,
        start_episodes=_start_episodes(directory, config, vae_config.z_dim, model_game.action_dim),
        dream_defaults=dream,
    )
    try:
        model.dream_settings()
    except ValueError as error:
        raise ModelFileError(f"{path}: its dream defaults do not fit the model: {error}") from None
    return model.to(device)


def mdnrnn_parameter_count(config: MDNRNNConfig) -> int:
    """Parameters of an M of ``config``, counted without building it."""
    inputs, hidden = config.z_dim + config.action_dim, config.hidden_dim
    outputs = 3 * config.z_dim * config.num_mixtures + 2
    return 4 * hidden * (inputs + hidden + 2) + outputs * (hidden + 1)


def _check_weights_size(directory: Path, name: str, config: dict, parameters: int) -> None:
    """``name`` is listed and on disk, at its recorded size, and big enough for ``parameters``
    16-bit weights: checked from the file's size alone, before anything is allocated."""
    path, record = _recorded_file(directory, name, config)
    if record["bytes"] < 2 * parameters:
        raise ModelFileError(
            f"{path} holds {record['bytes']} bytes, too few for the {parameters} weights of {CONFIG_FILE}'s M"
        )


def _dream_settings(path: Path, section: object) -> DreamSettings:
    """The ``dream`` section of config.json as settings; ModelFileError names a bad entry."""
    if not isinstance(section, dict):
        raise ModelFileError(f"{path}: field 'dream' must be a JSON object, got {section!r}")
    try:
        return DreamSettings(**check_fields(f"{path}: dream", section, rules_of(DreamSettings)))
    except ValueError as error:
        raise ModelFileError(str(error).replace("DreamSettings.", "")) from None


def _start_episodes(directory: Path, config: dict, z_dim: int, action_dim: int) -> StartEpisodes | None:
    """The stored real episodes of ``starts="data"``, checked; None if the model has none."""
    if START_FILE not in config["files"]:
        return None
    tensors = verified_tensors(directory, START_FILE, config)
    path = directory / START_FILE
    shapes = {key: tuple(value.shape) for key, value in tensors.items()}
    steps = shapes["mu"][0] if len(shapes.get("mu", ())) == 2 else 0
    episodes = shapes["lengths"][0] if len(shapes.get("lengths", ())) == 1 else 0
    expected = {"mu": (steps, z_dim), "actions": (steps, action_dim), "lengths": (episodes,)}
    lengths = tensors.get("lengths", torch.zeros(0))
    if (
        shapes != expected
        or not 1 <= steps <= MAX_START_STEPS
        or not 1 <= episodes <= MAX_START_EPISODES
        or not bool((lengths >= 1).all() and (lengths == lengths.round()).all())
        or int(lengths.sum()) != steps
    ):
        raise ModelFileError(
            f"{path} must hold mu (S, {z_dim}), actions (S, {action_dim}) and lengths (E,) of "
            f"whole numbers >= 1 summing to S, with 1 <= S <= {MAX_START_STEPS} and "
            f"1 <= E <= {MAX_START_EPISODES}; found {shapes}"
        )
    return StartEpisodes(tensors["mu"], tensors["actions"], lengths.long())


# --------------------------------------------------------------------------- controllers alone


def save_controller(controller: LinearController, path: str | Path, metadata: dict | None = None) -> None:
    """A controller file: safetensors with its game and metadata in the header (strings only)."""
    header = {
        "format": "dreamgym-controller",
        "metadata": json.dumps(metadata or {}),
        **{key: value if key == "game" else json.dumps(value) for key, value in game_record(controller.game).items()},
    }
    tensors = {"weight": torch.from_numpy(controller.weight), "bias": torch.from_numpy(controller.bias)}
    atomic_write(path, lambda tmp: write_safetensors(tensors, tmp, metadata=header))


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
    try:
        game = resolve_game(header.get("game"), json.loads(header["env"]) if "env" in header else None)
    except (ValueError, ImportError) as error:
        raise ModelFileError(f"{path}: its game: {error}") from None
    return LinearController(game, weight.float().numpy(), bias.float().numpy())
