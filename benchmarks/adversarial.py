"""The adversarial pass over the public surface, finding by finding: each finding of the pass
(high, medium, and the low ones that were fixed) names the tests that reproduce its input and
check what must happen instead. This runs them all in one pytest session and prints, by
severity, how many findings hold (every test of it passes) and which fail.

    python benchmarks/adversarial.py [--severity high,medium] [--junit OUT.xml]

A finding with no test is listed as "untested", not as held. Exit status 0 when every tested
finding holds. Takes ~5 minutes on 2 cores (the destination tests build a tiny Doom run first).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FINDINGS: list[tuple[str, str, list[str]]] = [
    (
        "high",
        "export into a directory of other files removes them",
        ["test_destinations.py::test_export_refuses_a_directory_of_other_files_and_keeps_them"],
    ),
    (
        "high",
        "export --to the run itself replaces the run",
        ["test_destinations.py::test_export_refuses_the_run_itself_and_its_parts"],
    ),
    (
        "high",
        "export --to RUN/episodes deletes the episodes",
        ["test_destinations.py::test_export_refuses_the_run_itself_and_its_parts"],
    ),
    ("medium", "export --to an existing file replaces it", ["test_destinations.py::test_export_refuses_a_file"]),
    (
        "medium",
        "demo --out a run deletes its controller; export writes a model its loader refuses",
        [
            "test_destinations.py::test_demo_refuses_a_run_and_keeps_its_controller",
            "test_destinations.py::test_a_controller_of_another_dream_is_not_saved",
        ],
    ),
    (
        "medium",
        "sizes that each pass allocate ~26 GB together",
        ["test_checkpoint.py::test_sizes_that_each_pass_are_refused_together_or_against_the_file_before_m_is_built"],
    ),
    (
        "medium",
        "an episode file's extra 1 GiB member is decompressed",
        ["test_episodes.py::test_an_extra_member_is_never_decompressed_and_the_sizes_are_bounded_together"],
    ),
    (
        "medium",
        "iterate locks only the directory it was named with",
        ["test_iterate.py::test_iterate_holds_the_lock_of_its_rounds_and_of_its_start_run"],
    ),
    (
        "medium",
        "a round symlinked to another is trusted",
        [
            "test_iterate.py::test_a_round_linked_to_another_directory_is_refused",
            "test_iterate.py::test_a_round_copied_from_another_round_or_run_is_refused_by_name",
        ],
    ),
    (
        "medium",
        "runs record absolute paths: a moved run cannot continue",
        ["test_pipeline.py::test_a_round_moved_with_its_parent_still_finds_its_parent_episodes_and_v"],
    ),
    (
        "medium",
        "a user env without render_mode crashes collect",
        ["test_generic_game.py::test_an_env_is_made_as_its_author_wrote_it_whatever_it_does_with_render_mode"],
    ),
    (
        "medium",
        "a user env raising in step or reset is a raw traceback",
        ["test_generic_game.py::test_an_env_that_fails_in_step_or_reset_is_one_error_naming_it_and_the_episode"],
    ),
    (
        "medium",
        "a full disk or ulimit -f is a raw traceback",
        [
            "test_pipeline.py::test_a_full_disk_at_a_checkpoint_is_a_clear_error_and_the_last_checkpoint_survives",
            "test_checkpoint.py::test_saves_that_hit_a_file_size_limit_are_clear_errors_and_keep_the_old_files",
        ],
    ),
    (
        "low",
        "an edited frozen eval_seed in iterate.json is used",
        ["test_iterate.py::test_an_edited_tuning_seed_in_iterate_json_is_refused_once_round_0_is_scored"],
    ),
    ("low", "bare JSON errors name no file", ["test_faults.py::test_a_damaged_record_is_an_error_that_names_its_file"]),
    (
        "low",
        "unknown or non-dict reset options are ignored",
        ["envs/test_bad_input.py::test_reset_options_a_dream_does_not_know_are_refused"],
    ),
    (
        "low",
        "step after close keeps working",
        ["envs/test_bad_input.py::test_step_after_close_is_refused_like_step_before_reset"],
    ),
    (
        "low",
        "a dream pickled or copied mid-episode needs a reset, undocumented",
        ["envs/test_bad_input.py::test_a_dream_copied_or_pickled_mid_episode_must_be_reset_and_then_runs"],
    ),
    ("low", "num_envs=10**9 is numpy's MemoryError", ["envs/test_vector.py::test_bad_vector_settings_are_refused"]),
    ("low", "τ = 1e300 is blamed on the weights", ["envs/test_bad_input.py::test_bad_temperature_is_refused"]),
    (
        "low",
        "evaluate --env-kwargs '[1]' or '{\"bogus\": 1}' give tracebacks",
        [
            "test_cli.py::test_env_kwargs_that_are_not_a_json_object_name_the_flag",
            "test_cli.py::test_an_env_that_refuses_its_keywords_is_one_line_naming_the_episode",
        ],
    ),
    (
        "low",
        "the library's evaluate(env, 'x.zip') runs a zip's code with no consent",
        [
            "test_generic_game.py::test_the_pixel_game_goes_through_the_pipeline_and_becomes_registered_ids",
            "test_cli.py::test_an_sb3_zip_is_not_loaded_without_consent",
        ],
    ),
]
"""(severity, the finding as the pass saw it, the tests that show it holds; paths under tests/)."""

SEVERITIES = ("high", "medium", "low")


def outcomes(report: Path) -> dict[str, bool]:
    """pytest's JUnit report -> "file::function" -> whether every case of it passed."""
    passed: dict[str, bool] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        function = case.get("name", "").split("[")[0]
        node = f"{module.removeprefix('tests/')}.py::{function}"
        failed = any(child.tag in ("failure", "error", "skipped") for child in case)
        passed[node] = passed.get(node, True) and not failed
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--severity", default=",".join(SEVERITIES), help="comma-separated severities to run")
    parser.add_argument("--junit", type=Path, help="keep pytest's JUnit report here")
    args = parser.parse_args()
    wanted = [s for s in args.severity.split(",") if s]
    unknown = sorted(set(wanted) - set(SEVERITIES))
    if unknown:
        parser.error(f"unknown severity {unknown}; expected some of {list(SEVERITIES)}")
    findings = [f for f in FINDINGS if f[0] in wanted]
    nodes = sorted({f"tests/{node}" for _, _, tests in findings for node in tests})
    with tempfile.TemporaryDirectory() as scratch:
        report = args.junit or Path(scratch) / "report.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *nodes],
            cwd=REPO,
            check=False,
        )
        results = outcomes(report)
    print(f"\n{'severity':8} {'held':>4} {'failed':>6} {'untested':>8}")
    failures = []
    for severity in wanted:
        rows = [(finding, tests) for s, finding, tests in findings if s == severity]
        held = [f for f, tests in rows if tests and all(results.get(t, False) for t in tests)]
        untested = [f for f, tests in rows if not tests]
        failed = [f for f, tests in rows if tests and f not in held]
        failures += [(severity, f) for f in failed]
        print(f"{severity:8} {len(held):>4} {len(failed):>6} {len(untested):>8}")
        for finding in untested:
            print(f"    untested: {finding}")
    for severity, finding in failures:
        print(f"FAILED ({severity}): {finding}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
