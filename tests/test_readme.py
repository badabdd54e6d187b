"""The README's Python snippets run as written, each in a fresh interpreter in an empty directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_shows_python_for_each_way_in():
    text = "\n".join(SNIPPETS)
    assert len(SNIPPETS) >= 5
    for use in ("gym.make(", "make_sb3_vec_env(", "dreamgym.register(", "Replay(", "step_tensor("):
        assert use in text, use


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_a_readme_snippet_runs_as_written(snippet, tmp_path):
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{snippet}\n{result.stderr[-4000:]}"
