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
from dreamgym.config import (
    IterateConfig,
    OnlineConfig,
    RunConfig,
    field_docs,
    option_name,
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
    init_run(
        args.out,
        args.game,
        args.preset,
        episodes=args.episodes,
        workers=args.workers,
        seed=args.seed,
        max_steps=args.max_steps,
        policy=args.policy,
        noise=args.noise,
        world_model=args.world_model,
    )
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


def cmd_train_vae(args: argparse.Namespace) -> None:
    _override(Path(args.run), "vae", epochs=args.epochs)
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
    _override(Path(args.run), "mdnrnn", epochs=args.epochs, members=args.members)
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
        _override(
            Path(args.run),
            "real_controller",
            generations=args.generations,
            population=args.population,
            trials=args.trials,
        )
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
    _override(
        Path(args.run),
        "controller",
        generations=args.generations,
        temperature=args.temperature,
        population=args.population,
        trials=args.trials,
    )
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
            "collect": {"episodes": args.episodes},
            "vae": {"epochs": args.vae_epochs},
            "mdnrnn": {"epochs": args.mdnrnn_epochs},
            "controller": {"generations": args.generations},
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
        f"Next: dreamgym pipeline {config.game} --out {args.out}"
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
positive_number = _number(float, lambda x: x > 0, "a number > 0")
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


def add_settings_options(p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the settings dataclass ``cls`` (``--field-name``), its help the
    field's docstring and its default the field's: nothing restated here. Every option defaults
    to None (keep the stored or default value); the dataclass checks the values."""
    docs = field_docs(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        kind = str(spec.type)
        parse = int if kind.startswith("int") else float if kind.startswith("float") else str
        default = spec.default if spec.default is not dataclasses.MISSING else None
        shown = f"{default:,}" if isinstance(default, int) and not isinstance(default, bool) else default
        p.add_argument(
            option_name(spec.name),
            type=parse,
            metavar=spec.name.upper(),
            help=f"{docs.get(spec.name, '')} (default: {shown})".replace("%", "%%"),
        )


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
    p.add_argument("--episodes", type=count, help="episodes to record (default: the preset's)")
    p.add_argument("--workers", type=count, help="parallel game processes (default: the preset's)")
    p.add_argument(
        "--seed",
        type=seed_number,
        help="seed of the first episode; episode i is seeded seed + i (default: the preset's)",
    )
    p.add_argument("--max-steps", type=count, help="cap on the steps of one episode (default: the game's own limit)")
    p.add_argument(
        "--policy",
        help="the agent that acts (iterative rounds; default: exploration): a model directory "
        "with a controller, a controller file or an SB3 .zip (with --world-model, --trust-zip)",
    )
    p.add_argument(
        "--world-model",
        help="model directory whose V and M give --policy its latent observation "
        "(default: the policy's own model directory)",
    )
    p.add_argument("--noise", type=amount, help="exploration noise added to --policy")
    p.add_argument("--trust-zip", action="store_true", help=f"consent to load an SB3 .zip policy: {SB3_ZIP_WARNING}")
    p.add_argument("--force", action="store_true", help="delete the episodes and record them again")
    add_backend_arguments(p)

    for name, func, unit, what in (
        ("train-vae", cmd_train_vae, "epochs", "V's training"),
        ("train-mdnrnn", cmd_train_mdnrnn, "epochs", "M's training"),
        (
            "train-controller",
            cmd_train_controller,
            "generations",
            "the dream (or, with --real, the latent twins' V and M)",
        ),
    ):
        p = command(name, f"{name.replace('-', ' ')} on a run directory", func)
        p.add_argument("run", help="run directory")
        p.add_argument(
            f"--{unit}", type=count, help=f"{unit} in all (default: run.json's; a new value is written there)"
        )
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        p.add_argument("--force", action="store_true", help="discard the checkpoint and train from scratch")
        add_device_argument(p, what)
        if name == "train-mdnrnn":
            p.add_argument(
                "--members",
                type=count,
                help="Ms for an ensemble dream: member 0 on every episode, the others "
                "on bootstrap resamples (default: run.json's)",
            )
        if name == "train-controller":
            p.add_argument("--temperature", type=positive_number, help="dream temperature τ (default: run.json's)")
            p.add_argument("--population", type=count, help="CMA-ES candidates per generation (default: run.json's)")
            p.add_argument("--trials", type=count, help="dreams (or real episodes) per candidate (default: run.json's)")
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
    p.add_argument("--episodes", type=count, default=100, help="episodes to play")
    p.add_argument("--seed", type=seed_number, default=10_000, help="episode i is seeded seed + i")
    p.add_argument("--workers", type=count, default=2, help="parallel workers")
    p.add_argument("--json", help="write the result here (and a histogram PNG beside it)")
    p.add_argument("--world-model", help="world model of the env (default: the policy's, or the shipped one)")
    p.add_argument("--temperature", type=positive_number, help="dream temperature (default: the env's, 1.0)")
    p.add_argument("--env-kwargs", type=json_object, help="more keyword arguments for gym.make, as a JSON object")
    p.add_argument("--algo", help="SB3 algorithm of a .zip (default: detected)")
    p.add_argument(
        "--noise",
        type=_number(float, lambda x: 0 <= x <= 1, "a number in [0, 1]"),
        default=0.0,
        help="play the policy with exploration noise, as rounds record it: std of Gaussian noise on "
        "each Box action component, or the chance of a random held Discrete action (0: deterministic)",
    )
    add_device_argument(p, "the env's V and M (dream and latent ids)")
    add_backend_arguments(p)

    p = command("pipeline", "every stage in order (resumes where it stopped)", cmd_pipeline)
    add_game_arguments(p, games)
    p.add_argument("--out", required=True, help="run directory")
    add_preset_argument(p)
    add_device_argument(p, "every stage but collection")
    written = "(default: the preset's; a value given is written to run.json)"
    p.add_argument("--episodes", type=count, help=f"real episodes to record {written}")
    p.add_argument("--vae-epochs", type=count, help=f"V's epochs {written}")
    p.add_argument("--mdnrnn-epochs", type=count, help=f"M's epochs {written}")
    p.add_argument("--generations", type=count, help=f"CMA-ES generations in the dream {written}")
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
        "--temperatures", type=positive_number, nargs="+", default=[0.1, 0.5, 1.0, 1.15, 1.3], help="the τ to try"
    )
    p.add_argument("--generations", type=count, help="CMA-ES generations per τ (default: the run's)")
    p.add_argument("--population", type=count, help="CMA-ES population (default: the run's)")
    p.add_argument("--trials", type=count, help="dreams per candidate (default: the run's)")
    p.add_argument(
        "--episodes", type=count, help="dream and real episodes per τ (default: the run's evaluate.episodes)"
    )
    p.add_argument("--seed", type=seed_number, help="first evaluation seed (default: the run's)")
    add_device_argument(p, "the dream and the latent twins")

    p = command("models", "list the installed world models with their scores, or show one's model card", cmd_models)
    p.add_argument("name", nargs="?", help="a shipped model name or a model directory: print its MODEL_CARD.md")

    p = command("demo", "train a controller in the shipped Doom dream, then test it on the real game", cmd_demo)
    p.add_argument("--world-model", default="doom_take_cover", help="a shipped model name or a model directory")
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
