from __future__ import annotations

import math

import torch
from torch import distributions as D

from dreamgym.mdnrnn import MDNRNN, MDNOutput, MDNRNNConfig, mixture_nll, sample_next_z


def random_heads(batch: int, z_dim: int, K: int, seed: int = 0) -> MDNOutput:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, z_dim, K, generator=g) * 2
    return MDNOutput(
        logits=logits,
        mu=torch.randn(batch, z_dim, K, generator=g) * 3,
        log_sigma=torch.randn(batch, z_dim, K, generator=g) * 0.5,
        reward=torch.zeros(batch),
        done_logit=torch.zeros(batch),
    )


def test_mixture_nll_matches_torch_mixture_same_family():
    heads = random_heads(64, 7, 5)
    target = torch.randn(64, 7, generator=torch.Generator().manual_seed(1)) * 3
    reference = D.MixtureSameFamily(D.Categorical(logits=heads.logits), D.Normal(heads.mu, heads.log_sigma.exp()))
    expected = -reference.log_prob(target).sum(dim=-1)
    torch.testing.assert_close(mixture_nll(heads, target), expected, rtol=1e-5, atol=1e-4)


def test_mixture_nll_is_finite_far_from_every_component():
    heads = random_heads(4, 3, 5)
    assert torch.isfinite(mixture_nll(heads, torch.full((4, 3), 1e4))).all()


def test_near_zero_temperature_collapses_onto_most_likely_component_mean():
    heads = random_heads(32, 6, 5)
    samples = sample_next_z(heads, 1e-6, torch.Generator().manual_seed(0))
    best = heads.logits.argmax(dim=-1, keepdim=True)
    expected = heads.mu.gather(-1, best).squeeze(-1)
    torch.testing.assert_close(samples, expected, atol=1e-2, rtol=0)


def test_higher_temperature_widens_the_spread_of_samples():
    heads = random_heads(1, 16, 5)
    heads = MDNOutput(*(t.expand(4000, *t.shape[1:]) if t.dim() == 3 else t for t in heads))
    spreads = [
        sample_next_z(heads, tau, torch.Generator().manual_seed(3)).std(dim=0).mean().item() for tau in (0.5, 1.0, 1.5)
    ]
    assert spreads[0] < spreads[1] < spreads[2]


def test_sampling_at_temperature_one_follows_the_mixture():
    heads = random_heads(1, 1, 5, seed=4)
    heads = MDNOutput(*(t.expand(20000, *t.shape[1:]) if t.dim() == 3 else t for t in heads))
    samples = sample_next_z(heads, 1.0, torch.Generator().manual_seed(5))[:, 0]
    mixture = D.MixtureSameFamily(
        D.Categorical(logits=heads.logits[0, 0]), D.Normal(heads.mu[0, 0], heads.log_sigma[0, 0].exp())
    )
    assert abs(samples.mean().item() - mixture.mean.item()) < 4 * math.sqrt(mixture.variance.item() / 20000)
    assert abs(samples.var().item() / mixture.variance.item() - 1) < 0.05


def test_sampling_draws_only_from_the_given_generator():
    heads = random_heads(8, 4, 5)
    a = sample_next_z(heads, 1.0, torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    b = sample_next_z(heads, 1.0, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_single_step_equals_sequence_forward():
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden_dim=8))
    z, a = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    sequence, final = model(z, a)
    state = model.initial_state(2)
    for t in range(5):
        step, state = model.step(z[:, t], a[:, t], state)
    torch.testing.assert_close(step.mu, sequence.mu[:, -1])
    torch.testing.assert_close(state[0], final[0])


def test_mixture_weights_are_per_latent_dimension():
    model = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden_dim=8, num_mixtures=5))
    out, _ = model(torch.randn(1, 2, 4), torch.randn(1, 2, 3))
    assert out.logits.shape == (1, 2, 4, 5)
    assert not torch.allclose(out.logits[..., 0, :], out.logits[..., 1, :])


def test_the_done_head_is_calibrated_although_its_loss_weights_episode_ends():
    """Trained with positives weighted by w, the loss is minimal where sigmoid(done_logit) equals
    the true end rate: the dream's p > 0.5 then means "more likely to end than not"."""
    from dreamgym.config import MDNTrainConfig
    from dreamgym.games import lookup
    from dreamgym.mdnrnn import SequenceBatch, build_mdnrnn, mdnrnn_losses

    config = MDNTrainConfig(hidden_dim=8, done_pos_weight=10.0)
    model = build_mdnrnn(4, lookup("doom"), config)
    rate = 0.2
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[-1] = math.log(rate / (1 - rate)) + math.log(config.done_pos_weight)
    B, L = 1, 5
    batch = SequenceBatch(
        torch.zeros(B, L, 4),
        torch.zeros(B, L, 3),
        torch.zeros(B, L, 4),
        torch.zeros(B, L),
        torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]),
        torch.ones(B, L),
    )  # one end in five steps
    output, _ = model(batch.z, batch.actions)
    assert torch.allclose(torch.sigmoid(output.done_logit), torch.tensor(rate))
    mdnrnn_losses(model, batch, config.done_pos_weight)["done"].backward()
    assert abs(model.head.bias.grad[-1].item()) < 1e-6  # the loss is at its minimum there


def write_latent_episodes(directory, lengths, z_dim=3, seed=0):
    """Latent files whose every value says where it came from: μ = episode·1000 + frame."""
    import numpy as np

    from dreamgym.files import npz_bytes

    rng = np.random.default_rng(seed)
    paths = []
    for e, steps in enumerate(lengths):
        frames = np.arange(steps + 1, dtype=np.float32)
        arrays = {
            "mu": np.repeat((e * 1000 + frames)[:, None], z_dim, axis=1),
            "logvar": np.full((steps + 1, z_dim), -25.0, np.float32),
            "actions": rng.integers(0, 3, steps),
            "rewards": frames[:-1] + 0.5,
            "dones": (np.arange(steps) == steps - 1).astype(np.float32),
        }
        path = directory / f"episode_{e:06d}.npz"
        path.write_bytes(npz_bytes(arrays))
        paths.append(path)
    return paths


def test_latent_batches_hold_every_episode_once_aligned_and_masked(tmp_path):
    import numpy as np

    from dreamgym.games import lookup
    from dreamgym.mdnrnn import LatentEpisodes

    lengths = [5, 1, 9, 3, 7, 2, 6]
    game = lookup("doom")
    paths = write_latent_episodes(tmp_path, lengths + [0])  # an episode of 0 steps is left out
    data = LatentEpisodes.load(paths, game, torch.device("cpu"))
    assert list(data.lengths) == lengths
    seen = []
    generator = torch.Generator().manual_seed(0)
    for batch in data.batches(3, np.random.default_rng(0), 4, generator):
        B, L, _ = batch.z.shape
        assert L == int(batch.mask.sum(1).max())
        for b in range(B):
            episode, steps = int(batch.z[b, 0, 0]) // 1000, int(batch.mask[b].sum())
            seen.append(episode)
            assert steps == lengths[episode]
            frames = torch.arange(steps, dtype=torch.float32)
            torch.testing.assert_close(batch.z[b, :steps, 0], episode * 1000 + frames)  # σ ≈ 0: z = μ
            torch.testing.assert_close(batch.next_z[b, :steps, 0], episode * 1000 + frames + 1)
            torch.testing.assert_close(batch.rewards[b, :steps], frames + 0.5)
            assert batch.dones[b, :steps].tolist() == [0.0] * (steps - 1) + [1.0]
            assert batch.actions[b, :steps].sum(1).eq(1).all()  # one-hot
            assert not batch.mask[b, steps:].any() and not batch.rewards[b, steps:].any()
    assert sorted(seen) == list(range(len(lengths)))


# --------------------------------------------------------------------------- dropout


def heads_inputs(model: MDNRNN, monkeypatch) -> list[torch.Tensor]:
    """Record every tensor that reaches ``model.heads``."""
    seen: list[torch.Tensor] = []
    heads = model.heads

    def recording(hidden: torch.Tensor) -> MDNOutput:
        seen.append(hidden.detach().clone())
        return heads(hidden)

    monkeypatch.setattr(model, "heads", recording)
    return seen


def test_training_with_dropout_masks_each_sequence_with_one_mask_for_every_step(monkeypatch):
    from dreamgym.config import MDNTrainConfig
    from dreamgym.games import lookup
    from dreamgym.mdnrnn import SequenceBatch, build_mdnrnn, mdnrnn_losses

    torch.manual_seed(0)
    model = build_mdnrnn(4, lookup("doom"), MDNTrainConfig(hidden_dim=64, dropout=0.5))
    assert model.config.dropout == 0.5
    B, L = 6, 7
    batch = SequenceBatch(
        torch.randn(B, L, 4),
        torch.eye(3)[torch.randint(3, (B, L))],
        torch.randn(B, L, 4),
        torch.randn(B, L),
        torch.zeros(B, L),
        torch.ones(B, L),
    )
    model.eval()
    unmasked, _ = model.lstm(torch.cat([batch.z, batch.actions], dim=-1))
    seen = heads_inputs(model, monkeypatch)
    model.train()
    mdnrnn_losses(model, batch, 10.0, torch.Generator().manual_seed(1))
    ratio = seen[0] / unmasked  # (B, L, hidden_dim): the mask, where h is not 0
    mask = ratio[:, 0]
    assert set(mask.round(decimals=4).unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)
    torch.testing.assert_close(ratio, mask[:, None].expand_as(ratio))  # the same mask at every step
    assert all(not torch.equal(mask[0], mask[b]) for b in range(1, B))  # each sequence its own
    assert 0.35 < (mask == 0).float().mean().item() < 0.65


def test_eval_mode_has_no_dropout_unless_a_mask_is_given():
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden_dim=8, dropout=0.5)).eval()
    z, a = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    plain = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden_dim=8)).eval()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(z, a)[0].mu, plain(z, a)[0].mu, rtol=0, atol=0)
    ones = torch.ones(2, 8)
    torch.testing.assert_close(model(z, a, dropout_mask=ones)[0].mu, plain(z, a)[0].mu, rtol=0, atol=0)


def test_a_step_with_a_mask_equals_the_sequence_forward_with_that_mask_and_never_masks_the_state():
    from dreamgym.mdnrnn import dropout_masks

    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden_dim=8, dropout=0.3)).eval()
    z, a = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    mask = dropout_masks((2, 8), 0.3, torch.Generator().manual_seed(0))
    sequence, final = model(z, a, dropout_mask=mask)
    _, unmasked_final = model(z, a)
    state = model.initial_state(2)
    for t in range(5):
        step, state = model.step(z[:, t], a[:, t], state, mask)
        torch.testing.assert_close(step.reward, sequence.reward[:, t])
    torch.testing.assert_close(state[0], final[0])
    torch.testing.assert_close(final[0], unmasked_final[0], rtol=0, atol=0)


def test_dropout_zero_draws_nothing_from_the_generator():
    from dreamgym.mdnrnn import dropout_masks

    generator = torch.Generator().manual_seed(5)
    assert dropout_masks((3, 8), 0.0, generator) is None
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(5).get_state())


def test_train_mdnrnn_with_dropout_trains_with_masks_and_stores_the_rate(tmp_path, monkeypatch):
    from dataclasses import replace

    from dreamgym.config import MDNTrainConfig
    from dreamgym.games import lookup
    from dreamgym.mdnrnn import train_mdnrnn
    from dreamgym.training import read_checkpoint, train_epochs
    from dreamgym.vae import ConvVAE, VAEConfig

    for plot in ("plot_curves", "plot_predictions"):  # matplotlib would take most of the test's time
        monkeypatch.setattr(f"dreamgym.mdnrnn.{plot}", lambda *args, **kwargs: None)
    game = lookup("doom")
    vae = ConvVAE(VAEConfig(z_dim=3))  # the V stage's checkpoint, untrained: M's plots decode with it
    train_epochs(tmp_path / "vae", vae, torch.optim.Adam(vae.parameters()), 1, lambda epoch: {"loss": 0.0}, {})
    (tmp_path / "latents").mkdir()
    write_latent_episodes(tmp_path / "latents", [6, 4, 8, 5])
    config = MDNTrainConfig(hidden_dim=8, epochs=1, batch_size=2, dropout=0.5)
    weights = {}
    for name, settings in (("plain", replace(config, dropout=0.0)), ("again", config), ("dropout", config)):
        model, _ = train_mdnrnn(tmp_path, game, settings, force=True, device="cpu")
        assert model.config.dropout == settings.dropout
        weights[name] = model.head.weight.detach().clone()
    torch.testing.assert_close(weights["dropout"], weights["again"], rtol=0, atol=0)  # seeded: reproducible
    assert not torch.allclose(weights["dropout"], weights["plain"])  # the masks took part
    assert read_checkpoint(tmp_path / "mdnrnn")["config"]["mdnrnn"]["dropout"] == 0.5
