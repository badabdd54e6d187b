"""Settings of every pipeline stage, and one preset table per game.

Presets:

* ``tiny``: finishes in a few minutes on 2 cores; for smoke tests, not for scores.
* ``cpu``: what the shipped models use on a 2-core machine (sizes measured and explained in
  the model cards).
* ``paper``: the sizes of Ha & Schmidhuber (2018) (10,000 episodes, 10 V epochs, ...).

A run directory stores the settings it was made with in ``run.json``, so every stage can be
run alone, resumed, or inspected later.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dreamgym.files import atomic_write_text
from dreamgym.games import Game, lookup, resolve_game
from dreamgym.rundir import RunDir
from dreamgym.validation import check_fields, check_settings, rules_of, setting

MAX_Z_DIM = 4096
MAX_HIDDEN_DIM = 8192
MAX_MIXTURES = 64
MAX_MEMBERS = 16
MAX_TEMPERATURE = 1000.0
"""Upper bounds on model sizes: far above the paper's (z 64, LSTM 512, 5 mixtures), low
enough that no settings file can make dreamgym allocate tens of GB before it notices; above
MAX_TEMPERATURE, M's σ·√τ overflows float32 for ordinary weights (the paper sweeps 0.1 to 1.3)."""


class Settings:
    """Base of the settings dataclasses: every value is checked when a section is made (from
    Python, the command line or run.json), so a bad value is a ValueError naming the setting,
    raised before run.json is written or anything is deleted."""

    def __post_init__(self) -> None:
        check_settings(self)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a settings dataclass (the string under each field), by field
    name: one home for every setting's help, read by the CLI."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


@dataclass(frozen=True)
class CollectConfig(Settings):
    episodes: int = setting(1000, minimum=1)
    """Real episodes to record."""
    first_episode: int = setting(0, minimum=0)
    """Index of the first episode to record (episodes below it come from earlier rounds)."""
    workers: int = setting(2, minimum=1)
    """Parallel worker processes (one game each)."""
    seed: int = setting(0, minimum=0)
    """Episode i is seeded with seed + i (game and exploration policy)."""
    max_steps: int | None = setting(None, minimum=1)
    """Cap on steps per episode (None: the game's own limit)."""
    policy: str | None = None
    """None: the game's exploration policy; else the agent that acts (iterative rounds), perturbed
    by ``noise``: a model directory with a controller, a controller file, or a Stable-Baselines3
    ``.zip`` (loading one runs code from it: ``collect_stage`` asks for ``trust_zip``)."""
    world_model: str | None = None
    """Model directory whose V and M give ``policy`` its latent observation (the dream the agent
    was trained in); None: the policy's own model directory."""
    noise: float = setting(0.0, minimum=0)
    """Exploration added to ``policy``: Doom, probability of a random held action; CarRacing,
    std of Gaussian noise on each action component."""


RECONSTRUCTION_LOSSES = ("squared_error", "cross_entropy")


@dataclass(frozen=True)
class VAETrainConfig(Settings):
    z_dim: int = setting(32, minimum=1, maximum=MAX_Z_DIM)
    """Latent size."""
    kl_tolerance: float = setting(0.5, minimum=0)
    """KL floor per latent dimension (nats)."""
    epochs: int = setting(10, minimum=1)
    """Epochs: passes over the frames, or ``frames_per_epoch`` frames each."""
    batch_size: int = setting(100, minimum=1)
    """Frames per gradient step."""
    learning_rate: float = setting(1e-4, above=0)
    """Adam step size."""
    reconstruction: str = setting("squared_error", choices=RECONSTRUCTION_LOSSES)
    """What V's decoding is trained on: ``squared_error`` (the paper's), or ``cross_entropy``
    (binary cross-entropy on the decoder's logits). Squared error through the sigmoid stops
    learning where the output saturates: on mostly white frames (pixel CartPole) V then paints
    only the background. Cross-entropy keeps the gradient of every wrong pixel."""
    frames_per_epoch: int | None = setting(None, minimum=1)
    """Frames drawn per epoch: a subsample of the data, or several passes over it when it
    holds fewer, so V's budget does not shrink with a small dataset (None: one pass)."""
    shuffle_buffer: int = setting(20_000, minimum=1)
    """Frames held in memory for shuffling; memory does not grow with the dataset."""
    seed: int = setting(0, minimum=0)
    """Seeds initialisation, shuffling and the reparameterisation noise."""


@dataclass(frozen=True)
class MDNTrainConfig(Settings):
    hidden_dim: int = setting(256, minimum=1, maximum=MAX_HIDDEN_DIM)
    """LSTM units."""
    num_mixtures: int = setting(5, minimum=1, maximum=MAX_MIXTURES)
    """Gaussians per latent dimension."""
    epochs: int = setting(20, minimum=1)
    """Passes over the episodes."""
    batch_size: int = setting(32, minimum=1)
    """Episodes per gradient step (bucketed by length to limit padding)."""
    learning_rate: float = setting(1e-3, above=0)
    """Initial Adam step size."""
    min_learning_rate: float = setting(1e-5, minimum=0)
    """Cosine decay ends here."""
    grad_clip: float = setting(1.0, above=0)
    """Gradient norm clip."""
    done_pos_weight: float = setting(10.0, above=0)
    """Weight of positive (episode-end) steps in the done loss, as the original Doom code."""
    reward_weight: float = setting(1.0, minimum=0)
    """Weight of the reward regression loss."""
    dropout: float = setting(0.0, minimum=0, maximum=0.9)
    """Dropout rate on M's h before its heads, one mask per episode for all its steps (Wellmer &
    Kwok 2021 did best with 0.1 on both games); the rate its dreams play at unless ``dream.dropout`` says otherwise."""
    members: int = setting(1, minimum=1, maximum=MAX_MEMBERS)
    """Ms trained for an ensemble dream: member 0 on every training episode, member k ≥ 1 on a
    bootstrap resample of them (drawn with seed + k) from its own initialisation (seed + k)."""
    shuffle_buffer: int = setting(512, minimum=1)
    """Episodes held in memory for shuffling and length bucketing."""
    seed: int = setting(0, minimum=0)
    """Seeds initialisation, shuffling and the z sampling from V's posterior."""


@dataclass(frozen=True)
class ControllerTrainConfig(Settings):
    generations: int = setting(200, minimum=1)
    """CMA-ES generations."""
    population: int = setting(64, minimum=2)
    """Candidates per generation."""
    trials: int = setting(16, minimum=1)
    """Episodes per candidate; fitness is their mean return."""
    sigma0: float = setting(0.1, above=0)
    """Initial CMA-ES step size (x0 = 0)."""
    weight_decay: float = setting(0.01, minimum=0)
    """Fitness penalty times mean(θ²), as the original code."""
    max_steps: int | None = setting(None, minimum=1)
    """Dream episode cap (None: the game's limit)."""
    sample_done: bool = False
    """End a dream with probability p(done) each step, instead of when p(done) passes
    ``dream.done_threshold``."""
    eval_every: int = setting(10, minimum=1)
    """Score the distribution mean every this many generations (and at the last one)."""
    eval_trials: int = setting(256, minimum=1)
    """Dreams for that score; the best-scoring mean is the controller kept."""
    seed: int = setting(0, minimum=0)
    """Seeds CMA-ES and the dreams."""


REAL_CONTROLLER = ControllerTrainConfig(
    generations=10, population=16, trials=4, sigma0=0.05, eval_every=5, eval_trials=16
)


ENSEMBLE_MODES = ("off", "episode", "pessimist")
START_MODES = ("first", "data")
OBSERVATION_LAYOUTS = ("zh", "zch")


@dataclass(frozen=True)
class DreamSettings(Settings):
    """How dreams are drawn: their temperature, and the defences against an agent that exploits
    M's errors. A model directory stores the settings it was built for (its dreams' defaults);
    every dream id, :class:`~dreamgym.envs.vector.DreamVectorEnv`, ``make_sb3_vec_env`` and CMA-ES
    take each of them as a keyword argument. The defaults are the paper's plain dream."""

    temperature: float | None = setting(None, above=0, maximum=MAX_TEMPERATURE)
    """τ > 0: M's mixture logits are divided by τ and its σ multiplied by √τ when it draws the
    next latent (higher: a wilder dream). None: the game's (``Game.dream_temperature``; Doom the
    paper's 1.15, CarRacing 1.0)."""

    dropout: float | None = setting(None, minimum=0, below=1)
    """Each dream its own dropout mask on M's h before the heads, fixed for the episode (Wellmer &
    Kwok 2021). None: the rate M was trained with; 0: no dropout."""
    ensemble: str = setting("off", choices=ENSEMBLE_MODES)
    """``"off"``: member 0 alone moves the dream; ``"episode"``: each dream draws one of the
    model's M members at its start and that member draws its next latents, rewards and end;
    ``"pessimist"``: member 0 draws the next latent, the reward is the lowest any member
    predicts and the dream ends where any member ends it (MOReL's idea: no member's blind spot
    pays)."""
    uncertainty_penalty: float = setting(0.0, minimum=0)
    """λ ≥ 0: each step's reward is lowered by λ·u, u the members' disagreement on the next
    latent (the root mean square over z's dimensions of the spread of the members' expected z)."""
    done_threshold: float = setting(0.5, above=0, below=1)
    """The dream ends when p(done) passes this; below 0.5 is a pessimistic dream."""
    starts: str = setting("first", choices=START_MODES)
    """``"first"``: a dream starts at the first frame of a stored real episode, with M's state
    zero; ``"data"``: at any step of a stored real episode, with each M's state warmed up on the
    real steps before it (Dreamer, MBPO)."""
    horizon: int | None = setting(None, minimum=1)
    """Truncate dreams after this many steps (None: the game's limit); pair with
    ``starts="data"`` and an agent that bootstraps the rest from a value function."""
    warmup: int = setting(32, minimum=0)
    """With ``starts="data"``: each M's state at a start is its state after at most this many
    real steps before it in its episode, run from zero (a replay burn-in; exact for a step
    fewer than ``warmup`` steps into its episode)."""
    observation: str = setting("zh", choices=OBSERVATION_LAYOUTS)
    """What an agent sees: ``"zh"``, [z, h] (z_dim + hidden_dim values), or ``"zch"``, [z, c, h]
    with M's LSTM cell state too (z_dim + 2 · hidden_dim), the paper's Doom controller input. The
    latent twin of the same model shows the same layout."""

    @property
    def needs_members(self) -> bool:
        """Whether these dreams step several M members (an ensemble or an uncertainty penalty)."""
        return self.ensemble != "off" or self.uncertainty_penalty > 0


@dataclass(frozen=True)
class EvalConfig(Settings):
    episodes: int = setting(100, minimum=1)
    """Real episodes for the final score."""
    seed: int = setting(10_000, minimum=0)
    """Episode i is seeded with seed + i; kept away from tuning seeds."""
    workers: int = setting(2, minimum=1)
    """Parallel worker processes."""


@dataclass(frozen=True)
class RunConfig:
    game: str
    preset: str
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAETrainConfig = field(default_factory=VAETrainConfig)
    mdnrnn: MDNTrainConfig = field(default_factory=MDNTrainConfig)
    controller: ControllerTrainConfig = field(default_factory=ControllerTrainConfig)
    real_controller: ControllerTrainConfig = field(default_factory=lambda: REAL_CONTROLLER)
    """Optional fine-tuning on the real game (``train-controller --real``): real episodes are
    ~100× dearer than dreams, hence the small defaults."""
    dream: DreamSettings = field(default_factory=DreamSettings)
    """The dream the controller is trained in, and the defaults the exported model records."""
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    parent: str | None = None
    """The run whose episodes, latents and V this run reuses (an iterative round)."""
    env: dict[str, Any] | None = None
    """The Gymnasium env a game made by ``dreamgym.games.game_from_env`` was built from (its
    ``spec``); None for the games dreamgym defines."""

    def __post_init__(self) -> None:
        resolve_game(self.game, self.env)  # ValueError listing the known games, or naming a bad env entry
        if self.dream.needs_members and self.mdnrnn.members < 2:
            raise ValueError(
                f"dream.ensemble {self.dream.ensemble!r} and dream.uncertainty_penalty "
                f"{self.dream.uncertainty_penalty} need mdnrnn.members >= 2, got {self.mdnrnn.members}"
            )
        for name in ("preset", "parent"):
            value = getattr(self, name)
            if (value is not None or name == "preset") and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["env"] is None:  # a game dreamgym defines: its name says it all
            del data["env"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        """Settings from run.json's contents; a missing, unknown or bad entry is a ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"run.json must hold a JSON object, got {type(data).__name__}")
        missing = [key for key in ("game", "preset") if key not in data]
        unknown = sorted(set(data) - {"game", "preset", "parent", "env", *_SECTIONS})
        if missing or unknown:
            raise ValueError(
                f"run.json: missing {missing}, unknown {unknown}"
                if missing and unknown
                else f"run.json: missing {missing}"
                if missing
                else f"run.json: unknown entries {unknown}"
            )
        kwargs: dict[str, Any] = {
            "game": data["game"],
            "preset": data["preset"],
            "parent": data.get("parent"),
            "env": data.get("env"),
        }
        for name, section in _SECTIONS.items():
            if name not in data:
                continue
            kwargs[name] = section(**check_fields(f"run.json {name}", data[name], rules_of(section)))
        return cls(**kwargs)

    def save(self, run_dir: str | Path) -> None:
        """Write run.json; the settings that name files (``RUN_PATHS``) are stored relative to the
        run directory (``./…`` or ``../…``), so a run moved or copied together with the runs it
        names goes on working. A name that is no path (a shipped model) is kept as it is."""
        atomic_write_text(RunDir(run_dir).settings, json.dumps(self.to_record(run_dir), indent=2) + "\n")

    def to_record(self, run_dir: str | Path) -> dict[str, Any]:
        """:meth:`to_dict` with the paths it names relative to ``run_dir`` (what run.json and a
        model's provenance hold: no path of the machine that made it)."""
        data = self.to_dict()
        for holder, key in _path_entries(data):
            holder[key] = relative_path(holder[key], run_dir)
        return data

    @classmethod
    def load(cls, run_dir: str | Path) -> RunConfig:
        path = RunDir(run_dir).settings
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} is not a dreamgym run directory (no run.json); start with `dreamgym collect`"
            )
        try:
            data = json.loads(path.read_text())
            for holder, key in _path_entries(data):  # relative to the run directory: absolute in memory
                if holder[key].startswith("."):
                    holder[key] = str((Path(run_dir) / holder[key]).resolve())
            return cls.from_dict(data)
        except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}: {error}") from None

    def with_overrides(self, section: str, **overrides: Any) -> RunConfig:
        """A copy with some settings of one section replaced (None values are ignored)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return self
        return replace(self, **{section: replace(getattr(self, section), **values)})


RUN_PATHS = ((None, "parent"), ("collect", "policy"), ("collect", "world_model"))
"""The settings of run.json that name files or directories (section None: the top level)."""


def relative_path(value: str, run_dir: str | Path) -> str:
    """``value`` relative to ``run_dir`` (``./…`` or ``../…``) when it is a path; a name that is
    no path (a shipped model) is kept as it is."""
    if Path(value).is_absolute() or value.startswith(".") or Path(value).exists():
        relative = os.path.relpath(Path(value).resolve(), Path(run_dir).resolve())
        return relative if relative.startswith("..") else os.path.join(".", relative)
    return value


def _path_entries(data: Any) -> list[tuple[dict[str, Any], str]]:
    """(the dict holding it, key) of each ``RUN_PATHS`` entry of run.json's contents that is a string."""
    entries = []
    for section, key in RUN_PATHS:
        holder = data if section is None else data.get(section) if isinstance(data, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            entries.append((holder, key))
    return entries


_SECTIONS = {
    "collect": CollectConfig,
    "vae": VAETrainConfig,
    "mdnrnn": MDNTrainConfig,
    "controller": ControllerTrainConfig,
    "real_controller": ControllerTrainConfig,
    "dream": DreamSettings,
    "evaluate": EvalConfig,
}

"""Settings of earlier run.json files that live elsewhere now."""

ITERATE_AGENTS = ("cmaes", "ppo", "dqn")


@dataclass(frozen=True)
class IterateConfig(Settings):
    """The rounds of ``dreamgym iterate`` (``dreamgym.iterate``): how much real data each costs,
    how the agent and M are trained again, and when to stop."""

    agent: str = setting("cmaes")
    """cmaes: the linear controller (CMA-ES); ppo or dqn: a Stable-Baselines3 agent of the game's
    recipe; or the path of an SB3 ``.zip`` of any algorithm, trained in ``start``'s dream, which
    the rounds go on training."""
    start: str | None = setting(None)
    """A finished run directory (``dreamgym pipeline``) taken as round 0 instead of recording and
    training one: its episodes, latents, V and M, and its controller (cmaes). A ``.zip`` agent
    needs it: the run whose dream the agent was trained in."""
    rounds: int = setting(3, minimum=1, maximum=1000)
    """Stop after this many rounds."""
    episodes: int = setting(200, minimum=1)
    """Real episodes recorded per round: round 0 by the exploration policy, later rounds by the
    last round's agent with ``noise``."""
    noise: float = setting(0.05, minimum=0)
    """Exploration around the agent (see ``CollectConfig.noise``)."""
    max_real_steps: int = setting(0, minimum=0)
    """Stop once the real steps used (data and tuning evaluations) reach this budget, checked
    after each round (so the last round may pass it); 0: no budget."""
    patience: int = setting(2, minimum=0)
    """Stop when the real score has not improved for this many rounds; 0: never."""
    refine_epochs: int = setting(5, minimum=1)
    """Epochs of M in rounds ≥ 1, warm-started from the last round's M (round 0: the preset's)."""
    refresh_v: float = setting(1.5, minimum=0)
    """Refine V in a round whose new frames V reconstructs more than this many times worse than
    the earlier rounds' frames (warm start, on all frames so far; every episode is then encoded
    again); 0: V stays round 0's."""
    refine_v_frames: int = setting(200_000, minimum=1)
    """Frames V is refined on when it is refreshed (one pass)."""
    generations: int | None = setting(None, minimum=1)
    """CMA-ES generations per round, warm-started from the last controller (None: the preset's)."""
    agent_steps: int = setting(1_000_000, minimum=1)
    """Dream steps per round of an SB3 agent, warm-started from the last round's agent."""
    eval_episodes: int = setting(20, minimum=1)
    """Real episodes that score each round's agent (they choose the best round: tuning seeds)."""
    eval_seed: int = setting(20_000, minimum=0)
    """Round k's evaluation episode i is seeded eval_seed + i (the same seeds every round)."""
    workers: int = setting(2, minimum=1)
    """Parallel game processes for collection and evaluation."""
    seed: int = setting(0, minimum=0)
    """Seed of the agents' training."""
    dream: dict[str, Any] = field(default_factory=dict)
    """``DreamSettings`` the agent trains in, every round (the defences: ensemble, penalty,
    starts, horizon, ...); empty: the preset's plain dream."""
    members: int = setting(1, minimum=1, maximum=MAX_MEMBERS)
    """M's ensemble members (the ensemble and penalty defences need 2 or more)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        dream = DreamSettings(**check_fields("IterateConfig.dream", self.dream, rules_of(DreamSettings)))
        if dream.needs_members and self.members < 2:
            raise ValueError(f"IterateConfig.dream {self.dream} needs members >= 2, got {self.members}")
        if self.agent not in ITERATE_AGENTS and not self.agent.endswith(".zip"):
            raise ValueError(
                f"IterateConfig.agent must be one of {', '.join(ITERATE_AGENTS)} or the path of an SB3 .zip, "
                f"got {self.agent!r}"
            )
        if self.agent.endswith(".zip") and self.start is None:
            raise ValueError(
                f"IterateConfig.agent {self.agent} needs start: the run directory whose dream it was "
                "trained in (its V and M give the agent its observation)"
            )


@dataclass(frozen=True)
class OnlineConfig(Settings):
    """The rounds of ``dreamgym online`` (``dreamgym.online``): a few real episodes a round, M
    refined on them, PPO continued in short dreams that start at real steps."""

    world_model: str | None = None
    """The model directory (or shipped name) the run starts from: its V, and the M it refines."""
    rounds: int = setting(300, minimum=1, maximum=100_000)
    """Stop after this many rounds."""
    max_real_steps: int = setting(600_000, minimum=0)
    """Stop once the real steps (recorded episodes and tuning evaluations) reach this; 0: never."""
    explore_episodes: int = setting(10, minimum=1)
    """Real episodes of round 0, played by the game's exploration policy (they fill the replay)."""
    episodes: int = setting(2, minimum=1)
    """Real episodes each later round records with the agent."""
    noise: float = setting(0.1, minimum=0)
    """Exploration added to the agent's actions (see ``CollectConfig.noise``)."""
    max_steps: int | None = setting(None, minimum=1)
    """Cap on the steps of a real episode (None: the game's own limit)."""
    m_steps: int = setting(200, minimum=0)
    """Adam steps on M per round."""
    m_batch_size: int = setting(16, minimum=1)
    """Windows per M step: half from the most recent episodes, half from all."""
    m_window: int = setting(96, minimum=2)
    """Steps per window."""
    m_learning_rate: float = setting(1e-4, above=0)
    """M's Adam step size in the rounds."""
    recent_episodes: int = setting(10, minimum=1)
    """The episodes that count as recent (half of M's windows come from them)."""
    refresh_v: float = setting(1.5, minimum=0)
    """Refine V in a round whose new frames V reconstructs more than this many times worse than
    round 0's (the exploration episodes: V's own kind of data); every recorded episode is then
    encoded again and M gets ``refresh_m_steps``. 0: V stays the start model's."""
    v_steps: int = setting(500, minimum=1)
    """Adam steps on V when it is refined: batches half from the recent episodes' frames, half from
    as many older episodes."""
    v_batch_size: int = setting(32, minimum=1)
    """Frames per step of V."""
    v_learning_rate: float = setting(1e-4, above=0)
    """V's Adam step size when it is refined."""
    refresh_m_steps: int = setting(1_000, minimum=0)
    """Adam steps on M (instead of ``m_steps``) in a round that refined V: its inputs moved."""
    agent_steps: int = setting(100_000, minimum=1)
    """Dream steps PPO learns from per round."""
    fixed_std: bool = False
    """PPO's action noise in the dreams fixed at ``noise``, the noise it plays the real game with,
    instead of learned (Box actions): the dream then trains the policy the real game sees, except
    where its mean lies outside the action's bounds (``sample`` plays it exactly). With
    its learned noise (std ~0.5 after 70 rounds) a CarRacing agent is trained for, and in its dream
    scores, play that the real game pays far less (577 against 908 for its mean with noise 0.1)."""
    sample: bool = False
    """Play the real episodes (recorded and tuning) with actions drawn from the agent's own
    distribution, the one PPO acts with in the dream (``dreamgym evaluate --sample``), instead of
    its most likely action plus ``noise``. They differ where that action is clipped: a CarRacing
    agent whose brake is below 0 brakes on one step in twenty in the dream but on one in two with
    noise added after the clip, and M then learns the speeds of a car that brakes."""
    horizon: int = setting(15, minimum=1)
    """Each dream is cut (truncated: PPO bootstraps its value) after this many steps."""
    warmup: int = setting(32, minimum=0)
    """M's state at a dream's start: run over at most this many real steps before it."""
    temperature: float | None = setting(None, above=0)
    """Dream temperature (None: the start model's, else the game's)."""
    sample_done: bool = False
    """End a dream with probability p(done) each step, instead of when p(done) passes 0.5. A
    short dream from a real step seldom passes 0.5 (the shipped Doom M: 0.22 on average at the last
    step of real episodes), so where dying is the lesson, sampled ends are how the agent meets it."""
    replay_capacity: int = setting(2_000_000, minimum=1)
    """Real steps the replay keeps (the oldest episodes go first)."""
    eval_every: int = setting(10, minimum=1)
    """Score the agent on the real game every this many rounds (and choose ``best/``)."""
    eval_noise: float | None = setting(None, minimum=0)
    """Exploration noise the agent is scored with (None: ``noise``, the agent as it plays its
    recorded episodes; 0: deterministic). On CarRacing the deterministic PPO agent leaves the road
    and circles on the grass where the same agent with noise 0.1 drives on (340 vs 734 over 100
    unseen tracks)."""
    eval_episodes: int = setting(5, minimum=1)
    """Real episodes of that score (tuning seeds; counted as real steps)."""
    confirm_episodes: int = setting(0, minimum=0)
    """Real episodes more, on the next tuning seeds, for a score that beats the best so far: the
    round's score is then the mean over all its episodes, and it is kept only if that still beats
    the best. The best of many small evaluations is mostly luck (on CarRacing three tuning episodes
    overrated the chosen round by ~150 on unseen tracks); confirming costs real steps only when a
    new best appears."""
    reconfirm_episodes: int = setting(0, minimum=0)
    """Real episodes more again, on the tuning seeds after those, for a confirmed score that beats
    the best by less than two standard errors of its mean: a second, larger check where the call
    is close (a clear lead, as in the first rounds, costs nothing more). The same ten tuning
    tracks, all run long, choose a round partly for its luck on them: on CarRacing a round kept
    for 894 against 888 on ten of them scored 799 on 100 unseen tracks, against 857 for the round
    it replaced."""
    keep_candidates: bool = False
    """Copy every round that plays its ``confirm_episodes`` (a candidate for ``best/``, kept or
    not) to ``RUN/candidates/round_K``, model directory and agent, so that the rounds a selection
    rule chose and refused can be scored on unseen seeds afterwards (each ~the size of ``best/``)."""
    finalists: int = setting(0, minimum=0)
    """At the end of the run, a play-off between this many rounds: of those that played their
    confirm episodes (copied as with ``keep_candidates``), the ones with the best tuning means,
    each played on ``final_episodes`` fresh tuning seeds (after every seed the checks use); the
    best of them is kept in ``best/`` (``RUN/playoff.json`` records it). Training stops early
    enough for the play-off, at full-length episodes, to fit in ``max_real_steps``. Rounds are
    checked on the same few tuning seeds all run long, so the best of them is partly the
    luckiest on those; fresh seeds at the end are not. 0: no play-off."""
    final_episodes: int = setting(30, minimum=1)
    """Real episodes of each finalist in the play-off."""
    eval_seed: int = setting(20_000, minimum=0)
    """Tuning episode i is seeded eval_seed + i (the same every time)."""
    seed: int = setting(0, minimum=0)
    """Seeds the agent, M's refinement and the recorded episodes (episode i: seed·10⁶ + i)."""

    @property
    def tuning_noise(self) -> float:
        """The noise the tuning episodes are played with: ``eval_noise``, else ``noise``."""
        return self.noise if self.eval_noise is None else self.eval_noise


def preset(game: str | Game, name: str) -> RunConfig:
    """The settings of a named preset for a game (``Game.presets``), V's and M's sizes the game's
    own unless the preset sets them."""
    game = lookup(game)
    tables = game.presets
    if name not in tables:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(tables)}")
    table = {section: dict(values) for section, values in tables[name].items()}
    table["vae"] = {"z_dim": game.z_dim, **table.get("vae", {})}
    table["mdnrnn"] = {"hidden_dim": game.hidden_dim, **table.get("mdnrnn", {})}
    return RunConfig.from_dict({"game": game.name, "preset": name, "env": game.spec, **table})
