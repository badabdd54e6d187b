"""How fast V's and M's input pipelines read a run's files, without any model: the ceiling on
training throughput that the data puts there (an H100 trains V at ~114k frames/s and M at ~3M
steps/s, so a slower loader leaves the GPU idle).

    python benchmarks/data_loading.py RUN [--readers 1,8] [--batch-size 1024] [--device cpu]

RUN needs episodes/ (for V) and, if present, latents/ (for M). M's batches are made on
--device from latents held there (the way train-mdnrnn makes them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dreamgym.config import RunConfig
from dreamgym.devices import resolve_device
from dreamgym.episodes import DATA_READERS, episode_files, latent_files
from dreamgym.games import lookup
from dreamgym.mdnrnn import LatentEpisodes
from dreamgym.training import prefetch
from dreamgym.vae import frame_batches


def rate(batches, count) -> float:
    start = time.perf_counter()
    total = sum(count(batch) for batch in prefetch(batches))
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--readers", default=f"1,{DATA_READERS}", help="comma-separated reader threads")
    parser.add_argument("--batch-size", type=int, default=1024, help="V's batch (M's: 32 episodes)")
    parser.add_argument("--device", default="cpu", help="where M's batches are gathered")
    args = parser.parse_args()
    game = lookup(RunConfig.load(args.run).game)
    episodes, latents = episode_files(args.run / "episodes"), latent_files(args.run)
    print(f"{len(episodes)} episode files, {len(latents)} latent files")
    for readers in (int(r) for r in args.readers.split(",")):
        frames = rate(frame_batches(episodes, args.batch_size, np.random.default_rng(0), 10_000, readers=readers), len)
        print(f"V, {readers} reader threads: {frames:,.0f} frames/s", flush=True)
    if latents:
        device = resolve_device(args.device)
        start = time.perf_counter()
        data = LatentEpisodes.load(latents, game, device)
        print(f"M: {int(data.lengths.sum()):,} steps read in {time.perf_counter() - start:.1f} s (once per training)")
        generator = torch.Generator(device=device).manual_seed(0)
        batches = data.batches(32, np.random.default_rng(0), 512, generator)
        print(f"M, batches of 32 episodes made on {device}: {rate(batches, lambda b: int(b.mask.sum())):,.0f} steps/s")


if __name__ == "__main__":
    main()
