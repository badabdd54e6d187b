"""The dream's defences against agents that exploit M: ensembles, the uncertainty penalty, a
pessimistic end, starts from real steps and a horizon (dropout: test_dropout.py)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import defended_world_model, small_world_model
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from safetensors.torch import load_file, save_file
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from test_dropout import (
    assert_plain_dream,
    single_trajectory,
    vector_trajectory,
)

import dreamgym
from dreamgym import checkpoint
from dreamgym.checkpoint import (
    ModelFileError,
    config_digest,
    load_world_model,
    save_world_model,
)
from dreamgym.cmaes import dream_returns
from dreamgym.config import DreamSettings, RunConfig, preset
from dreamgym.envs.vector import DreamVectorEnv
from dreamgym.files import sha256_of
from dreamgym.games import lookup
from dreamgym.mdnrnn import sample_next_z


def doom_env(**kwargs) -> dreamgym.DreamEnv:
    return dreamgym.DreamEnv("doom", world_model=defended_world_model("doom"), device="cpu", **kwargs)


# --------------------------------------------------------------------------- the plain dream


@pytest.mark.parametrize("game", ["carracing", "doom"])
@pytest.mark.parametrize("trajectory, kind", [(single_trajectory, "single"), (vector_trajectory, "vector")])
def test_a_model_with_members_and_starts_dreams_the_plain_dream_at_plain_settings(game, trajectory, kind):
    """Members and stored episodes change nothing until a setting asks for them: the trajectories
    for a seed are those recorded before any defence existed."""
    defended = defended_world_model(
        game,
        defaults=DreamSettings(
            ensemble="episode", uncertainty_penalty=1.0, done_threshold=0.2, starts="data", horizon=3
        ),
    )
    plain = {
        "dropout": 0.0,
        "ensemble": "off",
        "uncertainty_penalty": 0.0,
        "done_threshold": 0.5,
        "starts": "first",
        "horizon": 10_000,
    }
    assert_plain_dream(trajectory(game, model=defended, **plain), kind, game)


@pytest.mark.parametrize("game", ["carracing", "doom"])
@pytest.mark.parametrize("trajectory, kind", [(single_trajectory, "single"), (vector_trajectory, "vector")])
def test_plain_is_one_keyword_away_whatever_the_models_defaults(game, trajectory, kind):
    defended = defended_world_model(
        game,
        defaults=DreamSettings(
            dropout=0.2, ensemble="episode", uncertainty_penalty=1.0, done_threshold=0.2, starts="data", horizon=3
        ),
    )
    assert_plain_dream(trajectory(game, model=defended, plain=True), kind, game)
    env = dreamgym.DreamEnv(game, world_model=defended, plain=True, horizon=7, device="cpu")
    # keywords beside it still apply; the temperature is the game's, not a defence
    assert env.settings == DreamSettings(dropout=0.0, horizon=7, temperature=lookup(game).dream_temperature)
    with pytest.raises(TypeError, match="plain must be True or False"):
        dreamgym.DreamEnv(game, world_model=defended, plain="yes", device="cpu")


# --------------------------------------------------------------------------- ensembles


def test_members_predict_differently_from_the_same_state():
    model = defended_world_model("carracing")
    state = model.initial_state(1, torch.Generator().manual_seed(0))
    action = model.action_tensor([[0.0, 1.0, 0.0]])
    means = [
        (out.logits.softmax(-1) * out.mu).sum(-1)
        for out, _ in (member.step(state.z, action, (state.h, state.c)) for member in model.all_members)
    ]
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])


def test_each_episode_draws_one_member_and_keeps_it():
    env = doom_env(ensemble="episode")
    members = set()
    for seed in range(12):
        env.reset(seed=seed)
        member = env.member
        members.add(member)
        for _ in range(5):
            env.step(1)
            assert env.member == member
    assert members == {0, 1, 2}
    env.reset(seed=3)
    first = env.member
    assert [env.reset(seed=3) and env.member for _ in range(2)] == [first, first]  # seeded


def test_the_drawn_member_moves_the_dream_and_the_observation_keeps_member_0s_state():
    """The next z is what the episode's member predicts (stepped by hand with the same draws); h in
    the observation is member 0's, the M the latent twin runs on the real game."""
    env = doom_env(ensemble="episode", temperature=1.1)
    for seed in range(10):
        env.reset(seed=seed)
        if env.member != 0:
            break
    model, state, member = env.model, env._state, env.member
    generator = torch.Generator().set_state(env._generator.get_state())
    observation, *_ = env.step(2)
    action = model.action_tensor([2])
    out, _ = model.all_members[member].step(state.z, action, (state.member_h[member - 1], state.member_c[member - 1]))
    np.testing.assert_allclose(
        observation[: model.z_dim], sample_next_z(out, 1.1, generator)[0].numpy(), rtol=0, atol=1e-6
    )
    _, (h, _) = model.mdnrnn.step(state.z, action, (state.h, state.c))
    np.testing.assert_array_equal(observation[model.z_dim :], h[0].numpy())


def test_the_vector_env_draws_a_member_per_env_and_changes_it_only_at_a_reset():
    envs = DreamVectorEnv(
        "doom", 16, world_model=defended_world_model("doom"), ensemble="episode", max_episode_steps=4, device="cpu"
    )
    envs.reset(seed=0)
    members = envs.member.clone()
    assert set(members.tolist()) == {0, 1, 2}
    for _ in range(3):
        envs.step(np.ones(16, dtype=np.int64))
        assert torch.equal(envs.member, members)


def test_a_pessimist_ensemble_takes_member_0s_latent_and_the_worst_reward_and_end():
    model = defended_world_model("carracing")
    settings = model.dream_settings(None, ensemble="pessimist")
    state = model.initial_state(16, torch.Generator().manual_seed(0), settings)
    action = model.action_tensor(np.tile([[0.2, 0.6, 0.0]], (16, 1)))
    step = model.dream_step(state, action, torch.Generator().manual_seed(1), False, settings)
    outputs = [
        member.step(state.z, action, (h, c))[0]
        for member, h, c in zip(model.all_members, [state.h, *state.member_h], [state.c, *state.member_c])
    ]
    rewards = torch.stack([out.reward for out in outputs])
    done = torch.sigmoid(torch.stack([out.done_logit for out in outputs]))
    torch.testing.assert_close(step.reward, rewards.min(dim=0).values)
    torch.testing.assert_close(step.done_probability, done.max(dim=0).values)
    assert (step.reward < rewards[0]).any()  # another member was the worse one somewhere
    torch.testing.assert_close(step.state.z, sample_next_z(outputs[0], 1.0, torch.Generator().manual_seed(1)))
    assert step.state.member is None


# --------------------------------------------------------------------------- the uncertainty penalty


def test_the_penalty_lowers_the_reward_by_lambda_times_the_disagreement():
    env = doom_env(uncertainty_penalty=2.0)
    env.reset(seed=0)
    for _ in range(10):
        _, reward, terminated, truncated, info = env.step(1)
        assert info["uncertainty"] > 0
        assert reward == pytest.approx(1.0 - 2.0 * info["uncertainty"], abs=1e-6)
        if terminated or truncated:
            break


def test_members_that_agree_cost_nothing_and_more_disagreement_costs_more():
    agreeing = defended_world_model("carracing")
    agreeing.members = [
        small_world_model("carracing").mdnrnn,
        small_world_model("carracing").mdnrnn,
    ]  # copies of member 0
    rewards = {}
    for name, model in (("agreeing", agreeing), ("plain", agreeing)):
        penalty = 0.0 if name == "plain" else 5.0
        env = dreamgym.DreamEnv("carracing", world_model=model, uncertainty_penalty=penalty, device="cpu")
        env.reset(seed=1)
        rewards[name] = [env.step(np.array([0.1, 0.5, 0.0], np.float32))[1] for _ in range(5)]
    np.testing.assert_allclose(rewards["agreeing"], rewards["plain"], rtol=0, atol=1e-6)
    envs = DreamVectorEnv(
        "carracing", 64, world_model=defended_world_model("carracing"), uncertainty_penalty=3.0, device="cpu"
    )
    plain = DreamVectorEnv("carracing", 64, world_model=defended_world_model("carracing"), device="cpu")
    envs.reset(seed=2)
    plain.reset(seed=2)
    action = np.tile([[0.1, 0.5, 0.0]], (64, 1)).astype(np.float32)
    _, penalised, _, _, info = envs.step(action)
    _, rewards_plain, _, _, _ = plain.step(action)
    lowered = rewards_plain - penalised
    np.testing.assert_allclose(lowered, 3.0 * info["uncertainty"], rtol=1e-5, atol=1e-6)
    order = np.argsort(info["uncertainty"])
    assert lowered[order[-1]] > lowered[order[0]] > 0  # where they disagree more, the reward falls more


def test_cmaes_dreams_take_the_penalty():
    model = defended_world_model("doom")
    parameters = np.zeros((2, model.observation_dim + 1))
    kwargs = {"trials": 4, "temperature": 1.0, "max_steps": 20}
    plain = dream_returns(model, parameters, generator=torch.Generator().manual_seed(0), **kwargs)
    penalised = dream_returns(
        model, parameters, generator=torch.Generator().manual_seed(0), uncertainty_penalty=1.0, **kwargs
    )
    assert (penalised < plain).all()


# --------------------------------------------------------------------------- a pessimistic end


def test_the_dream_ends_when_p_done_passes_the_threshold():
    for threshold in (0.5, 0.05):
        env = doom_env(done_threshold=threshold)
        env.reset(seed=0)
        for _ in range(200):
            _, _, terminated, truncated, info = env.step(0)
            assert terminated == (info["done_probability"] > threshold)
            if terminated:
                break
    lengths = {}
    for threshold in (0.5, 0.05):
        returns = dream_returns(
            defended_world_model("doom"),
            np.zeros((1, 25)),
            32,
            torch.Generator().manual_seed(0),
            200,
            temperature=1.0,
            done_threshold=threshold,
        )
        lengths[threshold] = returns.mean()
    assert lengths[0.05] < lengths[0.5]


# --------------------------------------------------------------------------- starts from real steps


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_a_start_from_data_is_a_stored_real_latent_with_ms_state_after_the_steps_before_it(game):
    model = defended_world_model(game)
    env = dreamgym.DreamEnv(game, world_model=model, starts="data", device="cpu")
    episodes = model.start_episodes
    first_rows = np.concatenate([[0], np.cumsum(episodes.lengths.numpy())[:-1]])
    seen = set()
    for seed in range(30):
        observation, _ = env.reset(seed=seed)
        z, h = observation[: model.z_dim], observation[model.z_dim :]
        row = int(np.flatnonzero((episodes.mu.numpy() == z).all(axis=1))[0])  # the stored latent, exactly
        episode = int(np.searchsorted(first_rows, row, side="right") - 1)
        state = model.mdnrnn.initial_state(1)
        for t in range(first_rows[episode], row):  # what the latent twin computes on the real steps before it
            state = model.advance(state, episodes.mu[t : t + 1], episodes.actions[t : t + 1])
        np.testing.assert_allclose(h, state[0][0].numpy(), rtol=0, atol=1e-6)
        seen.add(row)
    assert len(seen) > 10 and any(row not in first_rows for row in seen)  # not only first frames


def test_every_member_starts_warmed_up_on_the_same_real_steps():
    model = defended_world_model("doom")
    table = model.start_table()
    assert table.h.shape == (3, len(table.z), model.hidden_dim)
    assert len(table.z) == int(model.start_episodes.lengths.sum())  # small: every step is a start
    assert not torch.equal(table.h[0], table.h[1])


def test_the_start_table_is_capped_and_spread_over_the_episodes():
    model = defended_world_model("doom")
    replay = model.stored_replay()
    table = replay.start_table(model.all_members, 32, model.device, max_starts=8)
    assert len(table.z) in (8, 9)
    mu, _, _ = replay.arrays()
    rows = [int(np.flatnonzero((mu.numpy() == z).all(axis=1))[0]) for z in table.z.numpy()]
    assert rows == sorted(rows) and rows[-1] - rows[0] >= len(mu) - 4  # spread over every episode
    replay.refresh()  # the grid moves: the next table starts at other steps
    moved = replay.start_table(model.all_members, 32, model.device, max_starts=8)
    assert not torch.equal(moved.z, table.z)


# --------------------------------------------------------------------------- a horizon


def test_a_horizon_truncates_every_kind_of_dream():
    env = doom_env(starts="data", horizon=4, done_threshold=0.999)
    env.reset(seed=0)
    ends = [env.step(1)[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]
    envs = DreamVectorEnv(
        "doom", 3, world_model=defended_world_model("doom"), horizon=4, done_threshold=0.999, device="cpu"
    )
    envs.reset(seed=0)
    for step in range(4):
        _, _, terminated, truncated, _ = envs.step(np.ones(3, dtype=np.int64))
    assert truncated.all() and not terminated.any()
    returns = dream_returns(
        defended_world_model("doom"),
        np.zeros((2, 25)),
        3,
        torch.Generator(),
        1000,
        temperature=1.0,
        horizon=6,
        done_threshold=0.999,
    )
    np.testing.assert_array_equal(returns, 6.0)


# --------------------------------------------------------------------------- stored with the model


def test_a_model_directory_keeps_its_members_episodes_and_defaults(tmp_path):
    defaults = DreamSettings(
        dropout=0.05, ensemble="episode", uncertainty_penalty=0.5, done_threshold=0.3, starts="data", horizon=50
    )
    model = defended_world_model("doom", defaults=defaults)
    directory = save_world_model(model, tmp_path / "model")
    loaded = load_world_model(directory, device="cpu")
    assert loaded.dream_defaults == defaults and len(loaded.all_members) == 3
    for mine, theirs in zip(model.all_members, loaded.all_members):
        for key, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key])
    torch.testing.assert_close(loaded.start_table().h, model.start_table().h, rtol=0, atol=0)
    env = gym.make("DreamDoomTakeCover-v0", world_model=str(directory))
    assert env.unwrapped.settings == dataclasses.replace(defaults, temperature=1.15)  # None: the game's
    assert (
        gym.make("DreamDoomTakeCover-v0", world_model=str(directory), ensemble="off").unwrapped.settings.ensemble
        == "off"
    )
    old = load_world_model(save_world_model(small_world_model("doom"), tmp_path / "old"), device="cpu")
    assert old.dream_defaults == DreamSettings() and old.members == [] and old.start_episodes is None


def _rewrite(directory, change) -> None:
    config = json.loads((directory / "config.json").read_text())
    change(config)
    config["config_sha256"] = config_digest(config)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["dream"].update(ensemble="all"), "dream.ensemble must be one of"),
        (lambda c: c["dream"].update(surprise=1), "dream has unknown fields"),
        (lambda c: c.update(dream=[1]), "field 'dream' must be a JSON object"),
        (lambda c: c.update(members=99), "members must be an integer"),
        (lambda c: c.update(members=4), "mdnrnn_member_3.safetensors: not listed"),
    ],
)
def test_a_bad_dream_section_or_member_count_is_refused_by_name(tmp_path, change, message):
    directory = save_world_model(defended_world_model("doom"), tmp_path / "model")
    _rewrite(directory, change)
    with pytest.raises(ModelFileError, match=message):
        load_world_model(directory, device="cpu")


def test_members_a_config_claims_are_refused_from_their_file_sizes_before_any_is_built(tmp_path, monkeypatch):
    directory = save_world_model(defended_world_model("doom"), tmp_path / "model")
    (directory / "mdnrnn_member_2.safetensors").write_bytes(b"x" * 100)
    _rewrite(directory, lambda c: c["files"]["mdnrnn_member_2.safetensors"].update(bytes=100))
    built = []
    monkeypatch.setattr(checkpoint, "MDNRNN", lambda config: built.append(config) or pytest.fail("allocated"))
    with pytest.raises(ModelFileError, match="mdnrnn_member_2.safetensors holds 100 bytes, too few"):
        load_world_model(directory, device="cpu")
    assert built == []


def test_dream_defaults_a_model_cannot_give_are_refused_at_load(tmp_path):
    directory = save_world_model(small_world_model("doom"), tmp_path / "model")
    _rewrite(directory, lambda c: c["dream"].update(ensemble="episode"))
    with pytest.raises(ModelFileError, match="dream defaults do not fit the model: .*2 or more M members"):
        load_world_model(directory, device="cpu")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update(mu=torch.tensor(1.0)), "must hold mu"),
        (lambda t: t.update(lengths=t["lengths"].sum().reshape(())), "must hold mu"),
        (lambda t: t.update(lengths=t["lengths"] + 1), "summing to S"),
        (lambda t: t.update(lengths=t["lengths"] - 0.5), "whole numbers"),
    ],
)
def test_stored_episodes_that_do_not_fit_are_refused_by_name(tmp_path, change, message):
    directory = save_world_model(defended_world_model("doom"), tmp_path / "model")
    path = directory / "start_episodes.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    _rewrite(
        directory,
        lambda c: c["files"]["start_episodes.safetensors"].update(sha256=sha256_of(path), bytes=path.stat().st_size),
    )
    with pytest.raises(ModelFileError, match=message):
        load_world_model(directory, device="cpu")


def test_run_settings_refuse_an_ensemble_dream_without_members_and_name_unknown_settings():
    with pytest.raises(ValueError, match="need mdnrnn.members >= 2"):
        preset("doom", "tiny").with_overrides("dream", ensemble="episode")
    old = preset("doom", "tiny").to_dict()
    del old["dream"]
    assert RunConfig.from_dict(old).dream == DreamSettings()
    old["controller"]["dropout"] = 0.1  # the dream's dropout belongs to the dream section
    with pytest.raises(ValueError, match=r"run.json controller has unknown fields \['dropout'\]"):
        RunConfig.from_dict(old)


def test_a_dropout_up_to_but_below_1_is_a_dream():
    assert doom_env(dropout=0.95).dropout == 0.95
    with pytest.raises(ValueError, match="dropout"):
        doom_env(dropout=1.0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"ensemble": "all"}, ValueError, "ensemble must be one of"),
        ({"starts": "middle"}, ValueError, "starts must be one of"),
        ({"horizon": 0}, ValueError, "horizon must be an integer >= 1"),
        ({"horizon": 2.5}, ValueError, "horizon must be an integer"),
        ({"done_threshold": 1.0}, ValueError, r"done_threshold must be a number in \(0, 1\)"),
        ({"uncertainty_penalty": -1}, ValueError, "uncertainty_penalty must be a number >= 0"),
        ({"uncertainty_penalty": float("nan")}, ValueError, "uncertainty_penalty must be finite"),
    ],
)
@pytest.mark.parametrize("vector", [False, True])
def test_bad_defence_keywords_are_refused_before_a_model_is_loaded(kwargs, error, message, vector):
    env_id = "DreamDoomTakeCover-v0"
    with pytest.raises(error, match=message):
        if vector:
            gym.make_vec(env_id, num_envs=2, world_model="/nonexistent", **kwargs)
        else:
            gym.make(env_id, world_model="/nonexistent", **kwargs)


def test_defences_a_model_cannot_give_are_refused_with_what_it_needs(model_dirs):
    for kwargs, message in (
        ({"ensemble": "episode"}, "2 or more M members"),
        ({"uncertainty_penalty": 1.0}, "mdnrnn.members"),
        ({"starts": "data"}, "stores real episodes"),
    ):
        with pytest.raises(ValueError, match=message):
            gym.make("DreamDoomTakeCover-v0", world_model=str(model_dirs["doom"]), **kwargs)


@pytest.fixture(scope="module")
def defended_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("defended")
    defaults = DreamSettings(dropout=0.1, ensemble="episode", uncertainty_penalty=0.5, starts="data", horizon=30)
    return {
        game: str(save_world_model(defended_world_model(game, defaults=defaults), root / game))
        for game in ("carracing", "doom")
    }


@pytest.mark.parametrize("game", ["carracing", "doom"])
def test_a_defended_dream_passes_both_env_checkers(defended_dirs, game):
    env = gym.make(dreamgym.ENV_IDS[game][0], world_model=defended_dirs[game])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|symmetric and normalized).*")
        gymnasium_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_the_sb3_vec_env_takes_the_defences(defended_dirs):
    venv = dreamgym.make_sb3_vec_env(
        "DreamDoomTakeCover-v0",
        num_envs=4,
        world_model=defended_dirs["doom"],
        horizon=5,
        uncertainty_penalty=0.0,
        device="cpu",
    )
    settings = venv.venv.vector_env.settings
    assert (settings.horizon, settings.uncertainty_penalty, settings.ensemble) == (5, 0.0, "episode")
    venv.reset()
    for _ in range(5):
        _, _, dones, infos = venv.step(np.ones(4, dtype=np.int64))
    assert dones.all() and all(info["TimeLimit.truncated"] for info in infos)  # SB3 bootstraps at a horizon


# --------------------------------------------------------------------------- the temperature


def test_a_dreams_temperature_is_the_keyword_else_the_models_else_the_games(tmp_path):
    """One default, the game's (Doom the paper's 1.15, CarRacing 1.0), for the single and the
    batched dream alike; a model directory records its own, and the keyword beats both."""
    for game, expected in (("doom", 1.15), ("carracing", 1.0)):
        directory = save_world_model(small_world_model(game), tmp_path / game)
        dream_id = dreamgym.ENV_IDS[game][0]
        assert gym.make(dream_id, world_model=str(directory)).unwrapped.temperature == expected
        assert gym.make_vec(dream_id, 2, world_model=str(directory)).temperature == expected
        assert gym.make(dream_id, world_model=str(directory), temperature=0.7).unwrapped.temperature == 0.7
    hot = save_world_model(defended_world_model("doom", defaults=DreamSettings(temperature=1.3)), tmp_path / "hot")
    assert json.loads((hot / "config.json").read_text())["dream"]["temperature"] == 1.3
    assert gym.make("DreamDoomTakeCover-v0", world_model=str(hot)).unwrapped.temperature == 1.3
    assert gym.make("DreamDoomTakeCover-v0", world_model=str(hot), plain=True).unwrapped.temperature == 1.3
    assert gym.make("DreamDoomTakeCover-v0", world_model=str(hot), temperature=1.0).unwrapped.temperature == 1.0


def test_a_run_records_the_temperature_its_controller_trained_at(tmp_path):
    """run.json's ``dream.temperature`` (None: the game's) is the τ of CMA-ES and of the exported model."""
    from dreamgym.pipeline import dream_of

    for game, expected in (("doom", 1.15), ("carracing", 1.0)):
        config = preset(game, "tiny")
        assert config.dream.temperature is None and dream_of(config, lookup(game)).temperature == expected
        hot = config.with_overrides("dream", temperature=0.5)
        assert dream_of(hot, lookup(game)).temperature == 0.5
    with pytest.raises(ValueError, match="temperature"):
        preset("doom", "tiny").with_overrides("dream", temperature=0)
