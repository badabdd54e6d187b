"""The package's layout: no module of dreamgym imports itself back through others."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dreamgym"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the dreamgym modules it imports, anywhere in its body (lazy imports included);
    importing ``dreamgym.a.b`` also runs the package ``dreamgym.a`` (unless the importer is
    inside it already; the root package only registers ids and imports the rest lazily)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dreamgym"):
                targets.add(node.module)
                targets |= {
                    f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules
                }
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.startswith("dreamgym")}
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        with_packages = set()
        for target in targets:
            parts = target.split(".")
            with_packages |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        graph[name] = {t for t in with_packages - own_packages if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, as strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_inside_dreamgym():
    graph = import_graph()
    assert len(graph) > 20 and "dreamgym.episodes" in graph["dreamgym.vae"]
    assert cycles(graph) == []


def run_directory_names() -> set[str]:
    """Every name ``dreamgym.rundir`` gives a file or directory of a run."""
    names = set()
    for node in ast.walk(ast.parse((PACKAGE / "rundir.py").read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[\w.{}:/]+", node.value):
            names |= {part.split("{")[0] for part in node.value.split("/")}
    return names - {""}


def path_joins(tree: ast.AST, names: set[str]) -> list[str]:
    """The ``x / NAME`` joins in ``tree`` whose right side is one of ``names`` (as a string, the
    start of an f-string, or a constant of that name imported from rundir)."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
            continue
        right = node.right
        if isinstance(right, ast.Constant) and isinstance(right.value, str):
            text = right.value
        elif isinstance(right, ast.JoinedStr) and right.values and isinstance(right.values[0], ast.Constant):
            text = str(right.values[0].value)
        else:
            continue
        if text in names or text.split("/")[0] in names or any(text == name for name in names if name.endswith("_")):
            found.append(f"line {node.lineno}: / {text!r}")
    return found


def test_only_rundir_joins_the_names_of_a_run_directory():
    names = run_directory_names()
    assert {"run.json", "episodes", "latents", "model", "checkpoint.pt", "round_", "agent.zip"} <= names
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "rundir.py":
            joins = path_joins(ast.parse(path.read_text()), names)
            if joins:
                offenders[str(path.relative_to(PACKAGE))] = joins
    assert offenders == {}, "ask dreamgym.rundir.RunDir for these paths"


def test_the_join_finder_finds_joins():
    tree = ast.parse('a = run / "episodes"\nb = run / f"round_{k}"\nc = run / "elsewhere"\nd = x / "vae/loss.png"')
    assert [join.split(":")[0] for join in path_joins(tree, {"episodes", "round_", "vae"})] == [
        "line 1",
        "line 2",
        "line 4",
    ]


def game_name_branches(tree: ast.AST, names: set[str]) -> list[str]:
    """Comparisons with a game's name, and tables keyed by one, in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            values = [
                e for side in sides for e in (side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side])
            ]
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                found.append(f"line {node.lineno}: a comparison with a game's name")
        elif isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in names for k in node.keys):
            found.append(f"line {node.lineno}: a table keyed by a game's name")
    return found


def test_only_the_games_package_branches_on_a_game():
    from dreamgym.games import GAMES

    names = set(GAMES) | {"boxing"}
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if "games" not in path.relative_to(PACKAGE).parts:
            found = game_name_branches(ast.parse(path.read_text()), names)
            if found:
                offenders[str(path.relative_to(PACKAGE))] = found
    assert offenders == {}, "put what differs between games in the game's module of dreamgym.games"


def test_the_branch_finder_finds_branches():
    tree = ast.parse('if game == "doom": pass\nif name in ("carracing", "x"): pass\nt = {"doom": 1}\nu = {"other": 2}')
    assert [found.split(":")[0] for found in game_name_branches(tree, {"doom", "carracing"})] == [
        "line 1",
        "line 2",
        "line 3",
    ]


def test_the_dream_envs_take_each_dream_setting_by_its_name_with_none_as_the_models_default():
    """DreamEnv and DreamVectorEnv spell out DreamSettings' fields as keywords (so that
    ``gym.make`` and ``help()`` show them); this keeps the three lists one, and each documented."""
    import dataclasses
    import inspect

    from dreamgym.config import DreamSettings
    from dreamgym.envs.dream import DreamEnv
    from dreamgym.envs.vector import DreamVectorEnv

    fields = [field.name for field in dataclasses.fields(DreamSettings)]
    for env in (DreamEnv, DreamVectorEnv):
        parameters = inspect.signature(env.__init__).parameters
        assert [name for name in parameters if name in fields] == fields, env.__name__
        assert all(parameters[name].default is None for name in fields), env.__name__
    documented = DreamEnv.__doc__ or ""
    assert [name for name in fields if f"``{name}``" not in documented] == []


def test_every_benchmark_script_still_imports_what_it_uses():
    """The benchmarks are run by hand, not by the suite: each must at least start (``--help``),
    so that a renamed or moved name in the package is caught here rather than months later."""
    import subprocess
    import sys

    scripts = sorted((PACKAGE.parent / "benchmarks").glob("*.py"))
    assert scripts
    for script in scripts:
        result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{script.name}: {result.stderr[-1500:]}"
