"""Where does a CarRacing agent's real return go, and does M see it? Every step of an online run's
recorded episodes, replayed in the real game and labelled.

The game is deterministic given its seed and the actions, so each recorded episode is played
again on its seed (``dreamgym.online.recorded_seed``) with its recorded actions, and every step
gets a label from the game's own state:

- ``new tile``: the step touched a tile not visited before (the only steps that pay);
- ``lap done``: 95 % of the tiles are visited already (the lap is as good as over);
- ``off the road``: the car is farther from the centre line than the road's half width
  (cutting a corner across the grass, or lost);
- ``wrong way``: on the road, moving against the track's direction;
- ``on the road``: on the road, going the right way, no new tile this step.

Prints per label the share of steps, the real reward a step and M's one-step prediction a step,
for each M given; with ``--picture``, the first time each of a few episodes leaves the road:
its real frames beside M's dream from the same state with the same actions.

    python benchmarks/carracing_steps.py --run RUN --last 12 --world-model car_racing_paper \\
        --world-model RUN/model --picture docs/car_online_leaving_the_road.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model
from dreamgym.episodes import episode_files, episode_index, read_npz
from dreamgym.games import lookup
from dreamgym.mdnrnn import sample_next_z
from dreamgym.online import load_settings, recorded_seed
from dreamgym.rundir import RunDir
from dreamgym.world_model import WorldModel

LABELS = ("new tile", "on the road", "off the road", "wrong way", "lap done")
HALF_WIDTH = 40 / 6  # gymnasium's CarRacing: TRACK_WIDTH = 40 / SCALE, SCALE = 6


def label_steps(seed: int, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Replay one episode in the real game and label each step (``LABELS``)."""
    env = lookup("carracing").make_real_env()
    try:
        env.reset(seed=seed)
        game = env.unwrapped
        centre = np.array([(x, y) for _, _, x, y in game.track])
        labels, replayed = [], 0.0
        for action in actions:
            visited = game.tile_visited_count
            _, reward, terminated, truncated, _ = env.step(np.asarray(action, dtype=np.float32))
            replayed += float(reward)
            position = np.array(game.car.hull.position)
            nearest = int(np.argmin(((centre - position) ** 2).sum(axis=1)))
            velocity = np.array(game.car.hull.linearVelocity)
            forward = centre[(nearest + 1) % len(centre)] - centre[nearest]
            if game.tile_visited_count > visited:
                labels.append("new tile")
            elif visited >= 0.95 * len(centre):
                labels.append("lap done")
            elif np.linalg.norm(centre[nearest] - position) > HALF_WIDTH:
                labels.append("off the road")
            elif velocity @ forward < 0:
                labels.append("wrong way")
            else:
                labels.append("on the road")
            if terminated or truncated:
                break
    finally:
        env.close()
    if len(labels) != len(actions) or not np.isclose(replayed, float(np.sum(rewards)), atol=1e-2):
        raise SystemExit(f"seed {seed}: the replay does not reproduce the recorded episode")
    return np.array(labels)


@torch.no_grad()
def one_step_rewards(model: WorldModel, episode: dict[str, np.ndarray]) -> np.ndarray:
    """M's reward for each step, with the real latents fed in."""
    z = torch.from_numpy(episode["mu"][:-1]).float()[None]
    actions = torch.from_numpy(model.game.encode_actions(episode["actions"])).float()[None]
    output, _ = model.mdnrnn(z, actions)
    return output.reward[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a CarRacing online run directory")
    parser.add_argument("--world-model", action="append", required=True, help="shipped name or model directory")
    parser.add_argument("--last", type=int, default=12, help="the run's last recorded episodes to replay")
    parser.add_argument("--picture", type=Path, help="PNG: leaving the road, real beside the last M's dream")
    args = parser.parse_args()
    if not RunDir(args.run).online_settings.exists():
        parser.error(f"{args.run} is not a `dreamgym online` run directory")
    config = load_settings(args.run, lookup("carracing"), {})
    files = episode_files(RunDir(args.run).latents)[-args.last :]
    episodes = [read_npz(path, ("mu", "actions", "rewards")) for path in files]
    labels = [
        label_steps(recorded_seed(config, episode_index(path)), e["actions"], e["rewards"])
        for path, e in zip(files, episodes, strict=True)
    ]
    every = np.concatenate(labels)
    real = np.concatenate([e["rewards"] for e in episodes])
    returns = [float(e["rewards"].sum()) for e in episodes]
    print(f"{len(files)} episodes, return {np.mean(returns):.1f} ± {np.std(returns):.1f}, {len(every)} steps")
    predictions = {}
    for name in args.world_model:  # the last one stays loaded for the picture
        model = load_world_model(name, device="cpu")
        predictions[name] = np.concatenate([one_step_rewards(model, e) for e in episodes])
    print(f"{'label':14s} {'steps':>6s} {'real':>6s}  " + "  ".join(f"M: {Path(n).name}" for n in args.world_model))
    for label in LABELS:
        mask = every == label
        if mask.any():
            print(
                f"{label:14s} {mask.mean():6.0%} {real[mask].mean():+6.2f}  "
                + "  ".join(f"{predictions[n][mask].mean():+9.2f}" for n in args.world_model)
            )
    if args.picture:
        picture(model, args.run, files, episodes, labels, args.picture)


@torch.no_grad()
def picture(
    model: WorldModel,
    run: Path,
    files: list[Path],
    episodes: list[dict[str, np.ndarray]],
    labels: list[np.ndarray],
    out: Path,
    rows: int = 3,
    before: int = 12,
    length: int = 24,
) -> None:
    """For the first ``rows`` episodes that leave the road after at least 10 steps on it: the real
    frames from ``before`` steps ahead of it, and M's dream (τ = 1) from that state with the actions
    played, decoded by V."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = []
    for path, episode, label in zip(files, episodes, labels, strict=True):
        off = label == "off the road"
        leaving = [t for t in range(before + 10, len(off) - length) if off[t] and not off[t - 10 : t].any()]
        if leaving:
            chosen.append((path, episode, leaving[0] - before))
    chosen = chosen[:rows]
    offsets = range(0, length + 1, 4)
    fig, axes = plt.subplots(2 * len(chosen), len(offsets), figsize=(1.3 * len(offsets), 2.8 * len(chosen)))
    axes = np.atleast_2d(axes)
    generator = torch.Generator().manual_seed(0)
    for row, (path, episode, start) in enumerate(chosen):
        frames = read_npz(RunDir(run).episodes / path.name, ("frames",))["frames"]
        z = torch.from_numpy(episode["mu"]).float()
        actions = torch.from_numpy(model.game.encode_actions(episode["actions"])).float()
        _, state = model.mdnrnn(z[None, :start], actions[None, :start])  # warmed up on the real steps before
        current, dream, dream_return = z[start : start + 1], [z[start : start + 1]], 0.0
        for j in range(length):
            output, state = model.mdnrnn.step(current, actions[start + j : start + j + 1], state)
            dream_return += float(output.reward[0])
            current = sample_next_z(output, 1.0, generator)
            dream.append(current)
        decoded = model.decode(torch.cat(dream))
        real_return = float(episode["rewards"][start : start + length].sum())
        for column, offset in enumerate(offsets):
            for image, r in ((frames[start + offset], 2 * row), (decoded[offset], 2 * row + 1)):
                axes[r, column].imshow(image)
                axes[r, column].set_xticks([])
                axes[r, column].set_yticks([])
            axes[2 * row, column].set_title(f"step {start + offset}", fontsize=7)
        axes[2 * row, 0].set_ylabel(f"episode {episode_index(path)}\nreal {real_return:.1f}", fontsize=7)
        axes[2 * row + 1, 0].set_ylabel(f"dream\n{dream_return:.1f}", fontsize=7)
    fig.suptitle(
        "leaving the road: the real frames, and M's dream from the same state with the same actions", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
