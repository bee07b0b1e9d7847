"""docs/architecture.md stays true: it lists exactly the modules there are, each on its
floor, and no module imports one on a higher floor."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
MIGRATIONS = "sequencer/store/migrations/versions/"
ROW = re.compile(r"^\| `([^`]+)` \| (\w+) \| .+ \|$")
FLOOR_ROW = re.compile(r"^\| (\d+) (\w+) \| .+ \| .+ \|$")


def floors() -> dict[str, int]:
    return {m[2]: int(m[1]) for line in DOC.read_text().splitlines()
            if (m := FLOOR_ROW.match(line))}


def documented() -> dict[str, str]:
    return {m[1]: m[2] for line in DOC.read_text().splitlines() if (m := ROW.match(line))}


def on_disk() -> set[str]:
    found = set()
    for path in sorted([*(ROOT / "sequencer").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(MIGRATIONS):
            found.add(MIGRATIONS)
        elif path.name != "__init__.py":
            found.add(name)
    return found


def module_of(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/").replace("/", ".")


def floor_of(module: str, table: dict[str, str], levels: dict[str, int]) -> int | None:
    """The floor of a module, or of the package it names (its modules' lowest floor)."""
    mine = [levels[floor] for path, floor in table.items()
            if module_of(path) == module or module_of(path).startswith(module + ".")]
    return min(mine) if mine else None


def test_the_map_lists_exactly_the_modules_that_exist() -> None:
    table = documented()
    assert len(table) > 50, "the module table of docs/architecture.md was not found"
    assert sorted(set(table) - on_disk()) == [], "listed in docs/architecture.md, not on disk"
    assert sorted(on_disk() - set(table)) == [], "on disk, missing from docs/architecture.md"


def test_every_listed_floor_is_one_of_the_floors() -> None:
    levels = floors()
    assert set(levels) >= {"core", "store", "usecases", "workers"}
    assert {path: floor for path, floor in documented().items() if floor not in levels} == {}


def test_no_module_imports_one_on_a_higher_floor() -> None:
    table, levels = documented(), floors()
    upward = []
    for path, floor in table.items():
        files = sorted((ROOT / path).glob("*.py")) if path.endswith("/") else [ROOT / path]
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in ("sequencer", "workers"):
                        continue
                    target = floor_of(name, table, levels)
                    if target is not None and target > levels[floor]:
                        upward.append(f"{file.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert upward == []
