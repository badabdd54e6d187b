"""Train the linear controller with CMA-ES inside the dream (or, to fine-tune, on the real game).

Every generation the whole population × trials is one batch of dreams stepped together
through M (:meth:`WorldModel.dream_step`), not one env per process. Fitness is the mean dream
return minus ``weight_decay · mean(θ²)`` as in the original code. Every ``eval_every``
generations the distribution mean is scored on ``eval_trials`` dreams (always the same seeds);
the best of these is the controller kept. The dreams take the model's defences
(:class:`~dreamgym.config.DreamSettings`), exactly as the dream envs do: with dropout or an
ensemble, each of a candidate's trials meets its own member of M's family.

After every generation the run is checkpointed as what CMA-ES was told, never as a pickle:
``cma_state.json`` (settings, history, a digest of each generation's candidates and of the mean
that followed) and the safetensors file it names (x0, the values told, the best parameters).
pycma draws from its own seeded random stream, so a resumed run rebuilds the strategy by
replaying ask/tell with the recorded values, checks every digest on the way, and then
continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cma
import numpy as np
import safetensors.numpy
import torch

from dreamgym import rundir
from dreamgym.checkpoint import save_controller
from dreamgym.config import ControllerTrainConfig, DreamSettings
from dreamgym.controller import LinearController, batched_actions
from dreamgym.files import DamagedFileError, atomic_write, atomic_write_text, read_json
from dreamgym.games import Game
from dreamgym.parallel import WorkerPool
from dreamgym.plots import plot_curves
from dreamgym.training import (
    Progress,
    Report,
    StageError,
    no_progress,
    no_report,
    remove_leftover_temporaries,
    write_metrics,
)
from dreamgym.validation import Rule, check_fields
from dreamgym.world_model import WorldModel, observation_size

STATE_FORMAT = 1
"""A CMA-ES stage keeps two files (``dreamgym.rundir``): the record of the run (settings,
versions, history, per-generation digests, and the name and sha256 of its arrays file; written
last, it commits a generation), and the arrays: x0 (n,), the values told (G, P) and the best
parameters (n,), float64. The arrays are named after the number of generations G, so that a kill
between the two writes leaves the record and the arrays it names intact (the other one is removed
at the next checkpoint)."""


@torch.no_grad()
def dream_returns(
    model: WorldModel,
    parameters: np.ndarray,
    trials: int,
    generator: torch.Generator,
    max_steps: int,
    sample_done: bool = False,
    settings: DreamSettings | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Dream return of each of P controllers in each of ``trials`` dreams: (P, n) -> (P, trials).

    All P × trials dreams advance together; finished ones stop collecting reward and the batch
    shrinks to the dreams still alive. ``settings``: the dream's temperature and defences (None:
    the model's defaults; see :class:`~dreamgym.config.DreamSettings`), with ``overrides``
    (``temperature=1.15``, ``dropout=0.1``, ...) put in; each dream draws its own start, dropout
    mask and member, and a ``horizon`` shortens ``max_steps``.
    """
    settings = model.dream_settings(settings, **overrides)
    if settings.horizon is not None:
        max_steps = min(max_steps, settings.horizon)
    P = len(parameters)
    theta = torch.as_tensor(parameters, dtype=torch.float32, device=model.device)
    state = model.initial_state(P * trials, generator, settings)
    owner = torch.arange(P * trials, device=model.device) // trials  # controller of each dream
    alive = torch.arange(P * trials, device=model.device)  # indices of dreams still running
    returns = torch.zeros(P * trials, device=model.device)
    for _ in range(max_steps):
        observations = state.observation(settings.observation)
        actions = batched_actions(model.game, theta[owner[alive]], observations[:, None, :])[:, 0]
        step = model.dream_step(state, model.action_tensor(actions), generator, sample_done, settings)
        returns[alive] += step.reward
        keep = ~step.done
        if not bool(keep.any()):
            break
        alive = alive[keep]
        state = step.state.select(keep)
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
    progress: Progress = no_progress,
    report: Report = no_report,
    max_seconds: float | None = None,
    dream: DreamSettings | None = None,
    x0: np.ndarray | None = None,
) -> ControllerResult:
    """CMA-ES on the controller's flat parameters inside ``model``'s dream; files in ``out_dir``.

    ``dream``: the dream, its temperature and defences (None: the model's defaults). ``max_seconds`` stops after
    the generation that exceeds this budget (the demo uses it). ``x0``: the flat parameters the
    search starts from (an earlier round's controller; default zeros).
    """
    max_steps = config.max_steps or model.game.max_episode_steps
    dream = model.dream_settings(dream)

    def returns_of(solutions: np.ndarray, generation: int) -> np.ndarray:
        generator = torch.Generator(device=model.device).manual_seed(config.seed * 1_000_003 + generation)
        return dream_returns(model, solutions, config.trials, generator, max_steps, config.sample_done, dream).mean(
            axis=1
        )

    def score_of(parameters: np.ndarray) -> float:
        generator = torch.Generator(device=model.device).manual_seed(config.seed * 1_000_003 + 999_983)
        return float(
            dream_returns(
                model,
                parameters[None],
                config.eval_trials,
                generator,
                max_steps,
                config.sample_done,
                dream,
            ).mean()
        )

    return run_cmaes(
        model.game,
        observation_size(model.z_dim, model.hidden_dim, dream.observation),
        out_dir,
        config,
        returns_of,
        score_of,
        title="CMA-ES in the dream",
        x0=x0,
        resume=resume,
        force=force,
        progress=progress,
        report=report,
        max_seconds=max_seconds,
    )


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
    progress: Progress = no_progress,
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

        return run_cmaes(
            model.game,
            model.observation_dim,
            out_dir,
            config,
            returns_of,
            score_of,
            x0=x0,
            title=f"CMA-ES on {env_id}",
            resume=resume,
            force=force,
            progress=progress,
            report=report,
        )


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
    progress: Progress = no_progress,
    report: Report = no_report,
    max_seconds: float | None = None,
) -> ControllerResult:
    """The CMA-ES loop shared by dream and real training: ask, score, tell, checkpoint."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if force and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftover_temporaries(out_dir)  # of a write that was killed
    num_parameters = game.controller_output_dim * (obs_dim + 1)
    if x0 is None:
        x0 = np.zeros(num_parameters)
    elif np.shape(x0) != (num_parameters,):
        raise ValueError(
            f"x0 must have {num_parameters} parameters (a {game.name} controller on {obs_dim} inputs), "
            f"got shape {np.shape(x0)}"
        )
    x0 = np.array(x0, dtype=np.float64)
    state = _load_state(out_dir)
    if state is None:
        state = CmaState(x0, config.sigma0, config.population, config.seed)
        es = state.strategy()
    else:
        if state.x0.shape != (num_parameters,):
            raise StageError(
                f"{out_dir} holds a CMA-ES run on {len(state.x0)} parameters, but a {game.name} controller "
                f"on {obs_dim} inputs has {num_parameters}: pass --force to start over"
            )
        if state.generations >= config.generations:
            report(f"controller: already finished ({state.generations} generations); --force retrains")
            _write_outputs(out_dir, state, game, obs_dim, title)  # in case a kill came between state and outputs
            controller = LinearController.from_flat(game, obs_dim, state.best)
            return ControllerResult(controller, state.generations, 0, state.best_score, 0.0, state.history)
        if not resume:
            raise StageError(
                f"{out_dir} holds an unfinished CMA-ES run ({state.generations} of {config.generations} generations): "
                "pass --resume to continue it or --force to start over"
            )
        state.check_settings(out_dir, config, x0)
        report(f"controller: replaying the {state.generations} recorded generations of CMA-ES")
        es = state.replay(rundir.cma_state(out_dir), progress)
        report(f"controller: resuming after generation {state.generations} of {config.generations}")
    first = state.generations
    for generation in range(first, config.generations):
        gen_start = time.perf_counter()
        solutions = np.asarray(es.ask(), dtype=np.float64)  # (P, n)
        returns = returns_of(solutions, generation)  # (P,)
        fitness = returns - config.weight_decay * np.mean(solutions**2, axis=1)
        if not np.isfinite(fitness).all():
            bad = np.flatnonzero(~np.isfinite(fitness))
            raise FloatingPointError(
                f"CMA-ES generation {generation + 1}: candidates {bad.tolist()} got returns "
                f"{returns[bad].tolist()}, not finite; the generation is not recorded"
            )
        told = -fitness  # pycma minimises
        es.tell(list(solutions), list(told))
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
            if score > state.best_score:
                state.best_score, state.best_parameters = score, mean.copy()
        row["seconds"] = time.perf_counter() - gen_start
        state.record(solutions, told, es.mean, row)
        _save_state(out_dir, state)
        _write_outputs(out_dir, state, game, obs_dim, title)
        progress("CMA-ES", generation + 1, config.generations)
        if (generation + 1) % 10 == 0 or generation + 1 == config.generations:
            report(
                f"controller: generation {generation + 1}/{config.generations}: "
                f"best {returns.max():.1f}, mean {returns.mean():.1f}, sigma {es.sigma:.3f}"
            )
        if out_of_time:
            report(f"controller: time budget of {max_seconds:.0f} s reached after {generation + 1} generations")
            break
    controller = LinearController.from_flat(game, obs_dim, state.best)
    return ControllerResult(
        controller,
        state.generations,
        state.generations - first,
        state.best_score,
        time.perf_counter() - start,
        state.history,
    )


def _digest(array: np.ndarray) -> str:
    """sha256 of an array's float64 values, to check that a replay asks and moves exactly as recorded."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f8").tobytes()).hexdigest()


@dataclass
class CmaState:
    """What a CMA-ES run was started with and told; the strategy itself is rebuilt from it by
    :meth:`replay`, never stored."""

    x0: np.ndarray
    """(n,) the starting mean."""
    sigma0: float
    popsize: int
    seed: int
    told: list[np.ndarray] = field(default_factory=list)
    """Per generation, the (P,) values told to pycma: −fitness of each candidate."""
    asked: list[str] = field(default_factory=list)
    """Per generation, the digest of the (P, n) candidates asked."""
    means: list[str] = field(default_factory=list)
    """Per generation, the digest of the (n,) mean after the tell."""
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -np.inf
    best_parameters: np.ndarray | None = None
    """(n,) the best-scoring mean so far (x0 until one is scored)."""
    versions: dict[str, str] = field(default_factory=lambda: {"pycma": cma.__version__, "numpy": np.__version__})
    """Of the software that asked and told the recorded generations."""

    def __post_init__(self) -> None:
        if self.best_parameters is None:
            self.best_parameters = self.x0.copy()

    @property
    def best(self) -> np.ndarray:
        """(n,) the best-scoring mean so far."""
        return self.x0 if self.best_parameters is None else self.best_parameters

    @property
    def generations(self) -> int:
        return len(self.history)

    def strategy(self) -> cma.CMAEvolutionStrategy:
        """A fresh pycma strategy drawing from its own random stream: a NumPy ``RandomState``
        that nothing else in the process advances (pycma's default is NumPy's global one), whose
        stream NumPy keeps fixed across versions. Seeded with seed + 1, the stream earlier versions
        drew from, so the same seed still asks the same candidates."""
        randn = np.random.RandomState(self.seed + 1).randn  # randn(P, n) -> (P, n) standard normal
        return cma.CMAEvolutionStrategy(
            self.x0.copy(), self.sigma0, {"popsize": self.popsize, "randn": randn, "seed": np.nan, "verbose": -9}
        )

    def record(self, solutions: np.ndarray, told: np.ndarray, mean: np.ndarray, row: dict[str, float]) -> None:
        """One generation: (P, n) candidates asked, (P,) values told, (n,) mean after the tell."""
        self.asked.append(_digest(solutions))
        self.told.append(np.array(told, dtype=np.float64))
        self.means.append(_digest(mean))
        self.history.append(row)

    def check_settings(self, out_dir: Path, config: ControllerTrainConfig, x0: np.ndarray) -> None:
        """A resumed run keeps the population, seed, σ0 and x0 it started with."""
        recorded = {"population": self.popsize, "seed": self.seed, "sigma0": self.sigma0}
        now = {"population": config.population, "seed": config.seed, "sigma0": config.sigma0}
        changed = [f"{name} {recorded[name]} (now {now[name]})" for name in recorded if recorded[name] != now[name]]
        if not np.array_equal(self.x0, x0):
            changed.append("another x0 (the starting controller has changed)")
        if changed:
            raise StageError(
                f"{out_dir} holds a CMA-ES run started with {', '.join(changed)}: restore those settings "
                "to continue it, or pass --force to start over"
            )

    def replay(self, record_path: Path, progress: Progress = no_progress) -> cma.CMAEvolutionStrategy:
        """The strategy after the recorded generations: ask, check the candidates' digest, tell the
        recorded values, check the mean's digest. Costs what pycma itself cost the run (about
        25 ms a generation for 577 parameters, 50 ms for 867, on one core)."""
        es = self.strategy()
        for generation in range(self.generations):
            progress("CMA-ES replay", generation, self.generations)
            solutions = np.asarray(es.ask(), dtype=np.float64)
            if _digest(solutions) != self.asked[generation]:
                raise self._cannot_continue(record_path, generation, "asks other candidates")
            es.tell(list(solutions), list(self.told[generation]))
            if _digest(es.mean) != self.means[generation]:
                raise self._cannot_continue(record_path, generation, "reaches another mean")
        return es

    def _cannot_continue(self, record_path: Path, generation: int, what: str) -> Exception:
        here = {"pycma": cma.__version__, "numpy": np.__version__}
        versions = ", ".join(f"{name} {self.versions.get(name)}" for name in here)
        message = (
            f"{record_path}: at generation {generation + 1}, the replay of the recorded CMA-ES run {what} "
            f"than the run recorded, so it cannot be continued exactly. Recorded with {versions}; this is "
            f"{', '.join(f'{name} {version}' for name, version in here.items())}. "
        )
        if any(self.versions.get(name) != version for name, version in here.items()):
            return StageError(message + "Install the recorded versions to continue it, or pass --force to start over")
        return DamagedFileError(
            message + "The state files were modified, or this machine computes differently "
            "(another CPU or BLAS); pass --force to start over"
        )


def _save_state(out_dir: Path, state: CmaState) -> None:
    """Checkpoint one generation: the arrays file first, then the record naming it (the commit),
    then remove the arrays of the previous generation."""
    arrays_name = rundir.cma_arrays(out_dir, state.generations).name
    data = safetensors.numpy.save(
        {
            "x0": state.x0,
            "told": np.stack(state.told),
            "best_parameters": np.asarray(state.best_parameters, dtype=np.float64),
        }
    )
    atomic_write(out_dir / arrays_name, lambda tmp: tmp.write_bytes(data))
    record = {
        "format": STATE_FORMAT,
        "arrays": arrays_name,
        "arrays_sha256": hashlib.sha256(data).hexdigest(),
        **state.versions,
        "popsize": state.popsize,
        "seed": state.seed,
        "sigma0": state.sigma0,
        "best_score": None if state.best_score == -np.inf else state.best_score,
        "asked_sha256": state.asked,
        "mean_sha256": state.means,
        "history": state.history,
    }
    atomic_write_text(rundir.cma_state(out_dir), json.dumps(record, indent=1) + "\n")
    for stale in out_dir.glob(rundir.CMA_ARRAYS.replace("{generations:06d}", "*")):
        if stale.name != arrays_name:
            stale.unlink(missing_ok=True)


def _write_outputs(out_dir: Path, state: CmaState, game: Game, obs_dim: int, title: str) -> None:
    """The best controller so far and the fitness curve, as CSV and plot."""
    save_controller(
        LinearController.from_flat(game, obs_dim, state.best),
        rundir.controller(out_dir),
        {"generations": state.generations, "score": state.best_score},
    )
    write_metrics(rundir.fitness_table(out_dir), state.history, step="generation")
    plot_curves(
        state.history,
        ["best_return", "mean_return", "center_return", "sigma"],
        rundir.picture(out_dir, "fitness"),
        title,
        x="generation",
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


_STATE_RULES = {
    "format": Rule("int"),
    "arrays": Rule("str"),
    "arrays_sha256": Rule("str"),
    "pycma": Rule("str"),
    "numpy": Rule("str"),
    "popsize": Rule("int", minimum=2),
    "seed": Rule("int", minimum=0),
    "sigma0": Rule("float", above=0),
    "best_score": Rule("float", optional=True),
    "asked_sha256": Rule("list"),
    "mean_sha256": Rule("list"),
    "history": Rule("list"),
}
"""The fields of a CMA-ES state record (:func:`_save_state` writes them)."""


def _load_state(out_dir: Path) -> CmaState | None:
    """The recorded CMA-ES run in ``out_dir`` (None if there is none), every field checked:
    :class:`DamagedFileError` naming the file on anything malformed or inconsistent. Nothing
    is unpickled."""
    path = rundir.cma_state(out_dir)
    if not path.exists():
        return None
    record = read_json(path)

    def damaged(what: str) -> DamagedFileError:
        return DamagedFileError(f"{path} is damaged or was modified: {what}")

    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise damaged(f"format {found!r}, this version reads format {STATE_FORMAT}")
    try:
        check_fields("", record, _STATE_RULES, complete=True)
    except ValueError as error:
        raise damaged(str(error)) from None
    history = record["history"]
    G = len(history)  # generations recorded
    if G == 0:
        raise damaged("its history is empty")
    for i, row in enumerate(history):
        if not isinstance(row, dict) or row.get("generation") != i + 1:
            raise damaged(f"history row {i} is not generation {i + 1}")
    asked, means = record["asked_sha256"], record["mean_sha256"]
    for name, digests in (("asked_sha256", asked), ("mean_sha256", means)):
        if len(digests) != G or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in digests):
            raise damaged(f"{name} is not {G} sha256 digests, one per generation of the history")
    popsize, seed, sigma0, best_score = (record[name] for name in ("popsize", "seed", "sigma0", "best_score"))
    versions = {name: record[name] for name in ("pycma", "numpy")}
    arrays_name = record["arrays"]
    if arrays_name != rundir.cma_arrays(out_dir, G).name:
        raise damaged(f"it names the arrays file {arrays_name!r} for {G} generations")
    arrays_path = out_dir / arrays_name
    try:
        data = arrays_path.read_bytes()
    except OSError as error:
        raise DamagedFileError(f"{arrays_path}, named by {path}, cannot be read: {error.strerror or error}") from error
    if hashlib.sha256(data).hexdigest() != record["arrays_sha256"]:
        raise DamagedFileError(f"{arrays_path} does not match the sha256 recorded in {path}: damaged or modified")
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as error:  # safetensors raises its own error type for malformed files
        raise DamagedFileError(f"{arrays_path} cannot be read ({type(error).__name__}: {error})") from error
    if sorted(arrays) != ["best_parameters", "told", "x0"]:
        raise DamagedFileError(f"{arrays_path} holds {sorted(arrays)}, not best_parameters, told and x0")
    x0, told, best_parameters = arrays["x0"], arrays["told"], arrays["best_parameters"]
    n = len(x0) if x0.ndim == 1 and len(x0) else "n"  # the number of parameters, as x0 says
    for name, array, shape in (
        ("x0", x0, (n,)),
        ("told", told, (G, popsize)),
        ("best_parameters", best_parameters, (n,)),
    ):
        if n == "n" or array.dtype != np.float64 or array.shape != shape:
            raise DamagedFileError(
                f"{arrays_path}: {name} is {array.dtype} {array.shape}, expected float64 {shape} "
                f"({G} generations of {popsize} in {path})"
            )
        if not np.isfinite(array).all():
            raise DamagedFileError(f"{arrays_path}: {name} holds values that are not finite")
    return CmaState(
        x0,
        float(sigma0),
        popsize,
        seed,
        told=list(told),
        asked=asked,
        means=means,
        history=history,
        best_score=-np.inf if best_score is None else float(best_score),
        best_parameters=best_parameters,
        versions=versions,
    )
