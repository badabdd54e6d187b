"""Per-game facts: the real environment, how its frames become V's input, its actions, how the
controller and the exploration policy act in it, how a person plays its dream, its presets and
its SB3 recipes.

:class:`Game` (``spec``) is the one place where games differ: the rest of the package
(collection, training, the dream, the latent twin) is written once and asks the game. Each
built-in game is one module here (``carracing``, ``doom``); a game made from any Gymnasium env
comes from ``any_env`` (and ``boxing`` holds the budget of the one dreamgym ships). A name, an
env id or a file's ``env`` entry becomes a :class:`Game` through :func:`lookup`.
"""

from dreamgym.games.any_env import (
    DEFAULT_MAX_EPISODE_STEPS,
    ENV_PACKAGES,
    SPEC_SETTINGS,
    env_names,
    game_from_env,
    import_env_package,
    trust_file,
    trusted_modules,
)
from dreamgym.games.carracing import CARRACING, CarRacingPilot, on_road, signed_angle
from dreamgym.games.doom import DOOM, vizdoom_file_kwargs, vizdoom_home
from dreamgym.games.registry import (
    GAMES,
    game_record,
    lookup,
    pretrained_root,
    register_game,
    resolve_game,
    shipped_models,
)
from dreamgym.games.spec import (
    FRAME_SIZE,
    TINY_PRESET,
    Game,
    Policy,
    RandomHold,
    preprocess_frame,
)

__all__ = [
    "CARRACING",
    "DEFAULT_MAX_EPISODE_STEPS",
    "DOOM",
    "ENV_PACKAGES",
    "FRAME_SIZE",
    "GAMES",
    "SPEC_SETTINGS",
    "TINY_PRESET",
    "CarRacingPilot",
    "Game",
    "Policy",
    "RandomHold",
    "env_names",
    "game_from_env",
    "game_record",
    "import_env_package",
    "lookup",
    "on_road",
    "preprocess_frame",
    "pretrained_root",
    "register_game",
    "resolve_game",
    "shipped_models",
    "signed_angle",
    "trust_file",
    "trusted_modules",
    "vizdoom_file_kwargs",
    "vizdoom_home",
]
