"""The project's shape, read from the source with the ast module: model/ and data/ are
libraries that import no other package of the project, and the packages form no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGES = ("model", "data", "viz", "config", "training")
LIBRARIES = ("model", "data")
COMMANDS_IN_PACKAGES = {"data/prepare.py"}  # a command whose path nanoGPT's users know; not part of the library


def project_files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if p.relative_to(REPO).parts[0] not in ("tests", ".git")]


def imported_packages(path: Path, own: str) -> set[str]:
    """The project packages a file of package `own` imports anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [own] if node.level else [node.module or ""]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found


def package_graph() -> dict[str, set[str]]:
    graph = {package: set() for package in PACKAGES}
    for path in project_files():
        relative = path.relative_to(REPO)
        if relative.parts[0] in PACKAGES and relative.as_posix() not in COMMANDS_IN_PACKAGES:
            graph[relative.parts[0]] |= imported_packages(path, relative.parts[0]) - {relative.parts[0]}
    return graph


def test_model_and_data_import_no_other_project_package():
    graph = package_graph()
    for library in LIBRARIES:
        assert graph[library] == set(), f"{library}/ imports {sorted(graph[library])}"


def test_packages_import_downward_only():
    """model and data at the bottom; viz and config above them; training above config; the commands on top."""
    below = {"model": set(), "data": set(), "viz": {"model", "data"}, "config": {"model", "data"},
             "training": {"model", "data", "config"}}
    for package, imported in package_graph().items():
        assert imported <= below[package], f"{package}/ imports {sorted(imported - below[package])}"


def test_no_cycle_among_the_packages():
    graph, done, path = package_graph(), set(), []

    def visit(package: str) -> None:
        assert package not in path, f"import cycle: {' -> '.join(path + [package])}"
        if package in done:
            return
        path.append(package)
        for target in sorted(graph[package]):
            visit(target)
        path.pop()
        done.add(package)

    for package in PACKAGES:
        visit(package)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The rule would be empty if the walk missed imports tucked into a function to dodge a cycle."""
    source = tmp_path / "x.py"
    source.write_text("import torch\n\ndef f():\n    from config.errors import UserError\n    from . import y\n")
    assert imported_packages(source, "model") == {"config", "model"}
