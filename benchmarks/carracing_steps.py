"""Where does a CarRacing agent's real return go, and does M see it? Every step of an online run's
recorded episodes, replayed in the real game and labelled.

The game is deterministic given its seed and the actions, so each recorded episode is played
again on its seed (``dreamgym.refine.recorded_seed``) with its recorded actions, and every step
gets a label from the game's own state:

- ``new tile``: the step touched a tile not visited before (the only steps that pay);
- ``lap done``: 95 % of the tiles are visited already (the lap is as good as over);
- ``off the road``: the car is farther from the centre line than the road's half width
  (cutting a corner across the grass, or lost);
- ``wrong way``: on the road, moving against the track's direction;
- ``on the road``: on the road, going the right way, no new tile this step.

Prints per label the share of steps, the real reward a step and M's one-step prediction a step,
for each M given, and the same by the car's speed on the road (does M pay for speed as the
track does, through more tiles a step?); then, over every time the car leaves the road, the real
return of the steps around it beside each M's dream of them (from the same state, the same
actions); with ``--picture``, the first time each of a few episodes leaves the road:
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
from dreamgym.online import load_settings
from dreamgym.refine import recorded_seed
from dreamgym.rundir import RunDir
from dreamgym.world_model import WorldModel

LABELS = ("new tile", "on the road", "off the road", "wrong way", "lap done")
HALF_WIDTH = 40 / 6  # gymnasium's CarRacing: TRACK_WIDTH = 40 / SCALE, SCALE = 6


def label_steps(seed: int, actions: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replay one episode in the real game -> each step's label (``LABELS``) and the car's speed
    after it."""
    env = lookup("carracing").make_real_env()
    try:
        env.reset(seed=seed)
        game = env.unwrapped
        centre = np.array([(x, y) for _, _, x, y in game.track])
        labels, speeds, replayed = [], [], 0.0
        for action in actions:
            visited = game.tile_visited_count
            _, reward, terminated, truncated, _ = env.step(np.asarray(action, dtype=np.float32))
            replayed += float(reward)
            position = np.array(game.car.hull.position)
            nearest = int(np.argmin(((centre - position) ** 2).sum(axis=1)))
            velocity = np.array(game.car.hull.linearVelocity)
            forward = centre[(nearest + 1) % len(centre)] - centre[nearest]
            speeds.append(float(np.linalg.norm(velocity)))
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
    return np.array(labels), np.array(speeds)


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
    labels, speeds = zip(
        *(
            label_steps(recorded_seed(config, episode_index(path)), e["actions"], e["rewards"])
            for path, e in zip(files, episodes, strict=True)
        ),
        strict=True,
    )
    every, speed = np.concatenate(labels), np.concatenate(speeds)
    real = np.concatenate([e["rewards"] for e in episodes])
    returns = [float(e["rewards"].sum()) for e in episodes]
    print(f"{len(files)} episodes, return {np.mean(returns):.1f} ± {np.std(returns):.1f}, {len(every)} steps")
    models = {name: load_world_model(name, device="cpu") for name in args.world_model}
    predictions = {
        name: np.concatenate([one_step_rewards(model, e) for e in episodes]) for name, model in models.items()
    }
    print(f"{'label':14s} {'steps':>6s} {'real':>6s}  " + "  ".join(f"M: {Path(n).name}" for n in args.world_model))
    for label in LABELS:
        mask = every == label
        if mask.any():
            print(
                f"{label:14s} {mask.mean():6.0%} {real[mask].mean():+6.2f}  "
                + "  ".join(f"{predictions[n][mask].mean():+9.2f}" for n in args.world_model)
            )
    road = np.isin(every, ("new tile", "on the road"))  # the steps where speed should pay
    edges = np.quantile(speed[road], np.linspace(0, 1, 6))
    print(f"\non the road, by speed (a fifth of those steps each)\n{'speed':14s} {'new tile':>8s} {'real':>6s}")
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        mask = road & (speed >= low) & (speed <= high)
        print(
            f"{low:5.0f} - {high:5.0f}  {(every[mask] == 'new tile').mean():8.0%} {real[mask].mean():+6.2f}  "
            + "  ".join(f"{predictions[n][mask].mean():+9.2f}" for n in args.world_model)
        )
    events = [(e, t) for e, label in zip(episodes, labels, strict=True) for t in leaving_starts(label)]
    rng = np.random.default_rng(0)  # as many windows that stay on the road, for comparison
    staying = [
        (e, t)
        for e, label in zip(episodes, labels, strict=True)
        for t in range(10, len(label) - 24)
        if np.isin(label[t : t + 24], ("new tile", "on the road")).all()
    ]
    staying = [staying[i] for i in rng.choice(len(staying), min(len(staying), len(events)), replace=False)]
    print("\n24-step windows: real return, and each M's dream of them (4 dreams each, τ = 1)")
    for what, windows in (("leaving the road (from 12 steps before)", events), ("staying on the road", staying)):
        if not windows:
            continue
        real_windows = [float(e["rewards"][t : t + 24].sum()) for e, t in windows]
        dreamed = []
        for model in models.values():
            generator = torch.Generator().manual_seed(0)
            dreamed.append(np.mean([dream_from(model, e, t, 24, generator)[1] for e, t in windows for _ in range(4)]))
        dreams = " / ".join(f"{d:.1f}" for d in dreamed)
        print(f"{what} ({len(windows)}): real {np.mean(real_windows):.1f}, dream {dreams}")
    if args.picture:
        picture(models[args.world_model[-1]], args.run, files, episodes, labels, args.picture)


def leaving_starts(labels: np.ndarray, before: int = 12, length: int = 24) -> list[int]:
    """The steps ``before`` ahead of each time the car leaves the road after at least 10 steps on
    it, with ``length`` steps after them in the episode."""
    off = labels == "off the road"
    return [t - before for t in range(before + 10, len(off) - length) if off[t] and not off[t - 10 : t].any()]


@torch.no_grad()
def dream_from(
    model: WorldModel, episode: dict[str, np.ndarray], start: int, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, float]:
    """M's dream (τ = 1) from real step ``start`` (its state warmed up on the real steps before)
    with the actions played -> its latents (length + 1, z_dim) and its return."""
    z = torch.from_numpy(episode["mu"]).float()
    actions = torch.from_numpy(model.game.encode_actions(episode["actions"])).float()
    _, state = model.mdnrnn(z[None, :start], actions[None, :start])
    current, dream, total = z[start : start + 1], [z[start : start + 1]], 0.0
    for j in range(length):
        output, state = model.mdnrnn.step(current, actions[start + j : start + j + 1], state)
        total += float(output.reward[0])
        current = sample_next_z(output, 1.0, generator)
        dream.append(current)
    return torch.cat(dream), total


@torch.no_grad()
def picture(
    model: WorldModel,
    run: Path,
    files: list[Path],
    episodes: list[dict[str, np.ndarray]],
    labels: tuple[np.ndarray, ...],
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
        if leaving := leaving_starts(label, before, length):
            chosen.append((path, episode, leaving[0]))
    chosen = chosen[:rows]
    offsets = range(0, length + 1, 4)
    fig, axes = plt.subplots(2 * len(chosen), len(offsets), figsize=(1.3 * len(offsets), 2.8 * len(chosen)))
    axes = np.atleast_2d(axes)
    generator = torch.Generator().manual_seed(0)
    for row, (path, episode, start) in enumerate(chosen):
        frames = read_npz(RunDir(run).episodes / path.name, ("frames",))["frames"]
        dream, dream_return = dream_from(model, episode, start, length, generator)
        decoded = model.decode(dream)
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
