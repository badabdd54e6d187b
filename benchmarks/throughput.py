"""Steps per second of the real game, its latent twin, the dream env and the native vector
dream (N = 1, 64, 1024), side by side, with the FLOP bound of the batched dream.

    python benchmarks/throughput.py [--game doom|carracing] [--seconds 10] [--json OUT]

FLOP bound = measured matrix-multiply rate ÷ M's FLOPs per env-step (LSTM + heads).

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


def vector_steps_per_second(env_id: str, num_envs: int, world_model: str, seconds: float) -> float:
    envs = gym.make_vec(env_id, num_envs=num_envs, world_model=world_model)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(16)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(actions[steps % 16])
        steps += 1
    rate = steps * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def flops_per_step(z_dim: int, action_dim: int, hidden_dim: int, num_mixtures: int = 5) -> int:
    """Multiply-adds x 2 of one M step for one env: the LSTM gates and every head."""
    lstm = 2 * (z_dim + action_dim + hidden_dim) * 4 * hidden_dim
    heads = 2 * hidden_dim * (3 * z_dim * num_mixtures + 2)
    return lstm + heads


def matmul_flops_per_second(seconds: float = 2.0) -> float:
    a, b = torch.randn(1024, 512), torch.randn(512, 2048)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return count * 2 * 1024 * 512 * 2048 / (time.perf_counter() - start)


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
        for num_envs in (1, 64, 1024):
            results[f"vector dream, N = {num_envs}"] = vector_steps_per_second(dream_id, num_envs, world_model, args.seconds)
        model = dreamgym.load_world_model(world_model)
    flops = flops_per_step(model.z_dim, game.action_dim, model.hidden_dim, model.mdnrnn.config.num_mixtures)
    rate = matmul_flops_per_second()
    bound = rate / flops
    results["FLOP bound of the dream"] = bound
    print(f"torch threads: {torch.get_num_threads()}; matmul {rate / 1e9:.0f} GFLOP/s; M: {flops / 1e6:.2f} MFLOP per env-step")
    print(f"| {'env':42} | {'steps/s':>10} |")
    print(f"|{'-' * 44}|{'-' * 12}|")
    for name, value in results.items():
        print(f"| {name:42} | {value:10,.0f} |")
    twin = results[f"latent twin {latent_id}"]
    print(f"vector dream N=1024 vs latent twin: {results['vector dream, N = 1024'] / twin:.0f}x; "
          f"vs FLOP bound: {results['vector dream, N = 1024'] / bound:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"game": args.game, "steps_per_second": results,
                                               "matmul_flops_per_second": rate, "flops_per_step": flops}, indent=2) + "\n")


if __name__ == "__main__":
    main()
