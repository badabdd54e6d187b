"""How much does a Gaussian SB3 agent's score depend on the std it plays with? The agent is
played on the real game (through its latent twin) with its actions drawn from its own
distribution, as ``dreamgym evaluate --sample`` plays it, once per std given, with its std set
to that value. A CarRacing agent trained with ``dreamgym online --fixed-std --sample`` has a
brake mean below 0, so only its noise presses the brake: less noise is a faster car.

    python benchmarks/policy_std.py --policy RUN/best --stds 0.02,0.05,0.1,0.15,0.2 --seed 20000

Prints mean ± std of the returns for each std; ``--json`` keeps every return.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dreamgym.evaluate import SampledPolicy, load_policy, play


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="a model directory with an agent, or an agent file")
    parser.add_argument("--env", default="LatentCarRacing-v0")
    parser.add_argument("--stds", required=True, help="comma-separated stds to play with")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20000, help="the first episode's seed (tuning seeds: 20000+)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        stds = [float(s) for s in args.stds.split(",")]
    except ValueError:
        stds = []
    if not stds or not all(math.isfinite(s) and s > 0 for s in stds):
        parser.error(f"--stds takes comma-separated positive numbers, got {args.stds!r}")
    agent, model_dir = load_policy(args.policy)
    log_std = getattr(getattr(agent, "policy", None), "log_std", None)
    if log_std is None:
        parser.error(f"{args.policy} is not a Gaussian SB3 agent (no policy.log_std)")
    env = gym.make(args.env, **({"world_model": model_dir} if model_dir else {}))
    results: dict[str, list[float]] = {}
    for std in stds:
        with torch.no_grad():
            log_std.fill_(math.log(std))
        clock, returns = time.perf_counter(), []
        for i in range(args.episodes):
            torch.manual_seed(args.seed + i)  # the draws of `dreamgym evaluate --sample`
            returns.append(play(env, SampledPolicy(agent), args.seed + i)[0])
        results[f"{std:g}"] = returns
        print(f"std {std:g}: {np.mean(returns):.1f} ± {np.std(returns):.1f} ({time.perf_counter() - clock:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
