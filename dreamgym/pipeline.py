"""The paper's stages in order, each on a run directory.

    collect -> train-vae -> encode -> train-mdnrnn -> train-controller -> export -> evaluate

Each works on a run directory, whose layout ``dreamgym.rundir`` describes and owns.

Every stage is a no-op when already finished (unless ``force``), resumes after a crash, and
returns what it did and how long it took.

Iterative rounds (the paper's proposal for harder games): ``next_round(RUN, RUN2, ...)`` makes
RUN2 a run that links RUN's episodes, latents and V and collects new episodes with RUN's
controller plus exploration noise; the pipeline on RUN2 then encodes only the new episodes and
trains M and the controller again on everything.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from dreamgym import rundir
from dreamgym.checkpoint import (
    PICTURES_DIR,
    is_model_directory,
    load_controller,
    read_model_config,
    save_controller,
    save_world_model,
)
from dreamgym.cmaes import dream_returns, train_controller, train_controller_real
from dreamgym.collect import collect
from dreamgym.commands import pipeline_command
from dreamgym.config import DreamSettings, RunConfig, preset, relative_path
from dreamgym.devices import resolve_device
from dreamgym.encode import encode_run, initial_latents
from dreamgym.episodes import (
    episode_files,
    episode_index,
    episode_path,
    iter_valid,
    latent_files,
    read_episode,
    read_latents,
)
from dreamgym.evaluate import EvalResult, check_trusted, evaluate
from dreamgym.files import (
    DamagedFileError,
    atomic_write_text,
    check_destination,
    link_or_copy,
    load_torch_checkpoint,
    read_json,
)
from dreamgym.games import Game, lookup
from dreamgym.mdnrnn import build_mdnrnn, train_mdnrnn
from dreamgym.plots import frame_grid, plot_temperatures
from dreamgym.rundir import RunDir
from dreamgym.training import (
    Progress,
    Report,
    StageError,
    kept_epoch,
    load_trained,
    no_progress,
    no_report,
)
from dreamgym.vae import ConvVAE, VAEConfig, count_parameters, train_vae
from dreamgym.world_model import StartEpisodes, WorldModel

T = TypeVar("T")


@dataclass
class StageReport:
    stage: str
    seconds: float
    summary: str

    def __str__(self) -> str:
        return f"[{self.stage}] {self.summary} ({format_seconds(self.seconds)})"


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def timed(run_dir: Path, stage: str, work: Callable[[], T]) -> tuple[T, float]:
    """``work()``'s result and its wall-clock seconds, which are added to the stage's time in
    timings.json (a resumed stage adds up)."""
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    path = RunDir(run_dir).timings
    timings = read_json(path) if path.exists() else {}
    if not isinstance(timings, dict) or not all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in timings.values()
    ):
        raise DamagedFileError(f"{path} is damaged: expected seconds by stage; delete it to count the times again")
    timings[stage] = timings.get(stage, 0.0) + seconds
    atomic_write_text(path, json.dumps(timings, indent=2) + "\n")
    return result, seconds


def _timed(run_dir: Path, stage: str, work: Callable[[], str]) -> StageReport:
    summary, seconds = timed(run_dir, stage, work)
    return StageReport(stage, seconds, summary)


def init_run(
    run_dir: str | Path,
    game: str | Game,
    preset_name: str | None = None,
    *,
    budget: dict[str, dict[str, Any]] | None = None,
    **collect_overrides: Any,
) -> RunConfig:
    """Create ``run_dir/run.json`` from a preset (default ``cpu``), or check that an existing run
    matches: its game, and its preset when one is named (a run keeps the preset it was made with).
    ``budget``: section -> settings put in on top (``{"vae": {"epochs": 2}}``; None values keep the
    setting), written to run.json; ``collect_overrides``: the same for the collect section."""
    run_dir, game = Path(run_dir), lookup(game)
    if RunDir(run_dir).settings.exists():
        config = RunConfig.load(run_dir)
        if config.game != game.name:
            raise StageError(f"{run_dir} is a {config.game} run, not {game.name}")
        if preset_name is not None and preset_name != config.preset:
            raise StageError(
                f"{run_dir} was made with preset {config.preset!r}, not {preset_name!r}: drop --preset to "
                f"continue it, or give a new --out for a {preset_name!r} run"
            )
    else:
        check_destination(run_dir, "a dreamgym run", lambda path: False)
        config = preset(game, preset_name or "cpu")
    config = config.with_overrides("collect", **collect_overrides)
    for section, values in (budget or {}).items():
        config = config.with_overrides(section, **values)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir)
    return config


DEFAULT_ROUND_NOISE = 0.05
"""Exploration noise around the parent's controller in a round (see ``next_round``)."""


def next_round(
    parent_dir: str | Path,
    run_dir: str | Path,
    episodes: int,
    noise: float | None = None,
    explore: bool = False,
    policy: str | Path | None = None,
) -> RunConfig:
    """Set up ``run_dir`` as the next round after ``parent_dir``: the parent's episodes and
    latents are linked (not copied), V's checkpoint is linked (V stays fixed, so old latents
    and the parent's controller keep their meaning), and ``episodes`` new episodes will be
    collected, numbered after the parent's, by the parent's exported controller with
    ``noise`` (default 0.05), or, with ``explore``, by the game's exploration policy, which the
    parent's own collection used: more data of the kind M already saw, no controller needed
    (``noise`` applies to the controller only: giving both is an error, and such a round
    records noise 0). ``policy`` plays instead of the parent's controller: any agent trained in
    the parent's dream, e.g. an SB3 ``.zip`` (its latent observation comes from the parent's
    model). Returns the new run's settings; run the pipeline on ``run_dir`` next."""
    if explore and (noise is not None or policy is not None):
        raise ValueError(
            "explore records with the exploration policy; noise and policy are for an agent: give one of them"
        )
    if policy is not None and not Path(policy).exists():
        raise ValueError(
            f"policy {policy} does not exist: expected an SB3 .zip, a controller file or a model directory"
        )
    noise = 0.0 if explore else DEFAULT_ROUND_NOISE if noise is None else noise
    parent_dir, run_dir = Path(parent_dir).resolve(), Path(run_dir)
    parent = RunConfig.load(parent_dir)
    model_dir = RunDir(parent_dir).model
    if not explore and policy is None and not rundir.controller(model_dir).exists():
        raise StageError(
            f"{model_dir} has no controller: finish the pipeline on {parent_dir} first (export writes it)"
            ", or record the round with the exploration policy (--explore)"
        )
    if not rundir.checkpoint(RunDir(parent_dir).vae).exists():
        raise StageError(
            f"{parent_dir} has no trained V ({rundir.checkpoint(RunDir(parent_dir).vae)}): a round reuses its "
            f"parent's V, so train it first (dreamgym pipeline {parent.game} --out {parent_dir})"
        )
    if RunDir(run_dir).settings.exists():
        raise StageError(f"{run_dir} is already a run directory: choose a new one for the next round")
    check_destination(run_dir, "a new run directory", lambda path: False)
    if episodes < 1 or noise < 0:
        raise ValueError(f"a round needs episodes >= 1 and noise >= 0, got episodes={episodes}, noise={noise}")
    old_episodes = episode_files(RunDir(parent_dir).episodes)
    first = max((episode_index(p) for p in old_episodes), default=-1) + 1
    _link_run(parent_dir, run_dir, [RunDir(parent_dir).vae])
    agent = None if explore else str(Path(policy).resolve()) if policy is not None else str(model_dir)
    collect_config = replace(
        parent.collect,
        first_episode=first,
        episodes=episodes,
        policy=agent,
        noise=noise,
        world_model=None if explore else str(model_dir),
    )
    config = replace(parent, collect=collect_config, parent=str(parent_dir))
    config.save(run_dir)  # last: a run.json means the round was set up completely
    return config


def _link_run(source: Path, run_dir: Path, stages: list[Path]) -> None:
    """Link ``source``'s episodes and latents (relative symbolic links: they are never rewritten,
    and runs moved or copied together keep them) and the checkpoints of its stage directories
    ``stages`` (hard links: the checkpoint as it is now, which retraining ``source`` later
    leaves as it was) into ``run_dir``, and copy the latents' marker (which V encoded them).
    Nothing is written in ``source``."""
    source_run, run = RunDir(source), RunDir(run_dir)
    checkpoints = [rundir.checkpoint(stage) for stage in stages]
    for path in checkpoints:
        if not path.exists():
            raise StageError(f"{source} has no trained {path.parent.name} ({path}): finish its pipeline first")
    links = [(path, run.episodes / path.name) for path in episode_files(source_run.episodes)]
    links += [(path, run.latents / path.name) for path in latent_files(source)]
    for path, link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(path.resolve(), link.parent.resolve()))
    for path in checkpoints:
        frozen = run_dir / path.relative_to(source)
        frozen.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path.resolve(), frozen)
    if source_run.latents_marker.exists():
        shutil.copyfile(source_run.latents_marker, run.latents_marker)


def adopt_run(source: str | Path, run_dir: str | Path, *, controller: bool = True) -> RunConfig:
    """Set up ``run_dir`` as a finished run ``source`` (``dreamgym pipeline``), so that work can go
    on from it (``dreamgym iterate --start``): its settings, its episodes, latents, V and M
    (every member) linked, and, with ``controller``, its CMA-ES state copied (a later stage may
    continue it). Every stage of the pipeline on ``run_dir`` then finds its work done."""
    source, run_dir = Path(source).resolve(), Path(run_dir)
    config = RunConfig.load(source)
    if RunDir(run_dir).settings.exists():
        raise StageError(f"{run_dir} is already a run directory")
    source_run = RunDir(source)
    _link_run(source, run_dir, [source_run.vae] + [source_run.mdnrnn(m) for m in range(config.mdnrnn.members)])
    if controller and source_run.controller.is_dir():
        shutil.copytree(source_run.controller, RunDir(run_dir).controller, dirs_exist_ok=True)
    config.save(run_dir)  # last: a run.json means the run was set up completely
    return config


# --------------------------------------------------------------------------- stages


def collect_stage(
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: Progress = no_progress,
    backend: str = "local",
    address: str | None = None,
    trust_zip: bool = False,
) -> StageReport:
    """Record the run's episodes. An SB3 ``.zip`` as ``collect.policy`` is loaded only with
    ``trust_zip`` (a run.json must not be able to make dreamgym run code)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    config = RunConfig.load(run_dir)
    check_trusted(config.collect.policy, trust_zip, f"{run_dir}: collect.policy ")
    if force:  # only this collection's episodes: a round's links to earlier rounds stay
        first = config.collect.first_episode
        for index in range(first, first + config.collect.episodes):
            episode_path(run.episodes, index).unlink(missing_ok=True)

    def work() -> str:
        summaries = collect(config.game, run.episodes, config.collect, progress, backend, address)
        total = len(episode_files(run.episodes))
        preview_episodes(run.episodes, run.episodes_preview)
        if not summaries:
            return f"already finished: {total} episodes in {run.episodes}"
        steps = [s.steps for s in summaries]
        returns = [s.total_reward for s in summaries]
        return (
            f"recorded {len(summaries)} episodes ({sum(steps)} steps, mean length {np.mean(steps):.0f}, "
            f"mean return {np.mean(returns):.1f}); {total} in {run.episodes}"
        )

    return _timed(run_dir, "collect", work)


def train_vae_stage(
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
    refine_from: str | Path | None = None,
) -> StageReport:
    """V; ``refine_from``: a run whose trained V (same size) it starts from, rather than fresh
    weights (an iterative round that refreshes V)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        init = None if refine_from is None else RunDir(refine_from).vae
        _, result = train_vae(
            run_dir, config.vae, resume=resume, force=force, progress=progress, report=report, device=device, init=init
        )
        last = result.history[-1]
        verb = "trained" if result.trained_epochs else "already finished"
        # A V imported from another model carries a history without per-term losses.
        return (
            f"V {verb}: {result.epochs} epochs, loss {last.get('loss', float('nan')):.1f} "
            f"(reconstruction {last.get('reconstruction', float('nan')):.1f})"
        )

    return _timed(run_dir, "train-vae", work)


def preview_episodes(episode_dir: Path, path: Path, episodes: int = 3, columns: int = 8) -> None:
    """A picture of what collect recorded: evenly spaced frames of the first few episodes."""
    rows = []
    for path_of_episode, episode in iter_valid(episode_files(episode_dir)[:episodes], read_episode):
        frames = episode["frames"]
        rows.append(
            (
                f"{path_of_episode.stem[-6:]} ({len(episode['actions'])} steps)",
                frames[np.linspace(0, len(frames) - 1, columns).astype(int)],
            )
        )
    if rows:
        frame_grid(rows, path, "collected episodes (64×64 frames as V sees them)")


def load_vae(run_dir: Path, config: RunConfig, device: str = "cpu") -> ConvVAE:
    """The trained V of ``run_dir`` (sized by ``config``)."""
    vae = ConvVAE(VAEConfig(z_dim=config.vae.z_dim, kl_tolerance=config.vae.kl_tolerance))
    load_trained(RunDir(run_dir).vae, vae)
    return vae.to(resolve_device(device))


def encode_stage(
    run_dir: str | Path,
    *,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
) -> StageReport:
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        result = encode_run(run_dir, load_vae(run_dir, config, device), force=force, progress=progress, report=report)
        damaged = f", {result.skipped_damaged} damaged files skipped" if result.skipped_damaged else ""
        return f"encoded {result.encoded} episodes ({result.already_done} already encoded{damaged})"

    return _timed(run_dir, "encode", work)


def train_mdnrnn_stage(
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
    refine_from: str | Path | None = None,
) -> StageReport:
    """M (and its ensemble members); ``refine_from``: a run whose trained Ms (same sizes, same
    members) each member starts from, rather than fresh weights (an iterative round)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        summaries = []
        for member in range(config.mdnrnn.members):  # one stage directory each: a crash loses one member's epoch
            init = None if refine_from is None else RunDir(refine_from).mdnrnn(member)
            _, result = train_mdnrnn(
                run_dir,
                lookup(config.game),
                config.mdnrnn,
                resume=resume,
                force=force,
                progress=progress,
                report=report,
                device=device,
                member=member,
                init=init,
            )
            kept = result.history[result.kept_epoch - 1]
            verb = "trained" if result.trained_epochs else "already finished"
            name = "M" if config.mdnrnn.members == 1 else f"M member {member}"
            summaries.append(
                f"{name} {verb}: {result.epochs} epochs; kept epoch {kept['epoch']:.0f}: nll/dim "
                f"{kept['nll']:.3f}, reward mse {kept['reward']:.3f}, done bce {kept['done']:.3f}"
            )
        return "; ".join(summaries)

    return _timed(run_dir, "train-mdnrnn", work)


START_EPISODES = 32
"""Real episodes a model directory stores for ``starts="data"`` (evenly spaced over the run's):
Doom's take ~1 MB at float16, CarRacing's ~2 MB."""


def world_model_from_run(run_dir: str | Path, report: Report = no_report, starts: int = START_EPISODES) -> WorldModel:
    """Assemble V, M, the first-frame latents, ``starts`` real episodes' latents for
    ``starts="data"`` (0: none) and (if trained) the controller of a run."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    game = lookup(config.game)
    vae = load_vae(run_dir, config)
    members = []
    for member in range(config.mdnrnn.members):
        members.append(build_mdnrnn(config.vae.z_dim, game, config.mdnrnn))
        load_trained(RunDir(run_dir).mdnrnn(member), members[-1])
    mu, logvar = initial_latents(run_dir, report)
    controller_file = rundir.controller(RunDir(run_dir).controller)
    controller = load_controller(controller_file) if controller_file.exists() else None
    return WorldModel(
        game,
        vae,
        members[0],
        torch.from_numpy(mu),
        torch.from_numpy(logvar),
        controller,
        members=members[1:],
        start_episodes=start_episodes(run_dir, game, starts, report) if starts else None,
        dream_defaults=dream_of(config, game),
    )


def dream_of(config: RunConfig, game: Game) -> DreamSettings:
    """The dream a run trains its controller in and its model records: run.json's ``dream``, its
    temperature the game's when run.json leaves it out."""
    if config.dream.temperature is not None:
        return config.dream
    return dataclasses.replace(config.dream, temperature=game.dream_temperature)


def start_episodes(run_dir: Path, game: Game, count: int = START_EPISODES, report: Report = no_report) -> StartEpisodes:
    """μ and M's action input of every step of ``count`` encoded episodes spread over the run."""
    files = latent_files(run_dir)
    chosen = [files[i] for i in np.unique(np.linspace(0, len(files) - 1, min(count, len(files))).astype(int))]
    mus, actions, lengths = [], [], []
    for _, latents in iter_valid(chosen, functools.partial(read_latents, game=game), report):
        steps = len(latents["actions"])
        mus.append(latents["mu"][:steps].astype(np.float32))
        actions.append(game.encode_actions(latents["actions"]))
        lengths.append(steps)
    if not lengths:
        raise StageError(f"no readable encoded episodes in {RunDir(run_dir).latents}: run `dreamgym encode` first")
    return StartEpisodes(
        torch.from_numpy(np.concatenate(mus)),
        torch.from_numpy(np.concatenate(actions)),
        torch.tensor(lengths, dtype=torch.int64),
    )


def train_controller_stage(
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
) -> StageReport:
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        model = world_model_from_run(run_dir, report).to(device)
        result = train_controller(
            model,
            RunDir(run_dir).controller,
            config.controller,
            resume=resume,
            force=force,
            progress=progress,
            report=report,
        )
        verb = "trained" if result.trained_generations else "already finished"
        return (
            f"controller {verb}: {result.generations} generations at τ={model.dream_defaults.temperature}, "
            f"kept controller scores {result.best_score:.1f} in {config.controller.eval_trials} dreams "
            f"-> {rundir.controller(RunDir(run_dir).controller)}"
        )

    return _timed(run_dir, "train-controller", work)


def train_controller_real_stage(
    run_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
    backend: str = "local",
    address: str | None = None,
    report: Report = no_report,
    device: str = "auto",
) -> StageReport:
    """Fine-tune on the real game (the latent twin, with the run's exported model): CMA-ES from
    the dream-trained controller, files in ``run/controller_real``. Kept apart from the
    dream-only controller, so that both scores can be reported."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    run = RunDir(run_dir)
    model_dir = run.model
    if not is_model_directory(model_dir):
        raise StageError(f"{model_dir} does not exist: run `dreamgym export {run_dir} --to {model_dir}` first")

    def work() -> str:
        dream_controller = rundir.controller(run.controller)
        x0 = load_controller(dream_controller).flat() if dream_controller.exists() else None
        result = train_controller_real(
            model_dir,
            run.controller_real,
            config.real_controller,
            x0=x0,
            workers=config.evaluate.workers,
            backend=backend,
            address=address,
            resume=resume,
            force=force,
            progress=progress,
            report=report,
            device=device,
        )
        verb = "trained" if result.trained_generations else "already finished"
        start = "the dream controller" if x0 is not None else "zero"
        return (
            f"real controller {verb}: {result.generations} generations of {config.real_controller.population} × "
            f"{config.real_controller.trials} real episodes from {start}, "
            f"kept controller scores {result.best_score:.1f} on {config.real_controller.eval_trials} real episodes "
            f"-> {rundir.controller(run.controller_real)}"
        )

    return _timed(run_dir, "train-controller-real", work)


def export_stage(
    run_dir: str | Path,
    to: str | Path,
    *,
    float16: bool = False,
    starts: int = START_EPISODES,
    built_with: str | None = None,
    report: Report = no_report,
) -> StageReport:
    """Write the run's model directory; ``starts``: real episodes kept for ``starts="data"``
    (0 leaves them out, for a lean shipped model); ``built_with``: see :func:`model_card`."""
    run_dir, to = Path(run_dir), Path(to)
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
        raise ValueError(f"starts must be a whole number of episodes >= 0 (0: none), got {starts!r}")

    def work() -> str:
        model = world_model_from_run(run_dir, report, starts)
        model.metadata = run_metadata(run_dir)
        save_world_model(
            model,
            to,
            model_card=model_card(run_dir, model, built_with),
            weights_dtype=torch.float16 if float16 else None,
        )
        pictures = to / PICTURES_DIR
        pictures.mkdir(exist_ok=True)
        for source, name in RunDir(run_dir).model_pictures():
            shutil.copyfile(source, pictures / name)
        size = sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
        return f"exported to {to} ({size / 1e6:.1f} MB{', float16 weights' if float16 else ''})"

    return _timed(run_dir, "export", work)


def evaluate_stage(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    progress: Progress = no_progress,
    device: str = "auto",
) -> StageReport:
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    config = RunConfig.load(run_dir).with_overrides("evaluate", episodes=episodes, seed=seed)
    env_id = lookup(config.game).latent_env_id

    def work() -> str:
        # What was evaluated: the weights (their sha256 records, which a re-export with new scores
        # in its card keeps) and the episodes. The same again is not played again.
        evaluated = {
            "files": read_model_config(run.model)["files"],
            "episodes": config.evaluate.episodes,
            "seed": config.evaluate.seed,
        }
        record, results = run.evaluated, run.eval_result(env_id)
        if record.is_file() and results.is_file() and read_json(record) == evaluated:
            return f"already evaluated: {results} ({EvalResult(**read_json(results)).summary()})"
        env_kwargs = {"world_model": str(run.model), "device": device}
        result = evaluate(
            env_id,
            run.model,
            config.evaluate.episodes,
            config.evaluate.seed,
            config.evaluate.workers,
            env_kwargs,
            progress=progress,
        )
        result.save(results)
        baseline = evaluate(
            env_id,
            "random",
            config.evaluate.episodes,
            config.evaluate.seed,
            config.evaluate.workers,
            env_kwargs=env_kwargs,
        )
        baseline.save(run.eval_result(f"random_{env_id}"))
        atomic_write_text(record, json.dumps(evaluated, indent=2) + "\n")
        return f"{result.summary()}; random actions: {baseline.mean:.1f} ± {baseline.std:.1f}"

    return _timed(run_dir, "evaluate", work)


def run_pipeline(
    game: str | Game,
    run_dir: str | Path,
    preset_name: str | None = None,
    *,
    progress: Progress = no_progress,
    report: Report = no_report,
    on_stage: Callable[[StageReport], None] | None = None,
    device: str = "auto",
    trust_zip: bool = False,
    budget: dict[str, dict[str, Any]] | None = None,
) -> list[StageReport]:
    """All stages in order; an interrupted pipeline resumes where it stopped. ``device`` runs
    V, M, the dream and the latent twins of the evaluation (collection stays on the CPU's workers).
    ``trust_zip``: see ``collect_stage``; ``budget``: see ``init_run``."""
    resolve_device(device)  # a bad device is an error before anything runs
    run_dir = Path(run_dir)
    init_run(run_dir, game, preset_name, budget=budget)
    on_stage = on_stage or (lambda stage_report: None)
    reports = []
    for stage in (
        lambda: collect_stage(run_dir, progress=progress, trust_zip=trust_zip),
        lambda: train_vae_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: encode_stage(run_dir, progress=progress, report=report, device=device),
        lambda: train_mdnrnn_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: train_controller_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: export_stage(run_dir, RunDir(run_dir).model, report=report),
        lambda: evaluate_stage(run_dir, progress=progress, device=device),
        lambda: export_stage(run_dir, RunDir(run_dir).model, report=report),  # again, with the scores in the card
    ):
        reports.append(stage())
        on_stage(reports[-1])
    return reports


# --------------------------------------------------------------------------- model card


def run_metadata(run_dir: Path) -> dict[str, Any]:
    """Provenance of a run for config.json: settings, data size, final losses, timings, scores."""
    config, run = RunConfig.load(run_dir), RunDir(run_dir)
    metadata: dict[str, Any] = {"run": config.to_record(run_dir), "episodes": len(episode_files(run.episodes))}
    for stage, stage_dir in (("vae", run.vae), ("mdnrnn", run.mdnrnn())):
        path = rundir.checkpoint(stage_dir)
        if path.exists():
            checkpoint = load_torch_checkpoint(path)
            metadata[f"{stage}_metrics"] = checkpoint["history"][kept_epoch(checkpoint) - 1]
            metadata[f"{stage}_epochs"] = len(checkpoint["history"])
    fitness = rundir.cma_state(run.controller)
    if fitness.exists():
        history = read_json(fitness)["history"]
        metadata["controller_generations"] = len(history)
        metadata["controller_final"] = history[-1]
    if run.timings.exists():
        metadata["timings_seconds"] = read_json(run.timings)
    metadata["evaluations"] = [read_json(p) for p in sorted(run.eval.glob("*.json"))] if run.eval.exists() else []
    for evaluation in metadata["evaluations"]:  # paths relative to the run: no machine's paths in a model
        evaluation.pop("lengths", None)
        evaluation["policy"] = relative_path(evaluation["policy"], run_dir)
        kwargs = evaluation.get("env_kwargs", {})
        if isinstance(kwargs.get("world_model"), str):
            kwargs["world_model"] = relative_path(kwargs["world_model"], run_dir)
    return metadata


def model_card(run_dir: Path, model: WorldModel, built_with: str | None = None) -> str:
    """The card of a run's model directory; ``built_with``: how the run was made, when not by
    ``pipeline_command`` alone (a round of ``dreamgym iterate``)."""
    meta = run_metadata(run_dir)
    config = RunConfig.load(run_dir)
    lines = [
        f"# dreamgym world model: {config.game}",
        "",
        f"Built with {built_with or '`' + pipeline_command(config.game, config.env, config.preset) + '`'} "
        "(settings in config.json).",
        "",
        "## Sizes",
        f"- V: ConvVAE, z = {model.z_dim}, {count_parameters(model.vae):,} parameters",
        (
            f"- M: MDN-RNN, LSTM {model.hidden_dim}, {model.mdnrnn.config.num_mixtures} mixtures, "
            f"{count_parameters(model.mdnrnn):,} parameters"
            + (f" each, {len(model.all_members)} members (bootstrap resamples)" if model.members else "")
        ),
        f"- C: {'linear, ' + str(model.controller.num_parameters) + ' parameters' if model.controller else 'none'}",
        f"- data: {meta['episodes']} real episodes; {len(model.initial_mu)} first-frame latents for resets",
        "",
        "",
        "## Dream defaults (what `gym.make` gives unless told otherwise)",
        "- " + ", ".join(f"{key} = {value!r}" for key, value in dataclasses.asdict(model.dream_defaults).items()),
        "",
        "## Losses (the epoch whose weights ship)",
    ]
    for stage in ("vae", "mdnrnn"):
        metrics = meta.get(f"{stage}_metrics")
        if metrics:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("epoch", "seconds"))
            lines.append(f"- {stage}: epoch {int(metrics['epoch'])} of {meta[f'{stage}_epochs']}: {shown}")
    if "controller_final" in meta:
        final = meta["controller_final"]
        lines.append(
            f"- controller: {meta['controller_generations']} generations at τ = {model.dream_defaults.temperature}; "
            f"last generation: best sample {final['best_return']:.1f}, population mean {final['mean_return']:.1f}"
            + (f", distribution mean {final['center_return']:.1f}" if "center_return" in final else "")
        )
    lines += ["", "## Wall-clock time per stage (this machine)"]
    for stage, seconds in meta.get("timings_seconds", {}).items():
        lines.append(f"- {stage}: {format_seconds(seconds)}")
    lines += ["", "## Scores"]
    if meta["evaluations"]:
        for evaluation in meta["evaluations"]:
            policy = str(evaluation["policy"])
            who = (
                "random actions"
                if policy == "random"
                else f"the SB3 agent {Path(policy).name} (not in this directory)"
                if policy.endswith(".zip")
                else "the shipped controller"
            )
            lines.append(
                f"- {who} on {evaluation['env_id']}: {evaluation['mean']:.1f} ± {evaluation['std']:.1f} over "
                f"{evaluation['episodes']} episodes (seeds from {evaluation['seed']})"
            )
    else:
        lines.append("- not evaluated yet")
    for title, path in (
        ("Temperature sweep", RunDir(run_dir).sweep_table),
        ("Notes and attempts", RunDir(run_dir).notes),
    ):
        if path.exists():
            lines += ["", f"## {title}", "", path.read_text().strip()]
    lines += [
        "",
        "## Pictures",
        "See `pictures/`: V's reconstructions, M's predictions and dreams, loss and fitness curves.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- temperature sweep

SWEEP_TEMPERATURES = (0.1, 0.5, 1.0, 1.15, 1.3)


def sweep_temperature(
    run_dir: str | Path,
    temperatures: tuple[float, ...] = SWEEP_TEMPERATURES,
    *,
    generations: int | None = None,
    population: int | None = None,
    trials: int | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """The paper's temperature table for this run's world model (dreams and latent twins on ``device``).

    ``generations``, ``population`` and ``trials`` default to the run's controller settings;
    smaller ones make the sweep affordable (every τ gets the same budget).

    For each τ: a controller trained in the dream at τ (``run/sweep/tau_X/``, resumable), its
    score in the dream at the same τ, and its score on the real game (latent twin), each over
    ``episodes`` episodes. Writes ``run/sweep/temperature.json`` and ``temperature.md``.
    """
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    episodes = episodes or config.evaluate.episodes
    seed = config.evaluate.seed if seed is None else seed
    model = world_model_from_run(run_dir, report)
    model.controller = None
    run = RunDir(run_dir)
    model_dir = run.sweep_model
    if not is_model_directory(model_dir):
        save_world_model(model, model_dir)
    model.to(device)
    rows = []
    for temperature in temperatures:
        out = run.sweep_temperature(temperature)
        controller_config = config.with_overrides(
            "controller", generations=generations, population=population, trials=trials
        ).controller
        at_temperature = dataclasses.replace(model.dream_defaults, temperature=temperature)
        result = train_controller(
            model, out, controller_config, resume=True, progress=progress, report=report, dream=at_temperature
        )
        generator = torch.Generator(device=model.device).manual_seed(seed)
        dream = dream_returns(
            model,
            result.controller.flat()[None],
            episodes,
            generator,
            model.game.max_episode_steps,
            settings=at_temperature,
        )[0]
        save_controller(result.controller, rundir.controller(out), {"temperature": temperature})
        real = evaluate(
            model.game.latent_env_id,
            rundir.controller(out),
            episodes,
            seed,
            config.evaluate.workers,
            env_kwargs={"world_model": str(model_dir), "device": device},
        )
        rows.append(
            {
                "temperature": temperature,
                "generations": result.generations,
                "population": controller_config.population,
                "trials": controller_config.trials,
                "dream_mean": float(dream.mean()),
                "dream_std": float(dream.std()),
                "real_mean": real.mean,
                "real_std": real.std,
                "episodes": episodes,
            }
        )
        report(
            f"τ = {temperature:g}: dream {dream.mean():.0f} ± {dream.std():.0f}, real {real.mean:.0f} ± {real.std:.0f}"
        )
    atomic_write_text(run.sweep_results, json.dumps(rows, indent=2) + "\n")
    atomic_write_text(run.sweep_table, temperature_table(rows, config.game))
    plot_temperatures(rows, run.sweep_plot, f"{config.game}: the controller trained at each temperature")
    report(f"temperature table: {run.sweep_table} ({run.sweep_results.name} and {run.sweep_plot.name} beside it)")
    return rows


def temperature_table(rows: list[dict[str, Any]], game: str = "doom") -> str:
    """Markdown: our dream and real score per τ, beside the paper's where it reported them (Doom)."""
    paper = lookup(game).paper_temperatures
    header = "| τ | dream score | real score |" + (" paper: dream | paper: real |" if paper else "")
    lines = [header, "|---" * header.count(" |") + "|"]
    for row in rows:
        line = (
            f"| {row['temperature']:g} | {row['dream_mean']:.0f} ± {row['dream_std']:.0f} | "
            f"{row['real_mean']:.0f} ± {row['real_std']:.0f} |"
        )
        if paper:
            line += " {} | {} |".format(*paper.get(row["temperature"], ("—", "—")))
        lines.append(line)
    return "\n".join(lines) + "\n"
