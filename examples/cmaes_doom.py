"""CMA-ES on a linear controller inside the Doom dream, then a transfer test on real VizDoom.

python examples/cmaes_doom.py [--world-model DIR] [--generations 100] [--episodes 100]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

import dreamgym
from dreamgym.checkpoint import save_controller
from dreamgym.cmaes import dream_returns, train_controller
from dreamgym.config import ControllerTrainConfig
from dreamgym.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-model", default="doom_take_cover_paper")
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--trials", type=int, default=16, help="dreams per candidate")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/example_cmaes_doom")
    args = parser.parse_args()

    world_model = dreamgym.load_world_model(args.world_model)
    config = ControllerTrainConfig(generations=args.generations, population=args.population, trials=args.trials)
    settings = world_model.dream_settings(temperature=1.15)  # the paper's τ (the Doom model's own too)
    result = train_controller(world_model, Path(args.out), config, resume=True, report=print, dream=settings)
    save_controller(result.controller, Path(args.out) / "controller.safetensors")

    dream = dream_returns(
        world_model, result.controller.flat()[None], 100, torch.Generator().manual_seed(0), 2100, settings=settings
    )[0]
    real = evaluate(
        "LatentDoomTakeCover-v0",
        Path(args.out) / "controller.safetensors",
        args.episodes,
        seed=50_000,
        env_kwargs={"world_model": args.world_model},
    )
    print(f"dream (τ=1.15): {np.mean(dream):.0f} ± {np.std(dream):.0f}")
    print(f"real VizDoom:   {real.mean:.0f} ± {real.std:.0f} over {real.episodes} episodes")


if __name__ == "__main__":  # evaluation workers are spawned processes
    main()
