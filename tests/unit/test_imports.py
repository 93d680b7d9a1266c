"""Which way imports run: dags -> plugins -> the library, never back up, and no circle.

Read from the source (every import statement, also those inside functions), so a circle
hidden in a function body counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY, PLUGINS = ROOT / "include", ROOT / "plugins"


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file under ``root``."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = {**_modules(LIBRARY), **_modules(PLUGINS)}


def _imported(module: str, path: Path) -> Iterator[str]:
    """The project modules ``module`` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from . import records`` imports the module records, not only the package
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name in MODULES and name != module)


# The commands that run Airflow itself (`yieldops check` loads the DAG files in a DagBag,
# `yieldops run` runs the DAGs in-process): above Airflow, not under it.
DRIVE_AIRFLOW = {"yieldops.checks.dags", "yieldops.demo.inprocess"}
GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in GRAPH[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle():
    assert _circles() == []


def test_the_library_never_imports_airflow_or_the_glue():
    def top_level_names(path: Path) -> set[str]:
        tree = ast.parse(path.read_text(), str(path))
        plain = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        absolute = {
            n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
        }
        return {name.split(".")[0] for name in plain | absolute}

    offenders = {
        module: sorted(top_level_names(path) & {"airflow", "yieldops_airflow", "yieldops_plugin"})
        for module, path in MODULES.items()
        if module.startswith("yieldops.") and module not in DRIVE_AIRFLOW
    }
    assert {module: names for module, names in offenders.items() if names} == {}
