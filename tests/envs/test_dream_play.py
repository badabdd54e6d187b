"""A person can watch and play a dream: gymnasium's `play` finds the dream's key map, and
`render_mode="human"` shows V's frames in a window large enough to see (SDL's dummy video
driver: no window opens)."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pygame
import pytest
from gymnasium.utils.play import play

import dreamgym
from dreamgym.envs.dream import keys_to_action


@pytest.fixture(autouse=True)
def no_window(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    yield
    pygame.quit()


def make(model_dirs, game: str, render_mode: str) -> gym.Env:
    return gym.make(dreamgym.ENV_IDS[game][0], world_model=str(model_dirs[game]), render_mode=render_mode)


def test_doom_keys_are_arrows_or_a_d_for_left_and_right():
    assert keys_to_action("doom") == {
        (pygame.K_LEFT,): 2,
        (ord("a"),): 2,
        (pygame.K_RIGHT,): 1,
        (ord("d"),): 1,
    }


def test_carracing_keys_steer_accelerate_and_brake_alone_and_together():
    mapping = keys_to_action("carracing")
    space = dreamgym.get_game("carracing").action_space()
    assert all(action in space for action in mapping.values())
    expected = {
        (pygame.K_LEFT,): [-1, 0, 0],
        (ord("d"),): [1, 0, 0],
        (pygame.K_UP,): [0, 1, 0],
        (ord("s"),): [0, 0, 0.8],
        tuple(sorted((pygame.K_UP, pygame.K_LEFT))): [-1, 1, 0],
        tuple(sorted((ord("w"), ord("d")))): [1, 1, 0],
        tuple(sorted((ord("a"), ord("w"), ord("s")))): [-1, 1, 0.8],
    }
    for keys, action in expected.items():
        np.testing.assert_array_equal(mapping[keys], np.array(action, dtype=np.float32), err_msg=str(keys))
    assert tuple(sorted((pygame.K_LEFT, pygame.K_RIGHT))) not in mapping  # both ways at once: no-op


@pytest.mark.parametrize(
    "game,presses,expected",
    [
        ("doom", [[pygame.K_LEFT], [ord("d")]], [0, 2, 1]),
        ("carracing", [[pygame.K_UP, ord("a")], [pygame.K_DOWN]], [[0, 0, 0], [-1, 1, 0], [0, 0, 0.8]]),
    ],
)
def test_play_uses_the_dreams_own_key_map(model_dirs, game, presses, expected):
    """`play(env)` with no keys_to_action looks the map up on the env (through its wrappers);
    key presses become the mapped actions, no key the no-op."""
    env = make(model_dirs, game, "rgb_array")
    noop = 0 if game == "doom" else np.zeros(3, np.float32)
    actions = []

    def press_next_keys(obs, next_obs, action, reward, terminated, truncated, info):
        actions.append(np.asarray(action).tolist())
        for key in presses[len(actions) - 2] if len(actions) >= 2 else ():
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key))
        if len(actions) <= len(presses):
            for key in presses[len(actions) - 1]:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
        else:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    play(env, zoom=8, seed=0, callback=press_next_keys, noop=noop)
    np.testing.assert_allclose(np.array(actions, dtype=np.float32), np.array(expected, dtype=np.float32))


@pytest.mark.parametrize("game", sorted(dreamgym.ENV_IDS))
def test_human_render_mode_shows_v_decoding_scaled_8x_at_the_game_frame_rate(model_dirs, game):
    human, pictures = make(model_dirs, game, "human"), make(model_dirs, game, "rgb_array")
    assert "human" in human.metadata["render_modes"]
    human.reset(seed=0)
    pictures.reset(seed=0)
    window = pygame.display.get_surface()
    assert window is not None and window.get_size() == (512, 512)
    shown = pygame.surfarray.array3d(window).swapaxes(0, 1)  # (height, width, 3)
    frame = pictures.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(shown[::8, ::8], frame)
    np.testing.assert_array_equal(shown[7::8, 7::8], frame)  # each pixel an 8×8 block
    action = np.array([0.0, 1.0, 0.0], np.float32) if game == "carracing" else 1
    start, steps = time.monotonic(), 7
    for _ in range(steps):
        human.step(action)
    fps = human.metadata["render_fps"]
    assert fps == {"doom": 35, "carracing": 50, "boxing": 30}[game]
    assert time.monotonic() - start >= (steps - 1) / fps  # the window keeps to the frame rate
    assert human.render() is None
    human.close()
    pictures.close()
    assert not pygame.display.get_init()
