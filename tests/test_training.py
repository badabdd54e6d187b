from __future__ import annotations

import pytest
import torch

from dreamgym.training import StageError, load_trained, train_epochs


def _fit(stage_dir, epochs, validation, *, resume=False):
    """Epoch e sets the weight to e + 1 and reports validation[e]."""
    model = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def run_epoch(epoch):
        with torch.no_grad():
            model.weight.fill_(epoch + 1.0)
        return {"loss": 1.0, "validation_loss": validation[epoch]}

    result = train_epochs(stage_dir, model, optimizer, epochs, run_epoch, {}, resume=resume, select="validation_loss")
    return model, result


def test_the_best_validation_epoch_is_the_one_loaded(tmp_path):
    model, result = _fit(tmp_path, 4, [3.0, 1.0, 2.0, 1.5])
    assert result.kept_epoch == 2 and model.weight.item() == 2.0
    loaded = torch.nn.Linear(1, 1, bias=False)
    checkpoint = load_trained(tmp_path, loaded)
    assert loaded.weight.item() == 2.0
    assert checkpoint["model"]["weight"].item() == 4.0  # the last epoch stays, for --resume


def test_resuming_keeps_the_best_epoch_found_before_the_interruption(tmp_path):
    validation = [3.0, 1.0, 2.0, 1.5]
    _fit(tmp_path, 4, validation)
    with pytest.raises(StageError, match="--resume"):
        _fit(tmp_path, 6, validation + [2.5, 0.5])
    model, result = _fit(tmp_path, 6, validation + [2.5, 0.5], resume=True)
    assert result.trained_epochs == 2 and result.kept_epoch == 6 and model.weight.item() == 6.0
    _, again = _fit(tmp_path, 5, validation + [2.5])
    assert again.trained_epochs == 0 and again.kept_epoch == 6


def test_a_damaged_last_checkpoint_costs_one_epoch_not_all(tmp_path):
    from dreamgym.rundir import CHECKPOINT, PREVIOUS_CHECKPOINT

    _fit(tmp_path, 3, [3.0, 2.0, 1.0])
    assert load_trained(tmp_path, torch.nn.Linear(1, 1, bias=False))["epoch"] == 3
    (tmp_path / CHECKPOINT).write_bytes((tmp_path / CHECKPOINT).read_bytes()[:100])  # truncated
    reports: list[str] = []
    model = torch.nn.Linear(1, 1, bias=False)
    result = train_epochs(
        tmp_path,
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        3,
        lambda epoch: {"loss": 1.0, "validation_loss": 1.0},
        {},
        resume=True,
        select="validation_loss",
        report=reports.append,
    )
    assert result.trained_epochs == 1 and result.epochs == 3
    assert any(PREVIOUS_CHECKPOINT in line and "epoch 2" in line for line in reports)


def test_a_killed_write_leaves_no_temporary_file_after_the_next_run(tmp_path):
    _fit(tmp_path, 1, [1.0])
    leftover = tmp_path / ".checkpoint.pt.abc123.tmp"
    leftover.write_bytes(b"x" * 1000)
    _fit(tmp_path, 2, [1.0, 0.5], resume=True)
    assert not leftover.exists()


def test_a_nan_loss_stops_the_stage_naming_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(StageError, match="epoch 3 gave validation_loss = NaN"):
        _fit(tmp_path, 4, [3.0, 2.0, float("nan"), 1.0])
    loaded = torch.nn.Linear(1, 1, bias=False)
    assert load_trained(tmp_path, loaded)["epoch"] == 2 and loaded.weight.item() == 2.0


def test_zero_epochs_is_refused_before_anything_is_deleted(tmp_path):
    _fit(tmp_path, 2, [1.0, 0.5])
    model = torch.nn.Linear(1, 1, bias=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train_epochs(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1), 0, lambda e: {}, {}, force=True)
    assert load_trained(tmp_path, model)["epoch"] == 2


def test_only_a_run_directory_gets_tensorboard_events(tmp_path):
    """A run's stages log to RUN/tensorboard; a directory that is no run (a demo's output, an
    agent saved where the user chose) gets nothing it did not ask for."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dreamgym.config import preset
    from dreamgym.training import write_metrics

    rows = [{"epoch": 1, "loss": 2.0, "validation_loss": 3.0}, {"epoch": 2, "loss": 1.0, "validation_loss": 2.5}]
    elsewhere = tmp_path / "elsewhere" / "vae"
    elsewhere.mkdir(parents=True)
    write_metrics(elsewhere / "metrics.csv", rows)
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["vae"]
    run = tmp_path / "run"
    preset("doom", "tiny").save(run)
    (run / "vae").mkdir()
    for k in (1, 2):
        write_metrics(run / "vae" / "metrics.csv", rows[:k])  # each epoch's call adds its own row
    events = EventAccumulator(str(run / "tensorboard" / "vae"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("validation/loss")] == [(1, 3.0), (2, 2.5)]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 2.0), (2, 1.0)]


def test_an_agent_outside_a_run_leaves_nothing_in_the_temp_directory(tmp_path, monkeypatch, capsys):
    """SB3 makes an empty SB3-<date> folder in the temp directory on every learn() that has no
    TensorBoard folder; an agent dreamgym trains outside a run makes none, still learns, and
    still prints its table when verbose."""
    import tempfile

    import gymnasium as gym
    from stable_baselines3 import PPO

    from dreamgym.training import set_agent_logging

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    for verbose in (0, 1):
        agent = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=32, batch_size=32, n_epochs=1, verbose=verbose)
        set_agent_logging(agent, tmp_path / "not_a_run")
        agent.learn(64)
        assert agent.num_timesteps == 64
        assert ("total_timesteps" in capsys.readouterr().out) == bool(verbose)
    assert list(temp.iterdir()) == []
    plain = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=32, batch_size=32, n_epochs=1)
    plain.learn(32)
    assert [p.name[:4] for p in temp.iterdir()] == ["SB3-"]  # what SB3 does on its own
