"""Which dream defences make agents trained only in the dream hold up on the real game.

For each variant (a set of dream keyword arguments, see ``dreamgym.config.DreamSettings``), each
agent and each training seed: train in the dream, then score the agent on real episodes whose
seeds no training or tuning used. Every cell is resumable (CMA-ES checkpoints every generation,
PPO at each reported budget) and skipped once its ``summary.json`` exists, so the script can be
stopped and started again. Prints, and writes to ``OUT/ablation.md``, a table of dream and real
scores: each seed's real mean ± std, and the mean over seeds.

    python benchmarks/ablation.py --world-model pretrained/doom_take_cover_paper --out runs/ablation \\
        --variants plain,dropout,pessimist --agents cmaes --seeds 0,1,2

    # PPO, scored on the real game after each budget (its curve must not fall):
    python benchmarks/ablation.py --world-model DIR --out runs/ablation --agents ppo --ppo-steps 1e6,2e6,4e6,8e6

A variant is a name from ``VARIANTS`` or ``name=key:value;key:value`` (values are Python
literals), e.g. ``--variants "mine=dropout:0.1;done_threshold:0.2"``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgym import rundir
from dreamgym.agents import train_sb3
from dreamgym.checkpoint import load_world_model, save_controller
from dreamgym.cmaes import dream_returns, train_controller
from dreamgym.config import ControllerTrainConfig, DreamSettings
from dreamgym.evaluate import evaluate
from dreamgym.files import atomic_write_text
from dreamgym.world_model import PLAIN_DREAM, WorldModel

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "dropout": {"dropout": 0.1},
    "pessimist": {"done_threshold": 1 / 11},
    "ensemble": {"ensemble": "episode"},
    "penalty": {"uncertainty_penalty": 1.0},
    "starts": {"starts": "data", "horizon": 200},
    "model": {},
}
"""Named variants, each on top of the plain dream; ``model`` is the model directory's own defaults."""


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    if "=" not in text:
        if text not in VARIANTS:
            raise SystemExit(f"unknown variant {text!r}; expected one of {sorted(VARIANTS)} or name=key:value;...")
        return text, VARIANTS[text]
    name, body = text.split("=", 1)
    settings = {}
    for item in filter(None, body.split(";")):
        key, value = item.split(":", 1)
        settings[key.strip()] = ast.literal_eval(value.strip())
    return name, settings


def settings_for(model: WorldModel, name: str, settings: dict[str, Any], temperature: float) -> DreamSettings:
    """A variant's dream at ``temperature``: the plain dream with its settings on top (``model``:
    the model's own)."""
    return model.dream_settings(None if name == "model" else PLAIN_DREAM, temperature=temperature, **settings)


def run_cmaes(
    args: argparse.Namespace, model: WorldModel, model_dir: str, cell: Path, dream: DreamSettings, seed: int
) -> dict[str, Any]:
    config = ControllerTrainConfig(
        generations=args.generations,
        population=args.population,
        trials=args.trials,
        seed=seed,
    )
    start = time.perf_counter()
    result = train_controller(model, cell, config, resume=True, dream=dream)
    save_controller(result.controller, rundir.controller(cell), {"dream": dataclasses.asdict(dream), "seed": seed})
    generator = torch.Generator(device=model.device).manual_seed(1)
    in_dream = dream_returns(
        model,
        result.controller.flat()[None],
        256,
        generator,
        model.game.max_episode_steps,
        settings=dream,
    )[0]
    in_plain = dream_returns(
        model,
        result.controller.flat()[None],
        256,
        generator,
        model.game.max_episode_steps,
        # the plain dream at the same τ, with the observation the controller reads
        settings=dataclasses.replace(PLAIN_DREAM, observation=dream.observation, temperature=dream.temperature),
    )[0]
    train_seconds = time.perf_counter() - start
    real = evaluate(
        model.game.latent_env_id,
        rundir.controller(cell),
        args.episodes,
        args.eval_seed,
        args.workers,
        env_kwargs={"world_model": model_dir, "device": "cpu", "observation": dream.observation},
    )
    return {
        "dream_mean": float(in_dream.mean()),
        "plain_dream_mean": float(in_plain.mean()),
        "real": {"final": [real.mean, real.std]},
        "train_seconds": train_seconds,
    }


def run_ppo(
    args: argparse.Namespace, model: WorldModel, model_dir: str, cell: Path, dream: DreamSettings, seed: int
) -> dict[str, Any]:
    """The game's PPO recipe (``dreamgym.agents``), saved and scored on the real game after each
    budget; ``progress.json`` keeps each budget's scores, so a restart redoes only what is missing."""
    progress_path = cell / "progress.json"
    scores = json.loads(progress_path.read_text()) if progress_path.exists() else {"dream": {}, "real": {}}
    done, previous = 0, None
    for budget in sorted(args.ppo_steps):
        key, path = str(budget), cell / f"ppo_{budget}.zip"
        if key not in scores["real"]:
            if key not in scores["dream"] or not path.exists():
                _, scores["dream"][key] = train_sb3(
                    "ppo",
                    model_dir,
                    budget - done,
                    path,
                    seed=seed,
                    init=previous,
                    device=args.device,
                    dream={"plain": True, **dataclasses.asdict(dream)},
                )
                atomic_write_text(progress_path, json.dumps(scores))
            result = evaluate(
                model.game.latent_env_id,
                path,
                args.episodes,
                args.eval_seed,
                args.workers,
                env_kwargs={"world_model": model_dir, "device": "cpu", "observation": dream.observation},
                algorithm="ppo",
                trust_zip=True,  # the agent this script trained in this cell
            )
            scores["real"][key] = [result.mean, result.std]
            atomic_write_text(progress_path, json.dumps(scores))
            print(
                f"  {cell}: {budget:,} dream steps: dream {scores['dream'][key]:.0f}, "
                f"real {result.mean:.0f} ± {result.std:.0f}",
                flush=True,
            )
        done, previous = budget, path
    return {
        "dream_mean": scores["dream"][str(max(args.ppo_steps))],
        "dream_by_steps": scores["dream"],
        "real": scores["real"],
    }


def table(rows: list[dict[str, Any]], ppo_steps: list[int]) -> str:
    lines = [
        "| variant | agent | seeds | dream | real (each seed's mean ± std) | real, mean over seeds |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["agent"]), []).append(row)
    for (variant, agent), cells in groups.items():
        keys = ["final"] if agent == "cmaes" else [str(s) for s in sorted(ppo_steps)]
        for key in keys:
            scores = [cell["real"][key] for cell in cells if key in cell["real"]]
            label = agent if agent == "cmaes" else f"ppo {int(key) / 1e6:g}M"
            each = ", ".join(f"{m:.0f} ± {s:.0f}" for m, s in scores)
            dream = np.mean(
                [c["dream_mean"] if agent == "cmaes" else c["dream_by_steps"].get(key, np.nan) for c in cells]
            )
            lines.append(
                f"| {variant} | {label} | {','.join(str(c['seed']) for c in cells)} | {dream:.0f} | {each} | "
                f"**{np.mean([m for m, _ in scores]):.0f}** |"
            )
    return "\n".join(lines) + "\n"


def plot_ppo(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Real score (mean over training seeds, each seed's mean as a dot) and dream score against
    PPO's dream steps, one colour per variant: a curve that falls is an agent exploiting the dream."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.5))
    real_axis, dream_axis = figure.subplots(1, 2)
    variants = sorted({row["variant"] for row in rows if row["agent"] == "ppo"})
    for colour, variant in zip(("C0", "C1", "C2", "C3", "C4", "C5"), variants):
        cells = [row for row in rows if row["agent"] == "ppo" and row["variant"] == variant]
        steps = sorted({int(k) for cell in cells for k in cell["real"]})
        means = [np.mean([c["real"][str(s)][0] for c in cells if str(s) in c["real"]]) for s in steps]
        real_axis.plot(steps, means, marker="o", color=colour, label=f"{variant} ({len(cells)} seeds)")
        for cell in cells:
            xs = [s for s in steps if str(s) in cell["real"]]
            real_axis.scatter(xs, [cell["real"][str(s)][0] for s in xs], color=colour, alpha=0.4, s=12)
        dream = [np.mean([c["dream_by_steps"].get(str(s), np.nan) for c in cells]) for s in steps]
        dream_axis.plot(steps, dream, marker="o", color=colour, label=variant)
    ticks = sorted({int(k) for row in rows if row["agent"] == "ppo" for k in row["real"]})
    for axis, name in ((real_axis, "real score (unseen seeds)"), (dream_axis, "dream score")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [f"{t / 1e6:g}M" for t in ticks])
        axis.set_xlabel("PPO dream steps")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, y=1.02)
    figure.savefig(path, dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world-model", required=True, help="model directory or shipped name")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--variants", default="plain,dropout,pessimist,model")
    parser.add_argument("--agents", default="cmaes", help="cmaes, ppo or both, comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--episodes", type=int, default=100, help="real episodes per score")
    parser.add_argument("--eval-seed", type=int, default=60_000, help="first real seed (never used for tuning)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="dream temperature (default: the examples', 1.15 for Doom, 1.0 for CarRacing)",
    )
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--ppo-steps", default="1e6,2e6,4e6,8e6")
    args = parser.parse_args()
    args.ppo_steps = [int(float(s)) for s in args.ppo_steps.split(",")]
    model_dir = str(Path(args.world_model).resolve()) if Path(args.world_model).exists() else args.world_model
    model = load_world_model(model_dir, device=args.device)
    if args.temperature is None:
        args.temperature = model.dream_settings().temperature  # the model's, else the game's
    rows = []
    for variant in args.variants.split(","):
        name, settings = parse_variant(variant)
        for agent in args.agents.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cell = args.out / name / f"{agent}_s{seed}"
                summary_path = cell / "summary.json"
                if not summary_path.exists():
                    cell.mkdir(parents=True, exist_ok=True)
                    run = {"cmaes": run_cmaes, "ppo": run_ppo}[agent]
                    dream = settings_for(model, name, settings, args.temperature)
                    summary = {
                        "variant": name,
                        "settings": dataclasses.asdict(dream),
                        "agent": agent,
                        "seed": seed,
                        "eval_seed": args.eval_seed,
                        "episodes": args.episodes,
                        **run(args, model, model_dir, cell, dream, seed),
                    }
                    summary_path.write_text(json.dumps(summary, indent=2))
                rows.append(json.loads(summary_path.read_text()))
                print(
                    json.dumps({k: rows[-1][k] for k in ("variant", "agent", "seed", "dream_mean", "real")}), flush=True
                )
    text = table(rows, args.ppo_steps)
    (args.out / "ablation.md").write_text(text)
    if any(row["agent"] == "ppo" for row in rows):
        plot_ppo(rows, args.out / "ppo_curves.png", f"PPO in the {model.game.name} dream")
    print(text)


if __name__ == "__main__":  # evaluation workers are spawned processes
    main()
