"""The package's import rule (docs/architecture.md): each unit imports only units on floors below it,
so there is no import circle, at module level or inside functions, between packages or modules.

A unit is a top-level module (`recolor/color.py`) or a sub-package (`recolor/apply/`). The graph is
read from the source with `ast`, so an import deferred into a function counts like any other: a
deferred import is a way to start later, never a way round the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recolor

PACKAGE = Path(recolor.__file__).parent

# Low to high; a unit may import the units of lower floors only (and itself). Keep in step with the
# diagram in docs/architecture.md.
FLOORS: list[set[str]] = [
    {"__version__", "errors", "colorspace"},  # the version, the errors every command shows, sRGB and Lab's numbers
    {"color", "devices", "allocator"},  # what every command shares
    {"io"},  # real-world files
    {"nn"},  # the networks
    {"data"},  # prepare
    {"hub"},  # where models come from
    {"engine"},  # a trained generator run for inference
    {"apply"},
    {"eval"},  # scores what apply ships (its engine, its contact page)
    {"train"},  # validates with eval's metrics
    {"push"},  # cards describe training runs
    {"api"},  # the Python API: load_model, colorize
    {"cli"},
    {"__main__"},
    {"__init__"},  # the package's face: `recolor.load_model` and `recolor.colorize` (the API, loaded when used)
]
FLOOR_OF = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def unit_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_of(path: Path) -> str:
    parts = ("recolor", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(recolor module, line) for every `import recolor...` / `from recolor... import ...` in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "recolor":
            if node.module == "recolor":  # `from recolor import __version__` or `from recolor import api`
                found += [(f"recolor.{alias.name}", node.lineno) for alias in node.names]
            else:
                found += [(node.module, node.lineno)]
                # `from recolor.apply import pipeline`: the module pipeline, not only the package
                found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "recolor"]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (the package uses absolute ones)")
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_graph() -> dict[str, set[str]]:
    modules = {module_of(path): path for path in sources()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in imported_modules(path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_unit_has_a_floor():
    units = {unit_of(path) for path in sources()}
    assert units - FLOOR_OF.keys() == set(), "place the new unit on a floor (here and in docs/architecture.md)"


def test_no_unit_imports_one_on_its_floor_or_above():
    wrong = []
    for path in sources():
        unit = unit_of(path)
        for target, line in imported_modules(path):
            # `recolor.__version__` is the version literal (floor 0), `recolor` alone the package's face.
            target_unit = target.split(".")[1] if "." in target else "__init__"
            if target_unit != unit and target_unit in FLOOR_OF and FLOOR_OF[target_unit] >= FLOOR_OF[unit]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({unit}) imports {target} ({target_unit})")
    assert wrong == []


def test_no_import_circle_between_modules():
    assert find_cycle(module_graph()) is None


def test_the_cycle_finder_finds_a_circle_and_the_floor_check_sees_an_upward_import():
    # The checks above must be able to fail: a circle of three and an import from io up into apply.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert FLOOR_OF["apply"] > FLOOR_OF["io"]
