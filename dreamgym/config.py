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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dreamgym.files import atomic_write_text
from dreamgym.games import get_game


@dataclass(frozen=True)
class CollectConfig:
    episodes: int = 1000
    """Real episodes to record."""
    first_episode: int = 0
    """Index of the first episode to record (episodes below it come from earlier rounds)."""
    workers: int = 2
    """Parallel worker processes (one game each)."""
    seed: int = 0
    """Episode i is seeded with seed + i (game and exploration policy)."""
    max_steps: int | None = None
    """Cap on steps per episode (None: the game's own limit)."""
    policy: str | None = None
    """None: the game's exploration policy; else a controller file or model directory to act
    with (iterative rounds), perturbed by ``noise``."""
    noise: float = 0.0
    """Exploration added to ``policy``: Doom, probability of a random held action; CarRacing,
    std of Gaussian noise on each action component."""


@dataclass(frozen=True)
class VAETrainConfig:
    z_dim: int = 32
    """Latent size."""
    kl_tolerance: float = 0.5
    """KL floor per latent dimension (nats)."""
    epochs: int = 10
    """Passes over the frames (or over ``frames_per_epoch`` of them)."""
    batch_size: int = 100
    """Frames per gradient step."""
    learning_rate: float = 1e-4
    """Adam step size."""
    frames_per_epoch: int | None = None
    """Subsample each pass to this many frames (None: every frame)."""
    shuffle_buffer: int = 20_000
    """Frames held in memory for shuffling; memory does not grow with the dataset."""
    seed: int = 0
    """Seeds initialisation, shuffling and the reparameterisation noise."""


@dataclass(frozen=True)
class MDNTrainConfig:
    hidden_dim: int = 256
    """LSTM units."""
    num_mixtures: int = 5
    """Gaussians per latent dimension."""
    epochs: int = 20
    """Passes over the episodes."""
    batch_size: int = 32
    """Episodes per gradient step (bucketed by length to limit padding)."""
    learning_rate: float = 1e-3
    """Initial Adam step size."""
    min_learning_rate: float = 1e-5
    """Cosine decay ends here."""
    grad_clip: float = 1.0
    """Gradient norm clip."""
    done_pos_weight: float = 10.0
    """Weight of positive (episode-end) steps in the done loss, as the original Doom code."""
    reward_weight: float = 1.0
    """Weight of the reward regression loss."""
    shuffle_buffer: int = 512
    """Episodes held in memory for shuffling and length bucketing."""
    seed: int = 0
    """Seeds initialisation, shuffling and the z sampling from V's posterior."""


@dataclass(frozen=True)
class ControllerTrainConfig:
    generations: int = 200
    """CMA-ES generations."""
    population: int = 64
    """Candidates per generation."""
    trials: int = 16
    """Episodes per candidate; fitness is their mean return."""
    sigma0: float = 0.1
    """Initial CMA-ES step size (x0 = 0)."""
    weight_decay: float = 0.01
    """Fitness penalty times mean(θ²), as the original code."""
    temperature: float = 1.15
    """Dream temperature τ."""
    max_steps: int | None = None
    """Dream episode cap (None: the game's limit)."""
    sample_done: bool = False
    """End a dream with probability p(done) each step, instead of when p(done) > 0.5."""
    eval_every: int = 10
    """Score the distribution mean every this many generations (and at the last one)."""
    eval_trials: int = 256
    """Dreams for that score; the best-scoring mean is the controller kept."""
    seed: int = 0
    """Seeds CMA-ES and the dreams."""


REAL_CONTROLLER = ControllerTrainConfig(generations=10, population=16, trials=4, sigma0=0.05, eval_every=5,
                                       eval_trials=16)


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 100
    """Real episodes for the final score."""
    seed: int = 10_000
    """Episode i is seeded with seed + i; kept away from tuning seeds."""
    workers: int = 2
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
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    parent: str | None = None
    """The run whose episodes, latents and V this run reuses (an iterative round)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        kwargs: dict[str, Any] = {"game": data["game"], "preset": data["preset"], "parent": data.get("parent")}
        for name, section in _SECTIONS.items():
            if name in data:
                known = {f.name for f in fields(section)}
                unknown = set(data[name]) - known
                if unknown:
                    raise ValueError(f"run.json section {name!r} has unknown settings {sorted(unknown)}")
                kwargs[name] = section(**data[name])
        return cls(**kwargs)

    def save(self, run_dir: str | Path) -> None:
        atomic_write_text(Path(run_dir) / "run.json", json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> RunConfig:
        path = Path(run_dir) / "run.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a dreamgym run directory (no run.json); start with `dreamgym collect`")
        return cls.from_dict(json.loads(path.read_text()))

    def with_overrides(self, section: str, **overrides: Any) -> RunConfig:
        """A copy with some settings of one section replaced (None values are ignored)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return self
        return replace(self, **{section: replace(getattr(self, section), **values)})


_SECTIONS = {
    "collect": CollectConfig,
    "vae": VAETrainConfig,
    "mdnrnn": MDNTrainConfig,
    "controller": ControllerTrainConfig,
    "real_controller": ControllerTrainConfig,
    "evaluate": EvalConfig,
}

PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "doom": {
        "tiny": {
            "collect": {"episodes": 6, "max_steps": 60},
            "vae": {"z_dim": 64, "epochs": 1, "batch_size": 32, "frames_per_epoch": 128},
            "mdnrnn": {"hidden_dim": 32, "epochs": 2, "batch_size": 4},
            "controller": {"generations": 2, "population": 6, "trials": 2, "max_steps": 50, "eval_every": 1, "eval_trials": 4},
            "evaluate": {"episodes": 2},
        },
        "cpu": {
            "collect": {"episodes": 2000},
            "vae": {"z_dim": 64, "epochs": 3, "frames_per_epoch": 400_000},
            "mdnrnn": {"hidden_dim": 512, "epochs": 65, "batch_size": 32},
            "controller": {"generations": 200, "population": 64, "trials": 16},
        },
        "paper": {
            "collect": {"episodes": 10_000},
            "vae": {"z_dim": 64, "epochs": 10},
            "mdnrnn": {"hidden_dim": 512, "epochs": 1200, "batch_size": 100},
            "controller": {"generations": 200, "population": 64, "trials": 16},
        },
    },
    "carracing": {
        "tiny": {
            "collect": {"episodes": 4, "max_steps": 60},
            "vae": {"z_dim": 32, "epochs": 1, "batch_size": 32, "frames_per_epoch": 128},
            "mdnrnn": {"hidden_dim": 32, "epochs": 2, "batch_size": 4},
            "controller": {"generations": 2, "population": 6, "trials": 2, "max_steps": 50, "eval_every": 1, "eval_trials": 4},
            "evaluate": {"episodes": 2},
        },
        "cpu": {
            "collect": {"episodes": 600},
            "vae": {"z_dim": 32, "epochs": 3, "frames_per_epoch": 400_000},
            "mdnrnn": {"hidden_dim": 256, "epochs": 100, "batch_size": 16},
            "controller": {"generations": 200, "population": 64, "trials": 8, "temperature": 1.0},
        },
        "paper": {
            "collect": {"episodes": 10_000},
            "vae": {"z_dim": 32, "epochs": 10},
            "mdnrnn": {"hidden_dim": 256, "epochs": 20, "batch_size": 100},
            "controller": {"generations": 1800, "population": 64, "trials": 16, "temperature": 1.0},
        },
    },
}


def preset(game: str, name: str) -> RunConfig:
    """The settings of a named preset for a game."""
    game = get_game(game).name
    if name not in PRESETS[game]:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS[game])}")
    table = PRESETS[game][name]
    return RunConfig.from_dict({"game": game, "preset": name, **table})

