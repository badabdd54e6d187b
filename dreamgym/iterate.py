"""The paper's iterative training as one resumable command: collect real episodes with the agent,
refine the dream on all data so far, train the agent again in it, score it on the real game,
and repeat until the rounds, the real-step budget or the patience run out.

Agents are trained only in dreams; real episodes only teach V and M (and the tuning evaluation
chooses the best round). Layout of ``RUN``::

    iterate.json        the settings (``IterateConfig``), the game and the preset
    round_K/            round K, a run directory (``dreamgym.pipeline``): round 0 records with the
                        exploration policy and trains V and M (or, with ``start``, is that
                        finished run, linked: see ``adopt_run``); round K ≥ 1 links round K-1's
                        episodes, latents and V, records new episodes with round K-1's agent,
                        refines V when it reconstructs the new frames badly (``refresh_v``;
                        then every episode is encoded again) and refines M (warm start,
                        ``refine_epochs``)
    round_K/v_check.json   V's reconstruction error on the old and the new frames, and whether
                        the round refreshed V
    round_K/agent.zip   the round's SB3 agent (cmaes: the controller in round_K/model)
    round_K/round.json  the round's row, written once the round is complete
    rounds.md, rounds.json, rounds.png   the table and its picture
    best/               the best round's model directory (and agent.zip)

Every stage resumes: run the same command again after a crash and it loses at most the stage
in progress. The SB3 agents it saved under RUN are loaded back (a ``.zip`` is partly pickled),
so a PPO or DQN run needs ``trust_zip``; a round records only with the previous round's agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dreamgym import rundir
from dreamgym.checkpoint import MODEL_CARD_FILE, PICTURES_DIR, load_controller
from dreamgym.cmaes import train_controller
from dreamgym.commands import command_line, game_arguments, pipeline_command, settings_arguments
from dreamgym.config import CollectConfig, IterateConfig, RunConfig
from dreamgym.episodes import episode_files, episode_index, read_npz
from dreamgym.evaluate import EvalResult, check_trusted, evaluate, sb3_algorithm
from dreamgym.files import (
    atomic_directory,
    atomic_write,
    atomic_write_text,
    check_destination,
    read_json,
    run_lock,
)
from dreamgym.games import Game, game_record, lookup, resolve_game
from dreamgym.pipeline import (
    adopt_run,
    collect_stage,
    encode_stage,
    export_stage,
    init_run,
    load_vae,
    next_round,
    timed,
    train_mdnrnn_stage,
    train_vae_stage,
    world_model_from_run,
)
from dreamgym.rundir import RunDir
from dreamgym.training import (
    Progress,
    Report,
    StageError,
    no_progress,
    no_report,
)
from dreamgym.vae import reconstruction_error
from dreamgym.validation import Rule, check_fields, rules_of


@dataclass(frozen=True)
class RoundRow:
    """One round of the table."""

    round: int
    data_steps: int
    """Real steps of every episode V and M have seen so far."""
    eval_steps: int
    """Real steps of the tuning evaluations so far (this round's included)."""
    dream_mean: float
    real_mean: float
    real_std: float
    seconds: dict[str, float]
    """Wall-clock of each part of the round (collect, V check, V, encode, M, agent, evaluate)."""
    v_ratio: float | None = None
    """V's reconstruction error on the round's new frames over that on the earlier ones (round 0: None)."""
    v_refreshed: bool = False

    @property
    def real_steps(self) -> int:
        return self.data_steps + self.eval_steps

    @property
    def gap(self) -> float:
        return self.dream_mean - self.real_mean


@dataclass(frozen=True)
class VCheck:
    """How well the last round's V reconstructs the frames this round recorded."""

    old_error: float
    """Mean summed squared error per frame on the earlier rounds' frames (V's training data)."""
    new_error: float
    """The same on this round's new frames."""
    refresh: bool

    @property
    def ratio(self) -> float:
        return self.new_error / self.old_error if self.old_error > 0 else float("inf")


@dataclass(frozen=True)
class AgentScore:
    dream_mean: float
    """Mean dream return of the round's agent, in the dream it was trained in."""


def agent_path(rdir: Path, agent: str) -> Path:
    """What plays round ``rdir``'s agent: its model directory (cmaes) or its SB3 ``.zip``."""
    return RunDir(rdir).model if agent == "cmaes" else RunDir(rdir).agent


FROZEN = ("agent", "start", "eval_episodes", "eval_seed", "members")
"""Settings a run keeps from its first round: the agent, its round 0, and the tuning episodes that
compare rounds."""


def sb3_name(run: Path, config: IterateConfig) -> str | None:
    """The SB3 algorithm the run trains (the given ``.zip``'s own), or None for cmaes."""
    if config.agent == "cmaes":
        return None
    return sb3_algorithm(RunDir(run).round(0).agent) if config.agent.endswith(".zip") else config.agent


def load_settings(run: Path, game: Game, preset: str | None, overrides: dict[str, Any]) -> tuple[IterateConfig, str]:
    """RUN's settings: the stored ones with ``overrides`` on top (stop rules and later rounds'
    budgets may change between invocations; the game, preset and ``FROZEN`` may not). Nothing
    is written here (``save_settings``)."""
    path = RunDir(run).iterate_settings
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name in ("agent", "start"):  # paths compare the same from any working directory
        if name in overrides and (name == "start" or str(overrides[name]).endswith(".zip")):
            overrides[name] = str(Path(overrides[name]).resolve())
    if path.exists():
        stored, config = _stored(run)
        stored_preset = stored["preset"]
        if stored["game"] != game.name:
            raise StageError(f"{run} iterates {stored['game']}, not {game.name}")
        if preset is not None and preset != stored_preset:
            raise StageError(
                f"{run} was made with preset {stored_preset!r}, not {preset!r}: drop --preset to continue it"
            )
        for name in FROZEN:
            if name in overrides and overrides[name] != getattr(config, name):
                raise StageError(
                    f"{run} has {name} {getattr(config, name)!r}, not {overrides[name]!r}: it is fixed for "
                    "a run (rounds compare on it); give a new RUN"
                )
        _check_unedited(run, config)
        preset = stored_preset
    else:
        config = IterateConfig()
    config = dataclasses.replace(config, **overrides)  # checks every value
    if config.agent == "dqn" and not game.discrete:
        raise StageError(f"dqn needs discrete actions; {game.name}'s are continuous: use ppo or cmaes")
    if config.start is not None:
        start = Path(config.start)
        if not RunDir(start).settings.is_file():
            raise StageError(
                f"start {start} is not a run directory (no run.json): give the run made by `dreamgym "
                "pipeline` (or a round of another iterate run) to take as round 0"
            )
        start_config = RunConfig.load(start)
        if start_config.game != game.name:
            raise StageError(f"start {start} is a {start_config.game} run, not {game.name}")
        if start_config.mdnrnn.members != config.members:
            raise StageError(
                f"start {start} has {start_config.mdnrnn.members} M member(s), not --members "
                f"{config.members}: the rounds refine its Ms"
            )
        if preset not in (None, start_config.preset):
            raise StageError(
                f"start {start} was made with preset {start_config.preset!r}, not {preset!r}: drop --preset"
            )
        preset = start_config.preset
    if config.agent.endswith(".zip") and not Path(config.agent).is_file():
        raise StageError(f"agent {config.agent} does not exist: expected an SB3 .zip trained in {config.start}'s dream")
    return config, preset or "cpu"


def _check_unedited(run: Path, config: IterateConfig) -> None:
    """StageError when iterate.json's tuning episodes differ from those round 0 was scored on:
    the file was edited, and the rounds would no longer compare."""
    first = RunDir(run).round(0).tuning_result
    if not first.is_file():
        return
    scored = _read_record(first, EvalResult)
    if (scored.seed, scored.episodes) != (config.eval_seed, config.eval_episodes):
        raise StageError(
            f"{RunDir(run).iterate_settings} has eval_seed {config.eval_seed} and eval_episodes "
            f"{config.eval_episodes}, but round 0 was scored on {scored.episodes} episodes from seed "
            f"{scored.seed}: the file was edited; put those back (every round is scored on the same episodes)"
        )


def _stored(run: Path) -> tuple[dict[str, Any], IterateConfig]:
    """RUN's iterate.json and the settings in it; StageError when it is damaged."""
    path = RunDir(run).iterate_settings
    try:
        stored = read_json(path)
        Rule("dict").check("iterate.json", stored)
        for key in ("game", "preset"):
            Rule("str").check(key, stored.get(key))
        return stored, IterateConfig(**stored["settings"])
    except (ValueError, KeyError, TypeError) as error:
        raise StageError(f"{path} is damaged ({error}): expected what `dreamgym iterate` writes") from None


def save_settings(run: Path, game: Game, preset: str, config: IterateConfig) -> None:
    check_destination(run, "a dreamgym iterate run", lambda path: RunDir(path).iterate_settings.is_file())
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        RunDir(run).iterate_settings,
        json.dumps({**game_record(game), "preset": preset, "settings": dataclasses.asdict(config)}, indent=2) + "\n",
    )


def iterate_command(run: Path) -> tuple[str, IterateConfig]:
    """The command that made RUN (with its last invocation's settings, those that are not the
    default; paths shortened to their names), and those settings."""
    stored, config = _stored(run)
    arguments = [game_arguments(stored["game"], stored.get("env")), "--out RUN"]
    arguments += settings_arguments(
        dataclasses.replace(config, agent=Path(config.agent).name), ("start", "workers", "dream")
    )
    arguments += [f"--dream {key}={json.dumps(setting)}" for key, setting in config.dream.items()]
    if config.agent != "cmaes":
        arguments.append("--trust-zip")
    arguments.append("--start RUN0" if config.start else f"--preset {stored['preset']}")  # a start has its own
    return command_line("iterate", *arguments), config


def round_origin(rdir: Path) -> str | None:
    """How round directory ``rdir`` of a ``dreamgym iterate`` run was made, for its model card
    ("round K of `dreamgym iterate ...`"); None for any other run directory."""
    number = RunDir(rdir).round_number
    if number is None or not RunDir(rdir.parent).iterate_settings.is_file():
        return None
    command, config = iterate_command(rdir.parent)
    origin = f"round {number} of `{command}`"
    if config.start is None:
        return origin
    start = RunConfig.load(Path(config.start))
    return f"{origin}, RUN0 made by `{pipeline_command(start.game, start.env, start.preset)}`"


def stored_game(run: Path) -> Game:
    """The game RUN iterates (built again from its env entry when it is one of ``game_from_env``)."""
    stored, _ = _stored(run)
    try:
        return resolve_game(stored["game"], stored.get("env"))
    except ValueError as error:
        raise StageError(f"{RunDir(run).iterate_settings} is damaged ({error})") from None


def stop_reason(rows: list[RoundRow], config: IterateConfig) -> str | None:
    """Why no further round should run after ``rows``, or None to go on."""
    if not rows:
        return None
    if len(rows) >= config.rounds:
        return f"{config.rounds} rounds done"
    if config.max_real_steps and rows[-1].real_steps >= config.max_real_steps:
        return f"real-step budget reached ({rows[-1].real_steps:,} ≥ {config.max_real_steps:,})"
    best = max(range(len(rows)), key=lambda i: rows[i].real_mean)
    if config.patience and len(rows) - 1 - best >= config.patience:
        return f"no better real score for {config.patience} rounds (best: round {best})"
    return None


def setup_round(run: Path, k: int, game: Game, preset: str, config: IterateConfig) -> Path:
    """Round k's run directory, made on first call; its M epochs and CMA-ES generations follow
    ``config`` on every call (so a changed budget applies to the rounds still to come)."""
    rdir = RunDir(run).round(k).root
    if RunDir(rdir).round_record.exists():
        return rdir  # finished: its run.json keeps the budgets it was trained with
    if not RunDir(rdir).settings.exists():
        if k == 0 and config.start is not None:
            adopt_run(config.start, rdir, controller=config.agent == "cmaes")
        elif k == 0:
            init_run(rdir, game, preset, episodes=config.episodes, workers=config.workers)
        else:
            parent = RunDir(run).round(k - 1).root
            policy = None if config.agent == "cmaes" else RunDir(parent).agent
            next_round(parent, rdir, config.episodes, config.noise, policy=policy)
    if k == 0 and config.agent.endswith(".zip") and not RunDir(rdir).agent.exists():
        atomic_write(RunDir(rdir).agent, lambda tmp: shutil.copyfile(config.agent, tmp))  # the run keeps its own copy
    run_config = RunConfig.load(rdir)
    updated = run_config.with_overrides("controller", generations=config.generations, seed=config.seed)
    updated = updated.with_overrides("collect", workers=config.workers)
    if k == 0 and config.start is None:  # members first: the ensemble defences ask for them
        updated = updated.with_overrides("mdnrnn", members=config.members)
    updated = updated.with_overrides("dream", **config.dream)
    if k > 0:
        updated = updated.with_overrides("mdnrnn", epochs=config.refine_epochs)
    if updated != run_config:
        updated.save(rdir)
    return rdir


def check_round(run: Path, k: int) -> None:
    """Round k's directory is round k of ``run``: its record, once finished, says k, and its
    run.json names round k - 1 as its parent. A directory copied or moved from another round
    would count that round twice and train on the wrong parent: it is refused by name."""
    files = RunDir(RunDir(run).round(k).root)
    if not files.settings.exists():
        return  # not set up yet: setup_round makes it what it should be
    if files.round_record.exists():
        recorded = _read_record(files.round_record, RoundRow).round
        if recorded != k:
            raise StageError(
                f"{files.round_record} is the record of round {recorded}, not of round {k}: the directory was "
                f"copied or moved from another round; remove it and run again to redo round {k}"
            )
    if k > 0:
        parent = RunConfig.load(files.root).parent
        expected = RunDir(run).round(k - 1).root.resolve()
        if parent is None or Path(parent).resolve() != expected:
            raise StageError(
                f"{files.settings} names {parent or 'no parent'} as its parent, but round {k} of {run} follows "
                f"{expected}: the directory was copied or moved from elsewhere; remove it and run again to redo "
                f"round {k}"
            )


def _read_record(path: Path, kind: Any) -> Any:
    """A record this module wrote (a round's row, score, evaluation or timings), its fields
    checked: a damaged one is an error that names it, not a traceback later."""
    data = read_json(path)  # DamagedFileError names the file when it is not JSON
    try:
        if kind is dict:  # timings: seconds by stage
            return check_fields("timings", data, dict.fromkeys(data, Rule("float")))
        return kind(**check_fields("", data, rules_of(kind, finite=False)))
    except (ValueError, TypeError) as error:
        raise StageError(f"{path} is damaged ({error}); delete it and run again to redo that part") from None


def data_steps(rdir: Path) -> int:
    return sum(len(read_npz(path, ("actions",))["actions"]) for path in episode_files(RunDir(rdir).episodes))


def check_v(rdir: Path, parent: Path, config: IterateConfig, report: Report, device: str) -> VCheck:
    """Round ``rdir``'s decision on V, made once (``v_check.json``): measure the parent's V on the
    earlier frames and on the new ones; if it reconstructs the new ones more than ``refresh_v``
    times worse, remove the parent's V from the round and set V's training to one warm-started
    pass of ``refine_v_frames`` (``train_vae_stage`` then trains it, and ``encode_stage`` encodes
    every episode again, since the latents' marker no longer matches)."""
    path = RunDir(rdir).v_check
    if path.exists():
        return _read_record(path, VCheck)
    run_config = RunConfig.load(rdir)
    first = run_config.collect.first_episode
    files = episode_files(RunDir(rdir).episodes)
    old = [p for p in files if episode_index(p) < first]
    new = [p for p in files if episode_index(p) >= first]
    vae = load_vae(parent, run_config, device)
    check = VCheck(reconstruction_error(vae, old, report), reconstruction_error(vae, new, report), False)
    check = dataclasses.replace(check, refresh=bool(config.refresh_v) and check.ratio > config.refresh_v)
    if check.refresh:
        rundir.checkpoint(RunDir(rdir).vae).unlink(missing_ok=True)  # the parent's (a hard link: the parent keeps it)
        run_config.with_overrides("vae", epochs=1, frames_per_epoch=config.refine_v_frames).save(rdir)
    atomic_write_text(path, json.dumps(dataclasses.asdict(check)) + "\n")
    report(
        f"{rdir.name}: V's error on the new frames is {check.ratio:.2f}× that on the earlier ones"
        + (f" (> {config.refresh_v:g}): refining V" if check.refresh else "; V kept")
    )
    return check


def train_agent(
    rdir: Path, k: int, run: Path, config: IterateConfig, report: Report, progress: Progress, device: str
) -> float:
    """Train round k's agent in its dream, warm-started from round k-1's -> its dream score."""
    files = RunDir(rdir)
    score_path = files.agent_dream_score
    if score_path.exists():
        return _read_record(score_path, AgentScore).dream_mean
    for stale in (files.tuning_result, files.round_record):  # scores of an agent about to be replaced
        stale.unlink(missing_ok=True)
    parent = RunDir(run).round(k - 1).root if k > 0 else None
    if config.agent == "cmaes":
        x0 = None if parent is None else load_controller(rundir.controller(RunDir(parent).controller)).flat()
        model = world_model_from_run(rdir, report).to(device)
        result, _ = timed(
            rdir,
            "train-controller",
            lambda: train_controller(
                model,
                files.controller,
                RunConfig.load(rdir).controller,
                resume=True,
                progress=progress,
                report=report,
                x0=x0,
            ),
        )
        dream_mean = result.best_score
        export_stage(rdir, files.model, built_with=round_origin(rdir), report=report)  # now with the controller
    elif parent is None and config.agent.endswith(".zip"):  # the given agent, as it is: its score in this dream
        dream_mean, _ = timed(rdir, "train-agent", lambda: given_agent_dream_score(rdir, config, device))
    else:
        from dreamgym.agents import train_sb3

        init = None if parent is None else RunDir(parent).agent
        (_, dream_mean), _ = timed(
            rdir,
            "train-agent",
            lambda: train_sb3(
                cast(str, sb3_name(run, config)),
                files.model,
                config.agent_steps,
                files.agent,
                seed=config.seed,
                init=init,
                device=device,
            ),
        )
    atomic_write_text(score_path, json.dumps(dataclasses.asdict(AgentScore(dream_mean))) + "\n")
    return dream_mean


def given_agent_dream_score(rdir: Path, config: IterateConfig, device: str) -> float:
    """The mean dream return of the ``.zip`` agent a run starts from, over ``eval_episodes``
    dreams of round 0's model, after checking that it plays this game on this model's latents."""
    from dreamgym.collect import acting_agent

    game, files = lookup(RunConfig.load(rdir).game), RunDir(rdir)
    try:
        acting_agent(game, CollectConfig(policy=str(files.agent), world_model=str(files.model)))
    except ValueError as error:
        raise StageError(f"agent {config.agent} does not fit start {config.start}: {error}") from None
    return evaluate(
        game.dream_env_id,
        files.agent,
        config.eval_episodes,
        config.eval_seed,
        config.workers,
        {"world_model": str(files.model), "device": device},
        trust_zip=True,  # the start run's agent, checked by acting_agent above and consented to with --trust-zip
    ).mean


def evaluate_agent(rdir: Path, config: IterateConfig, game: Game, progress: Progress, device: str) -> EvalResult:
    """Round ``rdir``'s agent on ``eval_episodes`` real episodes (tuning seeds), once."""
    path = RunDir(rdir).tuning_result
    if path.exists():
        return _read_record(path, EvalResult)
    result, _ = timed(
        rdir,
        "evaluate",
        lambda: evaluate(
            game.latent_env_id,
            agent_path(rdir, config.agent),
            config.eval_episodes,
            config.eval_seed,
            config.workers,
            {"world_model": str(RunDir(rdir).model), "device": device},
            progress=progress,
            trust_zip=True,  # this run's own agent (a resumed run was consented to with --trust-zip)
        ),
    )
    result.save(path)
    return result


def run_round(
    run: Path,
    k: int,
    game: Game,
    preset: str,
    config: IterateConfig,
    *,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
) -> RoundRow:
    """Every stage of round k (each skipped when done) -> its row, also saved in round.json."""
    check_round(run, k)  # before setup_round writes into it
    rdir = setup_round(run, k, game, preset, config)
    files = RunDir(rdir)
    if files.round_record.exists():
        return _read_record(files.round_record, RoundRow)
    parent = RunDir(run).round(k - 1).root if k > 0 else None
    policy = RunConfig.load(rdir).collect.policy  # round 0: exploration; round k: round k-1's agent, nothing else
    expected = None if parent is None else str(agent_path(parent, config.agent).resolve())
    if (None if policy is None else str(Path(policy).resolve())) != expected:
        raise StageError(
            f"{files.settings} names {policy} to record with, but round {k} records with "
            f"{expected or 'the exploration policy'}"
        )
    trust_zip = config.agent != "cmaes"  # then the policy is round k-1's agent.zip, saved by this run
    report(f"round {k} {collect_stage(rdir, progress=progress, trust_zip=trust_zip)}")
    v_check = (
        None if parent is None else timed(rdir, "check-vae", lambda: check_v(rdir, parent, config, report, device))[0]
    )
    refresh_from = parent if v_check is not None and v_check.refresh else None
    for stage in (
        lambda: train_vae_stage(
            rdir, resume=True, progress=progress, report=report, device=device, refine_from=refresh_from
        ),
        lambda: encode_stage(rdir, progress=progress, report=report, device=device),
        lambda: train_mdnrnn_stage(
            rdir, resume=True, progress=progress, report=report, device=device, refine_from=parent
        ),
        lambda: export_stage(rdir, files.model, built_with=round_origin(rdir), report=report),
    ):
        report(f"round {k} {stage()}")
    dream_mean = train_agent(rdir, k, run, config, report, progress, device)
    result = evaluate_agent(rdir, config, game, progress, device)
    previous_eval = _read_record(RunDir(parent).round_record, RoundRow).eval_steps if parent else 0
    timings = _read_record(files.timings, dict)
    parts = {
        "collect": ["collect"],
        "V": ["check-vae", "train-vae"],
        "encode": ["encode"],
        "M": ["train-mdnrnn"],
        "agent": ["train-controller", "train-agent"],
        "evaluate": ["evaluate"],
    }
    row = RoundRow(
        round=k,
        data_steps=data_steps(rdir),
        eval_steps=previous_eval + int(sum(result.lengths)),
        dream_mean=dream_mean,
        real_mean=result.mean,
        real_std=result.std,
        seconds={part: round(sum(timings.get(n, 0.0) for n in names), 1) for part, names in parts.items()},
        v_ratio=None if v_check is None else round(v_check.ratio, 3),
        v_refreshed=v_check is not None and v_check.refresh,
    )
    atomic_write_text(files.round_record, json.dumps(dataclasses.asdict(row), indent=2) + "\n")
    return row


def write_table(run: Path, rows: list[RoundRow], game: Game, agent: str, stop: str | None) -> str:
    """rounds.md, rounds.json and rounds.png in RUN; the markdown is returned."""
    from dreamgym.plots import plot_rounds

    best = max(rows, key=lambda r: r.real_mean)
    lines = [
        f"# dreamgym iterate: {game.name}, agent {agent}",
        "",
        "| round | real steps (data + tuning) | dream score | real score (tuning seeds) | gap | V error new/old "
        "frames | minutes: collect, V, encode, M, agent, evaluate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        minutes = ", ".join(
            f"{r.seconds.get(p, 0.0) / 60:.1f}" for p in ("collect", "V", "encode", "M", "agent", "evaluate")
        )
        mark = " (best)" if r is best else ""
        v = "–" if r.v_ratio is None else f"{r.v_ratio:.2f}" + (" (V refined)" if r.v_refreshed else "")
        lines.append(
            f"| {r.round}{mark} | {r.real_steps:,} ({r.data_steps:,} + {r.eval_steps:,}) | {r.dream_mean:.0f} | "
            f"{r.real_mean:.0f} ± {r.real_std:.0f} | {r.gap:+.0f} | {v} | {minutes} |"
        )
    if stop:
        lines += ["", f"Stopped: {stop}."]
    text = "\n".join(lines) + "\n"
    files = RunDir(run)
    atomic_write_text(files.rounds_table, text)
    atomic_write_text(files.rounds_record, json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")
    plot_rounds(
        [r.real_steps for r in rows],
        [r.dream_mean for r in rows],
        [r.real_mean for r in rows],
        [r.real_std for r in rows],
        files.rounds_plot,
        f"{game.name}, {agent}: dream and real score per round",
    )
    return text


def keep_best(run: Path, rows: list[RoundRow], agent: str) -> RoundRow:
    """Copy the best round's model directory (and SB3 agent) to RUN/best, replacing the last one
    only once the copy is complete."""
    best = max(rows, key=lambda r: r.real_mean)
    files, source = RunDir(run), RunDir(run).round(best.round)

    def fill(staging: Path) -> None:
        shutil.copytree(source.model, staging, dirs_exist_ok=True)
        if agent != "cmaes":
            shutil.copyfile(source.agent, RunDir(staging).agent)
        atomic_write_text(RunDir(staging).round_record, json.dumps(dataclasses.asdict(best), indent=2) + "\n")
        card = staging / MODEL_CARD_FILE  # the card tells which round this is, and how the rounds went
        table = files.rounds_table.read_text().replace("# dreamgym iterate", "## Iterative rounds (dreamgym iterate)")
        picture = f"{PICTURES_DIR}/{files.rounds_plot.name}"
        atomic_write_text(
            card,
            card.read_text() + f"\n{table}\nThis model is round {best.round}. Its real score is on the "
            "tuning seeds that chose it (optimistic): score it on unseen seeds with `dreamgym evaluate`."
            f"\n\n![rounds]({picture})\n",
        )
        (staging / PICTURES_DIR).mkdir(exist_ok=True)
        shutil.copyfile(files.rounds_plot, staging / picture)

    atomic_directory(files.best, fill)
    return best


def iterate(
    run: str | Path,
    game: str | Game,
    *,
    preset: str | None = None,
    progress: Progress = no_progress,
    report: Report = no_report,
    device: str = "auto",
    trust_zip: bool = False,
    **settings: Any,
) -> list[RoundRow]:
    """Run rounds until a stop rule holds (see ``IterateConfig``); resumes a run made earlier.
    ``settings``: ``IterateConfig`` values (None: keep the stored or default one). An SB3 agent
    (ppo, dqn) is saved as a ``.zip`` and loaded back in the next round, which runs code from
    the file: such a run needs ``trust_zip`` (the consent to load the agents saved in ``run``).
    While it runs, it holds the lock of every round it has reached and of the ``start`` run, so
    that no other dreamgym command writes into them (``dreamgym.files.run_lock``)."""
    run, game = Path(run), lookup(game)
    config, preset = load_settings(run, game, preset, settings)
    if config.agent != "cmaes":
        check_trusted(RunDir(run).agent.name, trust_zip, f"{run}: each round's ")
    save_settings(run, game, preset, config)
    with contextlib.ExitStack() as locks:
        if config.start is not None:
            locks.enter_context(run_lock(config.start))
        return _rounds(run, game, preset, config, locks, progress, report, device)


def _rounds(
    run: Path,
    game: Game,
    preset: str,
    config: IterateConfig,
    locks: contextlib.ExitStack,
    progress: Progress,
    report: Report,
    device: str,
) -> list[RoundRow]:
    rows: list[RoundRow] = []
    k = 0
    while True:
        rdir = RunDir(run).round(k).root
        if rdir.is_symlink():
            raise StageError(
                f"{rdir} is a symbolic link: each round of a run is its own directory (a link to another "
                "round would count it twice); remove the link and run again"
            )
        locks.enter_context(run_lock(rdir))
        finished = RunDir(run).round(k).round_record.exists()
        rows.append(run_round(run, k, game, preset, config, progress=progress, report=report, device=device))
        stop = stop_reason(rows, config)
        row = rows[-1]
        if not finished or stop:  # a resumed run rewrites the table and best/ only for new rounds and at the end
            report(
                f"round {k}: {row.real_steps:,} real steps so far; dream {row.dream_mean:.1f}, "
                f"real {row.real_mean:.1f} ± {row.real_std:.1f} -> {RunDir(run).rounds_table}"
            )
            label = (
                config.agent
                if not config.agent.endswith(".zip")
                else f"{cast(str, sb3_name(run, config)).lower()} from {Path(config.agent).name}"
            )
            write_table(run, rows, game, label, stop)
            best = keep_best(run, rows, config.agent)
        if stop:
            report(
                f"stopped: {stop}; best round {best.round}: real {best.real_mean:.1f} ± {best.real_std:.1f} "
                f"-> {RunDir(run).best}"
            )
            return rows
        k += 1
