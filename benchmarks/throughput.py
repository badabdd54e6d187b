"""Steps per second of the real game, its latent twin, the dream and the batched dream.

The batched dream (:class:`~dreamgym.envs.vector.DreamVectorEnv`) is timed at several N through
its numpy path and its on-device tensor path side by side, with the FLOP bound of the batched
dream on the device it runs on.

    python benchmarks/throughput.py [--game doom|carracing] [--device auto|cpu|cuda] [--seconds 10]
                                    [--num-envs 1,64,1024,4096] [--json OUT]

FLOP bound = the device's measured float32 matrix-multiply rate ÷ M's FLOPs per env-step
(LSTM + heads). The numpy path is ``step`` (actions in and observations out through the host);
the tensor path is ``step_tensor`` with actions already on the device, once with the action
range check (one read-back per step) and once without (``check_action_values=False``).

Uses paper-size V and M (untrained weights cost exactly as much per step as trained ones)
unless --world-model names a model directory. Default N: up to 4096 on the CPU, up to 2**18 on
CUDA. Reports numbers; asserts nothing.
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
from dreamgym.devices import resolve_device
from dreamgym.envs.vector import DreamVectorEnv
from dreamgym.games import lookup
from dreamgym.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.vae import ConvVAE, VAEConfig

DEFAULT_NUM_ENVS = {"cpu": (1, 64, 1024, 4096), "cuda": (1, 64, 1024, 4096, 2**14, 2**16, 2**18)}


def paper_size_model(game_name: str, directory: Path) -> Path:
    game = lookup(game_name)
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def vector_steps_per_second(envs: DreamVectorEnv, seconds: float, tensor: bool) -> float:
    """Env-steps per second of ``envs.step`` (numpy actions) or ``envs.step_tensor`` (actions
    already on the env's device), cycling through 16 pre-drawn action batches."""
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(16)]
    if tensor:
        actions = [torch.as_tensor(batch, device=envs.device) for batch in actions]
        envs.reset_tensor(seed=0)
        step = envs.step_tensor
    else:
        envs.reset(seed=0)
        step = envs.step
    step(actions[0])  # warm-up: lazy CUDA/cuBLAS initialisation and first allocations
    synchronize(envs.device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(actions[steps % 16])
        steps += 1
    synchronize(envs.device)
    rate = steps * envs.num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


def flops_per_step(z_dim: int, action_dim: int, hidden_dim: int, num_mixtures: int = 5) -> int:
    """Multiply-adds x 2 of one M step for one env: the LSTM gates and every head."""
    lstm = 2 * (z_dim + action_dim + hidden_dim) * 4 * hidden_dim
    heads = 2 * hidden_dim * (3 * z_dim * num_mixtures + 2)
    return lstm + heads


def matmul_flops_per_second(device: torch.device, seconds: float = 2.0) -> float:
    """Float32 matrix-multiply rate of ``device`` (with torch's default TF32 setting)."""
    m, k, n = (1024, 512, 2048) if device.type == "cpu" else (8192, 8192, 8192)
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    a @ b
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if device.type == "cuda" and count % 8 == 0:
            synchronize(device)  # keep the host from running far ahead of the clock
    synchronize(device)
    return count * 2 * m * k * n / (time.perf_counter() - start)


def parse_num_envs(text: str) -> tuple[int, ...]:
    """``"1,64,2**18"`` -> (1, 64, 262144)."""
    values = []
    for item in text.split(","):
        base, _, exponent = item.strip().partition("**")
        value = int(base) ** int(exponent) if exponent else int(base)
        if value < 1:
            raise argparse.ArgumentTypeError(f"N must be >= 1, got {item!r}")
        values.append(value)
    return tuple(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="doom", choices=sorted(dreamgym.ENV_IDS))
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing of each row and each N")
    parser.add_argument(
        "--num-envs",
        type=parse_num_envs,
        help="comma-separated N, e.g. 1,64,2**18 (default: up to 4096 on the CPU, 2**18 on CUDA)",
    )
    parser.add_argument("--world-model", help="model directory (default: untrained paper-size model)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    num_envs_list = args.num_envs or DEFAULT_NUM_ENVS[device.type]
    game = lookup(args.game)
    dream_id, latent_id = dreamgym.ENV_IDS[args.game]
    with tempfile.TemporaryDirectory() as tmp:
        world_model = args.world_model or str(paper_size_model(args.game, Path(tmp)))
        single = {
            f"real {game.real_env_id}": steps_per_second(game.make_real_env(), args.seconds),
            f"latent twin {latent_id}": steps_per_second(
                gym.make(latent_id, world_model=world_model, device=device), args.seconds
            ),
            f"dream {dream_id}": steps_per_second(
                gym.make(dream_id, world_model=world_model, device=device), args.seconds
            ),
        }
        model = dreamgym.load_world_model(world_model, device=device)  # loaded once, shared by every vector env
        vector: dict[int, dict[str, float]] = {}
        for num_envs in num_envs_list:

            def make(check: bool = True, num_envs: int = num_envs) -> DreamVectorEnv:
                return DreamVectorEnv(args.game, num_envs, world_model=model, device=device, check_action_values=check)

            vector[num_envs] = {
                "numpy": vector_steps_per_second(make(), args.seconds, tensor=False),
                "tensor": vector_steps_per_second(make(), args.seconds, tensor=True),
                "tensor, unchecked": vector_steps_per_second(make(check=False), args.seconds, tensor=True),
            }
    flops = flops_per_step(model.z_dim, game.action_dim, model.hidden_dim, model.mdnrnn.config.num_mixtures)
    rate = matmul_flops_per_second(device)
    bound = rate / flops
    threads = (
        f"torch threads: {torch.get_num_threads()}" if device.type == "cpu" else torch.cuda.get_device_name(device)
    )
    print(
        f"device: {device} ({threads}); matmul {rate / 1e9:,.0f} GFLOP/s; M: {flops / 1e6:.2f} MFLOP per env-step; "
        f"FLOP bound of the dream: {bound:,.0f} env-steps/s"
    )
    print(f"| {'env':42} | {'steps/s':>12} |")
    print(f"|{'-' * 44}|{'-' * 14}|")
    for name, value in single.items():
        print(f"| {name:42} | {value:12,.0f} |")
    print()
    columns = ("numpy", "tensor", "tensor, unchecked")
    print(
        f"| {'vector dream, N':>15} | "
        + " | ".join(f"{c + ' steps/s':>25}" for c in columns)
        + f" | {'best / FLOP bound':>17} |"
    )
    print(f"|{'-' * 17}|" + "|".join("-" * 27 for _ in columns) + f"|{'-' * 19}|")
    for num_envs, rates in vector.items():
        print(
            f"| {num_envs:>15,} | "
            + " | ".join(f"{rates[c]:25,.0f}" for c in columns)
            + f" | {max(rates.values()) / bound:>17.1%} |"
        )
    best_n, best = max(((n, max(r.values())) for n, r in vector.items()), key=lambda item: item[1])
    twin = single[f"latent twin {latent_id}"]
    print(f"best vector dream (N = {best_n:,}) vs latent twin: {best / twin:,.0f}x; vs FLOP bound: {best / bound:.0%}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "game": args.game,
                    "device": str(device),
                    "steps_per_second": single,
                    "vector_steps_per_second": {str(n): rates for n, rates in vector.items()},
                    "matmul_flops_per_second": rate,
                    "flops_per_step": flops,
                    "flop_bound": bound,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
