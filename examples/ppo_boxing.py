"""PPO trained only in the Boxing dream (an Atari game built with `dreamgym pipeline --env`), for
several training seeds, each tested on real Boxing bouts against uniform random play.

    pip install "dreamgym[atari]"
    dreamgym pipeline --env ale_py:ALE/Boxing-v5 --env-setting max_episode_steps=2000 --out runs/boxing
    python examples/ppo_boxing.py --world-model runs/boxing/model [--steps 3000000] [--seeds 0,1,2] [--episodes 100]
"""

import argparse
import statistics
from pathlib import Path

from dreamgym.agents import train_sb3
from dreamgym.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-model", required=True, help="a Boxing model directory (or a shipped model's name)")
    parser.add_argument("--steps", type=int, default=3_000_000, help="dream steps per training seed")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--episodes", type=int, default=100, help="real bouts per evaluation")
    parser.add_argument("--eval-seed", type=int, default=60_000, help="seed of the first real bout (unseen in tuning)")
    parser.add_argument("--out", default="runs/example_ppo_boxing")
    args = parser.parse_args()

    real = {"world_model": args.world_model}
    random = evaluate("LatentBoxing-v0", "random", args.episodes, seed=args.eval_seed, env_kwargs=real)
    print(f"random actions: {random.mean:.1f} ± {random.std:.1f} over {random.episodes} bouts", flush=True)
    means = []
    for seed in (int(s) for s in args.seeds.split(",")):
        out = Path(args.out) / f"ppo_seed{seed}.zip"
        # No recipe of its own: the any-game PPO settings (64 dreams × 128 steps a rollout).
        _, dream = train_sb3("ppo", args.world_model, args.steps, out, seed=seed)
        result = evaluate(
            "LatentBoxing-v0", out, args.episodes, seed=args.eval_seed, env_kwargs=real, trust_zip=True
        )  # the agent just trained
        means.append(result.mean)
        print(
            f"seed {seed}: dream {dream:.1f}, real {result.mean:.1f} ± {result.std:.1f} over {result.episodes} bouts",
            flush=True,
        )
    print(f"mean over {len(means)} training seeds: {statistics.mean(means):.1f} (random: {random.mean:.1f})")


if __name__ == "__main__":  # evaluation workers are spawned processes
    main()
