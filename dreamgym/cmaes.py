"""Train the linear controller with CMA-ES inside the dream (or, to fine-tune, on the real game).

Every generation the whole population × trials is one batch of dreams stepped together
through M (:meth:`WorldModel.dream_step`), not one env per process. Fitness is the mean dream
return minus ``weight_decay · mean(θ²)`` as in the original code. Every ``eval_every``
generations the distribution mean is scored on ``eval_trials`` dreams (always the same seeds);
the best of these is the controller kept. The state of CMA-ES is
checkpointed after every generation, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cma
import numpy as np
import torch
from tqdm import tqdm

from dreamgym.checkpoint import save_controller
from dreamgym.config import ControllerTrainConfig
from dreamgym.controller import LinearController, batched_actions, output_dim
from dreamgym.files import DamagedFileError, atomic_write, atomic_write_text, sha256_of
from dreamgym.games import Game
from dreamgym.parallel import WorkerPool
from dreamgym.plots import plot_curves
from dreamgym.training import Report, StageError, no_report, write_metrics
from dreamgym.world_model import WorldModel

STATE_FILE = "cma_state.pkl"
STATE_HASH_FILE = "cma_state.json"
BEST_FILE = "controller.safetensors"


@torch.no_grad()
def dream_returns(
    model: WorldModel,
    parameters: np.ndarray,
    trials: int,
    temperature: float,
    generator: torch.Generator,
    max_steps: int,
    sample_done: bool = False,
) -> np.ndarray:
    """Dream return of each of P controllers in each of ``trials`` dreams: (P, n) -> (P, trials).

    All P × trials dreams advance together; finished ones stop collecting reward and the batch
    shrinks to the dreams still alive.
    """
    P = len(parameters)
    theta = torch.as_tensor(parameters, dtype=torch.float32, device=model.device)
    state = model.initial_state(P * trials, generator)
    owner = torch.arange(P * trials, device=model.device) // trials  # controller of each dream
    alive = torch.arange(P * trials, device=model.device)  # indices of dreams still running
    returns = torch.zeros(P * trials, device=model.device)
    for _ in range(max_steps):
        observations = state.observation()
        actions = batched_actions(model.game, theta[owner[alive]], observations[:, None, :])[:, 0]
        step = model.dream_step(state, model.action_tensor(actions), temperature, generator, sample_done)
        returns[alive] += step.reward
        keep = ~step.done
        if not bool(keep.any()):
            break
        alive = alive[keep]
        state = type(step.state)(*(t[keep] for t in step.state))
    return returns.view(P, trials).cpu().numpy()


@dataclass
class ControllerResult:
    controller: LinearController
    generations: int
    trained_generations: int
    best_score: float
    """Mean dream return of the kept controller on ``eval_trials`` fresh dreams."""
    seconds: float
    history: list[dict[str, float]]


Returns = Callable[[np.ndarray, int], np.ndarray]
"""(P, n) candidate parameters, generation -> (P,) mean return of each."""
Score = Callable[[np.ndarray], float]
"""(n,) parameters -> mean return over the fixed evaluation episodes."""


def train_controller(
    model: WorldModel,
    out_dir: str | Path,
    config: ControllerTrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    report: Report = no_report,
    max_seconds: float | None = None,
) -> ControllerResult:
    """CMA-ES on the controller's flat parameters inside ``model``'s dream; files in ``out_dir``.

    ``max_seconds`` stops after the generation that exceeds this budget (the demo uses it).
    """
    max_steps = config.max_steps or model.game.max_episode_steps

    def returns_of(solutions: np.ndarray, generation: int) -> np.ndarray:
        generator = torch.Generator(device=model.device).manual_seed(config.seed * 1_000_003 + generation)
        return dream_returns(model, solutions, config.trials, config.temperature, generator, max_steps,
                             config.sample_done).mean(axis=1)

    def score_of(parameters: np.ndarray) -> float:
        generator = torch.Generator(device=model.device).manual_seed(config.seed * 1_000_003 + 999_983)
        return float(dream_returns(model, parameters[None], config.eval_trials, config.temperature, generator,
                                   max_steps, config.sample_done).mean())

    return run_cmaes(model.game, model.observation_dim, out_dir, config, returns_of, score_of, title="CMA-ES in the dream",
                     resume=resume, force=force, progress=progress, report=report, max_seconds=max_seconds)


def train_controller_real(
    model_dir: str | Path,
    out_dir: str | Path,
    config: ControllerTrainConfig,
    *,
    x0: np.ndarray | None = None,
    workers: int = 2,
    backend: str = "local",
    address: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    report: Report = no_report,
    device: str = "auto",
) -> ControllerResult:
    """CMA-ES on the real game's latent twin (``Latent<Game>-v0`` with ``model_dir``'s V and M):
    every candidate × trial is one real episode on a worker (processes, or Ray actors that each
    hold one game; only parameters go out and returns come back). ``x0``: the starting mean
    (e.g. the dream-trained controller). Training seeds start at 1,000,000 + seed, far from the
    evaluation seeds; all candidates of a generation share their seeds. ``device``: where the
    workers' latent twins run V and M."""
    from dreamgym.checkpoint import load_world_model
    from dreamgym.evaluate import controller_returns

    model = load_world_model(model_dir, device="cpu")  # for its game and sizes only
    env_id = model.game.latent_env_id
    env_kwargs = {"world_model": str(Path(model_dir).resolve()), "device": str(device)}
    first_seed = 1_000_000 + config.seed * 100_000
    with WorkerPool(workers, backend, address) as pool:  # one set of games for the whole run

        def returns_of(solutions: np.ndarray, generation: int) -> np.ndarray:
            seeds = [first_seed + 1_000 + generation * config.trials + t for t in range(config.trials)]
            return controller_returns(env_id, env_kwargs, solutions, seeds, pool).mean(axis=1)

        def score_of(parameters: np.ndarray) -> float:
            seeds = [first_seed + t for t in range(config.eval_trials)]
            return float(controller_returns(env_id, env_kwargs, parameters[None], seeds, pool).mean())

        return run_cmaes(model.game, model.observation_dim, out_dir, config, returns_of, score_of, x0=x0,
                         title=f"CMA-ES on {env_id}", resume=resume, force=force, progress=progress, report=report)


def run_cmaes(
    game: Game,
    obs_dim: int,
    out_dir: str | Path,
    config: ControllerTrainConfig,
    returns_of: Returns,
    score_of: Score,
    *,
    x0: np.ndarray | None = None,
    title: str = "CMA-ES",
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    report: Report = no_report,
    max_seconds: float | None = None,
) -> ControllerResult:
    """The CMA-ES loop shared by dream and real training: ask, score, tell, checkpoint."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if force and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_parameters = output_dim(game) * (obs_dim + 1)
    if x0 is None:
        x0 = np.zeros(num_parameters)
    elif np.shape(x0) != (num_parameters,):
        raise ValueError(f"x0 must have {num_parameters} parameters (a {game.name} controller on {obs_dim} inputs), "
                         f"got shape {np.shape(x0)}")
    saved = _load_state(out_dir)
    if saved is None:
        es = cma.CMAEvolutionStrategy(
            np.asarray(x0, np.float64), config.sigma0, {"popsize": config.population, "seed": config.seed + 1, "verbose": -9}
        )
        history: list[dict[str, float]] = []
        best = (-np.inf, np.asarray(x0, np.float64))
    else:
        es, history, best = saved
        if len(history) >= config.generations:
            report(f"controller: already finished ({len(history)} generations); --force retrains")
            controller = LinearController.from_flat(game, obs_dim, best[1])
            return ControllerResult(controller, len(history), 0, float(best[0]), 0.0, history)
        if not resume:
            raise StageError(
                f"{out_dir} holds an unfinished CMA-ES run ({len(history)} of {config.generations} generations): "
                "pass --resume to continue it or --force to start over"
            )
        report(f"controller: resuming after generation {len(history)} of {config.generations}")
    first = len(history)
    bar = tqdm(range(first, config.generations), desc="CMA-ES", unit="gen", disable=not progress)
    for generation in bar:
        gen_start = time.perf_counter()
        solutions = np.asarray(es.ask())
        returns = returns_of(solutions, generation)
        fitness = returns - config.weight_decay * np.mean(solutions**2, axis=1)
        es.tell(list(solutions), list(-fitness))
        row = {
            "generation": generation + 1,
            "best_return": float(returns.max()),
            "mean_return": float(returns.mean()),
            "best_fitness": float(fitness.max()),
            "sigma": float(es.sigma),
        }
        out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
        if (generation + 1) % config.eval_every == 0 or generation + 1 == config.generations or out_of_time:
            # The kept controller is the distribution mean that scored best on many fixed
            # episodes: the luckiest sample of a generation is an optimistic, noisy pick.
            mean = np.asarray(es.mean, dtype=np.float64)
            score = score_of(mean)
            row["center_return"] = score
            if score > best[0]:
                best = (score, mean.copy())
        row["seconds"] = time.perf_counter() - gen_start
        history.append(row)
        _save_state(out_dir, es, history, best, game, obs_dim, title)
        bar.set_postfix(best=f"{returns.max():.1f}", mean=f"{returns.mean():.1f}")
        if (generation + 1) % 10 == 0 or generation + 1 == config.generations:
            report(f"controller: generation {generation + 1}/{config.generations}: "
                   f"best {returns.max():.1f}, mean {returns.mean():.1f}, sigma {es.sigma:.3f}")
        if out_of_time:
            report(f"controller: time budget of {max_seconds:.0f} s reached after {generation + 1} generations")
            break
    bar.close()
    controller = LinearController.from_flat(game, obs_dim, best[1])
    return ControllerResult(controller, len(history), len(history) - first, float(best[0]),
                            time.perf_counter() - start, history)


def _save_state(out_dir: Path, es: cma.CMAEvolutionStrategy, history: list, best: tuple, game: Game, obs_dim: int,
                title: str) -> None:
    """Checkpoint one generation: CMA-ES state (pycma's own pickle, hash recorded beside it),
    history, the best controller so far, and the fitness curve."""
    payload = pickle.dumps({"es": es, "best_score": best[0], "best_parameters": best[1]})
    atomic_write(out_dir / STATE_FILE, lambda tmp: tmp.write_bytes(payload))
    atomic_write_text(out_dir / STATE_HASH_FILE, json.dumps({"sha256": sha256_of(out_dir / STATE_FILE), "history": history}) + "\n")
    save_controller(LinearController.from_flat(game, obs_dim, best[1]), out_dir / BEST_FILE,
                    {"generations": len(history), "score": best[0]})
    write_metrics(out_dir / "fitness.csv", history)
    plot_curves(history, ["best_return", "mean_return", "center_return", "sigma"], out_dir / "fitness.png",
                title, x="generation")


def _load_state(out_dir: Path) -> tuple[cma.CMAEvolutionStrategy, list, tuple] | None:
    """The saved CMA-ES state, unpickled only after its sha256 matches the record written with it."""
    state, record = out_dir / STATE_FILE, out_dir / STATE_HASH_FILE
    if not state.exists() or not record.exists():
        return None
    meta = json.loads(record.read_text())
    if sha256_of(state) != meta["sha256"]:
        raise DamagedFileError(f"{state} does not match the sha256 recorded in {record}: damaged or modified")
    data = pickle.loads(state.read_bytes())
    return data["es"], meta["history"], (data["best_score"], data["best_parameters"])
