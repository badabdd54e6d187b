"""Does M pay what the game pays? M's rewards along the real episodes an online run recorded.

Reads ``RUN/latents/episode_*.npz`` (the agent's own play after the first ``--skip``
exploration episodes) and, for each M given, cuts every episode into windows of ``--horizon``
steps and compares three returns of each window: the real one, M's one-step predictions with
the real latents fed in (``one-step``), and M's own dream from the window's first real state,
driven by the actions really played (``dream``: each next z drawn from M at ``--temperature``,
as the agent's short dreams are). Prints them per block of recorded episodes, and apart for
the windows in which the game paid nothing but the time penalty (no new tile on CarRacing: off
the road, the wrong way, or over tiles visited before), where a flattering M shows itself.

    python benchmarks/reward_along_real.py --run RUN --world-model car_racing_paper \\
        --world-model RUN/best --plot docs/car_online_reward_along_real.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model
from dreamgym.episodes import episode_files, read_npz
from dreamgym.mdnrnn import sample_next_z
from dreamgym.rundir import RunDir
from dreamgym.world_model import WorldModel


@torch.no_grad()
def window_returns(
    model: WorldModel, episode: dict[str, np.ndarray], horizon: int, temperature: float, generator: torch.Generator
) -> dict[str, np.ndarray]:
    """Real, one-step and dream returns of each whole window of ``horizon`` steps of one episode."""
    z = torch.from_numpy(episode["mu"]).float()
    actions = torch.from_numpy(model.game.encode_actions(episode["actions"])).float()
    steps = len(actions) - len(actions) % horizon
    if steps == 0:
        return {key: np.zeros(0) for key in ("real", "one_step", "dream")}
    state = model.mdnrnn.initial_state(1)
    states, one_step = [], []
    for t in range(steps):  # teacher-forced: M's state before each step, and its reward for it
        states.append(state)
        output, state = model.mdnrnn.step(z[t : t + 1], actions[t : t + 1], state)
        one_step.append(float(output.reward[0]))
    starts = list(range(0, steps, horizon))
    h = torch.cat([states[t][0] for t in starts])
    c = torch.cat([states[t][1] for t in starts])
    current = z[starts]
    dream = torch.zeros(len(starts))
    for j in range(horizon):  # every window's dream at once, open loop on the real actions
        output, (h, c) = model.mdnrnn.step(current, actions[[t + j for t in starts]], (h, c))
        dream += output.reward
        current = sample_next_z(output, temperature, generator)
    real = np.asarray(episode["rewards"][:steps], dtype=np.float64)
    return {
        "real": real.reshape(-1, horizon).sum(axis=1),
        "one_step": np.asarray(one_step).reshape(-1, horizon).sum(axis=1),
        "dream": dream.numpy().astype(np.float64),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="an online run directory")
    parser.add_argument("--world-model", action="append", required=True, help="shipped name or model directory")
    parser.add_argument("--skip", type=int, default=20, help="the first episodes (exploration) left out")
    parser.add_argument("--horizon", type=int, default=15, help="steps per window (the run's dream horizon)")
    parser.add_argument("--temperature", type=float, default=1.0, help="the dream's temperature")
    parser.add_argument("--blocks", type=int, default=5, help="blocks of recorded episodes, in order of play")
    parser.add_argument("--seed", type=int, default=0, help="seeds the dreams' draws")
    parser.add_argument("--plot", type=Path, help="PNG: the three returns per block, and dream against real")
    args = parser.parse_args()
    keys = ("mu", "actions", "rewards")
    files = episode_files(RunDir(args.run).latents)[args.skip :]
    if not files:
        parser.error(f"no recorded episodes after the first {args.skip} in {RunDir(args.run).latents}")
    episodes = [read_npz(path, keys) for path in files]
    blocks = np.array_split(np.arange(len(episodes)), min(args.blocks, len(episodes)))
    results = {}
    for name in args.world_model:
        model = load_world_model(name, device="cpu")
        generator = torch.Generator().manual_seed(args.seed)
        windows = [window_returns(model, e, args.horizon, args.temperature, generator) for e in episodes]
        results[name] = windows
        print(f"\n{name}: mean return of a {args.horizon}-step window (real | one-step | dream)")
        for block in blocks:
            parts = {key: np.concatenate([windows[i][key] for i in block]) for key in ("real", "one_step", "dream")}
            idle = parts["real"] <= 0  # only the time penalty: no tile in the window
            print(
                f"  episodes {args.skip + block[0]}-{args.skip + block[-1]}: "
                f"{parts['real'].mean():6.2f} | {parts['one_step'].mean():6.2f} | {parts['dream'].mean():6.2f}"
                f"   windows without a tile ({idle.mean():.0%}): {parts['real'][idle].mean() if idle.any() else 0:6.2f}"
                f" | {parts['one_step'][idle].mean() if idle.any() else 0:6.2f}"
                f" | {parts['dream'][idle].mean() if idle.any() else 0:6.2f}"
            )
    if args.plot:
        plot(results, blocks, args)


def plot(results: dict[str, list[dict[str, np.ndarray]]], blocks: list[np.ndarray], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    centres = [args.skip + block.mean() for block in blocks]
    for index, (name, windows) in enumerate(results.items()):
        colour = f"C{index}"
        label = Path(name).name if Path(name).exists() else name
        for key, style in (("one_step", ":"), ("dream", "-")):
            means = [np.concatenate([windows[i][key] for i in block]).mean() for block in blocks]
            axes[0].plot(centres, means, style, color=colour, marker="o", label=f"{label}: {key.replace('_', '-')}")
        last = np.concatenate([w["real"] for w in windows[-len(blocks[-1]) :]])
        dream = np.concatenate([w["dream"] for w in windows[-len(blocks[-1]) :]])
        axes[1].scatter(last, dream, s=4, alpha=0.3, color=colour, label=label)
    real = [np.concatenate([results[args.world_model[0]][i]["real"] for i in block]).mean() for block in blocks]
    axes[0].plot(centres, real, "k-", marker="s", label="real")
    axes[0].set_xlabel("recorded episode (the agent's own play, in order)")
    axes[0].set_ylabel(f"mean return of a {args.horizon}-step window")
    axes[0].legend(fontsize=7)
    limits = axes[1].get_xlim()
    axes[1].plot(limits, limits, "k--", lw=0.8)
    axes[1].set_xlabel(f"real return of the window (last {len(blocks[-1])} episodes)")
    axes[1].set_ylabel("M's dream from its first state, the real actions")
    axes[1].legend(fontsize=7, markerscale=3)
    fig.suptitle("M's rewards along real play")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
