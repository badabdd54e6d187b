"""The data collectors on the real games."""

from __future__ import annotations

import numpy as np

from dreamgym.collect import CarRacingPilot, on_road, signed_angle
from dreamgym.games import get_game


def test_signed_angle_is_positive_counter_clockwise():
    assert np.isclose(signed_angle(np.array([1.0, 0.0]), np.array([0.0, 2.0])), np.pi / 2)
    assert np.isclose(signed_angle(np.array([1.0, 0.0]), np.array([0.0, -1.0])), -np.pi / 2)
    assert np.isclose(signed_angle(np.array([1.0, 1.0]), np.array([2.0, 2.0])), 0.0)


def test_the_carracing_pilot_drives_along_the_track_with_settings_drawn_per_episode():
    env = get_game("carracing").make_real_env()
    try:
        for seed in (0, 1):
            pilot = CarRacingPilot(np.random.default_rng(seed), env)
            env.reset(seed=seed)
            total, road_steps = 0.0, 0
            for _ in range(300):
                action = pilot(None)
                assert env.action_space.contains(action)
                _, reward, terminated, truncated, _ = env.step(action)
                total += reward
                road_steps += on_road(env.unwrapped)
                assert not (terminated or truncated)
            # Random actions earn about -30 in 300 steps and barely move the car.
            assert total > 100 and road_steps > 200, (seed, total, road_steps)
        assert CarRacingPilot(np.random.default_rng(0), env).target_speed != pilot.target_speed
    finally:
        env.close()


def test_the_carracing_pilot_stops_stands_and_drives_on():
    env = get_game("carracing").make_real_env()
    try:
        pilot = CarRacingPilot(np.random.default_rng(0), env)
        env.reset(seed=0)
        speeds = []
        for step in range(400):
            pilot.stop_rate = 1.0 if step == 150 else 0.0  # one stop, at speed, on the road
            env.step(pilot(None))
            speeds.append(float(np.linalg.norm(env.unwrapped.car.hull.linearVelocity)))
        assert speeds[149] > 20, speeds[149]
        assert min(speeds[150:270]) < 1.0, "braked to a standstill"
        assert speeds[-1] > 20, "and drove on"
    finally:
        env.close()
