"""The main job: train a fresh controller in a dream for a few minutes, then test it on reality.

1. load the world model (the shipped Doom dream by default);
2. CMA-ES inside the dream at τ = 1.15 for ``minutes``;
3. score it in the dream, on the real game (latent twin) and against random play;
4. write a GIF of a dream episode (V's decoding) beside a real one (the real frames).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model, resolve_model_dir, save_controller
from dreamgym.cmaes import BEST_FILE, dream_returns, train_controller
from dreamgym.config import ControllerTrainConfig
from dreamgym.envs.dream import DreamEnv
from dreamgym.envs.latent import LatentObservation
from dreamgym.evaluate import EvalResult, act, evaluate
from dreamgym.plots import side_by_side_gif
from dreamgym.training import Report, no_report

TEMPERATURE = 1.15
GIF_STEPS = 300


@dataclass
class DemoResult:
    dream: tuple[float, float]
    real: EvalResult
    random: EvalResult
    gif: Path


def run_demo(
    world_model: str | os.PathLike = "doom_take_cover",
    out_dir: Path = Path("demo_output"),
    *,
    minutes: float = 3.0,
    episodes: int = 20,
    seed: int = 20_000,
    report: Report = no_report,
    device: str = "auto",
) -> DemoResult:
    try:
        model_dir = resolve_model_dir(world_model)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} Then run `dreamgym demo --world-model runs/doom/model`.") from None
    model = load_world_model(model_dir, device=device)
    env_id = model.game.latent_env_id
    report(f"world model: {model_dir} ({model.game.name}, z={model.z_dim}, LSTM {model.hidden_dim})")

    config = ControllerTrainConfig(generations=10_000, population=32, trials=8, temperature=TEMPERATURE,
                                   eval_every=5, eval_trials=128, seed=seed)
    report(f"1/3 training a fresh controller inside the dream for {minutes:g} minutes (CMA-ES, τ = {TEMPERATURE})")
    trained = train_controller(model, out_dir / "controller", config, force=True,
                               report=report, max_seconds=60 * minutes)
    controller_file = out_dir / "controller" / BEST_FILE
    save_controller(trained.controller, controller_file, {"generations": trained.generations})

    generator = torch.Generator(device=model.device).manual_seed(seed)
    dream = dream_returns(model, trained.controller.flat()[None], 100, TEMPERATURE, generator, model.game.max_episode_steps)[0]
    report(f"2/3 testing on the real game: {episodes} episodes, and random play for comparison")
    env_kwargs = {"world_model": os.fspath(model_dir), "device": str(model.device)}
    real = evaluate(env_id, controller_file, episodes, seed, env_kwargs=env_kwargs)
    random = evaluate(env_id, "random", episodes, seed, env_kwargs=env_kwargs)

    report("3/3 recording a dream episode beside a real one")
    gif = out_dir / "dream_vs_real.gif"
    side_by_side_gif(_dream_frames(model, trained.controller, seed), _real_frames(model, trained.controller, seed), gif)

    report("")
    report(f"{'':24}{'mean':>9}{'± std':>9}  episodes")
    report(f"{'dream (τ = 1.15)':24}{dream.mean():9.1f}{dream.std():9.1f}  100")
    report(f"{'real game':24}{real.mean:9.1f}{real.std:9.1f}  {episodes}")
    report(f"{'random play (real)':24}{random.mean:9.1f}{random.std:9.1f}  {episodes}")
    report(f"GIF (left: dream, V's decoding; right: real frames): {gif}")
    return DemoResult((float(dream.mean()), float(dream.std())), real, random, gif)


def _dream_frames(model, controller, seed: int) -> np.ndarray:
    env = DreamEnv(model.game.name, world_model=model, temperature=TEMPERATURE, render_mode="rgb_array")
    observation, _ = env.reset(seed=seed)
    frames = [env.render()]
    for _ in range(GIF_STEPS):
        observation, _, terminated, _, _ = env.step(act(controller, observation))
        frames.append(env.render())
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
