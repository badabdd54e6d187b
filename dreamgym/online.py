"""Learning online in short dreams: the loop of the agents that learn in imagination and still
work on the real game (DreamerV3, MBPO, RWM), built from dreamgym's parts.

Every round:

1. the current agent plays a few real episodes through the latent twin (with exploration
   noise); each is encoded with V and added to the run's replay and to M's training data;
2. M is refined for a bounded number of gradient steps on windows of real play, half of them
   from the most recent episodes (the agent's own mistakes are what M must learn); V too, when it
   reconstructs the new frames ``refresh_v`` times worse than the exploration episodes of round
   0, and then every recorded episode is encoded again;
3. the agent (Stable-Baselines3 PPO) goes on learning in short dreams that start at real steps
   of the replay (``starts="data"``) and are cut at ``horizon`` steps as a truncation, where
   PPO's critic bootstraps the value of the rest;
4. every ``eval_every`` rounds the agent plays ``eval_episodes`` real episodes on tuning seeds
   (with its exploration noise unless ``eval_noise`` says otherwise); the best of those scores
   chooses the agent kept in ``best/`` (a measure an agent that exploits M cannot inflate); with
   ``confirm_episodes`` (and then ``reconfirm_episodes``) a new best is played on more tuning
   seeds before it is kept. Every real step is counted.

With ``finalists``, training stops early enough for a play-off: the best few confirmed rounds
play fresh tuning seeds, and the best of them is kept in ``best/``.

Layout of ``RUN``::

    online.json      the settings (``OnlineConfig``) and the game
    episodes/        every real episode (frames), as ``dreamgym collect`` writes them
    latents/         their encodings, the replay and M's data (a resumed run reads them back;
                     each says which V encoded it, and one a refined V did not is encoded again)
    model/           the world model now (V, M) with the agent's policy (agent.safetensors, no pickle)
    agent.zip        the agent now, with its optimiser (SB3's own format: what a resumed run loads)
    rounds.json      one row per finished round (``OnlineRound``); curve.png the learning curve
    best/            the model directory and agent.zip of the best tuning score
    candidates/      with ``keep_candidates`` (or ``finalists``): round_K/, the same for every
                     round that played its confirm episodes
    playoff.json     with ``finalists``: the play-off (``PlayOff``)

A round's state is written once it is complete: a run killed mid-round resumes from the last
complete round, keeping the real episodes the lost round recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.commands import command_line, game_arguments, settings_arguments
from dreamgym.config import OnlineConfig
from dreamgym.episodes import episode_path, read_latents
from dreamgym.files import atomic_directory, atomic_write, atomic_write_text, check_destination, read_json
from dreamgym.games import Game, game_record, lookup
from dreamgym.policy import AGENT_FILE as POLICY_FILE
from dreamgym.policy import load_policy_file, save_policy
from dreamgym.refine import (
    TrainingData,
    encode_again,
    first_frames_again,
    load_latents,
    play_real,
    real_score,
    record,
    recorded_seed,
    reference_error,
    refine_m,
    refine_v,
    v_error,
    v_record,
)
from dreamgym.replay import Replay
from dreamgym.rundir import RunDir
from dreamgym.training import Report, StageError, no_report, set_agent_logging
from dreamgym.validation import Rule, check_fields, rules_of
from dreamgym.world_model import WorldModel


@dataclass(frozen=True)
class OnlineRound:
    """One finished round."""

    round: int
    episodes: int
    """Real episodes recorded so far (the data of V and M)."""
    data_steps: int
    """Their real steps."""
    eval_steps: int
    """Real steps of the tuning evaluations so far."""
    train_return: float
    """Mean real return of this round's recorded episodes (the agent with exploration noise)."""
    dream_return: float
    """Mean return of the agent's last dreams (short: ``horizon`` steps)."""
    agent_steps: int
    """Dream steps the agent has learned from so far."""
    m_loss: float
    """M's mean training loss over this round's refinement."""
    v_error: float
    """V's mean summed squared reconstruction error on this round's new frames."""
    eval_mean: float | None = None
    """Tuning score of the agent (``eval_episodes`` real episodes, ``eval_noise``), if evaluated."""
    eval_std: float | None = None
    eval_count: int | None = None
    """Real episodes that score is the mean of (``eval_episodes``, plus ``confirm_episodes`` and
    ``reconfirm_episodes`` as far as it was confirmed)."""
    eval_returns: list[float] | None = None
    """Those episodes' returns in the order played (tuning seeds ``eval_seed``, ``eval_seed`` + 1,
    ...): the mean of the first n is the score a check of n episodes would have given."""
    v_ratio: float | None = None
    """``v_error`` over V's error on round 0's frames (None: round 0, or no check)."""
    v_refreshed: bool = False
    """V was refined this round (``v_ratio`` > ``refresh_v``) and every episode encoded again."""
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def real_steps(self) -> int:
        return self.data_steps + self.eval_steps


@dataclass(frozen=True)
class PlayOff:
    """The play-off at the end of a run (``finalists``)."""

    after_round: int
    """The last round trained before it (a run resumed for more rounds plays it again)."""
    rounds: list[int]
    """The finalists, best tuning mean first."""
    seed: int
    """Each finalist played the tuning seeds seed, seed + 1, ... (after every seed the checks use)."""
    returns: list[float]
    """``final_episodes`` returns of each finalist in turn."""
    real_steps: int
    """Real steps the play-off took: the run's total is the last round's ``real_steps`` plus these."""
    kept: int
    """The finalist with the best mean, copied to ``best/``."""


# --------------------------------------------------------------------------- choosing the agent


Play = Callable[[range], tuple[list[float], list[int]]]
"""Real episodes on the given seeds -> their returns and lengths."""


def tuning_play(model: WorldModel, agent: Any, config: OnlineConfig) -> Play:
    """``agent`` (with ``model``'s V and M) on real episodes of tuning seeds, as the checks play it."""
    return lambda seeds: real_score(model, agent, seeds, config.tuning_noise, config.max_steps, sample=config.sample)


def tuning_score(play: Play, config: OnlineConfig, best: float) -> tuple[list[float], int]:
    """A round's tuning returns and their real steps: ``play`` (seeds -> returns, lengths) on the
    ``eval_episodes`` tuning seeds, then on the ``confirm_episodes`` seeds after them while the
    mean so far beats ``best``, then on the ``reconfirm_episodes`` after those if it beats it by
    less than two standard errors of that mean (a close call; a clear lead is kept as it is)."""
    start = config.eval_seed + config.eval_episodes
    returns, lengths = play(range(config.eval_seed, start))
    for count, close_only in ((config.confirm_episodes, False), (config.reconfirm_episodes, True)):
        lead = float(np.mean(returns)) - best
        if count and lead > 0 and not (close_only and lead > 2 * np.std(returns) / math.sqrt(len(returns))):
            more, more_lengths = play(range(start, start + count))
            returns, lengths, start = returns + more, lengths + more_lengths, start + count
    return returns, sum(lengths)


# --------------------------------------------------------------------------- the agent


def make_agent(model: WorldModel, replay: Replay, config: OnlineConfig, init: Path | None) -> Any:
    """PPO in short dreams of ``model`` started from ``replay``: the saved agent ``init`` (a
    resumed run), else a fresh one of the game's recipe."""
    from stable_baselines3 import PPO

    from dreamgym.agents import recipe
    from dreamgym.envs.sb3 import make_sb3_vec_env

    settings = recipe("ppo", model.game)
    num_envs = settings.pop("num_envs")
    settings["n_steps"] = max(config.horizon, settings.get("n_steps", 128))
    venv = make_sb3_vec_env(
        model.game.dream_env_id,
        num_envs,
        world_model=model,
        temperature=config.temperature,
        sample_done=config.sample_done,
        starts="data",
        horizon=config.horizon,
        warmup=config.warmup,
        replay=replay,
        device="cpu",
    )
    if init is not None:
        agent = PPO.load(init, env=venv, device="cpu")
    else:
        agent = PPO("MlpPolicy", venv, seed=config.seed, device="cpu", **settings)
    if config.fixed_std:  # also for an agent that learned its noise until now
        with torch.no_grad():
            agent.policy.log_std.fill_(math.log(config.noise))
        agent.policy.log_std.requires_grad_(False)  # no gradient: Adam leaves it
    return agent


def dream_return(agent: Any) -> float:
    buffer = agent.ep_info_buffer or []
    return float(np.mean([e["r"] for e in buffer])) if buffer else float("nan")


# --------------------------------------------------------------------------- the run


FIXED_SETTINGS = (
    "world_model",
    "seed",
    "eval_seed",
    "eval_episodes",
    "confirm_episodes",
    "reconfirm_episodes",
    "eval_noise",
)
"""What a run's scores and data depend on: a resumed run refuses another value."""


def load_settings(run: Path, game: Game, overrides: dict[str, Any]) -> OnlineConfig:
    """RUN's stored settings with ``overrides`` (None: keep) on top; a new run takes the defaults."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    path = RunDir(run).online_settings
    if not path.exists():
        if "world_model" not in overrides:
            raise StageError(
                "a new online run needs --world-model: the model directory (or shipped name) it starts from"
            )
        return OnlineConfig(**overrides)
    stored, config = _stored(run)
    if stored["game"] != game.name:
        raise StageError(f"{run} learns {stored['game']}, not {game.name}")
    for name in FIXED_SETTINGS:
        if name in overrides and overrides[name] != getattr(config, name):
            raise StageError(
                f"{run} has {name} {getattr(config, name)!r}, not {overrides[name]!r}: it is fixed for a "
                "run; give a new RUN"
            )
    return dataclasses.replace(config, **overrides)


T = TypeVar("T")


def _read_record(path: Path, build: Callable[[Any], T]) -> T:
    """``build`` of the JSON at ``path`` (read_json names a file that is not JSON); StageError
    when what it holds is not what ``dreamgym online`` writes."""
    record = read_json(path)
    try:
        return build(record)
    except (ValueError, KeyError, TypeError) as error:
        raise StageError(f"{path} is damaged ({error}): expected what `dreamgym online` writes") from None


def _stored(run: Path) -> tuple[dict[str, Any], OnlineConfig]:
    """RUN's online.json and the settings in it; StageError when it is damaged."""

    def build(stored: Any) -> tuple[dict[str, Any], OnlineConfig]:
        Rule("dict").check("online.json", stored)
        Rule("str").check("game", stored.get("game"))
        return stored, OnlineConfig(**stored["settings"])

    return _read_record(RunDir(run).online_settings, build)


def stored_game(run: Path) -> Game:
    """The game RUN learns."""
    stored, _ = _stored(run)
    try:
        return lookup(stored["game"])
    except ValueError as error:
        raise StageError(f"{RunDir(run).online_settings} is damaged ({error})") from None


def read_play_off(run: Path) -> PlayOff | None:
    path = RunDir(run).play_off
    if not path.exists():
        return None
    rules = rules_of(PlayOff, finite=False)
    return _read_record(path, lambda record: PlayOff(**check_fields("playoff", record, rules)))


def read_rounds(run: Path) -> list[OnlineRound]:
    path = RunDir(run).rounds_record
    if not path.exists():
        return []

    def build(rows: Any) -> list[OnlineRound]:
        Rule("list").check("rounds", rows)
        rules = rules_of(OnlineRound, finite=False)
        return [OnlineRound(**check_fields(f"round {k}", row, rules)) for k, row in enumerate(rows)]

    return _read_record(path, build)


def play_off_reserve(config: OnlineConfig, game: Game) -> int:
    """Real steps kept back from training for the play-off: every finalist's episodes at full length."""
    return config.finalists * config.final_episodes * (config.max_steps or game.max_episode_steps)


def stop_reason(rows: list[OnlineRound], config: OnlineConfig, reserve: int = 0) -> str | None:
    """Why training stops after ``rows`` (None: it goes on); ``reserve``: real steps kept back."""
    if len(rows) >= config.rounds:
        return f"{config.rounds} rounds done"
    if config.max_real_steps and rows and rows[-1].real_steps >= config.max_real_steps - reserve:
        kept_back = f" less {reserve:,} kept for the play-off" if reserve else ""
        return f"real-step budget reached ({rows[-1].real_steps:,} ≥ {config.max_real_steps:,}{kept_back})"
    return None


def model_card(game: Game, config: OnlineConfig, rows: list[OnlineRound]) -> str:
    """The card of an online run's model directory: how it was made, the real and dream steps it
    used, and its last tuning scores (on tuning seeds: not a test score)."""
    start = Path(cast(str, config.world_model)).name
    command = command_line(
        "online",
        game_arguments(game.name, game.spec),
        "--out RUN",
        *settings_arguments(dataclasses.replace(config, world_model=start)),
    )
    last = rows[-1]
    played = "--sample" if config.sample else f"--noise {config.noise}"
    lines = [
        f"# dreamgym world model: {game.name}",
        "",
        f"Built with round {last.round} of `{command}`.",
        "",
        "## What is in it",
        f"- V and M of `{start}`; M refined in each of {len(rows)} rounds on the agent's own real episodes"
        + (f", V in {refined} of them" if (refined := sum(r.v_refreshed for r in rows)) else ""),
        f"- the agent: `{POLICY_FILE}`, SB3 PPO saved without pickle, trained only in dreams of this M "
        f"(`dreamgym evaluate {game.latent_env_id} --policy DIR {played}` plays it as its real episodes did)",
        f"- real steps: {last.real_steps:,} ({last.data_steps:,} recorded, {last.eval_steps:,} of tuning episodes); "
        f"dream steps: {last.agent_steps:,}",
    ]
    scored = [r for r in rows if r.eval_mean is not None and r.eval_std is not None]
    if scored:
        lines += ["", f"## Tuning scores ({config.eval_episodes} real episodes from seed {config.eval_seed})"]
        lines += [
            f"- round {r.round}: {r.eval_mean:.1f} ± {r.eval_std:.1f}"
            + (f" ({r.eval_count} episodes)" if r.eval_count and r.eval_count != config.eval_episodes else "")
            for r in scored[-5:]
        ]
    return "\n".join(lines) + "\n"


def keep_copy(run: Path, destination: Path) -> None:
    """Copy the current model and agent to ``destination`` (RUN/best, a candidate), replacing what
    is there only once complete."""
    files = RunDir(run)

    def fill(staging: Path) -> None:
        shutil.copytree(files.model, staging, dirs_exist_ok=True)
        shutil.copyfile(files.agent, RunDir(staging).agent)

    destination.parent.mkdir(parents=True, exist_ok=True)
    atomic_directory(destination, fill)


def finalists(run: Path, rows: list[OnlineRound], count: int) -> list[OnlineRound]:
    """The ``count`` rounds of ``rows`` copied to ``candidates/`` (they played their confirm
    episodes) with the best tuning means, best first."""
    copied = [r for r in rows if r.eval_returns and RunDir(run).candidate(r.round).is_dir()]
    return sorted(copied, key=lambda r: -float(np.mean(r.eval_returns or [])))[:count]


def play_off_seed(config: OnlineConfig) -> int:
    """The play-off's first seed: the first tuning seed no check of a round uses."""
    return config.eval_seed + config.eval_episodes + config.confirm_episodes + config.reconfirm_episodes


def play_off(run: Path, config: OnlineConfig, rows: list[OnlineRound], report: Report) -> PlayOff | None:
    """The ``finalists`` confirmed rounds with the best tuning means, each played (from its copy:
    its own V, M and agent, as its tuning episodes were) on ``final_episodes`` fresh tuning seeds;
    the best copied to ``best/``. A play-off already made after the last round is read back."""
    files = RunDir(run)
    done = read_play_off(run)
    if done is not None and done.after_round == rows[-1].round:
        return done
    chosen = finalists(run, rows, config.finalists)
    if not chosen:
        report("no play-off: no round played its confirm episodes (or none was copied)")
        return None
    seed = play_off_seed(config)
    seeds = range(seed, seed + config.final_episodes)
    returns: list[float] = []
    means: list[float] = []
    steps = 0
    for row in chosen:
        path = files.candidate(row.round)
        model, agent = load_world_model(path, device="cpu"), load_policy_file(path / POLICY_FILE)
        played, lengths = tuning_play(model, agent, config)(seeds)
        returns, steps = returns + played, steps + sum(lengths)
        means.append(float(np.mean(played)))
        report(f"play-off: round {row.round} (tuning {row.eval_mean:.1f}): {means[-1]:.1f} ± {np.std(played):.1f}")
    kept = chosen[int(np.argmax(means))].round  # the first of equals: the better tuning mean

    def fill(staging: Path) -> None:
        shutil.copytree(files.candidate(kept), staging, dirs_exist_ok=True)

    atomic_directory(files.best, fill)
    record = PlayOff(rows[-1].round, [r.round for r in chosen], seed, returns, steps, kept)
    atomic_write_text(files.play_off, json.dumps(dataclasses.asdict(record), indent=2) + "\n")
    return record


def save_round(
    run: Path, model: WorldModel, agent: Any, rows: list[OnlineRound], config: OnlineConfig, copies: list[Path]
) -> None:
    """The round's model (with its card) and agent, their ``copies`` (best/, a candidate), and
    the rows, in that order (the rows say the round is complete: a run killed before them plays
    the round again and copies it again)."""
    files = RunDir(run)
    model.metadata["online"].update(rounds=len(rows), real_steps=rows[-1].real_steps)
    save_world_model(model, files.model, model_card=model_card(model.game, config, rows))
    save_policy(agent, files.model / POLICY_FILE, {"algorithm": "PPO", "agent_steps": int(agent.num_timesteps)})
    atomic_write(files.agent, lambda tmp: agent.save(tmp))
    for destination in copies:
        keep_copy(run, destination)
    atomic_write_text(files.rounds_record, json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")


def plot_curve(run: Path, rows: list[OnlineRound], title: str) -> None:
    """Real return against real steps: the recorded episodes (with noise), the tuning scores,
    and the dream's own return beside them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    steps = [r.real_steps for r in rows]
    axis.plot(steps, [r.train_return for r in rows], ".", alpha=0.4, label="real: recorded episodes (with noise)")
    scored = [r for r in rows if r.eval_mean is not None]
    if scored:
        axis.errorbar(
            [r.real_steps for r in scored],
            [r.eval_mean or 0.0 for r in scored],
            yerr=[r.eval_std or 0.0 for r in scored],
            marker="o",
            capsize=3,
            label="real: tuning score",
        )
    dream_axis = axis.twinx()
    dream_axis.plot(steps, [r.dream_return for r in rows], color="tab:green", alpha=0.6, label="dream (short)")
    dream_axis.set_ylabel("dream return (per short dream)")
    axis.set_xlabel("real game steps used")
    axis.set_ylabel("real return")
    axis.grid(alpha=0.3)
    handles = axis.get_legend_handles_labels()[0] + dream_axis.get_legend_handles_labels()[0]
    axis.legend(handles=handles, fontsize=8, loc="upper left")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(RunDir(run).curve, dpi=100)


def online(
    run: str | Path, game: str, *, report: Report = no_report, trust_zip: bool = False, **settings: Any
) -> list[OnlineRound]:
    """Run rounds until ``rounds`` or the real-step budget is spent; resumes RUN. ``settings``:
    ``OnlineConfig`` values (None: keep the stored or default one). The agent is saved as an SB3
    ``.zip`` and loaded back on resume, which runs code from it: a run with rounds needs
    ``trust_zip`` (the consent to load the agent this run saved). The CLI holds RUN's lock
    (``dreamgym.files.run_lock``) while it runs."""
    run, game_spec = Path(run), lookup(game)
    config = load_settings(run, game_spec, settings)
    rows = read_rounds(run)
    if rows and not trust_zip:
        raise StageError(
            f"{run} resumes from its agent {RunDir(run).agent}, an SB3 .zip whose loading runs code "
            "from the file: pass --trust-zip (trust_zip=True) to continue a run you made"
        )
    source = RunDir(run).model if rows else cast(str, config.world_model)  # load_settings asked for it
    model = load_world_model(source, device="cpu")  # checked before any write
    if model.game.name != game_spec.name:
        raise StageError(f"world model {config.world_model} is a {model.game.name} model, not {game_spec.name}")
    # The start model's controller read its M's h and its record describes its own build: this
    # run's M is refined every round and its agent is the PPO saved beside it.
    if config.fixed_std and (model.game.discrete or config.noise <= 0):
        raise StageError(
            "--fixed-std fixes the std of PPO's Gaussian actions at --noise: it needs a game with "
            f"continuous actions ({model.game.name}'s are {'discrete' if model.game.discrete else 'continuous'}) "
            f"and --noise > 0 (got {config.noise:g})"
        )
    if config.sample and config.eval_noise is not None:
        raise StageError(
            "--sample plays the tuning episodes, like the recorded ones, with the agent's own action "
            f"distribution: --eval-noise ({config.eval_noise:g}) does not apply to them; leave it out"
        )
    reserve = play_off_reserve(config, model.game)
    if config.max_real_steps and reserve >= config.max_real_steps:
        raise StageError(
            f"the play-off ({config.finalists} finalists × {config.final_episodes} episodes) keeps back up to "
            f"{reserve:,} real steps: nothing of --max-real-steps {config.max_real_steps:,} is left to train with"
        )
    model.controller = None
    v_version, reconstruction = v_record(model, bool(rows), source)
    model.metadata = {
        "online": {"world_model": config.world_model, "v_version": v_version, "v_reconstruction": reconstruction}
    }
    check_destination(run, "a dreamgym online run", lambda path: RunDir(path).online_settings.is_file())
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        RunDir(run).online_settings,
        json.dumps({**game_record(game_spec), "settings": dataclasses.asdict(config)}, indent=2) + "\n",
    )
    encode_again(run, model, v_version)  # a round killed after it refined V: back to the saved V
    data, replay = TrainingData(), Replay(model.z_dim, model.game.action_dim, capacity=config.replay_capacity)
    load_latents(run, model, data, replay)  # every episode recorded so far, the lost round's included
    references: dict[int, float] = {}  # V version -> its error on round 0's episodes
    agent = make_agent(model, replay, config, RunDir(run).agent if rows else None) if rows else None
    while (stop := stop_reason(rows, config, reserve)) is None:
        k = len(rows)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        wanted = config.explore_episodes if k == 0 else config.episodes
        first = rows[-1].episodes if rows else 0
        new_returns, new_errors = [], []
        for index in range(first, first + wanted):
            path = episode_path(RunDir(run).latents, index)
            if path.exists():  # recorded by a round that was killed: real data, kept
                latents = read_latents(path, model.game)
                new_returns.append(float(latents["rewards"].sum()))
                continue
            episode = play_real(
                model, agent, recorded_seed(config, index), config.noise, config.max_steps, sample=config.sample
            )
            new_errors.append(v_error(model, episode["frames"]))
            latents = record(run, model, index, episode, v_version)
            data.add(latents, model.game)
            replay.add(latents["mu"], model.game.encode_actions(latents["actions"]))
            new_returns.append(float(episode["rewards"].sum()))
        timings["collect"] = time.perf_counter() - clock
        v_ratio, v_refreshed = None, False
        if k > 0 and new_errors:
            clock = time.perf_counter()
            if v_version not in references:
                references[v_version] = reference_error(run, model, config)
            v_ratio = float(np.mean(new_errors)) / references[v_version]
            if config.refresh_v and v_ratio > config.refresh_v:
                refine_v(run, model, first + wanted, config, k, reconstruction)
                v_version, v_refreshed = v_version + 1, True
                model.metadata["online"]["v_version"] = v_version
                encode_again(run, model, v_version)
                data = TrainingData()
                replay.clear()
                load_latents(run, model, data, replay)
                first_frames_again(model, data)
            timings["V"] = time.perf_counter() - clock
        clock = time.perf_counter()
        m_loss = refine_m(model, data, config, k, config.refresh_m_steps if v_refreshed else None)
        replay.refresh()  # M changed: the start states are warmed up again
        timings["M"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if agent is None:
            agent = make_agent(model, replay, config, None)
        set_agent_logging(agent, run)
        agent.learn(config.agent_steps, reset_num_timesteps=agent.num_timesteps == 0)  # one ALGO_1 over the rounds
        timings["agent"] = time.perf_counter() - clock
        eval_steps = rows[-1].eval_steps if rows else 0
        eval_mean = eval_std = eval_count = returns = None
        best = max((r.eval_mean for r in rows if r.eval_mean is not None), default=-math.inf)
        if (k + 1) % config.eval_every == 0:
            clock = time.perf_counter()
            returns, steps = tuning_score(tuning_play(model, agent, config), config, best)
            eval_mean, eval_std, eval_count = float(np.mean(returns)), float(np.std(returns)), len(returns)
            eval_steps += steps
            timings["evaluate"] = time.perf_counter() - clock
        row = OnlineRound(
            round=k,
            episodes=first + wanted,
            data_steps=data.steps,
            eval_steps=eval_steps,
            train_return=float(np.mean(new_returns)),
            dream_return=dream_return(agent),
            agent_steps=int(agent.num_timesteps),
            m_loss=m_loss,
            v_error=float(np.mean(new_errors)) if new_errors else float("nan"),
            eval_mean=eval_mean,
            eval_std=eval_std,
            eval_count=eval_count,
            eval_returns=returns,
            v_ratio=v_ratio,
            v_refreshed=v_refreshed,
            seconds={key: round(value, 1) for key, value in timings.items()},
        )
        rows.append(row)
        copies = [RunDir(run).best] if eval_mean is not None and eval_mean > best else []
        candidate = config.keep_candidates or config.finalists > 0
        if candidate and eval_count is not None and eval_count > config.eval_episodes:
            copies.append(RunDir(run).candidate(k))
        save_round(run, model, agent, rows, config, copies)
        plot_curve(run, rows, f"{game_spec.name}: PPO in short dreams from real play")
        report(
            f"round {k}: {row.real_steps:,} real steps; recorded {row.train_return:.1f}, dream "
            f"{row.dream_return:.1f}"
            + (f"; V refined (its error on the new frames ×{v_ratio:.2f})" if v_refreshed else "")
            + ("" if eval_mean is None else f", tuning {eval_mean:.1f} ± {eval_std:.1f} ({eval_count} episodes)")
            + f" ({sum(timings.values()):.0f} s)"
        )
    report(f"stopped: {stop}")
    if config.finalists and rows and (final := play_off(run, config, rows, report)) is not None:
        total = rows[-1].real_steps + final.real_steps
        report(f"the play-off keeps round {final.kept} in best/; real steps in all: {total:,}")
    return rows
