"""The paper's stages in order, each on a run directory.

    collect -> train-vae -> encode -> train-mdnrnn -> train-controller -> export -> evaluate

A run directory::

    run.json            the settings (game, preset, every stage's config)
    timings.json        wall-clock seconds of every stage run so far
    episodes/           real episodes (collect)
    vae/                V's checkpoint, metrics.csv, loss.png, reconstructions.png
    latents/            μ, log σ² of every frame (encode)
    mdnrnn/             M's checkpoint, metrics.csv, loss.png, predictions.png
    controller/         CMA-ES state, controller.safetensors, fitness.csv, fitness.png
    model/              the exported model directory (what world_model=DIR loads)
    eval/               evaluation JSON + histograms
    evaluated.json      what eval/ scored (the weights' sha256 records, episodes, seed): the same is not played again

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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgym.checkpoint import load_controller, read_model_config, save_controller, save_world_model
from dreamgym.cmaes import (
    BEST_FILE,
    dream_returns,
    train_controller,
    train_controller_real,
)
from dreamgym.collect import collect
from dreamgym.config import RunConfig, preset
from dreamgym.devices import resolve_device
from dreamgym.encode import MARKER, encode_run, initial_latents
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
from dreamgym.files import atomic_write_text, check_destination, load_torch_checkpoint, read_json
from dreamgym.games import Game, get_game
from dreamgym.mdnrnn import build_mdnrnn, member_dir, train_mdnrnn
from dreamgym.plots import frame_grid
from dreamgym.training import (
    CHECKPOINT,
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


def record_time(run_dir: Path, stage: str, seconds: float) -> None:
    """Accumulate a stage's wall-clock time (resumed runs add up) in timings.json."""
    path = run_dir / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = timings.get(stage, 0.0) + seconds
    atomic_write_text(path, json.dumps(timings, indent=2) + "\n")


def _timed(run_dir: Path, stage: str, work: Callable[[], str]) -> StageReport:
    start = time.perf_counter()
    summary = work()
    seconds = time.perf_counter() - start
    record_time(run_dir, stage, seconds)
    return StageReport(stage, seconds, summary)


def init_run(run_dir: str | Path, game: str, preset_name: str | None = None, **collect_overrides: Any) -> RunConfig:
    """Create ``run_dir/run.json`` from a preset (default ``cpu``), or check that an existing run
    matches: its game, and its preset when one is named (a run keeps the preset it was made with)."""
    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists():
        config = RunConfig.load(run_dir)
        if config.game != get_game(game).name:
            raise StageError(f"{run_dir} is a {config.game} run, not {game}")
        if preset_name is not None and preset_name != config.preset:
            raise StageError(f"{run_dir} was made with preset {config.preset!r}, not {preset_name!r}: drop --preset to "
                             f"continue it, or give a new --out for a {preset_name!r} run")
    else:
        check_destination(run_dir, "a dreamgym run", lambda path: False)
        config = preset(game, preset_name or "cpu")
    config = config.with_overrides("collect", **collect_overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir)
    return config


DEFAULT_ROUND_NOISE = 0.05
"""Exploration noise around the parent's controller in a round (see ``next_round``)."""


def next_round(parent_dir: str | Path, run_dir: str | Path, episodes: int, noise: float | None = None,
               explore: bool = False, policy: str | Path | None = None) -> RunConfig:
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
        raise ValueError("explore records with the exploration policy; noise and policy are for an agent: give one of them")
    if policy is not None and not Path(policy).exists():
        raise ValueError(f"policy {policy} does not exist: expected an SB3 .zip, a controller file or a model directory")
    noise = 0.0 if explore else DEFAULT_ROUND_NOISE if noise is None else noise
    parent_dir, run_dir = Path(parent_dir).resolve(), Path(run_dir)
    parent = RunConfig.load(parent_dir)
    model_dir = parent_dir / "model"
    if not explore and policy is None and not (model_dir / "controller.safetensors").exists():
        raise StageError(f"{model_dir} has no controller: finish the pipeline on {parent_dir} first (export writes it)"
                         ", or record the round with the exploration policy (--explore)")
    if not (parent_dir / "vae" / CHECKPOINT).exists():
        raise StageError(f"{parent_dir} has no trained V ({parent_dir / 'vae' / CHECKPOINT}): a round reuses its "
                         f"parent's V, so train it first (dreamgym pipeline {parent.game} --out {parent_dir})")
    if (run_dir / "run.json").exists():
        raise StageError(f"{run_dir} is already a run directory: choose a new one for the next round")
    check_destination(run_dir, "a new run directory", lambda path: False)
    if episodes < 1 or noise < 0:
        raise ValueError(f"a round needs episodes >= 1 and noise >= 0, got episodes={episodes}, noise={noise}")
    old_episodes = episode_files(parent_dir / "episodes")
    first = max((episode_index(p) for p in old_episodes), default=-1) + 1
    _link_run(parent_dir, run_dir, ["vae"])
    agent = None if explore else str(Path(policy).resolve()) if policy is not None else str(model_dir)
    collect_config = replace(parent.collect, first_episode=first, episodes=episodes, policy=agent, noise=noise,
                             world_model=None if explore else str(model_dir))
    config = replace(parent, collect=collect_config, parent=str(parent_dir))
    config.save(run_dir)  # last: a run.json means the round was set up completely
    return config


def _link_run(source: Path, run_dir: Path, stages: list[str]) -> None:
    """Link (not copy) ``source``'s episodes, latents and the checkpoints of ``stages`` into
    ``run_dir``, and copy the latents' marker (which V encoded them). Nothing is written in
    ``source``: a stage that trains again in ``run_dir`` first replaces its link."""
    checkpoints = [source / stage / CHECKPOINT for stage in stages]
    for path in checkpoints:
        if not path.exists():
            raise StageError(f"{source} has no trained {path.parent.name} ({path}): finish its pipeline first")
    for path, target_dir in [(p, run_dir / "episodes") for p in episode_files(source / "episodes")] + \
                            [(p, run_dir / "latents") for p in latent_files(source)] + \
                            [(path, run_dir / path.parent.name) for path in checkpoints]:
        target_dir.mkdir(parents=True, exist_ok=True)
        link = target_dir / path.name
        if not link.is_symlink():
            link.symlink_to(path.resolve())
    if (source / "latents" / MARKER).exists():
        shutil.copyfile(source / "latents" / MARKER, run_dir / "latents" / MARKER)


def adopt_run(source: str | Path, run_dir: str | Path, *, controller: bool = True) -> RunConfig:
    """Set up ``run_dir`` as a finished run ``source`` (``dreamgym pipeline``), so that work can go
    on from it (``dreamgym iterate --start``): its settings, its episodes, latents, V and M
    (every member) linked, and, with ``controller``, its CMA-ES state copied (a later stage may
    continue it). Every stage of the pipeline on ``run_dir`` then finds its work done."""
    source, run_dir = Path(source).resolve(), Path(run_dir)
    config = RunConfig.load(source)
    if (run_dir / "run.json").exists():
        raise StageError(f"{run_dir} is already a run directory")
    stages = ["vae"] + [member_dir(Path(), m).name for m in range(config.mdnrnn.members)]
    _link_run(source, run_dir, stages)
    if controller and (source / "controller").is_dir():
        shutil.copytree(source / "controller", run_dir / "controller", dirs_exist_ok=True)
    config.save(run_dir)  # last: a run.json means the run was set up completely
    return config


# --------------------------------------------------------------------------- stages


def collect_stage(run_dir: str | Path, *, force: bool = False, progress: Progress = no_progress, backend: str = "local",
                  address: str | None = None, trust_zip: bool = False) -> StageReport:
    """Record the run's episodes. An SB3 ``.zip`` as ``collect.policy`` is loaded only with
    ``trust_zip`` (a run.json must not be able to make dreamgym run code)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    check_trusted(config.collect.policy, trust_zip, f"{run_dir}: collect.policy ")
    if force:  # only this collection's episodes: a round's links to earlier rounds stay
        first = config.collect.first_episode
        for index in range(first, first + config.collect.episodes):
            episode_path(run_dir / "episodes", index).unlink(missing_ok=True)

    def work() -> str:
        summaries = collect(config.game, run_dir / "episodes", config.collect, progress, backend, address)
        total = len(episode_files(run_dir / "episodes"))
        preview_episodes(run_dir / "episodes", run_dir / "episodes.png")
        if not summaries:
            return f"already finished: {total} episodes in {run_dir / 'episodes'}"
        steps = [s.steps for s in summaries]
        returns = [s.total_reward for s in summaries]
        return (f"recorded {len(summaries)} episodes ({sum(steps)} steps, mean length {np.mean(steps):.0f}, "
                f"mean return {np.mean(returns):.1f}); {total} in {run_dir / 'episodes'}")

    return _timed(run_dir, "collect", work)


def train_vae_stage(run_dir: str | Path, *, resume: bool = False, force: bool = False, progress: Progress = no_progress,
                    report: Report = no_report, device: str = "auto",
                    refine_from: str | Path | None = None) -> StageReport:
    """V; ``refine_from``: a run whose trained V (same size) it starts from, rather than fresh
    weights (an iterative round that refreshes V)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        init = None if refine_from is None else Path(refine_from) / "vae"
        _, result = train_vae(run_dir, config.vae, resume=resume, force=force, progress=progress, report=report,
                              device=device, init=init)
        last = result.history[-1]
        verb = "trained" if result.trained_epochs else "already finished"
        # A V imported from another model carries a history without per-term losses.
        return (f"V {verb}: {result.epochs} epochs, loss {last.get('loss', float('nan')):.1f} "
                f"(reconstruction {last.get('reconstruction', float('nan')):.1f})")

    return _timed(run_dir, "train-vae", work)


def preview_episodes(episode_dir: Path, path: Path, episodes: int = 3, columns: int = 8) -> None:
    """A picture of what collect recorded: evenly spaced frames of the first few episodes."""
    rows = []
    for path_of_episode, episode in iter_valid(episode_files(episode_dir)[:episodes], read_episode):
        frames = episode["frames"]
        rows.append((f"{path_of_episode.stem[-6:]} ({len(episode['actions'])} steps)",
                     frames[np.linspace(0, len(frames) - 1, columns).astype(int)]))
    if rows:
        frame_grid(rows, path, "collected episodes (64×64 frames as V sees them)")


def load_vae(run_dir: Path, config: RunConfig, device: str = "cpu") -> ConvVAE:
    """The trained V of ``run_dir`` (sized by ``config``)."""
    vae = ConvVAE(VAEConfig(z_dim=config.vae.z_dim, kl_tolerance=config.vae.kl_tolerance))
    load_trained(run_dir / "vae", vae)
    return vae.to(resolve_device(device))


def encode_stage(run_dir: str | Path, *, force: bool = False, progress: Progress = no_progress, report: Report = no_report,
                 device: str = "auto") -> StageReport:
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        result = encode_run(run_dir, load_vae(run_dir, config, device), force=force, progress=progress, report=report)
        damaged = f", {result.skipped_damaged} damaged files skipped" if result.skipped_damaged else ""
        return f"encoded {result.encoded} episodes ({result.already_done} already encoded{damaged})"

    return _timed(run_dir, "encode", work)


def train_mdnrnn_stage(run_dir: str | Path, *, resume: bool = False, force: bool = False, progress: Progress = no_progress,
                       report: Report = no_report, device: str = "auto",
                       refine_from: str | Path | None = None) -> StageReport:
    """M (and its ensemble members); ``refine_from``: a run whose trained Ms (same sizes, same
    members) each member starts from, rather than fresh weights (an iterative round)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        summaries = []
        for member in range(config.mdnrnn.members):  # one stage directory each: a crash loses one member's epoch
            init = None if refine_from is None else member_dir(Path(refine_from), member)
            _, result = train_mdnrnn(run_dir, get_game(config.game), config.mdnrnn, resume=resume, force=force,
                                     progress=progress, report=report, device=device, member=member, init=init)
            kept = result.history[result.kept_epoch - 1]
            verb = "trained" if result.trained_epochs else "already finished"
            name = "M" if config.mdnrnn.members == 1 else f"M member {member}"
            summaries.append(f"{name} {verb}: {result.epochs} epochs; kept epoch {kept['epoch']:.0f}: nll/dim "
                             f"{kept['nll']:.3f}, reward mse {kept['reward']:.3f}, done bce {kept['done']:.3f}")
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
    game = get_game(config.game)
    vae = load_vae(run_dir, config)
    members = []
    for member in range(config.mdnrnn.members):
        members.append(build_mdnrnn(config.vae.z_dim, game, config.mdnrnn))
        load_trained(member_dir(run_dir, member), members[-1])
    mu, logvar = initial_latents(run_dir, report)
    controller_file = run_dir / "controller" / BEST_FILE
    controller = load_controller(controller_file) if controller_file.exists() else None
    return WorldModel(game, vae, members[0], torch.from_numpy(mu), torch.from_numpy(logvar), controller,
                      members=members[1:], start_episodes=start_episodes(run_dir, game, starts, report) if starts else None,
                      dream_defaults=config.dream)


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
        raise StageError(f"no readable encoded episodes in {run_dir / 'latents'}: run `dreamgym encode` first")
    return StartEpisodes(torch.from_numpy(np.concatenate(mus)), torch.from_numpy(np.concatenate(actions)),
                         torch.tensor(lengths, dtype=torch.int64))


def train_controller_stage(run_dir: str | Path, *, resume: bool = False, force: bool = False, progress: Progress = no_progress,
                           report: Report = no_report, device: str = "auto") -> StageReport:
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)

    def work() -> str:
        model = world_model_from_run(run_dir, report).to(device)
        result = train_controller(model, run_dir / "controller", config.controller, resume=resume, force=force,
                                  progress=progress, report=report)
        verb = "trained" if result.trained_generations else "already finished"
        return (f"controller {verb}: {result.generations} generations at τ={config.controller.temperature}, "
                f"kept controller scores {result.best_score:.1f} in {config.controller.eval_trials} dreams "
                f"-> {run_dir / 'controller' / BEST_FILE}")

    return _timed(run_dir, "train-controller", work)


def train_controller_real_stage(run_dir: str | Path, *, resume: bool = False, force: bool = False,
                                progress: Progress = no_progress, backend: str = "local", address: str | None = None,
                                report: Report = no_report, device: str = "auto") -> StageReport:
    """Fine-tune on the real game (the latent twin, with the run's exported model): CMA-ES from
    the dream-trained controller, files in ``run/controller_real``. Kept apart from the
    dream-only controller, so that both scores can be reported."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    model_dir = run_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise StageError(f"{model_dir} does not exist: run `dreamgym export {run_dir} --to {model_dir}` first")

    def work() -> str:
        dream_controller = run_dir / "controller" / BEST_FILE
        x0 = load_controller(dream_controller).flat() if dream_controller.exists() else None
        result = train_controller_real(model_dir, run_dir / "controller_real", config.real_controller, x0=x0,
                                       workers=config.evaluate.workers, backend=backend, address=address,
                                       resume=resume, force=force, progress=progress, report=report, device=device)
        verb = "trained" if result.trained_generations else "already finished"
        return (f"real controller {verb}: {result.generations} generations of {config.real_controller.population} × "
                f"{config.real_controller.trials} real episodes from {'the dream controller' if x0 is not None else 'zero'}, "
                f"kept controller scores {result.best_score:.1f} on {config.real_controller.eval_trials} real episodes "
                f"-> {run_dir / 'controller_real' / BEST_FILE}")

    return _timed(run_dir, "train-controller-real", work)


def export_stage(run_dir: str | Path, to: str | Path, *, float16: bool = False, starts: int = START_EPISODES,
                 built_with: str | None = None, report: Report = no_report) -> StageReport:
    """Write the run's model directory; ``starts``: real episodes kept for ``starts="data"``
    (0 leaves them out, for a lean shipped model); ``built_with``: see :func:`model_card`."""
    run_dir, to = Path(run_dir), Path(to)
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
        raise ValueError(f"starts must be a whole number of episodes >= 0 (0: none), got {starts!r}")

    def work() -> str:
        model = world_model_from_run(run_dir, report, starts)
        model.metadata = run_metadata(run_dir)
        save_world_model(model, to, model_card=model_card(run_dir, model, built_with), weights_dtype=torch.float16 if float16 else None)
        pictures = to / "pictures"
        pictures.mkdir(exist_ok=True)
        for source in ("episodes.png", "vae/reconstructions.png", "vae/loss.png", "mdnrnn/predictions.png", "mdnrnn/loss.png",
                       "controller/fitness.png", "controller_real/fitness.png"):
            if (run_dir / source).exists():
                shutil.copyfile(run_dir / source, pictures / source.replace("/", "_"))
        size = sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
        return f"exported to {to} ({size / 1e6:.1f} MB{', float16 weights' if float16 else ''})"

    return _timed(run_dir, "export", work)


def evaluate_stage(run_dir: str | Path, *, episodes: int | None = None, seed: int | None = None,
                   progress: Progress = no_progress, device: str = "auto") -> StageReport:
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir).with_overrides("evaluate", episodes=episodes, seed=seed)
    env_id = get_game(config.game).latent_env_id

    def work() -> str:
        # What was evaluated: the weights (their sha256 records, which a re-export with new scores
        # in its card keeps) and the episodes. The same again is not played again.
        evaluated = {"files": read_model_config(run_dir / "model")["files"], "episodes": config.evaluate.episodes,
                     "seed": config.evaluate.seed}
        record, results = run_dir / "evaluated.json", run_dir / "eval" / f"{env_id}.json"
        if record.is_file() and results.is_file() and read_json(record) == evaluated:
            return f"already evaluated: {results} ({EvalResult(**read_json(results)).summary()})"
        env_kwargs = {"world_model": str(run_dir / "model"), "device": device}
        result = evaluate(env_id, run_dir / "model", config.evaluate.episodes, config.evaluate.seed,
                          config.evaluate.workers, env_kwargs, progress=progress)
        result.save(results)
        baseline = evaluate(env_id, "random", config.evaluate.episodes, config.evaluate.seed, config.evaluate.workers,
                            env_kwargs=env_kwargs)
        baseline.save(run_dir / "eval" / f"random_{env_id}.json")
        atomic_write_text(record, json.dumps(evaluated, indent=2) + "\n")
        return f"{result.summary()}; random actions: {baseline.mean:.1f} ± {baseline.std:.1f}"

    return _timed(run_dir, "evaluate", work)


def run_pipeline(
    game: str, run_dir: str | Path, preset_name: str | None = None, *, progress: Progress = no_progress,
    report: Report = no_report, on_stage: Callable[[StageReport], None] | None = None, device: str = "auto",
    trust_zip: bool = False,
) -> list[StageReport]:
    """All stages in order; an interrupted pipeline resumes where it stopped. ``device`` runs
    V, M, the dream and the latent twins of the evaluation (collection stays on the CPU's workers).
    ``trust_zip``: see ``collect_stage``."""
    resolve_device(device)  # a bad device is an error before anything runs
    run_dir = Path(run_dir)
    init_run(run_dir, game, preset_name)
    on_stage = on_stage or (lambda stage_report: None)
    reports = []
    for stage in (
        lambda: collect_stage(run_dir, progress=progress, trust_zip=trust_zip),
        lambda: train_vae_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: encode_stage(run_dir, progress=progress, report=report, device=device),
        lambda: train_mdnrnn_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: train_controller_stage(run_dir, resume=True, progress=progress, report=report, device=device),
        lambda: export_stage(run_dir, run_dir / "model", report=report),
        lambda: evaluate_stage(run_dir, progress=progress, device=device),
        lambda: export_stage(run_dir, run_dir / "model", report=report),  # again, with the scores in the card
    ):
        reports.append(stage())
        on_stage(reports[-1])
    return reports


# --------------------------------------------------------------------------- model card


def run_metadata(run_dir: Path) -> dict[str, Any]:
    """Provenance of a run for config.json: settings, data size, final losses, timings, scores."""
    config = RunConfig.load(run_dir)
    metadata: dict[str, Any] = {"run": config.to_dict(), "episodes": len(episode_files(run_dir / "episodes"))}
    for stage in ("vae", "mdnrnn"):
        path = run_dir / stage / CHECKPOINT
        if path.exists():
            checkpoint = load_torch_checkpoint(path)
            metadata[f"{stage}_metrics"] = checkpoint["history"][kept_epoch(checkpoint) - 1]
            metadata[f"{stage}_epochs"] = len(checkpoint["history"])
    fitness = run_dir / "controller" / "cma_state.json"
    if fitness.exists():
        history = json.loads(fitness.read_text())["history"]
        metadata["controller_generations"] = len(history)
        metadata["controller_final"] = history[-1]
    if (run_dir / "timings.json").exists():
        metadata["timings_seconds"] = json.loads((run_dir / "timings.json").read_text())
    metadata["evaluations"] = [json.loads(p.read_text()) for p in sorted((run_dir / "eval").glob("*.json"))] \
        if (run_dir / "eval").exists() else []
    for evaluation in metadata["evaluations"]:
        evaluation.pop("lengths", None)
    return metadata


def game_arguments(game: str, env: dict[str, Any] | None) -> str:
    """How a command names a game: by name, or as the env it was made from with its settings."""
    if env is None:
        return game
    settings = "".join(f" --env-setting {key}={json.dumps(value)}" for key, value in env.items() if key != "env_id")
    return f"--env {env['env_id']}{settings}"


def pipeline_command(config: RunConfig) -> str:
    """The command that builds a run like ``config`` (its game by name, or the env it was made from)."""
    return f"dreamgym pipeline {game_arguments(config.game, config.env)} --preset {config.preset}"


def model_card(run_dir: Path, model: WorldModel, built_with: str | None = None) -> str:
    """The card of a run's model directory; ``built_with``: how the run was made, when not by
    ``pipeline_command`` alone (a round of ``dreamgym iterate``)."""
    meta = run_metadata(run_dir)
    config = RunConfig.load(run_dir)
    lines = [
        f"# dreamgym world model: {config.game}",
        "",
        f"Built with {built_with or '`' + pipeline_command(config) + '`'} (settings in config.json).",
        "",
        "## Sizes",
        f"- V: ConvVAE, z = {model.z_dim}, {count_parameters(model.vae):,} parameters",
        (f"- M: MDN-RNN, LSTM {model.hidden_dim}, {model.mdnrnn.config.num_mixtures} mixtures, "
         f"{count_parameters(model.mdnrnn):,} parameters"
         + (f" each, {len(model.all_members)} members (bootstrap resamples)" if model.members else "")),
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
        lines.append(f"- controller: {meta['controller_generations']} generations at τ = {config.controller.temperature}; "
                     f"last generation: best sample {final['best_return']:.1f}, population mean {final['mean_return']:.1f}"
                     + (f", distribution mean {final['center_return']:.1f}" if "center_return" in final else ""))
    lines += ["", "## Wall-clock time per stage (this machine)"]
    for stage, seconds in meta.get("timings_seconds", {}).items():
        lines.append(f"- {stage}: {format_seconds(seconds)}")
    lines += ["", "## Scores"]
    if meta["evaluations"]:
        for evaluation in meta["evaluations"]:
            policy = str(evaluation["policy"])
            who = ("random actions" if policy == "random" else
                   f"the SB3 agent {Path(policy).name} (not in this directory)" if policy.endswith(".zip") else
                   "the shipped controller")
            lines.append(f"- {who} on {evaluation['env_id']}: {evaluation['mean']:.1f} ± {evaluation['std']:.1f} over "
                         f"{evaluation['episodes']} episodes (seeds from {evaluation['seed']})")
    else:
        lines.append("- not evaluated yet")
    for title, name in (("Temperature sweep", "sweep/temperature.md"), ("Notes and attempts", "NOTES.md")):
        if (run_dir / name).exists():
            lines += ["", f"## {title}", "", (run_dir / name).read_text().strip()]
    lines += ["", "## Pictures", "See `pictures/`: V's reconstructions, M's predictions and dreams, loss and fitness curves.", ""]
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
    model_dir = run_dir / "sweep" / "model"
    if not (model_dir / "config.json").exists():
        save_world_model(model, model_dir)
    model.to(device)
    rows = []
    for temperature in temperatures:
        out = run_dir / "sweep" / f"tau_{temperature:g}"
        controller_config = config.with_overrides("controller", temperature=temperature, generations=generations,
                                                  population=population, trials=trials).controller
        result = train_controller(model, out, controller_config, resume=True, progress=progress, report=report)
        generator = torch.Generator(device=model.device).manual_seed(seed)
        dream = dream_returns(model, result.controller.flat()[None], episodes, temperature, generator,
                              model.game.max_episode_steps)[0]
        save_controller(result.controller, out / BEST_FILE, {"temperature": temperature})
        real = evaluate(model.game.latent_env_id, out / BEST_FILE, episodes, seed, config.evaluate.workers,
                        env_kwargs={"world_model": str(model_dir), "device": device})
        rows.append({"temperature": temperature, "generations": result.generations,
                     "population": controller_config.population, "trials": controller_config.trials,
                     "dream_mean": float(dream.mean()), "dream_std": float(dream.std()),
                     "real_mean": real.mean, "real_std": real.std, "episodes": episodes})
        report(f"τ = {temperature:g}: dream {dream.mean():.0f} ± {dream.std():.0f}, real {real.mean:.0f} ± {real.std:.0f}")
    atomic_write_text(run_dir / "sweep" / "temperature.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(run_dir / "sweep" / "temperature.md", temperature_table(rows, config.game))
    return rows


def temperature_table(rows: list[dict[str, Any]], game: str = "doom") -> str:
    """Markdown: our dream and real score per τ, beside the paper's where it reported them (Doom)."""
    paper = get_game(game).paper_temperatures
    header = "| τ | dream score | real score |" + (" paper: dream | paper: real |" if paper else "")
    lines = [header, "|---" * header.count(" |") + "|"]
    for row in rows:
        line = (f"| {row['temperature']:g} | {row['dream_mean']:.0f} ± {row['dream_std']:.0f} | "
                f"{row['real_mean']:.0f} ± {row['real_std']:.0f} |")
        if paper:
            line += " {} | {} |".format(*paper.get(row["temperature"], ("—", "—")))
        lines.append(line)
    return "\n".join(lines) + "\n"
