"""Any Gymnasium game with RGB frames: a tiny pixel game defined here (not a real game) goes
through the tiny pipeline, export, registration, both env checkers and an SB3 round trip,
with nothing outside this file knowing it.

The game is imported by its module's name (``test_generic_game:PixelChase-v0``), the way a
user names a package of their own; spawned workers import it the same way."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import dreamgym_cli
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

SIZE, BLOCK, STEP = 48, 8, 4


class PixelChase(gym.Env):
    """A red block on a dark field moves left or right (Discrete(3): stay, left, right); each
    step it spends in the green strip at the right edge pays 1. 40 steps an episode."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.render_mode = render_mode
        self.x = 0

    def frame(self) -> np.ndarray:
        image = np.full((SIZE, SIZE, 3), 20, np.uint8)
        image[:, SIZE - BLOCK :] = (0, 160, 0)
        image[SIZE // 2 - BLOCK // 2 : SIZE // 2 + BLOCK // 2, self.x : self.x + BLOCK] = (220, 30, 30)
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x = int(self.np_random.integers(0, SIZE // 2))
        return self.frame(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.x = int(np.clip(self.x + (0, -STEP, STEP)[int(action)], 0, SIZE - BLOCK))
        return self.frame(), float(self.x >= SIZE - BLOCK - STEP), False, False, {}

    def render(self) -> np.ndarray:
        return self.frame()


class PixelChaseDict(PixelChase):
    """The same game observed as a Dict: the screen and the block's column."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.observation_space = gym.spaces.Dict(
            {"screen": self.observation_space, "x": gym.spaces.Box(0, SIZE, (1,), np.float32)}
        )

    def observe(self, frame: np.ndarray) -> dict:
        return {"screen": frame, "x": np.array([self.x], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        frame, info = super().reset(seed=seed, options=options)
        return self.observe(frame), info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        frame, *rest = super().step(action)
        return (self.observe(frame), *rest)


class PixelChaseFromOne(PixelChase):
    """The same game with its actions numbered 1, 2, 3: not something dreamgym plays."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.action_space = gym.spaces.Discrete(3, start=1)


class PixelSteer(PixelChase):
    """The same game steered with a speed in [-2, 2] (a 1-D float Box)."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.x = int(np.clip(self.x + round(2 * float(action[0])), 0, SIZE - BLOCK))
        return self.frame(), float(self.x >= SIZE - BLOCK - STEP), False, False, {}


class PixelChaseNoRenderMode(PixelChase):
    """The same game from an author who left ``render_mode`` out of the constructor."""

    def __init__(self) -> None:
        super().__init__()


class PixelChaseBroken(PixelChase):
    """The same game with a bug: step 5 raises."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 5:
            raise KeyError("score")
        return super().step(action)


class PixelChaseBrokenReset(PixelChase):
    """The same game with a bug in reset."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        raise RuntimeError("no level file")


def pixel_chase_rgb(**kwargs) -> PixelChase:
    """The usual pixel factory: it fixes its own render mode."""
    return PixelChase(render_mode="rgb_array", **kwargs)


if "PixelChase-v0" not in gym.registry:
    gym.register("PixelChase-v0", entry_point=PixelChase, max_episode_steps=40)
    gym.register("PixelChaseDict-v0", entry_point=PixelChaseDict, max_episode_steps=40)
    gym.register("PixelChaseFromOne-v0", entry_point=PixelChaseFromOne)
    gym.register("PixelSteer-v0", entry_point=PixelSteer, max_episode_steps=40)
    gym.register("PixelChaseRGB-v0", entry_point=pixel_chase_rgb, max_episode_steps=40)
    gym.register("PixelChaseNoRenderMode-v0", entry_point=PixelChaseNoRenderMode, max_episode_steps=40)
    gym.register("PixelChaseBroken-v0", entry_point=PixelChaseBroken, max_episode_steps=40)
    gym.register("PixelChaseBrokenReset-v0", entry_point=PixelChaseBrokenReset, max_episode_steps=40)

ENV_ID = "test_generic_game:PixelChase-v0"


@pytest.fixture(scope="module")
def user_package() -> Iterator[None]:
    """Commands run as a user's would: they find this module on the path, and trust it by name."""
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "DREAMGYM_ENV_PACKAGES")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), saved["PYTHONPATH"]]))
    os.environ["DREAMGYM_ENV_PACKAGES"] = "test_generic_game"
    yield
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory, user_package) -> Path:
    """`dreamgym pipeline --env test_generic_game:PixelChase-v0 --preset tiny`, in a new process."""
    root = tmp_path_factory.mktemp("pixel")
    result = dreamgym_cli(
        "pipeline",
        "--env",
        ENV_ID,
        "--env-setting",
        "max_episode_steps=40",
        "--out",
        str(root / "run"),
        "--preset",
        "tiny",
        "--device",
        "cpu",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("collect", "train-vae", "encode", "train-mdnrnn", "train-controller", "export", "evaluate"):
        assert f"[{stage}]" in result.stdout
    return root / "run"


def test_a_game_is_read_off_its_env_and_bad_envs_are_refused():
    from dreamgym.games import game_from_env

    game = game_from_env(ENV_ID, max_episode_steps=40)
    assert (game.name, game.dream_env_id, game.latent_env_id) == (
        "pixelchase",
        "DreamPixelChase-v0",
        "LatentPixelChase-v0",
    )
    assert game.discrete and game.action_dim == 3 and game.frame_key is None and game.render_fps == 15
    assert game.preprocess(PixelChase().reset(seed=0)[0]).shape == (64, 64, 3)
    assert game.spec == {"env_id": ENV_ID, "max_episode_steps": 40}
    with pytest.raises(ValueError, match="needs RGB frames"):
        game_from_env("CartPole-v1")
    with pytest.raises(ValueError, match="unknown fields"):
        game_from_env(ENV_ID, colour="red")
    with pytest.raises(ValueError, match="z_dim must be an integer in"):
        game_from_env(ENV_ID, z_dim=10**9)
    assert game_from_env(ENV_ID, name="chase-default").spec["max_episode_steps"] == 40  # the env's cap, recorded
    with pytest.raises(ValueError, match="alive_reward must be finite"):
        game_from_env(ENV_ID, alive_reward=float("nan"))
    with pytest.raises(ValueError, match=r"bottom <= 48 \(the height"):
        game_from_env(ENV_ID, crop_rows=[0, 60])
    with pytest.raises(ValueError, match="Discrete actions numbered from 0 or a 1-D float Box"):
        game_from_env("test_generic_game:PixelChaseFromOne-v0")


@pytest.mark.parametrize("env_id", ["PixelChaseRGB-v0", "PixelChaseNoRenderMode-v0"])
def test_an_env_is_made_as_its_author_wrote_it_whatever_it_does_with_render_mode(env_id):
    from dreamgym.collect import record_episode
    from dreamgym.config import CollectConfig
    from dreamgym.games import game_from_env

    summary, payload = record_episode(game_from_env(f"test_generic_game:{env_id}"), 0, CollectConfig())
    assert summary.steps == 40 and payload


@pytest.mark.parametrize(
    "env_id, error",
    [("PixelChaseBroken-v0", "KeyError: 'score'"), ("PixelChaseBrokenReset-v0", "RuntimeError: no level file")],
)
def test_an_env_that_fails_in_step_or_reset_is_one_error_naming_it_and_the_episode(env_id, error):
    from dreamgym.collect import record_episode
    from dreamgym.config import CollectConfig
    from dreamgym.games import game_from_env
    from dreamgym.training import EpisodeError

    game = game_from_env(f"test_generic_game:{env_id}")
    with pytest.raises(EpisodeError, match=rf"{env_id}, episode 3 \(seed 10\): {error}"):
        record_episode(game, 3, CollectConfig(seed=7))


def test_a_game_with_box_actions_explores_and_is_steered_within_its_bounds():
    import torch

    from dreamgym.games import game_from_env

    game = game_from_env("test_generic_game:PixelSteer-v0")
    assert not game.discrete and game.action_dim == game.controller_output_dim == 1
    env = game.make_real_env()
    explorer = game.explorer(np.random.default_rng(0), env)
    observation, _ = env.reset(seed=0)
    actions = np.array([explorer(observation) for _ in range(200)])
    assert actions.shape == (200, 1) and actions.dtype == np.float32 and np.all(np.abs(actions) <= 2)
    assert len(np.unique(actions)) > 10 and (np.diff(actions[:, 0]) == 0).mean() > 0.5  # held 1-10 steps
    assert np.array_equal(game.encode_actions(actions), actions)
    mapped = game.controller_actions(torch.tensor([[-1.0], [0.0], [1.0]]))
    assert torch.allclose(mapped, torch.tensor([[-2.0], [0.0], [2.0]]))  # tanh outputs scaled to the bounds
    env.close()


def test_a_file_cannot_make_dreamgym_import_a_package_it_names(monkeypatch):
    from dreamgym.games import lookup

    monkeypatch.delenv("DREAMGYM_ENV_PACKAGES", raising=False)
    with pytest.raises(ValueError, match="add it to DREAMGYM_ENV_PACKAGES, or import .* in your own code first"):
        lookup({"env_id": "a_package_nobody_imported:Game-v0"})
    monkeypatch.setenv("DREAMGYM_ENV_PACKAGES", "a_package_nobody_imported")  # the user's word: imported, if it exists
    with pytest.raises(ValueError, match="needs the package 'a_package_nobody_imported'"):
        lookup({"env_id": "a_package_nobody_imported:Game-v0"})


def test_the_pixel_game_goes_through_the_pipeline_and_becomes_registered_ids(pixel_run, tmp_path):
    import dreamgym
    from dreamgym.agents import train_sb3
    from dreamgym.evaluate import evaluate
    from dreamgym.training import StageError

    run_json = json.loads((pixel_run / "run.json").read_text())
    assert run_json["game"] == "pixelchase" and run_json["env"] == {"env_id": ENV_ID, "max_episode_steps": 40}
    assert json.loads((pixel_run / "model" / "config.json").read_text())["env"] == run_json["env"]
    card = (pixel_run / "model" / "MODEL_CARD.md").read_text()
    assert f"`dreamgym pipeline --env {ENV_ID} --env-setting max_episode_steps=40 --preset tiny`" in card

    exported = tmp_path / "half"  # lean, as a shipped dream of an env id: float16, no start episodes
    assert (
        dreamgym_cli(
            "export", str(pixel_run), "--to", str(exported), "--float16", "--start-episodes", "0", cwd=tmp_path
        ).returncode
        == 0
    )
    assert (pixel_run / "model" / "start_episodes.safetensors").is_file()
    assert not (exported / "start_episodes.safetensors").exists()
    dream_id, latent_id = dreamgym.register(pixel_run / "model")
    assert (dream_id, latent_id) == ("DreamPixelChase-v0", "LatentPixelChase-v0")
    assert dreamgym.register(pixel_run / "model") == (dream_id, latent_id)  # again: the same ids
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        for env_id in (dream_id, latent_id):
            for kwargs in ({}, {"world_model": str(exported)}):
                gymnasium_check_env(gym.make(env_id, **kwargs).unwrapped, skip_render_check=True)
                sb3_check_env(gym.make(env_id, **kwargs), warn=False)
    with pytest.raises(ValueError, match="a model directory that stores real episodes"):
        gym.make(dream_id, world_model=str(exported), starts="data")
    with pytest.raises(ValueError, match="pixelchase has no shipped model: pass world_model="):
        gym.make(dream_id, world_model=None)
    dream = gym.make(dream_id, temperature=1.3)
    assert gym.make(dream_id).spec.max_episode_steps == 40 and dream.unwrapped.temperature == 1.3
    envs = gym.make_vec(dream_id, num_envs=4)  # the vector entry point: one M call steps all four
    envs.reset(seed=0)
    assert envs.step(np.array([0, 1, 2, 1]))[0].shape[0] == 4

    agent, _ = train_sb3(
        "ppo", pixel_run / "model", 256, tmp_path / "ppo.zip", seed=0
    )  # no recipe of its own: the any-game one
    with pytest.raises(StageError, match="trust_zip=True"):  # loading a .zip runs code from it: consent first
        evaluate(latent_id, tmp_path / "ppo.zip", episodes=4, seed=60_000, workers=2)
    result = evaluate(latent_id, tmp_path / "ppo.zip", episodes=4, seed=60_000, workers=2, trust_zip=True)  # spawned
    assert len(result.returns) == 4 and all(length == 40 for length in result.lengths)


def test_dict_observations_give_their_frame_and_a_wrong_key_is_named():
    from dreamgym.games import game_from_env

    game = game_from_env("test_generic_game:PixelChaseDict-v0")
    assert game.frame_key == "screen" and game.name == "pixelchasedict"
    observation, _ = game.make_real_env().reset(seed=0)
    assert game.preprocess(observation).shape == (64, 64, 3)
    with pytest.raises(ValueError, match=r"frame_key 'camera': .* under \['screen'\]"):
        game_from_env("test_generic_game:PixelChaseDict-v0", frame_key="camera")
    with pytest.raises(ValueError, match="picks an image out of Dict observations"):
        game_from_env(ENV_ID, frame_key="screen")


def test_a_shipped_dream_of_another_game_is_registered_on_import(pixel_run, tmp_path):
    """A model directory made from an env id, shipped in pretrained/ (here: $DREAMGYM_PRETRAINED),
    is registered by `import dreamgym` like the two games dreamgym defines, and passes the checker."""
    import shutil
    import subprocess
    import sys

    shipped = tmp_path / "pretrained" / "pixel_chase"
    shutil.copytree(pixel_run / "model", shipped)
    shutil.copytree(pixel_run / "model", tmp_path / "pretrained" / "pixel_chase_2")  # a second of the same game
    script = (
        "import warnings, gymnasium as gym, dreamgym\n"
        "from gymnasium.utils.env_checker import check_env\n"
        "assert dreamgym.ENV_IDS['pixelchase'] == ('DreamPixelChase-v0', 'LatentPixelChase-v0'), dreamgym.ENV_IDS\n"
        "assert gym.spec('DreamPixelChase-v0').max_episode_steps == 40\n"
        "assert gym.spec('DreamPixelChase-v0').kwargs['world_model'] == 'pixel_chase'  # the first one wins\n"
        f"assert dreamgym.register({str(shipped / '..' / 'pixel_chase_2')!r}) == dreamgym.ENV_IDS['pixelchase']\n"
        "assert gym.spec('DreamPixelChase-v0').kwargs['world_model'].endswith('pixel_chase_2')  # re-pointed\n"
        "warnings.filterwarnings('ignore', message='.*(infinity|symmetric and normalized).*')\n"
        "for env_id in dreamgym.ENV_IDS['pixelchase']:\n"
        "    check_env(gym.make(env_id).unwrapped, skip_render_check=True)\n"
        "from dreamgym.checkpoint import SHIPPED_MODELS\n"
        "print(SHIPPED_MODELS['pixel_chase'])\n"
    )
    env = {**os.environ, "DREAMGYM_PRETRAINED": str(tmp_path / "pretrained")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "pixelchase", result.stderr[-3000:]


def test_iterate_trains_ppo_in_the_dream_of_a_game_made_from_an_env_id(pixel_run, tmp_path):
    """`dreamgym iterate --env ... --agent ppo` in a new process, which has registered no id of
    the game: PPO in round 0's dream, a round of the agent's own episodes, its table."""
    import shutil

    start = tmp_path / "start"
    shutil.copytree(pixel_run, start)
    result = dreamgym_cli(
        "iterate",
        "--env",
        ENV_ID,
        "--env-setting",
        "max_episode_steps=40",
        "--out",
        str(tmp_path / "iter"),
        "--start",
        str(start),
        "--agent",
        "ppo",
        "--trust-zip",
        "--rounds",
        "2",
        "--episodes",
        "4",
        "--agent-steps",
        "256",
        "--eval-episodes",
        "2",
        "--refine-epochs",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = json.loads((tmp_path / "iter" / "rounds.json").read_text())
    assert [row["round"] for row in rounds] == [0, 1]
    assert (tmp_path / "iter" / "round_1" / "agent.zip").exists()


USER_MODULE = '''
import gymnasium as gym
import numpy as np


class Blink(gym.Env):
    """A screen that is bright on even steps; action 1 on a bright screen pays 1."""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode, self.t = render_mode, 0

    def frame(self):
        return np.full((32, 32, 3), 200 if self.t % 2 == 0 else 30, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame(), {}

    def step(self, action):
        reward = float(action == 1 and self.t % 2 == 0)
        self.t += 1
        return self.frame(), reward, False, False, {}

    def render(self):
        return self.frame()


gym.register("Blink-v0", entry_point=lambda **kwargs: Blink(render_mode="rgb_array", **kwargs), max_episode_steps=30)
'''


def test_a_users_module_in_the_current_directory_needs_no_environment_variable(tmp_path, monkeypatch):
    """mygame.py beside the user: pipeline names it, and export, evaluate and dreamgym.register
    on what it built work from elsewhere with nothing set; a model alone cannot name a module."""
    import subprocess
    import sys

    from conftest import run_command

    for key in ("PYTHONPATH", "DREAMGYM_ENV_PACKAGES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "mygame.py").write_text(USER_MODULE)
    dreamgym = str(Path(sys.executable).parent / "dreamgym")  # the console script: no current directory on its path

    def ok(result: subprocess.CompletedProcess) -> str:
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        return result.stdout

    ok(
        run_command(
            [
                dreamgym,
                "pipeline",
                "--env",
                "mygame:Blink-v0",
                "--preset",
                "tiny",
                "--out",
                "runs/blink",
                "--device",
                "cpu",
            ],
            cwd=project,
        )
    )
    model = project / "runs" / "blink" / "model"
    ok(run_command([dreamgym, "export", str(project / "runs" / "blink"), "--to", "blink_model"], cwd=elsewhere))
    out = ok(
        run_command(
            [
                dreamgym,
                "evaluate",
                "LatentBlink-v0",
                "--policy",
                "random",
                "--world-model",
                str(model),
                "--episodes",
                "2",
                "--workers",
                "2",
            ],
            cwd=elsewhere,
        )
    )
    assert "LatentBlink-v0:" in out
    ok(
        run_command(
            [
                sys.executable,
                "-c",
                f"import dreamgym, gymnasium as gym; ids = dreamgym.register({str(model)!r}); "
                "env = gym.make(ids[0]); env.reset(seed=0); print(env.step(1)[1])",
            ],
            cwd=elsewhere,
        )
    )

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "someone_else"))  # a user who never named mygame
    refused = run_command(
        [
            dreamgym,
            "evaluate",
            "LatentBlink-v0",
            "--policy",
            "random",
            "--world-model",
            str(elsewhere / "blink_model"),
            "--episodes",
            "1",
        ],
        cwd=project,
    )
    assert refused.returncode == 1 and "a file asks dreamgym to import 'mygame'" in refused.stderr


def test_the_shipped_boxing_dream_names_its_game_like_a_built_in_one(tmp_path):
    from conftest import dreamgym_cli

    from dreamgym.games import lookup

    game = lookup("boxing")
    assert (game.real_env_id, game.dream_env_id, sorted(game.presets)) == (
        "ALE/Boxing-v5",
        "DreamBoxing-v0",
        ["cpu", "paper", "small", "tiny"],
    )
    result = dreamgym_cli(
        "collect",
        "boxing",
        "--out",
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--episodes",
        "1",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "run" / "episodes").glob("*.npz"))) == 1
