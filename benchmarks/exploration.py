"""How much of the CarRacing track an exploration policy shows the world model.

    python benchmarks/exploration.py [--episodes 10] [--steps 1000] [--json OUT]

For each policy, over real CarRacing-v3 episodes (seeds 50,000 + i, never used for training):
the fraction of the track's tiles visited, the fraction of frames with no wheel on the track
(grass), the fraction at full throttle (gas > 0.9), the fraction standing (speed < 1), the
fraction of laps completed, the mean speed, and the episode return. A dream can only learn what
its data shows: a policy that never reaches the second half of a track, never leaves it or
never stops starves M of those transitions. Reports numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dreamgym.games import CarRacingPilot, lookup, on_road


def uniform_policy(rng: np.random.Generator) -> Callable[[object], np.ndarray]:
    """A fresh uniform random action every frame (steer in [-1, 1], gas and brake in [0, 1])."""

    def act(observation: object) -> np.ndarray:
        return np.array([rng.uniform(-1, 1), rng.uniform(0, 1), rng.uniform(0, 1)], np.float32)

    return act


class RandomParameterDriver:
    """The old default: throttle level, braking rate and steering noise drawn per episode, blind
    to the road."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.throttle = rng.uniform(0.2, 0.8)
        self.brake_rate = rng.uniform(0.0, 0.1)
        self.steer_scale = rng.uniform(0.1, 0.6)
        self.smoothing = rng.uniform(0.7, 0.95)
        self.steer = 0.0

    def __call__(self, observation: Any) -> np.ndarray:
        target = self.rng.normal(0.0, 1.0)
        self.steer = self.smoothing * self.steer + (1 - self.smoothing) * target * self.steer_scale * 4
        brake = self.rng.uniform(0.3, 1.0) if self.rng.random() < self.brake_rate else 0.0
        gas = 0.0 if brake else float(np.clip(self.throttle + self.rng.normal(0, 0.1), 0, 1))
        return np.array([np.clip(self.steer, -1, 1), gas, brake], dtype=np.float32)


POLICIES: dict[str, Callable[[np.random.Generator, object], Callable[[object], np.ndarray]]] = {
    "uniform random": lambda rng, env: uniform_policy(rng),
    "random-parameter driver": lambda rng, env: RandomParameterDriver(rng),
    "noisy pilot": CarRacingPilot,
}


def run_episode(policy_factory: Callable, seed: int, steps: int) -> dict[str, float]:
    env = lookup("carracing").make_real_env()
    rng = np.random.default_rng(seed)
    policy = policy_factory(rng, env)
    observation, _ = env.reset(seed=seed)
    car_racing = env.unwrapped
    total, grass, full, standing, speeds, length = 0.0, 0, 0, 0, [], 0
    try:
        for _ in range(steps):
            action = policy(observation)
            observation, reward, terminated, truncated, _ = env.step(action)
            full += action[1] > 0.9
            total += reward
            length += 1
            grass += not on_road(car_racing)
            speeds.append(float(np.linalg.norm(car_racing.car.hull.linearVelocity)))
            standing += speeds[-1] < 1.0
            if terminated or truncated:
                break
        tiles = car_racing.tile_visited_count / len(car_racing.track)
    finally:
        env.close()
    return {
        "tiles": tiles,
        "grass": grass / length,
        "full_throttle": full / length,
        "standing": standing / length,
        "lap": float(terminated and tiles > 0.9),
        "speed": float(np.mean(speeds)),
        "return": total,
        "steps": length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--policies", nargs="*", choices=list(POLICIES), help="default: all")
    args = parser.parse_args()
    results = {}
    print(
        f"{'policy':<26}{'tiles visited':>16}{'on grass':>10}{'gas > 0.9':>11}{'standing':>10}{'laps':>6}{'speed':>8}"
        f"{'return':>16}{'s/episode':>11}"
    )
    for name in args.policies or POLICIES:
        factory = POLICIES[name]
        start = time.perf_counter()
        episodes = [run_episode(factory, 50_000 + i, args.steps) for i in range(args.episodes)]
        seconds = (time.perf_counter() - start) / args.episodes
        summary = {key: [e[key] for e in episodes] for key in episodes[0]}
        results[name] = summary
        tiles, grass, full, standing, laps, speed, ret = (
            np.array(summary[k]) for k in ("tiles", "grass", "full_throttle", "standing", "lap", "speed", "return")
        )
        print(
            f"{name:<26}{tiles.mean():>9.1%} ± {tiles.std():.1%}{grass.mean():>10.0%}{full.mean():>11.0%}"
            f"{standing.mean():>10.0%}"
            f"{laps.mean():>6.0%}{speed.mean():>8.1f}{ret.mean():>9.1f} ± {ret.std():5.1f}{seconds:>11.1f}"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
