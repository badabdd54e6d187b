"""CarRacing-v3: its controls, the track-following pilot that records its data, its presets
and its SB3 recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from dreamgym.games.spec import SMALL_PRESET, TINY_PRESET, Game

if TYPE_CHECKING:
    import torch


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": TINY_PRESET,
    "small": SMALL_PRESET,
    "cpu": {
        "collect": {"episodes": 600},
        "vae": {"epochs": 3, "frames_per_epoch": 400_000},
        "mdnrnn": {"epochs": 100, "batch_size": 16},
        "controller": {"generations": 200, "population": 64, "trials": 8},
    },
    "paper": {
        "collect": {"episodes": 10_000},
        "vae": {"epochs": 10},
        "mdnrnn": {"epochs": 20, "batch_size": 100},
        "controller": {"generations": 1800, "population": 64, "trials": 16},
    },
}
"""``dreamgym pipeline carracing --preset NAME``; V's and M's sizes are the game's own."""

SB3_RECIPES: dict[str, dict[str, Any]] = {
    "PPO": {"num_envs": 128, "n_steps": 128, "batch_size": 4096, "n_epochs": 4, "learning_rate": 3e-4, "gamma": 0.99},
}
"""The settings of ``examples/ppo_carracing.py``."""


def car_racing_controls(raw: torch.Tensor) -> torch.Tensor:
    """The original code's mapping of 3 tanh outputs: steer = a0, gas = (a1 + 1) / 2,
    brake = clip(a2, 0, 1)."""
    import torch

    steer, gas, brake = raw.unbind(-1)
    return torch.stack([steer, (gas + 1) / 2, brake.clamp(0, 1)], dim=-1)


def signed_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle from 2-D vector a to b, in radians, positive counter-clockwise."""
    return float(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))


def on_road(car_racing: Any) -> bool:
    """Whether any wheel of an (unwrapped) CarRacing car touches a track tile."""
    return any(wheel.tiles for wheel in car_racing.car.wheels)


class CarRacingPilot:
    """A noisy track follower: steers toward a point a few tiles ahead on the track, holds a
    target speed, and now and then swerves off for a while, so the data shows the whole lap,
    driving at speed, leaving the road and coming back. Speed, gain, throttle limit, noise,
    swerve rate and stop rate are drawn per episode. The steering noise is slow (an
    Ornstein-Uhlenbeck drift), so the car's path answers the action and not only the road, and
    some episodes open the throttle fully, even in turns, so M sees the car spin. Now and then
    it brakes to a standstill, waits and drives on, so M sees that the pedals set the speed (a
    dream that never saw the car stop moves it without gas). It reads the track from the
    simulator: it is a data collector only (controllers never see anything but [z, h])."""

    def __init__(self, rng: np.random.Generator, env: Any) -> None:
        self.rng, self.env = rng, env
        self.target_speed = rng.uniform(50.0, 110.0)
        self.gain = rng.uniform(0.8, 1.5)
        self.lookahead = int(rng.integers(4, 8))
        self.gas_limit = rng.uniform(0.5, 1.0)
        self.turn_easing = rng.uniform(0.0, 0.7)
        self.drift_scale = rng.uniform(0.0, 0.15)
        self.swerve_rate = rng.uniform(0.0, 0.004)
        self.drift, self.swerve, self.swerve_left = 0.0, 0.0, 0
        # Stops draw from their own stream, so the driving between them is what it was without.
        self.stop_rng = rng.spawn(1)[0]
        self.stop_rate, self.stop_left = self.stop_rng.uniform(0.0, 0.004), 0

    def __call__(self, observation: Any) -> np.ndarray:
        car_racing = self.env.unwrapped
        hull = car_racing.car.hull
        position = np.array(hull.position)
        track = np.array([(x, y) for _, _, x, y in car_racing.track])
        nearest = int(np.argmin(np.sum((track - position) ** 2, axis=1)))
        road = on_road(car_racing)
        # Off the road: aim just ahead and slow down, or pure pursuit circles the target forever.
        lookahead = self.lookahead if road else 2
        target = track[(nearest + lookahead) % len(track)] - position
        forward = np.array([-np.sin(hull.angle), np.cos(hull.angle)])
        # Positive angle: the target is to the left; CarRacing steers left with -1.
        error = signed_angle(forward, target)
        steer = -self.gain * error
        # Drift: correlation 0.95 per frame (about a second), stationary std drift_scale.
        self.drift = 0.95 * self.drift + self.rng.normal(0.0, self.drift_scale * np.sqrt(1 - 0.95**2))
        if road:
            steer += self.drift
            if self.swerve_left == 0 and self.rng.random() < self.swerve_rate:
                self.swerve = self.rng.choice([-1.0, 1.0]) * self.rng.uniform(0.5, 1.0)
                self.swerve_left = int(self.rng.integers(5, 30))
        if self.swerve_left > 0:
            steer, self.swerve_left = self.swerve, self.swerve_left - 1
        speed = float(np.linalg.norm(hull.linearVelocity))
        # Slow down for the turn ahead: the track's change of heading over the next ~12 tiles.
        here = track[(nearest + 1) % len(track)] - track[nearest]
        ahead = track[(nearest + 13) % len(track)] - track[(nearest + 12) % len(track)]
        turn = abs(signed_angle(here, ahead))
        target_speed = self.target_speed * max(0.3, 1.0 - turn / 2.0) if road else 15.0
        # A stop: brake to a standstill (~1 s from speed 60), stand, then drive on.
        if self.stop_left == 0 and road and self.stop_rng.random() < self.stop_rate:
            self.stop_left = int(self.stop_rng.integers(40, 120))
        if self.stop_left > 0:
            target_speed, self.stop_left = 0.0, self.stop_left - 1
        steer = float(np.clip(steer, -1.0, 1.0))
        # Full throttle in a turn spins the rear wheels: most episodes ease off as the wheel turns.
        gas = float(np.clip((target_speed - speed) / 5.0, 0.0, self.gas_limit) * (1.0 - self.turn_easing * abs(steer)))
        brake = float(np.clip((speed - target_speed) / 10.0, 0.0, 0.8))
        return np.array([steer, gas, brake], dtype=np.float32)


CARRACING = Game(
    name="carracing",
    real_env_id="CarRacing-v3",
    actions=gym.spaces.Box(
        np.array([-1.0, 0.0, 0.0], dtype=np.float32), np.array([1.0, 1.0, 1.0], dtype=np.float32), dtype=np.float32
    ),
    dream_env_id="DreamCarRacing-v0",
    latent_env_id="LatentCarRacing-v0",
    max_episode_steps=1000,
    crop_rows=(0, 84),  # the dashboard dropped
    reward_threshold=900.0,
    z_dim=32,
    hidden_dim=256,
    render_fps=50,
    dream_temperature=1.0,  # CarRacing's own M (the paper trained its controller without a dream)
    controller_map=car_racing_controls,
    exploration=CarRacingPilot,
    # As CarRacing-v3's own keyboard play: steer -1/+1, gas 1.0, brake 0.8
    buttons=(
        (("LEFT", "a"), (-1.0, 0.0, 0.0)),
        (("RIGHT", "d"), (1.0, 0.0, 0.0)),
        (("UP", "w"), (0.0, 1.0, 0.0)),
        (("DOWN", "s"), (0.0, 0.0, 0.8)),
    ),
    shipped_model="car_racing",
    presets=PRESETS,
    sb3_recipes=SB3_RECIPES,
)
