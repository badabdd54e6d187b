"""What a user gets from `pip install`: the wheel carries the shipped models, loads them from any
directory, and `import dreamgym` stays light and leaves global state alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dreamgym.checkpoint import SHIPPED_MODELS
from dreamgym.games import GAMES

REPO = Path(__file__).resolve().parent.parent
WHEEL_LIMIT_MB = 55
"""Five model directories (~50 MB compressed); each online model holds its paper model's V (git
stores each V once, the wheel twice)."""
DEFINED_GAMES = sorted(name for name, game in GAMES.items() if game.spec is None)
"""Doom and CarRacing: their shipped models carry a controller (a dream of an env id need not)."""


README_WHEEL_COMMAND = "pip wheel --no-deps . -w dist"
"""How the README builds a wheel: dreamgym's alone (without --no-deps pip builds every
dependency's too, a multi-GB CUDA torch among them)."""


def copy_source(source: Path) -> Path:
    """What a wheel is built from, copied to ``source`` (the checkout itself is left untouched)."""
    source.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "dreamgym", source / "dreamgym", ignore=shutil.ignore_patterns("__pycache__", "pretrained"))
    shutil.copytree(REPO / "pretrained", source / "pretrained")
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the repository."""
    source = copy_source(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (path,) = out.glob("dreamgym-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_model_weights_and_not_their_pictures(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for model, game in SHIPPED_MODELS.items():
        files = ["config.json", "vae.safetensors", "mdnrnn.safetensors", "initial_latents.safetensors", "MODEL_CARD.md"]
        for file in files:
            assert f"dreamgym/pretrained/{model}/{file}" in names
        if game in DEFINED_GAMES:  # with a controller or an agent trained in it
            agents = {f"dreamgym/pretrained/{model}/{file}" for file in ("controller.safetensors", "agent.safetensors")}
            assert agents & set(names), model
    assert not [name for name in names if "/pictures/" in name or name.endswith((".png", ".gif"))]
    assert any(name.endswith("licenses/LICENSE") for name in names)
    assert wheel.stat().st_size < WHEEL_LIMIT_MB * 1e6


@pytest.mark.slow
def test_the_readmes_wheel_command_builds_dreamgyms_wheel_alone(tmp_path):
    assert README_WHEEL_COMMAND in (REPO / "README.md").read_text()
    source = copy_source(tmp_path / "source")
    result = subprocess.run(
        [sys.executable, "-m", *README_WHEEL_COMMAND.split()],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = (source / "dist").iterdir()  # no wheel of a dependency beside it
    assert built.name.startswith("dreamgym-") and built.suffix == ".whl"
    assert built.stat().st_size < WHEEL_LIMIT_MB * 1e6


def _shipped_games() -> set[str]:
    """Every game with a dream the wheel registers: the defined games and the shipped dreams of env ids."""
    return set(DEFINED_GAMES) | set(SHIPPED_MODELS.values())


@pytest.mark.slow
def test_the_installed_wheel_loads_the_shipped_models_from_an_unrelated_directory(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import gymnasium as gym, dreamgym, dreamgym.checkpoint as c\n"
        f"assert dreamgym.__file__.startswith({str(site)!r}), dreamgym.__file__\n"
        f"assert c.pretrained_root() == c.Path({str(site / 'dreamgym' / 'pretrained')!r}), c.pretrained_root()\n"
        f"assert sorted(dreamgym.ENV_IDS) == {sorted(_shipped_games())!r}, dreamgym.ENV_IDS\n"
        "for game, (env_id, _) in dreamgym.ENV_IDS.items():\n"
        "    env = gym.make(env_id, device='cpu')\n"
        "    env.reset(seed=0)\n"
        "    env.step(env.action_space.sample())\n"
        "from dreamgym.evaluate import load_policy\n"
        "for name, game in c.SHIPPED_MODELS.items():  # a defined game's model plays by name: its controller or agent\n"
        f"    assert game not in {DEFINED_GAMES!r} or load_policy(name)[1] == str(c.pretrained_root() / name)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "DREAMGYM_PRETRAINED"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert list(elsewhere.iterdir()) == []


def test_dreamgym_pretrained_overrides_where_shipped_models_are_found(tmp_path, monkeypatch):
    from dreamgym.checkpoint import pretrained_root

    monkeypatch.setenv("DREAMGYM_PRETRAINED", str(tmp_path))
    assert pretrained_root() == tmp_path


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_dreamgym_registers_the_ids_without_importing_torch_or_matplotlib():
    loaded = _python(
        "import sys, gymnasium as gym, dreamgym\n"
        "assert all(i in gym.registry for i in ('DreamCarRacing-v0', 'DreamDoomTakeCover-v0', "
        "'LatentCarRacing-v0', 'LatentDoomTakeCover-v0'))\n"
        "heavy = {'torch', 'matplotlib', 'stable_baselines3', 'vizdoom'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    assert loaded == "[]"
    assert (
        _python("import dreamgym; print(dreamgym.DreamEnv.__name__, dreamgym.WorldModel.__name__)")
        == "DreamEnv WorldModel"
    )


def test_drawing_the_stage_pictures_leaves_matplotlibs_backend_alone(tmp_path):
    backend = _python(
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        "from dreamgym.plots import histogram, plot_curves\n"
        f"histogram([1.0, 2.0, 3.0], __import__('pathlib').Path({str(tmp_path / 'h.png')!r}), 'h')\n"
        f"plot_curves([{{'epoch': 1, 'loss': 2.0}}], ['loss'], "
        f"__import__('pathlib').Path({str(tmp_path / 'c.png')!r}), 'c')\n"
        "print(matplotlib.get_backend())"
    )
    assert backend == "svg"
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
