"""PPO (Stable-Baselines3) trained only in the Doom dream, on 256 batched dreams, then tested on real VizDoom.

python examples/ppo_doom.py [--world-model DIR] [--steps 4000000] [--episodes 100]
"""

import argparse

import gymnasium as gym
from stable_baselines3 import PPO

import dreamgym
from dreamgym.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-model", default="doom_take_cover_paper")
    parser.add_argument("--steps", type=int, default=4_000_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/example_ppo_doom.zip")
    args = parser.parse_args()

    dream = dreamgym.make_sb3_vec_env(
        "DreamDoomTakeCover-v0", num_envs=256, temperature=1.15, world_model=args.world_model
    )
    # 256 × 128 = 32k steps per rollout, 10 passes in batches of 2048 (160 gradient steps each).
    model = PPO(
        "MlpPolicy",
        dream,
        n_steps=128,
        batch_size=2048,
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        ent_coef=0.01,
        verbose=1,
        seed=0,
    )
    model.learn(args.steps)
    model.save(args.out)

    PPO.load(args.out, env=gym.make("LatentDoomTakeCover-v0", world_model=args.world_model))
    real = evaluate(
        "LatentDoomTakeCover-v0",
        args.out,
        args.episodes,
        seed=50_000,
        env_kwargs={"world_model": args.world_model},
        trust_zip=True,  # the agent this script just trained
    )
    recent = [episode["r"] for episode in model.ep_info_buffer]
    print(f"dream episodes (last 100): {sum(recent) / max(1, len(recent)):.0f}")
    print(f"real VizDoom: {real.mean:.0f} ± {real.std:.0f} over {real.episodes} episodes")


if __name__ == "__main__":  # evaluation workers are spawned processes
    main()
