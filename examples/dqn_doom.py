"""DQN (Stable-Baselines3) trained only in the Doom dream, then tested on real VizDoom.

python examples/dqn_doom.py [--world-model DIR] [--steps 1000000] [--episodes 100]
"""

import argparse

import gymnasium as gym
from stable_baselines3 import DQN

import dreamgym
from dreamgym.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-model", default="doom_take_cover_paper")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/example_dqn_doom.zip")
    args = parser.parse_args()

    dream = dreamgym.make_sb3_vec_env(
        "DreamDoomTakeCover-v0", num_envs=64, temperature=1.15, world_model=args.world_model
    )
    model = DQN(
        "MlpPolicy",
        dream,
        learning_rate=3e-4,
        buffer_size=200_000,
        learning_starts=10_000,
        batch_size=256,
        train_freq=1,
        gradient_steps=4,
        target_update_interval=2_000,
        exploration_fraction=0.2,
        policy_kwargs={"net_arch": [256, 256]},
        verbose=1,
        seed=0,
    )
    model.learn(args.steps)
    model.save(args.out)

    # The model loads on the real game's latent twin: identical observation and action spaces.
    DQN.load(args.out, env=gym.make("LatentDoomTakeCover-v0", world_model=args.world_model))
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
