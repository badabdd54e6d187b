"""Atari Boxing, a game made by the any-env path (``--env ale_py:ALE/Boxing-v5``): the budget its
shipped dream was built with. Its other facts are read off the env (``game_from_env``)."""

from __future__ import annotations

from typing import Any

ENV_ID = "ALE/Boxing-v5"

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {  # a bout is 2 minutes of game time: ~1,790 steps at frameskip 4
        "collect": {"episodes": 300},
        "vae": {"epochs": 3, "frames_per_epoch": 400_000},
        "mdnrnn": {"epochs": 40, "batch_size": 16},
        "controller": {"generations": 100, "population": 64, "trials": 8},
    },
}
