"""The `dreamgym` command: what it refuses before doing anything."""

from __future__ import annotations

import zipfile

import stable_baselines3

from dreamgym.cli import main


def test_an_sb3_zip_is_not_loaded_without_consent(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "policy.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("data", '{"policy_class": {"__module__": "stable_baselines3.ppo.policies"}}')
    loads = []
    monkeypatch.setattr(stable_baselines3.PPO, "load", classmethod(lambda cls, *a, **k: loads.append(a)))
    code = main(["evaluate", "LatentDoomTakeCover-v0", "--policy", str(archive), "--episodes", "1", "--workers", "1"])
    assert code == 1 and loads == []
    error = capsys.readouterr().err
    assert "runs code from the file" in error and "--trust-zip" in error
