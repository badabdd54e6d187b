"""The `dreamgym` command: what it refuses before doing anything."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import pytest
import stable_baselines3

from dreamgym.cli import main
from dreamgym.config import preset


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


def test_an_sb3_algorithm_is_named_in_any_case_and_an_unknown_one_is_refused(tmp_path, monkeypatch):
    from dreamgym.evaluate import load_policy

    archive = tmp_path / "policy.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("data", "{}")
    monkeypatch.setattr(stable_baselines3.DQN, "load", classmethod(lambda cls, *a, **k: "a DQN"))
    assert load_policy(archive, "dqn") == ("a DQN", None) and load_policy(archive, "DQN") == ("a DQN", None)
    with pytest.raises(ValueError, match="unknown SB3 algorithm 'ppo2'; expected one of PPO, DQN"):
        load_policy(archive, "ppo2")


@pytest.mark.parametrize(
    "args",
    [
        ["train-controller", "RUN", "--temperature", "-1"],
        ["train-controller", "RUN", "--temperature", "nan"],
        ["train-controller", "RUN", "--population", "1"],  # CMA-ES needs 2
        ["train-controller", "RUN", "--sigma0", "0"],
        ["train-controller", "RUN", "--temperature", "1e300"],
        ["train-mdnrnn", "RUN", "--dropout", "0.95"],
        ["train-vae", "RUN", "--z-dim", "100000"],
        ["collect", "doom", "--out", "RUN", "--noise", "-0.1"],
        ["train-vae", "RUN", "--epochs", "-3"],
        ["train-mdnrnn", "RUN", "--epochs", "0"],
        ["collect", "doom", "--out", "RUN", "--max-steps", "-5"],
        ["collect", "doom", "--out", "RUN", "--workers", "0"],
        ["collect", "doom", "--out", "RUN", "--seed", "-1"],
        ["evaluate", "LatentDoomTakeCover-v0", "--policy", "random", "--episodes", "0"],
        ["sweep-temperature", "RUN", "--temperatures", "1.0", "0"],
    ],
)
def test_bad_command_line_values_are_refused_before_anything_is_written(args, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    preset("doom", "tiny").save(run)
    before = (run / "run.json").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([str(run) if arg == "RUN" else arg for arg in args])
    assert exit_info.value.code == 2 and "expected" in capsys.readouterr().err
    assert (run / "run.json").read_text() == before


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda data: data["vae"].update(epochs=0), "run.json vae.epochs must be an integer >= 1"),
        (lambda data: data["vae"].update(kl_tolerance=float("nan")), "kl_tolerance must be finite"),
        (lambda data: data["vae"].update(z_dim=100_000), "vae.z_dim must be an integer in [1, 4096]"),
        (lambda data: data.update(game="pong"), "unknown game 'pong'"),
        (lambda data: data.pop("game"), "missing ['game']"),
        (lambda data: data["mdnrnn"].update(hidden_dim="512"), "hidden_dim must be an integer"),
        (lambda data: data.update(controller=[1, 2]), "run.json controller must be a mapping"),
    ],
)
def test_a_bad_run_json_is_refused_by_name_before_force_deletes_anything(edit, words, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "vae").mkdir(parents=True)
    data = preset("doom", "tiny").to_dict()
    edit(data)
    (run / "run.json").write_text(json.dumps(data))
    checkpoint = run / "vae" / "checkpoint.pt"
    checkpoint.write_bytes(b"the only copy of a trained V")
    assert main(["train-vae", str(run), "--force"]) == 1
    error = capsys.readouterr().err
    assert "run.json" in error and words in error
    assert checkpoint.read_bytes() == b"the only copy of a trained V"


def test_progress_bars_follow_the_protocol_and_close_when_a_task_is_done():
    from dreamgym.cli import ProgressBars

    with ProgressBars() as bars:
        bars("encode", 0, 3)
        bars("encode", 2, 3)
        assert bars.bars["encode"].n == 2
        bars("encode", 3, 3)
        assert "encode" not in bars.bars
        bars("V epoch 1/2", 5, 0)  # total unknown
        assert bars.bars["V epoch 1/2"].total is None
    assert bars.bars == {}


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    import dreamgym

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"dreamgym {dreamgym.__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "dreamgym", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == f"dreamgym {dreamgym.__version__}"


def test_models_lists_the_shipped_models_with_their_ids_and_scores_and_shows_a_card(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    for name, ids in (
        ("doom_take_cover", "DreamDoomTakeCover-v0, LatentDoomTakeCover-v0"),
        ("doom_take_cover_paper", "DreamDoomTakeCover-v0, LatentDoomTakeCover-v0"),  # the paper's dream
        ("car_racing", "DreamCarRacing-v0, LatentCarRacing-v0"),
        ("car_racing_paper", "DreamCarRacing-v0, LatentCarRacing-v0"),  # a second model of a defined game
        ("boxing", "DreamBoxing-v0, LatentBoxing-v0"),
    ):
        assert f"{name}: " in listing and ids in listing
    assert "735.4 ± 357.9 over 100 episodes" in listing  # from the paper Doom card's scores
    assert main(["models", "doom_take_cover"]) == 0
    assert capsys.readouterr().out.startswith("# dreamgym world model: doom")
    assert main(["models", "no_such_model"]) == 1
    assert "unknown world_model 'no_such_model'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs,words",
    [("{bad json", "argument --env-kwargs: not valid JSON"), ("[1]", "argument --env-kwargs: expected a JSON object")],
)
def test_env_kwargs_that_are_not_a_json_object_name_the_flag(kwargs, words, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "LatentDoomTakeCover-v0", "--policy", "random", "--env-kwargs", kwargs])
    assert words in capsys.readouterr().err


def test_an_unknown_env_id_is_one_line_that_lists_the_ids(capsys):
    assert main(["evaluate", "NoSuchEnv-v0", "--policy", "random", "--episodes", "1", "--workers", "1"]) == 1
    error = capsys.readouterr().err
    assert "unknown env id 'NoSuchEnv-v0'" in error and "DreamDoomTakeCover-v0" in error and "Traceback" not in error


def test_an_env_that_refuses_its_keywords_is_one_line_naming_the_episode(capsys):
    code = main(
        [
            "evaluate",
            "LatentDoomTakeCover-v0",
            "--policy",
            "random",
            "--episodes",
            "1",
            "--workers",
            "1",
            "--env-kwargs",
            '{"bogus": 1}',
        ]
    )
    assert code == 1
    assert "LatentDoomTakeCover-v0, episode 0 (seed 10000): TypeError" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command,settings,skip,stored",
    [
        ("iterate", "IterateConfig", ("dream",), False),
        ("online", "OnlineConfig", (), False),
        ("collect", "CollectConfig", ("first_episode",), True),
        ("train-vae", "VAETrainConfig", (), True),
        ("train-mdnrnn", "MDNTrainConfig", (), True),
        ("train-controller", "ControllerTrainConfig", (), True),
    ],
)
def test_a_command_has_one_option_per_setting_with_its_docstring_and_default(command, settings, skip, stored):
    """The options are made from the settings dataclasses: one per field, its help the field's
    docstring, its default the field's (a loop) or what run.json holds (a stage of a run)."""
    import argparse

    from dreamgym import config
    from dreamgym.cli import build_parser
    from dreamgym.commands import option_name
    from dreamgym.config import field_docs

    cls = getattr(config, settings)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    options = {action.dest: action for action in sub._actions}
    docs = field_docs(cls)
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            assert spec.name not in options or spec.name == "dream", spec.name
            continue
        action = options[spec.name]
        assert option_name(spec.name) in action.option_strings and action.default is None, spec.name
        assert " ".join(docs[spec.name].replace("``", "").split()) in " ".join(action.help.split()), spec.name
        if stored:
            assert "(default: " + ("the preset's" if command == "collect" else "run.json's") in action.help
        elif spec.default is not dataclasses.MISSING:
            shown = (
                f"{spec.default:,}"
                if isinstance(spec.default, int) and not isinstance(spec.default, bool)
                else spec.default
            )
            assert f"(default: {shown})" in action.help, spec.name
        assert action.default in (None, []), f"{spec.name}: the stored or the dataclass's default must win"


def test_every_preset_the_cli_offers_works_for_every_game_it_names():
    from dreamgym.cli import game_choices, preset_choices
    from dreamgym.games import lookup

    assert {"doom", "carracing", "boxing"} <= set(game_choices())
    assert preset_choices() == ["cpu", "paper", "small", "tiny"]
    for name in game_choices():
        game = lookup(name)
        for preset_name in preset_choices():
            config = preset(game, preset_name)
            assert (config.game, config.preset) == (game.name, preset_name)


@pytest.mark.parametrize("command, settings", [("online", "OnlineConfig"), ("iterate", "IterateConfig")])
def test_the_options_a_card_writes_parse_back_to_the_same_settings(command, settings):
    """``commands.settings_arguments`` is the inverse of the options the CLI makes: every field
    set away from its default (switches included) parses back to that value."""
    import shlex

    from dreamgym import config
    from dreamgym.cli import build_parser
    from dreamgym.commands import settings_arguments

    cls = getattr(config, settings)
    default = cls()
    changed = {}
    for spec in dataclasses.fields(cls):
        value = getattr(default, spec.name)
        if isinstance(value, bool):
            changed[spec.name] = not value
        elif isinstance(value, int):
            changed[spec.name] = value + 1
        elif isinstance(value, float):
            changed[spec.name] = value / 2
    settings_value = dataclasses.replace(default, **changed)
    arguments = shlex.split(" ".join(settings_arguments(settings_value)))
    parsed = vars(build_parser().parse_args([command, "doom", "--out", "x", *arguments]))
    for name, value in changed.items():
        assert parsed[name] == value, (name, parsed[name], value)
