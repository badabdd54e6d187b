"""The ``dreamgym`` command lines that dreamgym itself writes (model cards, round records, hints in
messages): the one place that spells a command, beside the spelling of a setting's option that
the CLI makes its options with, so that what a card says to run is what the CLI parses. It
imports nothing from dreamgym, so any module may use it."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any


def option_name(field_name: str) -> str:
    """The command-line option of a settings field: ``agent_steps`` -> ``--agent-steps``."""
    return "--" + field_name.replace("_", "-")


def settings_arguments(settings: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The options that give the settings dataclass ``settings`` on a command line, one per field
    that is not its default (the inverse of the options the CLI makes from the same dataclass)."""
    default = type(settings)()
    arguments = []
    for spec in fields(settings):
        value = getattr(settings, spec.name)
        if spec.name in skip or value == getattr(default, spec.name):
            continue
        if isinstance(value, bool):  # a switch: --name / --no-name
            arguments.append(option_name(spec.name) if value else "--no-" + option_name(spec.name)[2:])
        else:
            arguments.append(f"{option_name(spec.name)} {value}")
    return arguments


def game_arguments(game: str, env: dict[str, Any] | None) -> str:
    """How a command names a game: by name, or as the env it was made from with its settings."""
    if env is None:
        return game
    settings = "".join(f" --env-setting {key}={json.dumps(value)}" for key, value in env.items() if key != "env_id")
    return f"--env {env['env_id']}{settings}"


def command_line(command: str, *arguments: str) -> str:
    """``dreamgym COMMAND ARGUMENTS...`` (empty arguments left out)."""
    return " ".join(["dreamgym", command, *filter(None, arguments)])


def pipeline_command(game: str, env: dict[str, Any] | None, preset: str) -> str:
    """The command that builds a run of ``game`` (by name, or the ``env`` it was made from) with ``preset``."""
    return command_line("pipeline", game_arguments(game, env), f"--preset {preset}")
