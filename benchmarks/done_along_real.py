"""Does M see the end coming? M's p(done) along real Doom episodes that repeat one action.

For each world model, real episodes (seeds S, S+1, ...) through its latent twin with the same
action at every step; at each step, M's p(done) for the next step, from the state the twin is in.
Prints, per model, the mean real length, the mean p(done) at the real last step and the mean of
each episode's highest p(done); draws the first episode of each model.

    python benchmarks/done_along_real.py --world-model doom_take_cover_paper --world-model DIR \\
        --action 2 --episodes 10 --seed 60000 --plot docs/doom_gpu_wall_hugging.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import dreamgym
from dreamgym.checkpoint import load_world_model
from dreamgym.world_model import WorldModel


def done_probabilities(model: WorldModel, action: int, seed: int) -> list[float]:
    """p(done) M gives each next step of one real episode that plays ``action`` throughout."""
    twin = dreamgym.LatentObservation(model.game.make_real_env(), model, device="cpu")
    twin.reset(seed=seed)
    probabilities = []
    try:
        while True:
            state = twin._state
            assert state is not None
            with torch.no_grad():
                output, _ = model.mdnrnn.step(state.z, model.action_tensor([action]), (state.h, state.c))
            probabilities.append(float(torch.sigmoid(output.done_logit)[0]))
            _, _, terminated, truncated, _ = twin.step(action)
            if terminated or truncated:
                return probabilities
    finally:
        twin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-model", action="append", required=True, help="shipped name or model directory")
    parser.add_argument("--action", type=int, default=2, help="Doom: 0 no-op, 1 right, 2 left")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=60_000)
    parser.add_argument("--plot", type=Path, help="PNG of the first episode of each model")
    args = parser.parse_args()
    curves, summary = {}, {}
    for world_model in args.world_model:
        model = load_world_model(world_model, device="cpu")
        runs = [done_probabilities(model, args.action, args.seed + i) for i in range(args.episodes)]
        curves[world_model] = runs[0]
        summary[world_model] = {
            "real_steps_mean": float(np.mean([len(r) for r in runs])),
            "p_done_at_real_end_mean": float(np.mean([r[-1] for r in runs])),
            "p_done_max_mean": float(np.mean([max(r) for r in runs])),
        }
    print(json.dumps(summary, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.5))
        for world_model, curve in curves.items():
            ax.plot(curve, label=f"{Path(world_model).name}: real end at step {len(curve)}")
        ax.axhline(0.5, color="k", ls="--", lw=0.8, label="dream ends above 0.5")
        ax.set_xlabel(f"real step (action {args.action} throughout, seed {args.seed})")
        ax.set_ylabel("M's p(done) at the next step")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("Does M see the end coming?")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
