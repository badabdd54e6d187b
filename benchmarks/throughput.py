"""Steps per second of the real game, its latent twin and the dream env, side by side.

    python benchmarks/throughput.py [--game doom|carracing] [--seconds 10] [--json OUT]

Uses paper-size V and M (untrained weights cost exactly as much per step as trained ones)
unless --world-model names a model directory. Reports numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

import dreamgym
from dreamgym.games import get_game
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig


def paper_size_model(game_name: str, directory: Path) -> Path:
    game = get_game(game_name)
    model = dreamgym.WorldModel(
        game=game,
        vae=ConvVAE(VAEConfig(z_dim=game.z_dim)),
        mdnrnn=MDNRNN(MDNRNNConfig(z_dim=game.z_dim, action_dim=game.action_dim, hidden_dim=game.hidden_dim)),
        initial_mu=torch.zeros(16, game.z_dim),
        initial_logvar=torch.zeros(16, game.z_dim),
    )
    with torch.no_grad():
        model.mdnrnn.head.bias[-1].fill_(-20.0)  # never end, so resets do not dominate the timing
    return dreamgym.save_world_model(model, directory / game_name)


def steps_per_second(env: gym.Env, seconds: float) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="doom", choices=sorted(dreamgym.ENV_IDS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--world-model", help="model directory (default: untrained paper-size model)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    game = get_game(args.game)
    dream_id, latent_id = dreamgym.ENV_IDS[args.game]
    with tempfile.TemporaryDirectory() as tmp:
        world_model = args.world_model or str(paper_size_model(args.game, Path(tmp)))
        results = {
            f"real {game.real_env_id}": steps_per_second(game.make_real_env(), args.seconds),
            f"latent twin {latent_id}": steps_per_second(gym.make(latent_id, world_model=world_model), args.seconds),
            f"dream {dream_id}": steps_per_second(gym.make(dream_id, world_model=world_model), args.seconds),
        }
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'env':45}{'steps/s':>12}")
    for name, rate in results.items():
        print(f"{name:45}{rate:12,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"game": args.game, "steps_per_second": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
