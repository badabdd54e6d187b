"""PPO (Stable-Baselines3) trained only in the CarRacing dream (learned reward), then tested on real CarRacing-v3.

python examples/ppo_carracing.py [--world-model DIR] [--steps 2000000] [--episodes 100]
"""

import argparse

import gymnasium as gym
from stable_baselines3 import PPO

import dreamgym
from dreamgym.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-model", default="car_racing")
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/example_ppo_carracing.zip")
    args = parser.parse_args()

    dream = dreamgym.make_sb3_vec_env("DreamCarRacing-v0", num_envs=128, temperature=1.0, world_model=args.world_model)
    model = PPO(
        "MlpPolicy", dream, n_steps=128, batch_size=4096, n_epochs=4, learning_rate=3e-4, gamma=0.99, verbose=1, seed=0
    )
    model.learn(args.steps)
    model.save(args.out)

    PPO.load(args.out, env=gym.make("LatentCarRacing-v0", world_model=args.world_model))
    real = evaluate(
        "LatentCarRacing-v0",
        args.out,
        args.episodes,
        seed=50_000,
        env_kwargs={"world_model": args.world_model},
        trust_zip=True,  # the agent this script just trained
    )
    print(f"real CarRacing-v3: {real.mean:.0f} ± {real.std:.0f} over {real.episodes} episodes")


if __name__ == "__main__":  # evaluation workers are spawned processes
    main()
