"""The games this process knows, and the one way to name one: :func:`lookup`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dreamgym.games.any_env import game_from_env
from dreamgym.games.carracing import CARRACING
from dreamgym.games.doom import DOOM
from dreamgym.games.spec import Game

GAMES: dict[str, Game] = {game.name: game for game in (CARRACING, DOOM)}
"""Every game this process knows: the two above, and those registered by :func:`register_game`."""


def register_game(game: Game) -> Game:
    """Make ``game`` known to this process by its name (again is fine; another game of the same
    name is an error)."""
    known = GAMES.get(game.name)
    if known is not None and game.spec is not None and known.spec == game.spec:
        return known  # the same game, built again
    if known is not None and known != game:
        raise ValueError(
            f"another game is already named {game.name!r} (from {known.real_env_id}): give this one another name"
        )
    GAMES[game.name] = game
    return game


def pretrained_root() -> Path:
    """Where shipped model directories live: ``$DREAMGYM_PRETRAINED`` if set; else the copy an
    installed wheel carries (``dreamgym/pretrained/``); else, in a checkout or an editable
    install, the repository's ``pretrained/``."""
    if "DREAMGYM_PRETRAINED" in os.environ:
        return Path(os.environ["DREAMGYM_PRETRAINED"])
    package = Path(__file__).resolve().parent.parent
    installed = package / "pretrained"
    return installed if installed.is_dir() else package.parent / "pretrained"


def shipped_models() -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Shipped model name -> (its game, the env it was built from): each defined game's own
    model first, then every other directory in :func:`pretrained_root` whose config.json records
    a defined game (another model of it, such as ``car_racing_paper``) or a game made by
    :func:`game_from_env` (a dream of another game, shipped like the others). Only JSON is
    read; a model is checked in full when it is loaded."""
    import json

    models: dict[str, tuple[str, dict[str, Any] | None]] = {
        game.shipped_model: (name, None) for name, game in GAMES.items() if game.shipped_model and game.spec is None
    }
    root = pretrained_root()
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        config = directory / "config.json"
        if directory.name in models or not config.is_file():
            continue
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue  # loading it names what is wrong
        if not isinstance(data, dict) or not isinstance(data.get("game"), str):
            continue
        if isinstance(data.get("env"), dict):
            models[directory.name] = (data["game"], data["env"])
        elif data["game"] in GAMES and GAMES[data["game"]].spec is None:
            models[directory.name] = (data["game"], None)
    return models


def resolve_game(name: Any, env: Any = None) -> Game:
    """The game a file names: by ``name`` alone for a known game, or built from its ``env``
    entry (``Game.spec``), which must give the same name."""
    if not isinstance(name, str):
        raise ValueError(f"game must be a name, got {name!r}")
    game = lookup(name if env is None else env)
    if game.name != name:
        raise ValueError(f"game {name!r} does not match its env entry, which makes {game.name!r}")
    return game


def game_record(game: Game) -> dict[str, Any]:
    """What a file records to name ``game`` (read back by :func:`resolve_game`)."""
    return {"game": game.name, **({"env": game.spec} if game.spec is not None else {})}


def _from_spec(spec: Any) -> Game:
    """The game a run.json or model directory describes (its ``env`` entry), registered in this
    process; checked like any file's contents (a bad entry is a ValueError naming it)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("env_id"), str):
        raise ValueError(f"env must be a JSON object with an env_id, got {spec!r}")
    for game in GAMES.values():  # built already in this process: making the env again is not needed
        if game.spec == spec:
            return game
    settings = {k: v for k, v in spec.items() if k != "env_id"}
    return register_game(game_from_env(spec["env_id"], trusted=False, **settings))


def lookup(what: Game | str | dict[str, Any]) -> Game:
    """The game ``what`` names, turned into a :class:`Game` once, where a name comes in: a game
    (itself), a game's name (``doom``), a registered id of its dream, latent twin or real game
    (``DreamDoomTakeCover-v0``), or the ``env`` entry a file records (built and registered)."""
    if isinstance(what, Game):
        return what
    if isinstance(what, dict):
        return _from_spec(what)
    if not isinstance(what, str):
        raise ValueError(f"a game is named by a string or an env entry (a JSON object), got {what!r}")
    if what in GAMES:
        return GAMES[what]
    for game in GAMES.values():
        if what.removeprefix("dreamgym:") in (game.dream_env_id, game.latent_env_id, game.real_env_id):
            return game
    shipped = {game: env for game, env in shipped_models().values() if env is not None}
    if what in shipped:  # a shipped dream of a game made from an env id (Boxing): built from its entry
        return _from_spec(shipped[what])
    if re.search(r"-v\d+$", what):
        raise ValueError(
            f"{what!r} is not a dreamgym game id; expected one of "
            f"{sorted(i for g in GAMES.values() for i in (g.dream_env_id, g.latent_env_id))}"
        )
    raise ValueError(
        f"unknown game {what!r}; expected one of {sorted(GAMES)}, or the env id of a Gymnasium "
        "game with RGB frames (dreamgym pipeline --env ENV_ID)"
    )
