"""Where a run keeps its files: the one module that knows the names inside a run directory.

A run directory (``dreamgym pipeline``; each round of ``dreamgym iterate`` is one too)::

    run.json            the settings (game, preset, every stage's config)
    timings.json        wall-clock seconds of every stage run so far
    episodes/           real episodes (collect); episodes.png previews the first few
    vae/                V's stage directory
    latents/            μ, log σ² of every frame (encode), and which V encoded them
    mdnrnn/             M's stage directory (mdnrnn_member_K/ for ensemble members K ≥ 1)
    controller/         CMA-ES in the dream: its state, controller.safetensors, fitness.csv/png
    controller_real/    CMA-ES on the real game, the same files
    model/              the exported model directory (what ``world_model=DIR`` loads)
    eval/               evaluation JSON (and, in a round, tuning.json: the round's real score)
    evaluated.json      what eval/ scored, so the same is not played again
    sweep/              the temperature table (sweep/tau_X/ per temperature, sweep/model/)

A stage directory holds ``checkpoint.pt`` (and the one before it), ``metrics.csv`` and its
pictures. An iterate run holds ``iterate.json``, ``round_K/`` run directories, ``rounds.json``,
``rounds.md``, ``rounds.png`` and ``best/``; an online run ``online.json``, ``rounds.json``,
``agent.zip``, ``curve.png``, ``best/`` (and ``candidates/round_K/``) and its ``episodes/`` and
``latents/``.

Code elsewhere asks a :class:`RunDir` (or this module's stage functions) for a path and never
joins a name onto a run directory itself, so a new file in a run is one line here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------- inside any stage directory

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.previous.pt"
METRICS = "metrics.csv"
TENSORBOARD = "tensorboard"
CONTROLLER = "controller.safetensors"
CMA_STATE = "cma_state.json"
CMA_ARRAYS = "cma_state.{generations:06d}.safetensors"


def checkpoint(stage_dir: Path) -> Path:
    """The stage's latest checkpoint."""
    return Path(stage_dir) / CHECKPOINT


def previous_checkpoint(stage_dir: Path) -> Path:
    """The checkpoint before the latest one (kept while the next is written)."""
    return Path(stage_dir) / PREVIOUS_CHECKPOINT


def metrics(stage_dir: Path) -> Path:
    """One row per epoch or generation."""
    return Path(stage_dir) / METRICS


def tensorboard(stage_dir: Path) -> Path:
    """Where a stage's TensorBoard events go: ``RUN/tensorboard/STAGE`` (SB3 agents log to
    ``RUN/tensorboard/PPO_1`` and so on beside them)."""
    return Path(stage_dir).parent / TENSORBOARD / Path(stage_dir).name


def picture(stage_dir: Path, name: str) -> Path:
    """A picture a stage draws: ``loss``, ``reconstructions``, ``predictions``, ``fitness``."""
    return Path(stage_dir) / f"{name}.png"


def controller(stage_dir: Path) -> Path:
    """The controller a CMA-ES stage keeps."""
    return Path(stage_dir) / CONTROLLER


def cma_state(stage_dir: Path) -> Path:
    """CMA-ES's record of every generation (JSON)."""
    return Path(stage_dir) / CMA_STATE


def cma_arrays(stage_dir: Path, generations: int) -> Path:
    """CMA-ES's arrays after ``generations`` generations."""
    return Path(stage_dir) / CMA_ARRAYS.format(generations=generations)


def fitness_table(stage_dir: Path) -> Path:
    return Path(stage_dir) / "fitness.csv"


# ----------------------------------------------------------------- a run directory

MODEL_PICTURES = (
    ("episodes.png", "episodes.png"),
    ("vae/reconstructions.png", "vae_reconstructions.png"),
    ("vae/loss.png", "vae_loss.png"),
    ("mdnrnn/predictions.png", "mdnrnn_predictions.png"),
    ("mdnrnn/loss.png", "mdnrnn_loss.png"),
    ("controller/fitness.png", "controller_fitness.png"),
    ("controller_real/fitness.png", "controller_real_fitness.png"),
    ("sweep/temperature.png", "temperature_sweep.png"),
)
"""The run's pictures an exported model directory carries, and their names there."""

ROUND_PREFIX = "round_"


@dataclass(frozen=True, init=False)
class RunDir:
    """The paths of one run directory (see the module's docstring for what each holds)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __str__(self) -> str:
        return str(self.root)

    def _(self, name: str) -> Path:
        return self.root / name

    # the pipeline's stages
    @property
    def settings(self) -> Path:
        """run.json: the run's settings."""
        return self._("run.json")

    @property
    def timings(self) -> Path:
        return self._("timings.json")

    @property
    def episodes(self) -> Path:
        return self._("episodes")

    @property
    def episodes_preview(self) -> Path:
        return self._("episodes.png")

    @property
    def vae(self) -> Path:
        return self._("vae")

    @property
    def latents(self) -> Path:
        return self._("latents")

    @property
    def latents_marker(self) -> Path:
        """Which V encoded the latents (its checkpoint's sha256)."""
        return self.latents / "encoded_with.json"

    def mdnrnn(self, member: int = 0) -> Path:
        """M's stage directory, or that of ensemble member ``member``."""
        return self._("mdnrnn" if member == 0 else f"mdnrnn_member_{member}")

    @property
    def controller(self) -> Path:
        return self._("controller")

    @property
    def controller_real(self) -> Path:
        return self._("controller_real")

    @property
    def model(self) -> Path:
        return self._("model")

    @property
    def eval(self) -> Path:
        return self._("eval")

    def eval_result(self, name: str) -> Path:
        """An evaluation's JSON, by the env id (and policy) it scored."""
        return self.eval / f"{name}.json"

    @property
    def evaluated(self) -> Path:
        return self._("evaluated.json")

    @property
    def notes(self) -> Path:
        """Notes a developer keeps with a run; the model card includes them."""
        return self._("NOTES.md")

    def model_pictures(self) -> list[tuple[Path, str]]:
        """The run's pictures that exist, with their names in an exported model directory."""
        return [(self._(source), name) for source, name in MODEL_PICTURES if self._(source).is_file()]

    # the temperature sweep
    @property
    def sweep(self) -> Path:
        return self._("sweep")

    @property
    def sweep_model(self) -> Path:
        """The run's model without its controller, which every τ's controller plays in."""
        return self.sweep / "model"

    def sweep_temperature(self, temperature: float) -> Path:
        return self.sweep / f"tau_{temperature:g}"

    @property
    def sweep_results(self) -> Path:
        return self.sweep / "temperature.json"

    @property
    def sweep_table(self) -> Path:
        return self.sweep / "temperature.md"

    @property
    def sweep_plot(self) -> Path:
        return self.sweep / "temperature.png"

    # a round of ``dreamgym iterate``, and the iterate and online runs around them
    def round(self, k: int) -> RunDir:
        return RunDir(self._(f"{ROUND_PREFIX}{k}"))

    @property
    def round_number(self) -> int | None:
        """K when this is ``round_K`` of an iterate run, else None."""
        name = self.root.name
        number = name.removeprefix(ROUND_PREFIX)
        return int(number) if name.startswith(ROUND_PREFIX) and number.isdigit() else None

    @property
    def iterate_settings(self) -> Path:
        return self._("iterate.json")

    @property
    def online_settings(self) -> Path:
        return self._("online.json")

    @property
    def round_record(self) -> Path:
        """A finished round's row of the table (also in best/: which round it is)."""
        return self._("round.json")

    @property
    def v_check(self) -> Path:
        """A round's decision on V: keep the parent's, or refine it."""
        return self._("v_check.json")

    @property
    def agent(self) -> Path:
        """An SB3 agent, as SB3 saves it."""
        return self._("agent.zip")

    @property
    def agent_dream_score(self) -> Path:
        return self._("agent_dream.json")

    @property
    def tuning_result(self) -> Path:
        """A round's agent on the tuning seeds of the real game."""
        return self.eval_result("tuning")

    @property
    def rounds_record(self) -> Path:
        return self._("rounds.json")

    @property
    def rounds_table(self) -> Path:
        return self._("rounds.md")

    @property
    def rounds_plot(self) -> Path:
        return self._("rounds.png")

    @property
    def curve(self) -> Path:
        """An online run's learning curve against real steps."""
        return self._("curve.png")

    @property
    def best(self) -> Path:
        """The best model directory so far (and its agent)."""
        return self._("best")

    @property
    def play_off(self) -> Path:
        """The play-off at the end of an online run (``finalists``)."""
        return self._("playoff.json")

    def candidate(self, k: int) -> Path:
        """Round K of an online run kept for scoring later (``keep_candidates``)."""
        return self._("candidates") / f"{ROUND_PREFIX}{k}"

    def kind(self) -> str | None:
        """What made this directory: ``iterate``, ``online``, ``pipeline`` or None (not a run)."""
        for kind, path in (
            ("iterate", self.iterate_settings),
            ("online", self.online_settings),
            ("pipeline", self.settings),
        ):
            if path.is_file():
                return kind
        return None
