"""The main job: train a fresh controller in a dream for a few minutes, then test it on reality.

1. load the world model (by default the paper's shipped Doom dream, `doom_take_cover_paper`);
2. CMA-ES inside the dream at τ = 1.15 for ``generations`` (a budget of work, so that the result
   does not depend on how fast or busy the machine is);
3. score it in the dream, on the real game (latent twin) and against random play;
4. write a GIF of a dream episode (V's decoding) beside a real one (the real frames), and the
   scores to ``demo.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from dreamgym import rundir
from dreamgym.checkpoint import load_world_model, resolve_model_dir, save_controller
from dreamgym.cmaes import dream_returns, train_controller
from dreamgym.config import ControllerTrainConfig
from dreamgym.envs.dream import DreamEnv
from dreamgym.envs.latent import LatentObservation
from dreamgym.evaluate import EvalResult, act, evaluate
from dreamgym.files import LOCK_FILE, atomic_write_text, check_destination
from dreamgym.plots import side_by_side_gif
from dreamgym.training import Progress, Report, no_progress, no_report

GIF_STEPS = 300
GENERATIONS = 30
"""CMA-ES generations of 32 candidates × 8 dreams: ~6 s each on one busy CPU core."""
CONTROLLER_DIR, GIF_FILE, RESULT_FILE = "controller", "dream_vs_real.gif", "demo.json"
DEMO_ENTRIES = (CONTROLLER_DIR, GIF_FILE, RESULT_FILE)


@dataclass
class DemoResult:
    dream: tuple[float, float]
    real: EvalResult
    random: EvalResult
    gif: Path


def run_demo(
    world_model: str | os.PathLike = "doom_take_cover_paper",
    out_dir: Path = Path("demo_output"),
    *,
    generations: int = GENERATIONS,
    episodes: int = 20,
    seed: int = 20_000,
    report: Report = no_report,
    progress: Progress = no_progress,
    device: str = "auto",
) -> DemoResult:
    """The demo in ``out_dir``: an absent or empty directory, or the output of an earlier demo
    (which it replaces); anything else is refused before anything is written."""
    out_dir = check_destination(out_dir, "the output of an earlier demo", is_demo_output)
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations must be a whole number >= 1, got {generations!r}")
    try:
        model_dir = resolve_model_dir(world_model)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} Then run `dreamgym demo --world-model runs/doom/model`.") from None
    model = load_world_model(model_dir, device=device)
    env_id = model.game.latent_env_id
    temperature = model.dream_settings().temperature  # the model's, else the game's (Doom: the paper's 1.15)
    report(f"world model: {model_dir} ({model.game.name}, z={model.z_dim}, LSTM {model.hidden_dim})")

    config = ControllerTrainConfig(
        generations=generations,
        population=32,
        trials=8,
        eval_every=5,
        eval_trials=128,
        seed=seed,
    )
    report(
        f"1/3 training a fresh controller inside the dream: {generations} generations of CMA-ES (τ = {temperature:g})"
    )
    trained = train_controller(model, out_dir / CONTROLLER_DIR, config, force=True, progress=progress, report=report)
    controller_file = rundir.controller(out_dir / CONTROLLER_DIR)
    save_controller(trained.controller, controller_file, {"generations": trained.generations})

    generator = torch.Generator(device=model.device).manual_seed(seed)
    dream = dream_returns(model, trained.controller.flat()[None], 100, generator, model.game.max_episode_steps)[0]
    report(f"2/3 testing on the real game: {episodes} episodes, and random play for comparison")
    env_kwargs = {"world_model": os.fspath(model_dir), "device": str(model.device)}
    real = evaluate(env_id, controller_file, episodes, seed, env_kwargs=env_kwargs, progress=progress)
    random = evaluate(env_id, "random", episodes, seed, env_kwargs=env_kwargs, progress=progress)

    report("3/3 recording a dream episode beside a real one")
    gif = out_dir / GIF_FILE
    side_by_side_gif(_dream_frames(model, trained.controller, seed), _real_frames(model, trained.controller, seed), gif)
    result = DemoResult((float(dream.mean()), float(dream.std())), real, random, gif)
    atomic_write_text(
        out_dir / RESULT_FILE,
        json.dumps(
            {
                "world_model": os.fspath(model_dir),
                "generations": generations,
                "temperature": temperature,
                "dream": {"mean": result.dream[0], "std": result.dream[1], "episodes": 100},
                "real": dataclasses.asdict(real),
                "random": dataclasses.asdict(random),
            },
            indent=2,
        )
        + "\n",
    )

    report("")
    report(f"{'':24}{'mean':>9}{'± std':>9}  episodes")
    report(f"{f'dream (τ = {temperature:g})':24}{dream.mean():9.1f}{dream.std():9.1f}  100")
    report(f"{'real game':24}{real.mean:9.1f}{real.std:9.1f}  {episodes}")
    report(f"{'random play (real)':24}{random.mean:9.1f}{random.std:9.1f}  {episodes}")
    report(f"GIF (left: dream, V's decoding; right: real frames): {gif}; scores: {out_dir / RESULT_FILE}")
    return result


def is_demo_output(directory: Path) -> bool:
    """Whether ``directory`` holds nothing but what a demo writes (so a new demo may replace it)."""
    return all(entry.name in (*DEMO_ENTRIES, LOCK_FILE) for entry in directory.iterdir())


def _dream_frames(model, controller, seed: int) -> np.ndarray:
    env = DreamEnv(model.game.name, world_model=model, render_mode="rgb_array")
    observation, _ = env.reset(seed=seed)
    frames = [cast(np.ndarray, env.render())]
    for _ in range(GIF_STEPS):
        observation, _, terminated, _, _ = env.step(act(controller, observation))
        frames.append(cast(np.ndarray, env.render()))
        if terminated:
            break
    return np.stack(frames)


def _real_frames(model, controller, seed: int) -> np.ndarray:
    env = LatentObservation(model.game.make_real_env(), model, keep_frame=True)
    observation, info = env.reset(seed=seed)
    frames = [info["frame"]]
    for _ in range(GIF_STEPS):
        observation, _, terminated, truncated, info = env.step(act(controller, observation))
        frames.append(info["frame"])
        if terminated or truncated:
            break
    env.close()
    return np.stack(frames)
