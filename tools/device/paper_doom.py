"""Doom at the paper's preset on the GPU machine, each stage sized to a budget of seconds.

Run ON the GPU machine (after ``paper_scale.sh``'s wheel install; dreamgym from the tree):

    python3 tools/device/paper_doom.py build     # collect, V, encode, M, export -> $OUT/model.tgz
    python3 tools/device/paper_doom.py cmaes     # CMA-ES, seeds 0 1 2 at once -> $OUT/controllers.tgz

Each stage first measures its own speed (a chunk of episodes once the workers run, V's and M's
second and third epochs), then asks for as much more as the stage's budget holds (``COLLECT_S``,
``VAE_S``, ``MDN_S``, ``CMA_S`` seconds). Every stage is dreamgym's own command and resumes like it. Development
tooling of this workplace only: nothing in the package depends on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RUN = Path(os.environ.get("RUN", "/tmp/runs/doom_paper"))
OUT = Path(os.environ.get("OUT", "/tmp/out"))
DEVICE = os.environ.get("DEVICE", "cuda")
WORKERS = int(os.environ.get("WORKERS", "16"))
EPISODES = int(os.environ.get("EPISODES", "10000"))
BUDGET = {
    name: float(os.environ.get(name, default))
    for name, default in [("COLLECT_S", 270), ("VAE_S", 110), ("MDN_S", 110), ("CMA_S", 170)]
}
V_FRAMES = int(os.environ.get("V_FRAMES", "300000"))
SEEDS = [int(seed) for seed in os.environ.get("SEEDS", "0 1 2").split()]
GENERATIONS = int(os.environ.get("GENERATIONS", "200"))
MODEL = os.environ.get("MODEL")  # cmaes: a model directory instead of the run's V and M
TIMELINE = OUT / "timeline.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def dreamgym(*args: object) -> float:
    """Run one dreamgym command; its wall-clock seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dreamgym.cli", *map(str, args)], check=True)
    seconds = time.perf_counter() - start
    record(str(args[0]), seconds)
    return seconds


def record(stage: str, seconds: float, **extra: object) -> None:
    rows = json.loads(TIMELINE.read_text()) if TIMELINE.exists() else []
    rows.append({"stage": stage, "seconds": round(seconds, 1), **extra})
    TIMELINE.write_text(json.dumps(rows, indent=1))
    log(f"{stage}: {seconds:.1f} s {extra or ''}")


def set_setting(section: str, key: str, value: object) -> None:
    path = RUN / "run.json"
    data = json.loads(path.read_text())
    data[section][key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def episodes_on_disk() -> int:
    return len(list((RUN / "episodes").glob("episode_*.npz")))


def epochs_done(stage: str) -> int:
    metrics = RUN / stage / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.exists() else 0


def timed_epochs(stage: str, budget: float, *options: object) -> None:
    """Epoch 1, then epochs 2-3 to time an epoch as it runs (validation, pictures and checkpoint
    included, the start-up of the command once), then as many epochs as ``budget`` holds."""
    first = dreamgym(stage, RUN, "--epochs", 1, "--device", DEVICE, *options)
    two = dreamgym(stage, RUN, "--epochs", 3, "--resume", "--device", DEVICE, *options)
    epochs = 3 + int(max(0.0, budget - first - two) / (two / 2))
    if epochs > 3:
        dreamgym(stage, RUN, "--epochs", epochs, "--resume", "--device", DEVICE, *options)


def build() -> None:
    # collect: two equal chunks (the second times the workers once they run), then what the budget holds
    chunk = WORKERS * 12
    start = time.perf_counter()
    dreamgym("collect", "doom", "--preset", "paper", "--out", RUN, "--workers", WORKERS, "--episodes", chunk)
    rate = chunk / dreamgym("collect", "--out", RUN, "--workers", WORKERS, "--episodes", 2 * chunk)
    left = BUDGET["COLLECT_S"] - (time.perf_counter() - start)
    total = min(EPISODES, 2 * chunk + int(rate * max(0.0, left)))
    if total > 2 * chunk:
        dreamgym("collect", "--out", RUN, "--workers", WORKERS, "--episodes", total)
    frames = sum(p.stat().st_size for p in (RUN / "episodes").glob("*.npz"))
    record("collected", 0.0, episodes=episodes_on_disk(), bytes_on_disk=frames)

    set_setting("vae", "frames_per_epoch", V_FRAMES)
    timed_epochs("train-vae", BUDGET["VAE_S"])
    record("V epochs", 0.0, epochs=epochs_done("vae"), frames_per_epoch=V_FRAMES)
    dreamgym("encode", RUN, "--device", DEVICE)
    timed_epochs("train-mdnrnn", BUDGET["MDN_S"])
    record("M epochs", 0.0, epochs=epochs_done("mdnrnn"))
    export()


def export() -> None:
    model = RUN / "model"
    dreamgym("export", RUN, "--to", model, "--float16")
    with tarfile.open(OUT / "model.tgz", "w:gz") as archive:
        archive.add(model, arcname="model")
    with tarfile.open(OUT / "stages.tgz", "w:gz") as archive:  # the curves and pictures of V and M
        for stage in ("vae", "mdnrnn"):
            for path in sorted((RUN / stage).glob("*")):
                if path.suffix in (".csv", ".png", ".json"):
                    archive.add(path, arcname=f"{stage}/{path.name}")
    if (RUN / "timings.json").exists():
        (OUT / "timings.json").write_bytes((RUN / "timings.json").read_bytes())


def cmaes() -> None:
    """One process per seed, all on the one GPU, each stopping after CMA_S seconds."""
    start = time.perf_counter()
    children = [
        subprocess.Popen([sys.executable, __file__, "cmaes-seed", str(seed)], stdout=sys.stdout, stderr=sys.stderr)
        for seed in SEEDS
    ]
    codes = [child.wait() for child in children]
    record("cmaes", time.perf_counter() - start, seeds=SEEDS, exit_codes=codes)
    with tarfile.open(OUT / "controllers.tgz", "w:gz") as archive:
        for seed in SEEDS:
            directory = RUN / f"controller_s{seed}"
            for path in sorted(directory.glob("*")):
                if path.is_file():
                    archive.add(path, arcname=f"controller_s{seed}/{path.name}")


def cmaes_seed(seed: int) -> None:
    import dataclasses

    from dreamgym.checkpoint import load_world_model
    from dreamgym.cmaes import train_controller
    from dreamgym.config import RunConfig
    from dreamgym.pipeline import world_model_from_run

    if MODEL is None:
        config = RunConfig.load(RUN)
        model = world_model_from_run(RUN, starts=0).to(DEVICE)
    else:  # an exported model directory (its run's settings are in its metadata)
        model = load_world_model(MODEL, device=DEVICE)
        config = RunConfig.from_dict(model.metadata["run"])
    settings = dataclasses.replace(config.controller, seed=seed, generations=GENERATIONS)
    result = train_controller(
        model,
        RUN / f"controller_s{seed}",
        settings,
        resume=True,
        max_seconds=BUDGET["CMA_S"],
        dream=config.dream,
        report=lambda message: log(f"seed {seed}: {message}"),
    )
    log(f"seed {seed}: {result.generations} generations in {result.seconds:.0f} s, kept {result.best_score:.1f}")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    command = sys.argv[1]
    if command == "build":
        build()
    elif command == "export":
        export()
    elif command == "cmaes":
        cmaes()
    elif command == "cmaes-seed":
        cmaes_seed(int(sys.argv[2]))
    else:
        sys.exit(f"unknown command {command!r}: build, export or cmaes")
