"""The model-free baseline a dream has to beat: SB3 PPO trained on the real game itself, seen
through the latent twin (``Latent*-v0``: V's z and M's h as the observation, V and M frozen), at
a budget of real steps. Its learning curve is drawn beside ``dreamgym online`` runs, against the
real steps each used.

    python benchmarks/model_free.py --world-model car_racing_paper --out runs/model_free_s0 \\
        --steps 600000 --seed 0
    python benchmarks/model_free.py --plot docs/car_online_vs_model_free.png \\
        --online runs/car_online_s0,runs/car_online_s1 --model-free runs/model_free_s0
    python benchmarks/model_free.py --table 100000 --online ... --model-free ...

(``--table`` prints the mean return per block of real steps, the curves as numbers.)

PPO's settings are RL Zoo's CarRacing recipe for continuous actions (8 envs, 512 steps each per
update, minibatch 128, 10 epochs, learning rate 1e-4 decaying to 0, gSDE resampled every 4 steps,
log std −2) and its Atari recipe for discrete ones such as Doom's (8 envs, 128 steps each per
update, minibatch 256, 4 epochs, learning rate 2.5e-4 decaying to 0, clip 0.1, entropy 0.01),
rewards normalised in both, with an MLP of 256 units in place of their CNN, since the observation
is the latent vector. The 8 envs step in this process, one after another (one core).

    python benchmarks/model_free.py --world-model doom_take_cover_paper --out runs/doom_model_free_s0 \\
        --steps 600000 --seed 0

Resumes: every ``--save-every`` real steps OUT/agent.zip (SB3's format, loaded back only from
the OUT this script wrote), OUT/reward_scale.json and OUT/episodes.csv (real return and length
of every finished training episode, in order) are replaced; a killed run loses at most that
many steps. Reports numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import dreamgym
from dreamgym.checkpoint import load_world_model
from dreamgym.files import atomic_write, atomic_write_text

GAMMA = 0.99
POLICY = {"ortho_init": False, "activation_fn": torch.nn.GELU, "net_arch": {"pi": [256], "vf": [256]}}
COMMON: dict[str, Any] = {"gamma": GAMMA, "gae_lambda": 0.95, "vf_coef": 0.5, "max_grad_norm": 0.5}
RECIPES: dict[str, dict[str, Any]] = {
    "continuous": {  # RL Zoo's CarRacing
        **COMMON,
        "learning_rate": 1e-4,
        "policy_kwargs": {**POLICY, "log_std_init": -2},
        "n_steps": 512,
        "batch_size": 128,
        "n_epochs": 10,
        "ent_coef": 0.0,
        "clip_range": 0.2,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
    "discrete": {  # RL Zoo's Atari
        **COMMON,
        "learning_rate": 2.5e-4,
        "policy_kwargs": POLICY,
        "n_steps": 128,
        "batch_size": 256,
        "n_epochs": 4,
        "ent_coef": 0.01,
        "clip_range": 0.1,
    },
}
"""PPO's settings by kind of action space; the learning rate decays linearly to 0."""
NUM_ENVS = 8
EPISODES_FILE = "episodes.csv"


def make_env(world_model: str, seed: int):
    """``NUM_ENVS`` latent twins of the model's game, one world model shared, in a VecNormalize
    that scales rewards only (RL Zoo's setting)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    model = load_world_model(world_model, device="cpu")
    env_id = model.game.latent_env_id
    dreamgym.ensure_registered(env_id, world_model)

    venv = VecMonitor(DummyVecEnv([lambda: gym.make(env_id, world_model=model)] * NUM_ENVS))
    venv.seed(seed * 1_000_000)
    return VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=GAMMA)


def train(world_model: str, out: Path, steps: int, seed: int, save_every: int) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    venv = make_env(world_model, seed)
    episodes_path, scale_path, agent_path = out / EPISODES_FILE, out / "reward_scale.json", out / "agent.zip"
    rows: list[tuple[float, int]] = []
    if agent_path.exists():
        with episodes_path.open() as file:
            rows = [(float(r["return"]), int(r["length"])) for r in csv.DictReader(file)]
        scale = json.loads(scale_path.read_text())
        venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count = scale["mean"], scale["var"], scale["count"]
        agent = PPO.load(agent_path, env=venv, device="cpu")  # written by this script (see the docstring)
    else:
        recipe = dict(RECIPES["discrete" if isinstance(venv.action_space, gym.spaces.Discrete) else "continuous"])
        rate = recipe.pop("learning_rate")
        agent = PPO(
            "MlpPolicy", venv, seed=seed, device="cpu", learning_rate=lambda remaining: rate * remaining, **recipe
        )

    def save() -> None:
        lines = ["return,length"] + [f"{r!r},{n}" for r, n in rows]
        atomic_write_text(episodes_path, "\n".join(lines) + "\n")
        rms = venv.ret_rms
        atomic_write_text(
            scale_path, json.dumps({"mean": float(rms.mean), "var": float(rms.var), "count": float(rms.count)})
        )
        atomic_write(agent_path, lambda tmp: agent.save(tmp))

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    rows.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
            if self.num_timesteps % save_every < NUM_ENVS:
                save()
                recent = f", the last 20: {np.mean([r for r, _ in rows[-20:]]):.1f}" if rows else ""
                print(f"{self.num_timesteps:,} real steps: {len(rows)} episodes{recent}", flush=True)
            return True

    # learn() counts on from num_timesteps, so a resumed run's learning rate continues the same decay.
    remaining = steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, callback=Record(), reset_num_timesteps=False)
    save()
    print(f"done: {agent.num_timesteps:,} real steps, {len(rows)} episodes; the agent in {agent_path}", flush=True)


def online_curve(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real steps and the mean recorded return of each round of a ``dreamgym online`` run."""
    rows = json.loads((run / "rounds.json").read_text())
    steps = np.array([r["data_steps"] + r["eval_steps"] for r in rows], float)
    return steps, np.array([r["train_return"] for r in rows], float)


def model_free_curve(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real steps and the return of each finished training episode, in order."""
    with (out / EPISODES_FILE).open() as file:
        rows = [(float(r["return"]), int(r["length"])) for r in csv.DictReader(file)]
    returns = np.array([r for r, _ in rows], float)
    return np.cumsum([n for _, n in rows]).astype(float), returns


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The running mean of the last ``window`` values (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def table(online: list[Path], model_free: list[Path], block: int) -> None:
    """Print the mean return of each run's rounds (online) or episodes (model-free) ending in each
    ``block`` of real steps: the learning curves as numbers."""
    named = {f"online {run.name}": online_curve(run) for run in online}
    named |= {f"model-free {out.name}": model_free_curve(out) for out in model_free}
    last = max(int(steps[-1]) for steps, _ in named.values())
    print("| real steps | " + " | ".join(named) + " |")
    print("|---" * (len(named) + 1) + "|")
    for start in range(0, last, block):
        cells = []
        for steps, returns in named.values():
            inside = returns[(steps > start) & (steps <= start + block)]
            cells.append(f"{inside.mean():.0f}" if len(inside) else "")
        print(f"| {start // 1000}-{(start + block) // 1000}k | " + " | ".join(cells) + " |")


def plot(path: Path, online: list[Path], model_free: list[Path], title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for run in online:
        steps, returns = online_curve(run)
        axes.plot(steps, smooth(returns, 10), label=f"dream-trained PPO, {run.name} (mean of the last 10 rounds)")
    for out in model_free:
        steps, returns = model_free_curve(out)
        label = f"model-free PPO on the real game, {out.name} (20-episode mean)"
        axes.plot(steps, smooth(returns, 20), "--", label=label)
    axes.set_xlabel("real steps")
    axes.set_ylabel("real return of the episodes played in training")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-model", default="car_racing_paper", help="V and M of the latent twin (frozen)")
    parser.add_argument("--out", type=Path, help="where the run lives (resumes from it)")
    parser.add_argument("--steps", type=int, default=600_000, help="real steps in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=16_384)
    parser.add_argument("--plot", type=Path, help="draw the curves instead of training")
    parser.add_argument("--online", default="", help="comma-separated `dreamgym online` runs")
    parser.add_argument("--model-free", default="", help="comma-separated runs of this script")
    parser.add_argument("--title", default="real return against real steps")
    parser.add_argument("--table", type=int, metavar="STEPS", help="print the curves' means per STEPS real steps")
    args = parser.parse_args()
    paths = [[Path(p) for p in text.split(",") if p] for text in (args.online, args.model_free)]
    if args.table is not None:
        table(paths[0], paths[1], args.table)
    if args.plot is not None:
        plot(args.plot, paths[0], paths[1], args.title)
    if args.table is not None or args.plot is not None:
        return
    if args.out is None:
        parser.error("--out is needed to train (or --plot to draw, --table to print)")
    else:
        train(args.world_model, args.out, args.steps, args.seed, args.save_every)


if __name__ == "__main__":
    main()
