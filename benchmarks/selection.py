"""Which round a ``dreamgym online`` run kept, against the round the plain rule (a new best
confirmed on ``eval_episodes + confirm_episodes`` tuning episodes, no second check) would have
kept, and, with ``--score``, both agents on unseen seeds. With ``--finalists K``, a third rule,
the play-off ``dreamgym online --finalists`` ends a run with, played on a run made without it:
training as if stopped at ``--cut`` real steps, the K confirmed rounds up to there with the best
tuning means each played on ``--final-episodes`` fresh tuning seeds, the best of them kept; the
total it prints counts the play-off's real steps.

    python benchmarks/selection.py runs/car_reconfirm_s0
    python benchmarks/selection.py runs/car_reconfirm_s0 --score 100 --seed 60000
    python benchmarks/selection.py runs/car_reconfirm_s0 --finalists 3 --final-episodes 30 --cut 510000 --score 100

It reads the tuning returns ``rounds.json`` keeps in the order played, so the plain rule's
choice is exact wherever this run confirmed the same rounds; a round whose first episodes beat
the plain rule's best but not this run's was never confirmed, and is listed as unknown. Scoring
needs the rounds' copies: a run made with ``--keep-candidates`` (``RUN/candidates/round_K``).
The agents are played as the run's tuning episodes were (``--sample``, or its noise). Reports
numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dreamgym.evaluate import evaluate
from dreamgym.online import OnlineRound, finalists, load_settings, play_off_seed, read_rounds, stored_game
from dreamgym.rundir import RunDir


def plain_choices(rows: list[OnlineRound], first: int, confirmed: int) -> tuple[list[int], list[int]]:
    """The rounds the plain rule would have kept, in order, and the rounds it cannot judge (their
    first ``first`` returns beat its best, but this run did not play ``confirmed`` of them)."""
    kept: list[int] = []
    unknown: list[int] = []
    best = -np.inf
    for row in rows:
        returns = row.eval_returns or []
        if not returns or np.mean(returns[:first]) <= best:
            continue
        if len(returns) < confirmed:
            unknown.append(row.round)
        elif (score := float(np.mean(returns[:confirmed]))) > best:
            kept.append(row.round)
            best = score
    return kept, unknown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a `dreamgym online` run")
    parser.add_argument("--score", type=int, default=0, metavar="EPISODES", help="score the choices on unseen seeds")
    parser.add_argument("--seed", type=int, default=60_000, help="the first unseen seed")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--finalists", type=int, default=0, metavar="K", help="play off the K best confirmed rounds")
    parser.add_argument("--final-episodes", type=int, default=30, metavar="N", help="play-off episodes a finalist")
    parser.add_argument("--cut", type=int, default=None, metavar="STEPS", help="the real steps training stops at")
    args = parser.parse_args()
    game = stored_game(args.run)
    config = load_settings(args.run, game, {})
    every_row = read_rounds(args.run)
    rows = [r for r in every_row if r.eval_returns]
    if not rows:
        parser.error(f"{args.run} has no tuning returns yet (none scored, or a run older than the record of them)")
    first, confirmed = config.eval_episodes, config.eval_episodes + config.confirm_episodes
    print(f"| round | real steps | mean of {first} | mean of {confirmed} | final mean (episodes) |")
    print("|---|---|---|---|---|")
    for row in rows:
        returns = row.eval_returns or []
        cells = [f"{np.mean(returns[:n]):.1f}" if len(returns) >= n else "" for n in (first, confirmed)]
        print(f"| {row.round} | {row.real_steps:,} | {' | '.join(cells)} | {row.eval_mean:.1f} ({row.eval_count}) |")
    best = max(rows, key=lambda r: float(np.mean(r.eval_returns or [])))  # the first of equals, as the run kept
    kept, unknown = plain_choices(rows, first, confirmed)
    print(f"this run kept round {best.round}; the plain rule would keep {kept[-1] if kept else None}")
    if unknown:
        print(f"rounds the plain rule might have confirmed but this run did not: {unknown}")
    run = RunDir(args.run)
    play = {"sample": True} if config.sample else {"noise": config.tuning_noise}
    choices = [("this run's", best.round, run.best)]  # (rule, round, its copy)
    if kept:
        choices.append(("the plain rule's", kept[-1], run.candidate(kept[-1])))
    if args.finalists:
        cut = config.max_real_steps if args.cut is None else args.cut
        trained = max((r.real_steps for r in every_row if r.real_steps <= cut), default=0)
        seed = play_off_seed(config)
        results = []
        for row in finalists(args.run, [r for r in rows if r.real_steps <= cut], args.finalists):
            result = evaluate(
                game.latent_env_id,
                run.candidate(row.round),
                episodes=args.final_episodes,
                seed=seed,
                workers=args.workers,
                **play,
            )
            results.append((result.mean, row.round, sum(result.lengths)))
            print(f"finalist round {row.round} (tuning {np.mean(row.eval_returns or []):.1f}): {result.summary()}")
        if results:
            _, winner, _ = max(results, key=lambda result: result[0])  # the first of equals, as the loop keeps
            total = trained + sum(steps for _, _, steps in results)
            print(f"the play-off keeps round {winner}: {trained:,} real steps of training + play-off = {total:,}")
            choices.append(("the play-off's", winner, run.candidate(winner)))
    if not args.score:
        return
    scored: set[int] = set()
    for name, k, path in choices:
        if k in scored:
            print(f"{name} choice: round {k}, scored above")
            continue
        scored.add(k)
        if not path.is_dir():
            print(f"{name} choice: {path} is missing (a run made without --keep-candidates)")
            continue
        result = evaluate(game.latent_env_id, path, episodes=args.score, seed=args.seed, workers=args.workers, **play)
        print(f"{name} choice, {path.name}: {result.summary()}")


if __name__ == "__main__":
    main()
