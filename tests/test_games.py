"""Per-game facts that touch the real games."""

from __future__ import annotations

import os

from dreamgym.games import lookup, vizdoom_home


def test_a_real_doom_game_writes_nothing_in_the_current_directory(tmp_path, monkeypatch):
    """VizDoom's `_vizdoom.ini` and `_vizdoom/` go to dreamgym's cache directory, and the
    process's working directory is the same before, during and after the game."""
    cwd, cache = tmp_path / "cwd", tmp_path / "cache"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    env = lookup("doom").make_real_env()
    try:
        env.reset(seed=0)  # the engine starts here
        assert os.getcwd() == str(cwd)
        for _ in range(20):
            env.step(1)
    finally:
        env.close()  # the engine writes _vizdoom.ini when it exits
    assert os.getcwd() == str(cwd)
    assert sorted(os.listdir(cwd)) == []
    home = vizdoom_home()
    assert home == cache / "dreamgym" / "vizdoom"
    assert (home / "_vizdoom").is_dir() and (home / "_vizdoom.ini").is_file()
