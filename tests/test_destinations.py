"""A command writes only where it owns the place: an absent path, an empty directory, or a
dreamgym directory of the kind it writes. Anything else is refused before anything moves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import dreamgym_cli, small_world_model

from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.controller import LinearController
from dreamgym.demo import run_demo
from dreamgym.files import DestinationError
from dreamgym.games import lookup
from dreamgym.iterate import iterate
from dreamgym.online import online
from dreamgym.pipeline import export_stage, init_run, next_round

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_runs, tmp_path_factory) -> Path:
    """A finished tiny Doom run, copied so that a test that failed to refuse cannot spoil others."""
    target = tmp_path_factory.mktemp("dest") / "run"
    shutil.copytree(tiny_runs("doom"), target)
    return target


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_refuses_a_directory_of_other_files_and_keeps_them(run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = dreamgym_cli("export", str(run), "--to", str(mine), cwd=tmp_path)
    assert result.returncode == 1 and "is not empty and is not a dreamgym model directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert listing(mine) == {"thesis.tex": b"years of work"}
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging directory left beside it


@pytest.mark.parametrize("inside", ["", "episodes", "vae"])
def test_export_refuses_the_run_itself_and_its_parts(run, inside):
    before = listing(run)
    with pytest.raises(DestinationError, match="is not a dreamgym model directory"):
        export_stage(run, run / inside)
    assert listing(run) == before


def test_export_refuses_a_file(run, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(DestinationError, match="exists and is not a directory"):
        export_stage(run, path)
    assert path.read_text() == "keep me"


def test_export_replaces_a_model_directory_and_fills_an_empty_one(run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    export_stage(run, empty)
    load_world_model(empty)
    (empty / "vae.safetensors").write_bytes(b"stale")  # a model directory, damaged: still replaced
    export_stage(run, empty)
    load_world_model(empty)


def test_a_model_directory_holding_other_files_is_not_replaced(run, tmp_path):
    target = tmp_path / "model"
    export_stage(run, target)
    (target / "notes.md").write_text("mine")
    with pytest.raises(DestinationError):
        export_stage(run, target)
    assert (target / "notes.md").read_text() == "mine"


def test_a_controller_of_another_dream_is_not_saved(tmp_path):
    model = small_world_model("doom")
    doom = lookup("doom")
    model.controller = LinearController(
        doom, np.zeros((doom.controller_output_dim, 7), np.float32), np.zeros(doom.controller_output_dim, np.float32)
    )
    with pytest.raises(ValueError, match="was it trained in another dream"):
        save_world_model(model, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_demo_refuses_a_run_and_keeps_its_controller(run):
    before = listing(run)
    with pytest.raises(DestinationError, match="is not the output of an earlier demo"):
        run_demo("doom_take_cover_paper", run, generations=1)
    assert listing(run) == before


def test_commands_that_make_a_run_refuse_a_directory_of_other_files(run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(DestinationError):
        init_run(mine, "doom", "tiny")
    with pytest.raises(DestinationError):
        next_round(run, mine, episodes=1, explore=True)
    with pytest.raises(DestinationError):
        online(mine, "doom", world_model=str(run / "model"))
    with pytest.raises(DestinationError):
        iterate(mine, "doom", preset="tiny")
    assert listing(mine) == {"thesis.tex": b"years of work"}


def test_the_demo_writes_its_scores_and_may_be_run_again_over_its_own_output(tmp_path):
    import json

    from dreamgym.demo import is_demo_output

    out = tmp_path / "demo"
    result = run_demo("doom_take_cover_paper", out, generations=1, episodes=2, device="cpu")
    scores = json.loads((out / "demo.json").read_text())
    assert scores["generations"] == 1 and scores["real"]["episodes"] == scores["random"]["episodes"] == 2
    assert scores["real"]["mean"] == result.real.mean and result.gif.is_file()
    assert is_demo_output(out)  # so a second demo replaces it, and nothing else
    with pytest.raises(ValueError, match="generations must be a whole number >= 1"):
        run_demo("doom_take_cover_paper", out, generations=0)
