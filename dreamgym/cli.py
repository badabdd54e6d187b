"""The ``dreamgym`` command: thin over the pipeline's functions. The only module that prints."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dreamgym import ENV_IDS, __version__
from dreamgym.checkpoint import MODEL_CARD_FILE, resolve_model_dir
from dreamgym.commands import command_line, option_name
from dreamgym.config import (
    CollectConfig,
    ControllerTrainConfig,
    DreamSettings,
    EvalConfig,
    IterateConfig,
    MDNTrainConfig,
    OnlineConfig,
    RunConfig,
    VAETrainConfig,
    field_docs,
)
from dreamgym.demo import GENERATIONS, run_demo
from dreamgym.devices import DEFAULT_DEVICE, resolve_device
from dreamgym.evaluate import SB3_ZIP_WARNING, check_trusted, evaluate
from dreamgym.files import DamagedFileError, RunLockedError, WriteError, run_lock
from dreamgym.games import (
    GAMES,
    SPEC_SETTINGS,
    Game,
    game_from_env,
    lookup,
    pretrained_root,
    register_game,
    shipped_models,
)
from dreamgym.parallel import BACKENDS
from dreamgym.pipeline import (
    DEFAULT_ROUND_NOISE,
    START_EPISODES,
    SWEEP_TEMPERATURES,
    collect_stage,
    encode_stage,
    export_stage,
    format_seconds,
    init_run,
    next_round,
    run_pipeline,
    sweep_temperature,
    temperature_table,
    train_controller_real_stage,
    train_controller_stage,
    train_mdnrnn_stage,
    train_vae_stage,
)
from dreamgym.rundir import RunDir
from dreamgym.training import StageError
from dreamgym.validation import Rule, rules_of

STAGE_SETTINGS: dict[str, tuple[str, type]] = {
    "train-vae": ("vae", VAETrainConfig),
    "train-mdnrnn": ("mdnrnn", MDNTrainConfig),
    "train-controller": ("controller", ControllerTrainConfig),
}
"""A training command -> the run.json section it trains with, and that section's settings."""

COLLECT_SKIP = ("first_episode",)
"""Collect settings the command line does not give (a round's numbering is ``next-round``'s)."""

PIPELINE_BUDGET: tuple[tuple[str, type, str, str], ...] = (
    ("collect", CollectConfig, "episodes", "--episodes"),
    ("vae", VAETrainConfig, "epochs", "--vae-epochs"),
    ("mdnrnn", MDNTrainConfig, "epochs", "--mdnrnn-epochs"),
    ("controller", ControllerTrainConfig, "generations", "--generations"),
)
"""The budget ``dreamgym pipeline`` takes: (run.json section, its settings, the setting, its option)."""


def _print(message: str) -> None:
    tqdm.write(message)  # above any progress bar, which stays at the bottom


class ProgressBars:
    """The CLI's side of the progress protocol (:data:`dreamgym.training.Progress`): one bar per
    task, closed when the task is done or when the command ends (before any error line)."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        bar = self.bars.get(task)
        if bar is None:
            bar = self.bars[task] = tqdm(total=total or None, desc=task, leave=False, dynamic_ncols=True)
        bar.update(done - bar.n)
        if total and done >= total:
            self.bars.pop(task).close()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _override(run_dir: Path, section: str, **values) -> None:
    """Write command-line overrides of a stage's settings into run.json (they then persist)."""
    config = RunConfig.load(run_dir)
    updated = config.with_overrides(section, **values)
    if updated != config:
        updated.save(run_dir)


def add_game_arguments(p: argparse.ArgumentParser, games: list[str]) -> None:
    p.add_argument(
        "game",
        nargs="?",
        metavar="{" + ",".join(games) + "}",
        help="which game (or --env; left out: the game of the run in --out)",
    )
    p.add_argument(
        "--env",
        metavar="ENV_ID",
        help="any Gymnasium game with RGB frames instead, e.g. ale_py:ALE/Boxing-v5 (PACKAGE:ID imports PACKAGE first)",
    )
    p.add_argument(
        "--env-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"with --env, a setting of its game, VALUE as JSON (else a string); repeatable: "
        f"{', '.join(SPEC_SETTINGS)}",
    )


def key_values(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` arguments -> a dict; each VALUE is read as JSON, else kept as a string."""
    values: dict[str, Any] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            values[key] = json.loads(value)
        except ValueError:
            values[key] = value
    return values


def chosen_game(args: argparse.Namespace) -> Game:
    """The game a command works on, known to this process: the named one, the one ``--env``
    builds, or the one of the existing run in ``--out``."""
    if args.env and args.game:
        raise ValueError(f"give a game ({args.game}) or --env ({args.env}), not both")
    if args.env_setting and not args.env:
        raise ValueError("--env-setting sets up the game of --env: give --env ENV_ID")
    if args.env:
        return register_game(game_from_env(args.env, **key_values(args.env_setting, "--env-setting")))
    if args.game:
        return lookup(args.game)
    out = Path(args.out)
    kind = RunDir(out).kind()
    if kind == "iterate":
        from dreamgym.iterate import stored_game

        return stored_game(out)
    if kind == "online":
        from dreamgym.online import stored_game as online_game

        return online_game(out)
    if kind == "pipeline":
        return lookup(RunConfig.load(out).game)
    raise ValueError(f"which game? give one of {sorted(GAMES)}, --env ENV_ID, or an --out run that exists")


def cmd_collect(args: argparse.Namespace) -> None:
    args.game = chosen_game(args)
    check_trusted(args.policy, args.trust_zip)
    if args.world_model is not None and args.policy is None:
        raise StageError("--world-model gives --policy its latent observation; the exploration policy needs none")
    init_run(args.out, args.game, args.preset, **settings_given(args, CollectConfig, COLLECT_SKIP))
    _print(
        str(
            collect_stage(
                args.out,
                force=args.force,
                progress=args.progress,
                backend=args.backend,
                address=args.address,
                trust_zip=args.trust_zip,
            )
        )
    )


def _override_stage(args: argparse.Namespace, section: str | None = None) -> None:
    """Write the command's settings options that were given into its run.json section."""
    default_section, cls = STAGE_SETTINGS[args.command]
    _override(Path(args.run), section or default_section, **settings_given(args, cls))


def cmd_train_vae(args: argparse.Namespace) -> None:
    _override_stage(args)
    _print(
        str(
            train_vae_stage(
                args.run,
                resume=args.resume,
                force=args.force,
                progress=args.progress,
                report=_print,
                device=args.device,
            )
        )
    )


def cmd_encode(args: argparse.Namespace) -> None:
    _print(str(encode_stage(args.run, force=args.force, progress=args.progress, report=_print, device=args.device)))


def cmd_train_mdnrnn(args: argparse.Namespace) -> None:
    _override_stage(args)
    _print(
        str(
            train_mdnrnn_stage(
                args.run,
                resume=args.resume,
                force=args.force,
                progress=args.progress,
                report=_print,
                device=args.device,
            )
        )
    )


def cmd_train_controller(args: argparse.Namespace) -> None:
    if args.real:
        if args.temperature is not None:
            raise StageError("--temperature is a dream setting; it does not apply with --real")
        _override_stage(args, "real_controller")
        _print(
            str(
                train_controller_real_stage(
                    args.run,
                    resume=args.resume,
                    force=args.force,
                    progress=args.progress,
                    backend=args.backend,
                    address=args.address,
                    report=_print,
                    device=args.device,
                )
            )
        )
        return
    if args.backend != "local" or args.address:
        raise StageError("--backend and --address apply to --real training (the dream runs batched in one process)")
    _override(Path(args.run), "dream", temperature=args.temperature)
    _override_stage(args)
    _print(
        str(
            train_controller_stage(
                args.run,
                resume=args.resume,
                force=args.force,
                progress=args.progress,
                report=_print,
                device=args.device,
            )
        )
    )


def cmd_export(args: argparse.Namespace) -> None:
    from dreamgym.iterate import round_origin

    _print(
        str(
            export_stage(
                args.run,
                args.to,
                float16=args.float16,
                starts=args.start_episodes,
                built_with=round_origin(Path(args.run)),
                report=_print,
            )
        )
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    check_trusted(args.policy, args.trust_zip)
    env_kwargs = dict(args.env_kwargs or {})
    if args.world_model:
        env_kwargs["world_model"] = args.world_model
    if args.temperature is not None:
        env_kwargs["temperature"] = args.temperature
    if args.env_id.startswith(("Dream", "Latent")):
        env_kwargs.setdefault("device", args.device)
    result = evaluate(
        args.env_id,
        args.policy,
        args.episodes,
        args.seed,
        args.workers,
        env_kwargs,
        args.algo,
        progress=args.progress,
        backend=args.backend,
        trust_zip=args.trust_zip,
        address=args.address,
        noise=args.noise,
        sample=args.sample,
    )
    _print(result.summary())
    if args.json:
        result.save(args.json)
        _print(f"wrote {args.json} and {Path(args.json).with_suffix('.png')}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    args.game = chosen_game(args)
    reports = run_pipeline(
        args.game,
        args.out,
        args.preset,
        progress=args.progress,
        report=_print,
        on_stage=lambda r: _print(str(r)),
        device=args.device,
        trust_zip=args.trust_zip,
        budget={
            section: {field_name: getattr(args, option[2:].replace("-", "_"))}
            for section, _, field_name, option in PIPELINE_BUDGET
        },
    )
    _print("stage times: " + ", ".join(f"{r.stage} {format_seconds(r.seconds)}" for r in reports))


def cmd_iterate(args: argparse.Namespace) -> None:
    from dreamgym.iterate import iterate

    args.game = chosen_game(args)
    args.dream = key_values(args.dream, "--dream") or None
    settings = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(IterateConfig)}
    iterate(
        args.out,
        args.game,
        preset=args.preset,
        progress=args.progress,
        report=_print,
        device=args.device,
        trust_zip=args.trust_zip,
        **settings,
    )


def cmd_online(args: argparse.Namespace) -> None:
    from dreamgym.online import online

    args.game = chosen_game(args)
    settings = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(OnlineConfig)}
    online(args.out, args.game, report=_print, trust_zip=args.trust_zip, **settings)


def cmd_sweep_temperature(args: argparse.Namespace) -> None:
    rows = sweep_temperature(
        args.run,
        tuple(args.temperatures),
        generations=args.generations,
        population=args.population,
        trials=args.trials,
        episodes=args.episodes,
        seed=args.seed,
        progress=args.progress,
        report=_print,
        device=args.device,
    )
    _print(temperature_table(rows, RunConfig.load(args.run).game))


def cmd_next_round(args: argparse.Namespace) -> None:
    config = next_round(args.parent, args.out, args.episodes, args.noise, explore=args.explore, policy=args.policy)
    first = config.collect.first_episode
    agent = f"{args.policy}" if args.policy else "its controller"
    player = "the exploration policy" if args.explore else f"{agent} with noise {config.collect.noise:g}"
    _print(
        f"{args.out}: round after {config.parent}: its {first} episodes, latents and V linked; "
        f"episodes {first}-{first + args.episodes - 1} will be played by {player}.\n"
        f"Next: {command_line('pipeline', f'--out {args.out}')}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(
        args.world_model,
        Path(args.out),
        generations=args.generations,
        episodes=args.episodes,
        report=_print,
        progress=args.progress,
        device=args.device,
    )


def card_scores(card: str) -> list[str]:
    """The bullet lines of a model card's "Scores" section."""
    lines = card.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().lower() == "## scores"), None)
    if start is None:
        return []
    section = itertools.takewhile(lambda line: not line.startswith("#"), lines[start + 1 :])
    return [line.lstrip("- ").strip() for line in section if line.startswith("- ")]


def cmd_models(args: argparse.Namespace) -> None:
    if args.name is not None:
        card = resolve_model_dir(args.name) / MODEL_CARD_FILE
        if not card.is_file():
            raise FileNotFoundError(f"{card} is missing: this model directory has no card")
        _print(card.read_text(errors="replace")[:MAX_CARD_CHARS])
        return
    for name, (game, _) in shipped_models().items():
        directory = pretrained_root() / name
        card = directory / MODEL_CARD_FILE
        scores = card_scores(card.read_text(errors="replace")[:MAX_CARD_CHARS]) if card.is_file() else []
        ids = ", ".join(ENV_IDS.get(game, ("not registered: see its card",)))
        installed = "" if (directory / MODEL_CARD_FILE).is_file() else " (not installed)"
        _print(f"{name}{installed}: {game}; {ids}")
        for line in scores[:2]:
            _print(f"    {line}")
    _print("`dreamgym models NAME` shows a model's card; world_model=NAME loads it.")


MAX_CARD_CHARS = 200_000
"""What ``dreamgym models NAME`` prints of a card at most."""


def json_object(text: str) -> dict[str, Any]:
    """A command-line JSON object (argparse names the flag when this raises)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({error}): expected an object like '{{\"temperature\": 1.0}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"temperature\": 1.0}}', got {text!r}")
    return value


def _number(kind: type, test: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: ``kind(value)`` if finite and ``test`` holds, else a usage error saying ``expected``."""

    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not math.isfinite(number) or not test(number):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number

    return parse


count = _number(int, lambda n: n >= 1, "an integer >= 1")
seed_number = _number(int, lambda n: n >= 0, "an integer >= 0")
amount = _number(float, lambda x: x >= 0, "a number >= 0")


def device_argument(value: str) -> str:
    """argparse type of --device: checked at once, so a bad device stops before any work."""
    try:
        resolve_device(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def add_device_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        type=device_argument,
        help=f"where {what} runs: auto (CUDA when there is a GPU, else the CPU), cpu, cuda or cuda:N",
    )


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        default="local",
        choices=BACKENDS,
        help="where episodes run: local processes or Ray actors (pip install 'dreamgym[ray]')",
    )
    parser.add_argument("--address", help="Ray cluster to join ('auto' or host:port; default: start Ray locally)")


class _ShowDefaults(argparse.HelpFormatter):
    """Help that shows an option's default when it has one (not for flags, nor for None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


PRESET_HELP = (
    "sizes of every stage: tiny (a smoke test), cpu (the shipped models), paper (the paper's); "
    "a new run takes cpu, an existing one keeps its own"
)


def game_choices() -> list[str]:
    """The game names the commands take: the built-in games and those of the shipped models."""
    return sorted({*GAMES, *(game for game, env in shipped_models().values() if env is not None)})


def preset_choices() -> list[str]:
    """The preset names ``--preset`` offers: the built-in games' (every game has each of them)."""
    return sorted({name for game in GAMES.values() for name in game.presets})


def add_preset_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=preset_choices(), help=PRESET_HELP)


def setting_type(rule: Rule, name: str) -> Callable[[str], Any]:
    """The argparse type of a settings field: the text read as the field's kind, then checked by
    its rule, so that a bad value is a usage error that says what was expected."""
    read: Callable[[str], Any] = {"int": int, "float": float}.get(rule.kind, str)

    def parse(text: str) -> Any:
        try:
            value = read(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if read is int else 'a number'}, got {text!r}"
            ) from None
        try:
            rule.check(name, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError("expected " + str(error).split(" must be ", 1)[-1]) from None
        return value

    return parse


def add_setting_option(
    p: argparse.ArgumentParser,
    cls: type,
    name: str,
    *,
    option: str | None = None,
    default: str | None = None,
    keep_default: bool = False,
    dest: str | None = None,
) -> None:
    """The option of one field of the settings dataclass ``cls``: ``--field-name`` (or ``option``),
    its help the field's docstring, its type and bounds the field's rule. It defaults to None
    (keep the stored setting; the help names the ``default`` it then falls back on, the field's
    own unless given), or with ``keep_default`` to the field's default. ``dest``: the attribute it
    sets (default: the field's name)."""
    spec = next(spec for spec in dataclasses.fields(cls) if spec.name == name)
    rule = rules_of(cls)[name]
    value = spec.default if spec.default is not dataclasses.MISSING else None
    shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
    text = f"{field_docs(cls).get(name, '').replace('``', '')} (default: {default or shown})".replace("%", "%%")
    flag = option or option_name(name)
    if rule.kind == "bool":
        p.add_argument(flag, dest=dest or name, action=argparse.BooleanOptionalAction, help=text)
        return
    p.add_argument(
        flag,
        dest=dest or name,
        type=setting_type(rule, name),
        choices=rule.choices,
        default=value if keep_default else None,
        metavar=None if rule.choices else name.upper(),
        help=text,
    )


def add_settings_options(
    p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), default: str | None = None
) -> None:
    """One option per field of the settings dataclass ``cls`` (see :func:`add_setting_option`):
    nothing restated here. ``default``: where an option left out takes its value from."""
    for spec in dataclasses.fields(cls):
        if spec.name not in skip:
            add_setting_option(p, cls, spec.name, default=default)


def settings_given(args: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of ``cls``'s options on the command line, None for those left out."""
    return {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(cls) if spec.name not in skip}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamgym", description="World Models: build a dream, train in it, test on reality."
    )
    parser.add_argument("--version", action="version", version=f"dreamgym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    games = game_choices()

    def command(name: str, help: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_ShowDefaults)
        p.set_defaults(func=func)
        return p

    p = command("collect", "roll out the real game into episode files", cmd_collect)
    add_game_arguments(p, games)
    p.add_argument("--out", required=True, help="run directory")
    add_preset_argument(p)
    add_settings_options(p, CollectConfig, skip=COLLECT_SKIP, default="the preset's, or run.json's")
    p.add_argument("--trust-zip", action="store_true", help=f"consent to load an SB3 .zip policy: {SB3_ZIP_WARNING}")
    p.add_argument("--force", action="store_true", help="delete the episodes and record them again")
    add_backend_arguments(p)

    for name, func, what in (
        ("train-vae", cmd_train_vae, "V's training"),
        ("train-mdnrnn", cmd_train_mdnrnn, "M's training"),
        ("train-controller", cmd_train_controller, "the dream (or, with --real, the latent twins' V and M)"),
    ):
        p = command(name, f"{name.replace('-', ' ')} on a run directory", func)
        p.add_argument("run", help="run directory")
        stored = "run.json's; a value given is written there"
        add_settings_options(p, STAGE_SETTINGS[name][1], default=stored)
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        p.add_argument("--force", action="store_true", help="discard the checkpoint and train from scratch")
        add_device_argument(p, what)
        if name == "train-controller":
            add_setting_option(p, DreamSettings, "temperature", default=f"{stored}; else the game's")
            p.add_argument(
                "--real",
                action="store_true",
                help="fine-tune on the real game (the latent twin), from the dream controller; "
                "writes RUN/controller_real",
            )
            add_backend_arguments(p)

    p = command("encode", "encode every episode with V", cmd_encode)
    p.add_argument("run", help="run directory")
    p.add_argument("--force", action="store_true", help="encode every episode again")
    add_device_argument(p, "V")

    p = command("export", "write the model directory of a run", cmd_export)
    p.add_argument("run", help="run directory")
    p.add_argument("--to", required=True, help="the model directory to write (world_model=DIR loads it)")
    p.add_argument("--float16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument(
        "--start-episodes",
        type=int,
        default=START_EPISODES,
        metavar="N",
        help=f"real episodes stored for the dreams' starts='data' (default {START_EPISODES}; 0: none, "
        "a leaner model whose dreams start only from first frames)",
    )

    p = command("evaluate", "run a policy for N episodes on a registered env", cmd_evaluate)
    p.add_argument("env_id", help="a registered id, e.g. LatentDoomTakeCover-v0 or DreamCarRacing-v0")
    p.add_argument("--policy", required=True, help="model directory, controller .safetensors, SB3 .zip, or 'random'")
    p.add_argument("--trust-zip", action="store_true", help=f"consent to load an SB3 .zip policy: {SB3_ZIP_WARNING}")
    for field_name in ("episodes", "seed", "workers"):
        add_setting_option(p, EvalConfig, field_name, keep_default=True)
    p.add_argument("--json", help="write the result here (and a histogram PNG beside it)")
    p.add_argument("--world-model", help="world model of the env (default: the policy's, or the shipped one)")
    add_setting_option(p, DreamSettings, "temperature", default="the model's, else the game's")
    p.add_argument("--env-kwargs", type=json_object, help="more keyword arguments for gym.make, as a JSON object")
    p.add_argument("--algo", help="SB3 algorithm of a .zip (default: detected)")
    p.add_argument(
        "--noise",
        type=_number(float, lambda x: 0 <= x <= 1, "a number in [0, 1]"),
        default=0.0,
        help="play the policy with exploration noise, as rounds record it: std of Gaussian noise on "
        "each Box action component, or the chance of a random held Discrete action (0: deterministic)",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="play an SB3 agent by drawing its actions from its own distribution, as it learned in the "
        "dream (SB3's deterministic=False), instead of its most likely action",
    )
    add_device_argument(p, "the env's V and M (dream and latent ids)")
    add_backend_arguments(p)

    p = command("pipeline", "every stage in order (resumes where it stopped)", cmd_pipeline)
    add_game_arguments(p, games)
    p.add_argument("--out", required=True, help="run directory")
    add_preset_argument(p)
    add_device_argument(p, "every stage but collection")
    for _, cls, field_name, option in PIPELINE_BUDGET:
        add_setting_option(
            p,
            cls,
            field_name,
            option=option,
            dest=option[2:].replace("-", "_"),
            default="the preset's, or run.json's; a value given is written to run.json",
        )
    p.add_argument(
        "--trust-zip",
        action="store_true",
        help=f"consent to load an SB3 .zip named as the round's collect.policy: {SB3_ZIP_WARNING}",
    )

    p = command(
        "iterate",
        "the paper's iterative training: collect with the agent, refine M, retrain the agent "
        "in the dream, score it on the real game; repeat (resumes where it stopped)",
        cmd_iterate,
    )
    add_game_arguments(p, games)
    p.add_argument("--out", required=True, help="run directory (round_K/ per round, rounds.md, best/)")
    add_preset_argument(p)
    add_settings_options(p, IterateConfig, skip=("dream",))
    p.add_argument(
        "--dream",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{field_docs(IterateConfig)['dream']} One setting per option, repeatable.",
    )
    add_device_argument(p, "V, M, the dreams and the latent twins")
    p.add_argument(
        "--trust-zip",
        action="store_true",
        help=f"consent to load the SB3 agents (ppo, dqn) this run saves, round after round: {SB3_ZIP_WARNING}",
    )

    p = command(
        "online",
        "learn online: a few real episodes a round, M refined on them, PPO continued in short "
        "dreams that start at real steps; resumes where it stopped",
        cmd_online,
    )
    add_game_arguments(p, games)
    p.add_argument(
        "--out",
        required=True,
        help="run directory (episodes, latents, model/, agent.zip, rounds.json, curve.png, best/)",
    )
    add_settings_options(p, OnlineConfig)
    p.add_argument(
        "--trust-zip",
        action="store_true",
        help=f"consent to load the SB3 agent this run saved when it resumes: {SB3_ZIP_WARNING}",
    )

    p = command(
        "next-round",
        "set up an iterative round: new episodes from a run's controller, "
        "then retrain M and the controller on old + new data (the next pipeline computes)",
        cmd_next_round,
    )
    p.add_argument("parent", help="finished run directory (its model/ holds the controller that will play)")
    p.add_argument("--out", required=True, help="new run directory for the round")
    p.add_argument("--episodes", type=count, default=1000, help="new episodes to collect")
    p.add_argument(
        "--noise",
        type=amount,
        help=f"exploration around the controller (default {DEFAULT_ROUND_NOISE:g}): Doom, chance per step of a random "
        "action held 1-10 frames; CarRacing, std of Gaussian noise on each action",
    )
    p.add_argument(
        "--explore",
        action="store_true",
        help="record the new episodes with the game's exploration policy (random actions for Doom, "
        "the noisy pilot for CarRacing) instead of the controller",
    )
    p.add_argument(
        "--policy",
        help="the agent that plays instead of the parent's controller, trained in the parent's "
        "dream: an SB3 .zip (the pipeline then needs --trust-zip), a controller file or "
        "a model directory",
    )

    p = command(
        "sweep-temperature", "the paper's table: a controller per τ, its dream and real scores", cmd_sweep_temperature
    )
    p.add_argument("run", help="run directory (with V and M trained)")
    p.add_argument(
        "--temperatures",
        type=setting_type(rules_of(DreamSettings)["temperature"], "temperature"),
        nargs="+",
        default=list(SWEEP_TEMPERATURES),
        help="the τ to try",
    )
    for cls, names in (
        (ControllerTrainConfig, ("generations", "population", "trials")),
        (EvalConfig, ("episodes", "seed")),
    ):
        for field_name in names:
            add_setting_option(p, cls, field_name, default="run.json's, the same for every τ")
    add_device_argument(p, "the dream and the latent twins")

    p = command("models", "list the installed world models with their scores, or show one's model card", cmd_models)
    p.add_argument("name", nargs="?", help="a shipped model name or a model directory: print its MODEL_CARD.md")

    p = command("demo", "train a controller in the paper's shipped Doom dream, then test it on the real game", cmd_demo)
    p.add_argument("--world-model", default="doom_take_cover_paper", help="a shipped model name or a model directory")
    p.add_argument(
        "--out",
        default="demo_output",
        help="where the controller, the GIF and demo.json go (absent, empty, or an earlier demo's output)",
    )
    p.add_argument(
        "--generations",
        type=count,
        default=GENERATIONS,
        help="CMA-ES generations in the dream (32 candidates x 8 dreams each)",
    )
    p.add_argument("--episodes", type=count, default=20, help="real episodes for the transfer test")
    add_device_argument(p, "the dream and the latent twin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = getattr(args, "run", None) or getattr(args, "out", None)  # the directory this command writes
    try:
        with run_lock(run_dir) if run_dir else contextlib.nullcontext(), ProgressBars() as args.progress:
            args.func(args)
    except (StageError, DamagedFileError, FileNotFoundError, ValueError, RunLockedError, WriteError) as error:
        print(f"dreamgym {args.command}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `dreamgym models NAME | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
