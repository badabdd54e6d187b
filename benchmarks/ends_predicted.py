"""How many ends does M expect along real play? The sum of M's p(done) over recorded real episodes.

Reads the episodes an online run recorded (``RUN/latents/episode_*.npz``, the agent's own play
after the first ``--skip`` exploration episodes), runs each M over them with the encoded frames
and the actions played, and prints per M the ends it predicts per episode (the sum of its
p(done); a calibrated M gives the fraction of episodes that really ended), its p(done) at the
real last step, and its mean p(done) on the other steps.

    python benchmarks/ends_predicted.py --run RUN --world-model doom_take_cover_paper --world-model RUN/model
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model
from dreamgym.episodes import episode_files, read_npz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="an online run directory")
    parser.add_argument("--world-model", action="append", required=True, help="shipped name or model directory")
    parser.add_argument("--skip", type=int, default=20, help="the first episodes (exploration) left out")
    args = parser.parse_args()
    keys = ("mu", "actions", "dones")
    episodes = [read_npz(path, keys) for path in episode_files(args.run / "latents")[args.skip :]]
    if not episodes:
        parser.error(f"no recorded episodes after the first {args.skip} in {args.run / 'latents'}")
    ended = np.mean([bool(e["dones"][-1]) for e in episodes])
    length = np.mean([len(e["actions"]) for e in episodes])
    print(f"{len(episodes)} episodes, mean length {length:.0f}, {ended:.0%} end in the game's end")
    for name in args.world_model:
        model = load_world_model(name, device="cpu")
        totals, last, elsewhere = [], [], []
        for episode in episodes:
            z = torch.from_numpy(episode["mu"][:-1]).float()[None]
            actions = torch.from_numpy(model.game.encode_actions(episode["actions"])).float()[None]
            with torch.no_grad():
                output, _ = model.mdnrnn(z, actions)
            p = torch.sigmoid(output.done_logit[0]).numpy()
            totals.append(p.sum())
            last.append(p[-1])
            elsewhere.append(p[:-1].mean())
        print(
            f"{name}: ends predicted per episode {np.mean(totals):.2f}, p(done) at the real last step "
            f"{np.mean(last):.2f}, p(done) per step elsewhere {np.mean(elsewhere):.4f}"
        )


if __name__ == "__main__":
    main()
