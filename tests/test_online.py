"""`dreamgym online`: rounds of a few real episodes, M refined on them, PPO continued in short
dreams from the replay; on the real games, killed and resumed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import run_command, small_world_model

from dreamgym.checkpoint import load_world_model, save_world_model
from dreamgym.config import OnlineConfig
from dreamgym.controller import LinearController
from dreamgym.episodes import read_episode, read_latents
from dreamgym.files import npz_bytes
from dreamgym.games import lookup
from dreamgym.online import (
    OnlineRound,
    load_settings,
    make_agent,
    online,
    play_off_reserve,
    read_rounds,
    stop_reason,
    tuning_score,
)
from dreamgym.refine import TrainingData, encoded_by, play_real, refine_m
from dreamgym.replay import Replay
from dreamgym.training import StageError, no_report
from dreamgym.vae import encode_frames


def online_command(game, run, model_dir, *extra):
    return [
        sys.executable,
        "-m",
        "dreamgym.cli",
        "online",
        game,
        "--out",
        str(run),
        "--world-model",
        str(model_dir),
        "--rounds",
        "3",
        "--explore-episodes",
        "2",
        "--episodes",
        "1",
        "--max-steps",
        "25",
        "--m-steps",
        "3",
        "--m-window",
        "8",
        "--m-batch-size",
        "4",
        "--warmup",
        "4",
        "--horizon",
        "5",
        "--agent-steps",
        "64",
        "--eval-every",
        "2",
        "--eval-episodes",
        "1",
        "--confirm-episodes",
        "1",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_an_online_run_on_the_real_game_resumes_after_a_sigkill_losing_at_most_that_round(tmp_path, game):
    run, start = tmp_path / "run", tmp_path / "start"
    model = small_world_model(game)  # a start model with a controller, which the run must not carry
    outputs, inputs = model.game.controller_output_dim, model.z_dim + model.hidden_dim
    weights, bias = np.ones((outputs, inputs), np.float32), np.zeros(outputs, np.float32)
    model.controller = LinearController(model.game, weights, bias)
    save_world_model(model, start)
    command = online_command(game, run, start)
    process = subprocess.Popen(
        [*command, "--trust-zip"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
        if (run / "rounds.json").exists() and len(json.loads((run / "rounds.json").read_text())) == 1:
            break
    os.killpg(process.pid, signal.SIGKILL)  # in round 1: round 0 is complete
    process.wait()
    before = json.loads((run / "rounds.json").read_text())
    assert len(before) == 1 and before[0]["episodes"] == 2
    recorded = {p.name: p.stat().st_mtime_ns for p in (run / "episodes").glob("episode_*.npz")}

    refused = run_command(command, cwd=tmp_path)  # loading the saved agent runs code from it: consent first
    assert refused.returncode == 1 and "--trust-zip" in refused.stderr, refused.stderr[-2000:]
    result = run_command([*command, "--trust-zip", "--keep-candidates"], cwd=tmp_path)  # a setting a resume may add
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((run / "rounds.json").read_text())
    assert rows[0] == before[0]  # the finished round is kept as it was
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["episodes"] for r in rows] == [2, 3, 4]
    assert sorted(p.name for p in (run / "episodes").glob("episode_*.npz")) == [
        f"episode_{i:06d}.npz" for i in range(4)
    ]
    assert all((run / "episodes" / name).stat().st_mtime_ns == mtime for name, mtime in recorded.items())  # not redone
    assert rows[-1]["data_steps"] == sum(len(np.load(p)["actions"]) for p in (run / "episodes").glob("*.npz"))
    assert rows[1]["eval_mean"] is not None and rows[1]["eval_steps"] > 0 and rows[0]["eval_mean"] is None
    assert rows[1]["eval_count"] == 2  # the first score beats no score: confirmed on one episode more
    assert len(rows[1]["eval_returns"]) == 2 and np.mean(rows[1]["eval_returns"]) == pytest.approx(rows[1]["eval_mean"])
    assert sorted(p.name for p in (run / "candidates").iterdir()) == ["round_1"]  # the one confirmed round
    assert (run / "candidates" / "round_1" / "agent.zip").read_bytes() == (run / "best" / "agent.zip").read_bytes()
    assert rows[2]["eval_steps"] == rows[1]["eval_steps"] and rows[2]["agent_steps"] > rows[1]["agent_steps"]
    assert (run / "curve.png").stat().st_size > 0 and (run / "best" / "agent.zip").is_file()
    assert (run / "best" / "config.json").is_file()
    assert list((run / "tensorboard" / "PPO_1").glob("events.out.tfevents.*"))  # one SB3 run across rounds
    assert not (run / "tensorboard" / "PPO_2").exists()
    # The start model's controller and record do not describe the refined M: neither is carried.
    assert not (run / "model" / "controller.safetensors").exists()
    record = json.loads((run / "model" / "config.json").read_text())["metadata"]
    real_steps = rows[-1]["data_steps"] + rows[-1]["eval_steps"]
    assert record == {
        "online": {
            "world_model": str(start),
            "v_version": 0,  # V's error on the agent's frames stayed under refresh_v: V is the start model's
            "v_reconstruction": "squared_error",
            "rounds": 3,
            "real_steps": real_steps,
        }
    }
    assert rows[1]["v_ratio"] > 0 and not rows[1]["v_refreshed"] and rows[0]["v_ratio"] is None
    card = (run / "model" / "MODEL_CARD.md").read_text()
    assert f"Built with round 2 of `dreamgym online {game} --out RUN --world-model start --rounds 3 " in card
    assert f"real steps: {real_steps:,}" in card and "- round 1: " in card  # the tuning score of round 1
    again = run_command([*command, "--trust-zip"], cwd=tmp_path)  # finished: nothing is redone
    assert again.returncode == 0 and "stopped: 3 rounds done" in again.stdout
    assert json.loads((run / "rounds.json").read_text()) == rows
    # A play-off added at the end: the one confirmed round, on the first seed no check used.
    final = run_command([*command, "--trust-zip", "--finalists", "2", "--final-episodes", "1"], cwd=tmp_path)
    assert final.returncode == 0 and "the play-off keeps round 1 in best/" in final.stdout, final.stderr[-3000:]
    playoff = json.loads((run / "playoff.json").read_text())
    assert playoff["after_round"] == 2 and playoff["rounds"] == [1] and playoff["kept"] == 1
    assert playoff["seed"] == 20002 and len(playoff["returns"]) == 1 and 0 < playoff["real_steps"] <= 25
    assert (run / "best" / "agent.zip").read_bytes() == (run / "candidates" / "round_1" / "agent.zip").read_bytes()


def test_a_new_run_is_refused_before_anything_is_written(tmp_path, model_dirs):
    run = tmp_path / "run"
    result = run_command(online_command("carracing", run, tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 1 and not run.exists()
    result = run_command(online_command("doom", run, model_dirs["carracing"]), cwd=tmp_path)
    assert result.returncode == 1 and "carracing model, not doom" in result.stderr and not run.exists()
    result = run_command([*online_command("doom", run, model_dirs["doom"]), "--fixed-std"], cwd=tmp_path)
    assert result.returncode == 1 and "continuous actions (doom's are discrete)" in result.stderr
    assert not run.exists()
    result = run_command(
        [*online_command("carracing", run, model_dirs["carracing"]), "--sample", "--eval-noise", "0"], cwd=tmp_path
    )
    assert result.returncode == 1 and "--eval-noise (0) does not apply" in result.stderr and not run.exists()
    result = run_command([*online_command("doom", run, model_dirs["doom"]), "--horizon", "0"], cwd=tmp_path)
    assert result.returncode == 2 and "--horizon: expected an integer >= 1" in result.stderr and not run.exists()


def test_m_learns_from_the_windows_of_real_play():
    model = small_world_model("doom")
    data = TrainingData()
    rng = np.random.default_rng(0)
    for length in (40, 60):
        mu = np.cumsum(rng.normal(size=(length + 1, model.z_dim)), axis=0).astype(np.float32) * 0.1
        data.add(
            {
                "mu": mu,
                "logvar": np.full_like(mu, -4.0),
                "actions": rng.integers(0, 3, length),
                "rewards": np.ones(length, np.float32),
                "dones": np.zeros(length, bool),
            },
            model.game,
        )
    before = {k: v.clone() for k, v in model.mdnrnn.state_dict().items()}
    config = OnlineConfig(world_model="x", m_steps=30, m_window=16, m_batch_size=4, m_learning_rate=1e-3, warmup=4)
    first = refine_m(model, data, dataclasses.replace(config, m_steps=1), 0)
    last = refine_m(model, data, config, 1)
    assert last < first  # the loss falls
    assert any(not torch.equal(before[k], v) for k, v in model.mdnrnn.state_dict().items())  # the dream's M changed
    assert not any(p.requires_grad for p in model.mdnrnn.parameters())  # and stays frozen for the dreams
    batch = data.batch(8, 16, 4, 1, np.random.default_rng(1), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch.z.shape == (8, 16, model.z_dim) and batch.mask.shape == (8, 16)


def test_m_sees_the_last_step_of_an_episode_as_often_as_any_other():
    """The episode's end is one step; windows drawn only where they fit whole reach it once in
    (length - window) draws, and teach M that episodes seldom end."""
    game = small_world_model("doom").game
    length, window, burn_in = 300, 96, 32
    mu = np.zeros((length + 1, 4), np.float32)
    mu[:, 0] = np.arange(length + 1)  # z's first dimension is the step's index
    data = TrainingData()
    data.add(
        {
            "mu": mu,
            "logvar": np.full_like(mu, -40.0),  # z = μ
            "actions": np.zeros(length, np.int64),
            "rewards": np.ones(length, np.float32),
            "dones": np.arange(length) == length - 1,
        },
        game,
    )
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    in_loss = np.zeros(length)
    for _ in range(300):
        batch = data.batch(16, window, burn_in, 1, rng, generator, torch.device("cpu"))
        steps = batch.z[..., 0].round().long()
        np.add.at(in_loss, steps[batch.mask > 0].numpy(), 1)
    assert in_loss[length - 1] > 0.8 * in_loss[burn_in:].mean()  # the end, as often as the rest
    assert in_loss[:burn_in].min() > 0  # and the first steps are not lost


def finished_round(**changes) -> OnlineRound:
    """A row of ``rounds.json`` (round 0, 1,000 real steps), with ``changes``."""
    row = OnlineRound(
        round=0,
        episodes=1,
        data_steps=1000,
        eval_steps=0,
        train_return=0.0,
        dream_return=0.0,
        agent_steps=0,
        m_loss=0.0,
        v_error=0.0,
    )
    return dataclasses.replace(row, **changes)


def test_the_rounds_stop_at_their_number_or_the_real_step_budget():
    config = OnlineConfig(world_model="x", rounds=3, max_real_steps=5000)
    row = finished_round()
    assert stop_reason([], config) is None and stop_reason([row], config) is None
    assert "budget" in stop_reason([dataclasses.replace(row, data_steps=5000)], config)
    assert stop_reason([row] * 3, config) == "3 rounds done"


def test_training_stops_early_enough_for_the_play_off_to_fit_in_the_budget(tmp_path, model_dirs):
    config = OnlineConfig(world_model="x", max_real_steps=100_000, finalists=3, final_episodes=10)
    reserve = play_off_reserve(config, lookup("carracing"))
    assert reserve == 3 * 10 * 1000  # CarRacing's episodes last at most 1,000 steps
    row = finished_round(data_steps=69_999)
    assert stop_reason([row], config, reserve) is None
    stop = stop_reason([dataclasses.replace(row, data_steps=70_000)], config, reserve)
    assert stop == "real-step budget reached (70,000 ≥ 100,000 less 30,000 kept for the play-off)"
    run = tmp_path / "run"
    with pytest.raises(StageError, match="nothing of --max-real-steps 20,000 is left to train with"):
        online(run, "carracing", world_model=str(model_dirs["carracing"]), max_real_steps=20_000, finalists=2)
    assert not run.exists()


def test_the_play_off_keeps_the_finalist_that_wins_on_fresh_seeds_and_is_not_played_twice(tmp_path, monkeypatch):
    """The play-off's choice and record; the real game's path is the SIGKILL test's."""
    import dreamgym.online as online_module

    played = []

    def real_score(model, agent, seeds, noise, max_steps, sample):  # round 3 plays best on fresh seeds
        played.append((agent.name, list(seeds)))
        score = {"round_3": 50.0, "round_5": 40.0, "round_7": 45.0}[agent.name]
        return [score] * len(seeds), [100] * len(seeds)

    monkeypatch.setattr(online_module, "real_score", real_score)
    monkeypatch.setattr(online_module, "load_world_model", lambda path, device: None)
    monkeypatch.setattr(online_module, "load_policy_file", lambda path: path.parent)
    tuned = {3: [30.0, 40.0], 5: [60.0, 70.0], 7: [50.0, 50.0], 8: [90.0]}  # round 8 was never confirmed
    rows = [finished_round(round=k, eval_mean=float(np.mean(r)), eval_returns=r) for k, r in tuned.items()]
    for k in (3, 5, 7):
        (tmp_path / "candidates" / f"round_{k}").mkdir(parents=True)
        (tmp_path / "candidates" / f"round_{k}" / "agent.zip").write_text(f"round {k}")
    config = OnlineConfig(
        world_model="x", eval_episodes=1, confirm_episodes=1, reconfirm_episodes=2, finalists=2, final_episodes=3
    )
    record = online_module.play_off(tmp_path, config, rows, no_report)
    assert played == [("round_5", [20004, 20005, 20006]), ("round_7", [20004, 20005, 20006])]
    assert record.rounds == [5, 7] and record.kept == 7 and record.returns == [40.0] * 3 + [45.0] * 3
    assert record.real_steps == 600 and record.after_round == 8
    assert (tmp_path / "best" / "agent.zip").read_text() == "round 7"
    assert online_module.play_off(tmp_path, config, rows, no_report) == record and len(played) == 2  # read back
    rows.append(finished_round(round=9, eval_mean=100.0, eval_returns=[100.0]))  # resumed for more: again
    assert online_module.play_off(tmp_path, config, rows, no_report).after_round == 9 and len(played) == 4


def test_a_new_best_tuning_score_is_confirmed_on_the_next_seeds_before_it_counts():
    played = []

    def play(seeds):  # returns 100 + seed - 20000: the later seeds score higher
        played.append(list(seeds))
        return [100.0 + seed - 20000 for seed in seeds], [10] * len(seeds)

    config = OnlineConfig(world_model="x", eval_episodes=3, confirm_episodes=2, eval_seed=20000)
    returns, steps = tuning_score(play, config, best=100.0)  # 101 beats 100: two episodes more
    assert played == [[20000, 20001, 20002], [20003, 20004]]
    assert returns == [100.0, 101.0, 102.0, 103.0, 104.0] and steps == 50
    played.clear()
    returns, steps = tuning_score(play, config, best=101.0)  # 101 does not beat 101: no more
    assert played == [[20000, 20001, 20002]] and steps == 30
    returns, steps = tuning_score(play, dataclasses.replace(config, confirm_episodes=0), best=-np.inf)
    assert len(returns) == 3
    played.clear()
    stricter = dataclasses.replace(config, reconfirm_episodes=4)
    returns, steps = tuning_score(play, stricter, best=101.5)  # 101 after three: no more
    assert played == [[20000, 20001, 20002]]
    played.clear()
    # 102 ± 0.63 after five: a lead of 1.1 is within two standard errors, four more; 1.5 is not
    returns, steps = tuning_score(play, stricter, best=100.9)
    assert played == [[20000, 20001, 20002], [20003, 20004], [20005, 20006, 20007, 20008]]
    assert np.mean(returns) == 104.0 and steps == 90
    played.clear()
    returns, steps = tuning_score(play, stricter, best=100.5)
    assert played == [[20000, 20001, 20002], [20003, 20004]] and steps == 50

    def fading(seeds):  # the later seeds score lower
        return [200.0 - seed + 20000 for seed in seeds], [10] * len(seeds)

    returns, steps = tuning_score(fading, stricter, best=198.5)  # 199 after three, 198 after five: stop
    assert len(returns) == 5 and steps == 50


def test_a_damaged_tuning_return_in_the_rounds_record_is_refused_by_name(tmp_path):
    row = finished_round(eval_mean=3.0, eval_std=0.0, eval_count=3, eval_returns=[3.0, 3.0, 3.0])
    rows = [dataclasses.replace(row, round=k) for k in range(5)]  # row 4 is round 4
    record = tmp_path / "rounds.json"
    record.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    assert read_rounds(tmp_path) == rows
    damaged = {**dataclasses.asdict(rows[4]), "eval_returns": [3.0, "3", 3.0]}
    record.write_text(json.dumps([dataclasses.asdict(r) for r in rows[:4]] + [damaged]))
    with pytest.raises(StageError, match=r"rounds.json is damaged \(round 4.eval_returns\[1\] must be a number"):
        read_rounds(tmp_path)


def test_a_resumed_run_refuses_other_tuning_settings_and_takes_other_training_ones(tmp_path):
    stored = OnlineConfig(world_model="x", eval_episodes=3, confirm_episodes=7)
    (tmp_path / "online.json").write_text(json.dumps({"game": "doom", "settings": dataclasses.asdict(stored)}))
    with pytest.raises(StageError, match="reconfirm_episodes 0, not 20"):
        load_settings(tmp_path, lookup("doom"), {"reconfirm_episodes": 20})
    assert load_settings(tmp_path, lookup("doom"), {"rounds": 500, "confirm_episodes": None}).rounds == 500


def test_the_agents_dreams_end_where_p_done_is_drawn_with_sample_done():
    """M's p(done) ≈ 0.2 everywhere: below the threshold no dream of the agent ends; drawn, about
    a fifth of the steps end one (terminated, not the horizon's truncation)."""
    from dreamgym.online import make_agent
    from dreamgym.replay import Replay

    model = small_world_model("doom")
    with torch.no_grad():
        model.mdnrnn.head.weight[-1].zero_()
        model.mdnrnn.head.bias[-1].fill_(float(np.log(0.2 / 0.8)))
    replay = Replay(model.z_dim, model.game.action_dim)
    replay.add(torch.randn(41, model.z_dim), model.game.encode_actions(torch.zeros(40, dtype=torch.long)))
    for sample_done, low, high in ((False, 0.0, 0.0), (True, 0.1, 0.3)):
        config = OnlineConfig(world_model="x", horizon=50, warmup=4, sample_done=sample_done)
        venv = make_agent(model, replay, config, None).get_env()
        venv.reset()
        ended = []
        for _ in range(40):
            _, _, dones, infos = venv.step(np.zeros(venv.num_envs, dtype=np.int64))
            ended += [done and not info.get("TimeLimit.truncated", False) for done, info in zip(dones, infos)]
        assert low <= np.mean(ended) <= high, (sample_done, np.mean(ended))
        venv.close()


@pytest.mark.slow
def test_v_refined_in_a_round_encodes_every_episode_again_and_a_resume_restores_the_saved_v(tmp_path):
    run, start = tmp_path / "run", tmp_path / "start"
    save_world_model(small_world_model("carracing"), start)
    settings = dict(
        world_model=str(start),
        rounds=2,
        explore_episodes=2,
        episodes=1,
        max_steps=20,
        m_steps=2,
        m_window=8,
        m_batch_size=2,
        warmup=4,
        horizon=5,
        agent_steps=64,
        eval_every=10,
        refresh_v=1e-6,  # any error on the new frames refines V
        v_steps=3,
        v_batch_size=4,
        v_learning_rate=1e-3,
        refresh_m_steps=3,
    )
    rows = online(run, "carracing", **settings)
    assert [r.v_refreshed for r in rows] == [False, True] and rows[1].v_ratio is not None
    model = load_world_model(run / "model", device="cpu")
    assert model.metadata["online"]["v_version"] == 1
    first = load_world_model(start, device="cpu")
    assert not torch.equal(first.vae.state_dict()["encoder.0.weight"], model.vae.state_dict()["encoder.0.weight"])
    latents = sorted((run / "latents").glob("episode_*.npz"))
    assert len(latents) == 3 and all(encoded_by(path) == 1 for path in latents)
    for path in latents:  # the round-0 episodes too: encoded by the V the run saved
        mu, _ = encode_frames(model.vae, read_episode(run / "episodes" / path.name)["frames"])
        np.testing.assert_allclose(read_latents(path)["mu"], mu, atol=1e-5)
    # The dream's resets too: the episodes' first frames as the saved V encodes them.
    firsts = [encode_frames(model.vae, read_episode(run / "episodes" / path.name)["frames"][:1]) for path in latents]
    np.testing.assert_allclose(model.initial_mu.numpy(), np.concatenate([mu for mu, _ in firsts]), atol=1e-5)
    np.testing.assert_allclose(model.initial_logvar.numpy(), np.concatenate([lv for _, lv in firsts]), atol=1e-5)
    assert "V in 1 of them" in (run / "model" / "MODEL_CARD.md").read_text()

    # A run killed after it refined V again but before it saved the round: a latent file another
    # V encoded. The resumed run encodes it with the saved V before anything reads it.
    stale = read_latents(latents[0])
    stale_mu = stale["mu"] + 1.0
    latents[0].write_bytes(npz_bytes({**stale, "mu": stale_mu, "v_version": np.array(2)}))
    again = online(run, "carracing", trust_zip=True)
    assert again == rows and encoded_by(latents[0]) == 1
    np.testing.assert_allclose(read_latents(latents[0])["mu"], stale_mu - 1.0, atol=1e-5)


def test_a_latent_file_says_which_v_encoded_it(tmp_path):
    arrays = {"mu": np.zeros((3, 2), np.float32)}
    (tmp_path / "old.npz").write_bytes(npz_bytes(arrays))  # written before V could be refined
    (tmp_path / "new.npz").write_bytes(npz_bytes({**arrays, "v_version": np.array(3)}))
    (tmp_path / "odd.npz").write_bytes(npz_bytes({**arrays, "v_version": np.array([1.5])}))
    (tmp_path / "cut.npz").write_bytes(npz_bytes({**arrays, "v_version": np.array(3)})[:40])
    assert [encoded_by(tmp_path / f"{name}.npz") for name in ("old", "new", "odd", "cut")] == [0, 3, -1, -1]


@pytest.mark.slow
def test_a_fixed_std_keeps_ppos_dream_noise_at_the_noise_it_plays_the_real_game_with():
    model = small_world_model("carracing")
    replay = Replay(model.z_dim, model.game.action_dim)
    replay.add(torch.randn(41, model.z_dim), torch.rand(40, model.game.action_dim))
    config = OnlineConfig(world_model="x", noise=0.1, fixed_std=True, horizon=5, warmup=4)
    agent = make_agent(model, replay, config, None)
    before = {name: value.clone() for name, value in agent.policy.state_dict().items()}
    agent.learn(1)
    after = agent.policy.state_dict()
    torch.testing.assert_close(after["log_std"], torch.full((3,), float(np.log(0.1))))
    assert not torch.equal(before["action_net.weight"], after["action_net.weight"])  # the rest learns
    learned = make_agent(model, replay, dataclasses.replace(config, fixed_std=False), None)
    learned.learn(1)
    assert not torch.equal(learned.policy.state_dict()["log_std"], torch.zeros(3))  # SB3's own: learned from std 1


@pytest.mark.slow
def test_sampled_real_play_draws_the_agents_own_actions_where_noise_after_the_clip_would_not():
    model = small_world_model("carracing")
    replay = Replay(model.z_dim, model.game.action_dim)
    replay.add(torch.randn(41, model.z_dim), torch.rand(40, model.game.action_dim))
    agent = make_agent(model, replay, OnlineConfig(world_model="x", noise=0.1, fixed_std=True), None)
    with torch.no_grad():  # the brake's mean far below its bound of 0, as a trained CarRacing agent's
        agent.policy.action_net.weight.zero_()
        agent.policy.action_net.bias.copy_(torch.tensor([0.0, 0.5, -0.5]))
    state = torch.get_rng_state()
    sampled = play_real(model, agent, 3, 0.1, max_steps=30, sample=True)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator (PPO's) untouched
    again = play_real(model, agent, 3, 0.1, max_steps=30, sample=True)
    np.testing.assert_array_equal(sampled["actions"], again["actions"])  # seeded by the episode
    noisy = play_real(model, agent, 3, 0.1, max_steps=30)
    assert (sampled["actions"][:, 2] == 0).all()  # 5 std below the bound: clipped every step
    assert (noisy["actions"][:, 2] > 0).mean() > 0.25  # noise added after the clip brakes often
    assert 0.2 < sampled["actions"][:, 1].mean() < 0.8 and sampled["actions"][:, 1].std() > 0.03
