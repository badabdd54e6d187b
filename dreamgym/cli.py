"""The ``dreamgym`` command: thin over the pipeline's functions. The only module that prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from dreamgym.collect import missing_episodes
from dreamgym.config import PRESETS, RunConfig
from dreamgym.demo import run_demo
from dreamgym.evaluate import evaluate
from dreamgym.files import DamagedFileError, RunLockedError, WriteError, run_lock
from dreamgym.parallel import BACKENDS
from dreamgym.pipeline import (
    DEFAULT_ROUND_NOISE,
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
from dreamgym.training import StageError


def _print(message: str) -> None:
    print(message, flush=True)


def _bar(total: int, description: str):
    return tqdm(total=total, desc=description, unit="episode")


def _override(run_dir: Path, section: str, **values) -> None:
    """Write command-line overrides of a stage's settings into run.json (they then persist)."""
    config = RunConfig.load(run_dir)
    updated = config.with_overrides(section, **values)
    if updated != config:
        updated.save(run_dir)


def cmd_collect(args: argparse.Namespace) -> None:
    config = init_run(args.out, args.game, args.preset, episodes=args.episodes, workers=args.workers, seed=args.seed,
                      max_steps=args.max_steps, policy=args.policy, noise=args.noise)
    missing = config.collect.episodes if args.force else len(missing_episodes(Path(args.out) / "episodes", config.collect))
    bar = _bar(missing, f"collect {config.game}")
    _print(str(collect_stage(args.out, force=args.force, progress=lambda summary: bar.update(1), backend=args.backend,
                             address=args.address)))
    bar.close()


def cmd_train_vae(args: argparse.Namespace) -> None:
    _override(Path(args.run), "vae", epochs=args.epochs)
    _print(str(train_vae_stage(args.run, resume=args.resume, force=args.force, progress=True, report=_print)))


def cmd_encode(args: argparse.Namespace) -> None:
    _print(str(encode_stage(args.run, force=args.force, progress=True, report=_print)))


def cmd_train_mdnrnn(args: argparse.Namespace) -> None:
    _override(Path(args.run), "mdnrnn", epochs=args.epochs)
    _print(str(train_mdnrnn_stage(args.run, resume=args.resume, force=args.force, progress=True, report=_print)))


def cmd_train_controller(args: argparse.Namespace) -> None:
    if args.real:
        if args.temperature is not None:
            raise StageError("--temperature is a dream setting; it does not apply with --real")
        _override(Path(args.run), "real_controller", generations=args.generations, population=args.population,
                  trials=args.trials)
        _print(str(train_controller_real_stage(args.run, resume=args.resume, force=args.force, progress=True,
                                               backend=args.backend, address=args.address, report=_print)))
        return
    if args.backend != "local" or args.address:
        raise StageError("--backend and --address apply to --real training (the dream runs batched in one process)")
    _override(Path(args.run), "controller", generations=args.generations, temperature=args.temperature,
              population=args.population, trials=args.trials)
    _print(str(train_controller_stage(args.run, resume=args.resume, force=args.force, progress=True, report=_print)))


def cmd_export(args: argparse.Namespace) -> None:
    _print(str(export_stage(args.run, args.to, float16=args.float16, report=_print)))


def cmd_evaluate(args: argparse.Namespace) -> None:
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    if args.world_model:
        env_kwargs["world_model"] = args.world_model
    if args.temperature is not None:
        env_kwargs["temperature"] = args.temperature
    bar = _bar(args.episodes, f"evaluate {args.env_id}")
    result = evaluate(args.env_id, args.policy, args.episodes, args.seed, args.workers, env_kwargs, args.algo,
                      progress=lambda done, total: bar.update(1), backend=args.backend, address=args.address)
    bar.close()
    _print(result.summary())
    if args.json:
        result.save(args.json)
        _print(f"wrote {args.json} and {Path(args.json).with_suffix('.png')}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    reports = run_pipeline(args.game, args.out, args.preset, progress=True, report=_print, on_stage=lambda r: _print(str(r)))
    _print("stage times: " + ", ".join(f"{r.stage} {format_seconds(r.seconds)}" for r in reports))


def cmd_sweep_temperature(args: argparse.Namespace) -> None:
    rows = sweep_temperature(args.run, tuple(args.temperatures), generations=args.generations,
                             population=args.population, trials=args.trials, episodes=args.episodes,
                             seed=args.seed, progress=True, report=_print)
    _print(temperature_table(rows, RunConfig.load(args.run).game))


def cmd_next_round(args: argparse.Namespace) -> None:
    config = next_round(args.parent, args.out, args.episodes, args.noise, explore=args.explore)
    first = config.collect.first_episode
    player = "the exploration policy" if args.explore else f"its controller with noise {config.collect.noise:g}"
    _print(f"{args.out}: round after {config.parent}: its {first} episodes, latents and V linked; "
           f"episodes {first}-{first + args.episodes - 1} will be played by {player}.\n"
           f"Next: dreamgym pipeline {config.game} --out {args.out}")


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(args.world_model, Path(args.out), minutes=args.minutes, episodes=args.episodes, report=_print)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local", choices=BACKENDS,
                        help="where episodes run: local processes (default) or Ray actors (pip install 'dreamgym[ray]')")
    parser.add_argument("--address", help="Ray cluster to join ('auto' or host:port; default: start Ray locally)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamgym", description="World Models: build a dream, train in it, test on reality.")
    sub = parser.add_subparsers(dest="command", required=True)
    games = sorted(PRESETS)

    p = sub.add_parser("collect", help="roll out the real game into episode files")
    p.add_argument("game", choices=games)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--episodes", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--policy", help="model directory whose controller acts (iterative rounds)")
    p.add_argument("--noise", type=float, help="exploration noise added to --policy")
    p.add_argument("--force", action="store_true", help="delete the episodes and record them again")
    add_backend_arguments(p)
    p.set_defaults(func=cmd_collect)

    for name, func, unit in (("train-vae", cmd_train_vae, "epochs"), ("train-mdnrnn", cmd_train_mdnrnn, "epochs"),
                             ("train-controller", cmd_train_controller, "generations")):
        p = sub.add_parser(name, help=f"{name.replace('-', ' ')} on a run directory")
        p.add_argument("run", help="run directory")
        p.add_argument(f"--{unit}", type=int)
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        p.add_argument("--force", action="store_true", help="discard the checkpoint and train from scratch")
        if name == "train-controller":
            p.add_argument("--temperature", type=float)
            p.add_argument("--population", type=int)
            p.add_argument("--trials", type=int)
            p.add_argument("--real", action="store_true",
                           help="fine-tune on the real game (the latent twin), from the dream controller; "
                                "writes RUN/controller_real")
            add_backend_arguments(p)
        p.set_defaults(func=func)

    p = sub.add_parser("encode", help="encode every episode with V")
    p.add_argument("run")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("export", help="write the model directory of a run")
    p.add_argument("run")
    p.add_argument("--to", required=True)
    p.add_argument("--float16", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="run a policy for N episodes on a registered env")
    p.add_argument("env_id")
    p.add_argument("--policy", required=True, help="model directory, controller .safetensors, SB3 .zip, or 'random'")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="write the result here (and a histogram PNG beside it)")
    p.add_argument("--world-model", help="world model of the env (default: the policy's, or the shipped one)")
    p.add_argument("--temperature", type=float, help="dream temperature")
    p.add_argument("--env-kwargs", help="more keyword arguments for gym.make, as JSON")
    p.add_argument("--algo", help="SB3 algorithm of a .zip (default: detected)")
    add_backend_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pipeline", help="every stage in order")
    p.add_argument("game", choices=games)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("next-round", help="set up an iterative round: new episodes from a run's controller, "
                                          "then retrain M and the controller on old + new data")
    p.add_argument("parent", help="finished run directory (its model/ holds the controller that will play)")
    p.add_argument("--out", required=True, help="new run directory for the round")
    p.add_argument("--episodes", type=int, default=1000, help="new episodes to collect")
    p.add_argument("--noise", type=float,
                   help=f"exploration around the controller (default {DEFAULT_ROUND_NOISE:g}): Doom, chance per step of a random "
                        "action held 1-10 frames; CarRacing, std of Gaussian noise on each action")
    p.add_argument("--explore", action="store_true",
                   help="record the new episodes with the game's exploration policy (random actions for Doom, "
                        "the noisy pilot for CarRacing) instead of the controller")
    p.set_defaults(func=cmd_next_round)

    p = sub.add_parser("sweep-temperature", help="the paper's table: a controller per τ, its dream and real scores")
    p.add_argument("run")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.5, 1.0, 1.15, 1.3])
    p.add_argument("--generations", type=int, help="CMA-ES generations per τ (default: the run's)")
    p.add_argument("--population", type=int, help="CMA-ES population (default: the run's)")
    p.add_argument("--trials", type=int, help="dreams per candidate (default: the run's)")
    p.add_argument("--episodes", type=int, help="dream and real episodes per τ (default: the run's evaluate.episodes)")
    p.add_argument("--seed", type=int, help="first evaluation seed (default: the run's)")
    p.set_defaults(func=cmd_sweep_temperature)

    p = sub.add_parser("demo", help="train a controller in the shipped Doom dream, then test it on the real game")
    p.add_argument("--world-model", default="doom_take_cover")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--minutes", type=float, default=3.0, help="CMA-ES time budget in the dream")
    p.add_argument("--episodes", type=int, default=20, help="real episodes for the transfer test")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = getattr(args, "run", None) or getattr(args, "out", None)  # the directory this command writes
    try:
        with run_lock(run_dir) if run_dir else contextlib.nullcontext():
            args.func(args)
    except (StageError, DamagedFileError, FileNotFoundError, ValueError, RunLockedError, WriteError) as error:
        print(f"dreamgym {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
