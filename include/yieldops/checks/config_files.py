"""Product and target YAML checked by their own loaders, each problem at its file and line.

The loaders report a field path (``wafer.radius_dies``); the line comes from the YAML node
tree (``yaml.compose``), which keeps where every key and item starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from yieldops.config import ConfigError, load_product, products
from yieldops.rollout.targets import TARGETS_FILE, load_targets

from .results import FAIL, OK, SKIP, Result, guarded, location

PRODUCT, TARGETS = "product YAML", "targets YAML"


def product_files(config_dir: Path) -> list[Path]:
    """The files ``yieldops.config.products`` loads, in its order."""
    return sorted((config_dir / "products").glob("*.y*ml"))


def check_config(config_dir: Path) -> list[Result]:
    targets = config_dir / TARGETS_FILE
    return _check_products(config_dir) + guarded(TARGETS, targets, partial(_check_targets, targets))


def _check_products(config_dir: Path) -> list[Result]:
    files = product_files(config_dir)
    if not files:
        return [Result(FAIL, PRODUCT, location(config_dir / "products"), "no product YAML files")]
    results = [r for path in files for r in guarded(PRODUCT, path, partial(_check_product, path))]
    if not any(r.failed for r in results):
        results += _check_product_set(config_dir)
    return results


def _check_product(path: Path) -> list[Result]:
    return _check_file(PRODUCT, path, lambda: load_product(path).name)


def _check_targets(path: Path) -> list[Result]:
    if not path.exists():  # load_targets reads a missing file as no targets
        return [Result(SKIP, TARGETS, location(path), "no file: no deployment targets")]
    return _check_file(
        TARGETS, path, lambda: ", ".join(t.name for t in load_targets(path)) or "no targets"
    )


def _check_file(what: str, path: Path, load: Callable[[], str]) -> list[Result]:
    """OK with what ``load`` says of the file, or one FAIL per problem its loader found."""
    try:
        summary = load()
    except ConfigError as exc:
        return config_problems(what, path, exc)
    return [Result(OK, what, location(path), summary)]


def _check_product_set(config_dir: Path) -> list[Result]:
    """The loader's rule across files: a product name defined twice."""
    try:
        products(config_dir)
    except ConfigError as exc:
        # The loader's message starts with the file that repeats the name.
        file, _, problem = str(exc).partition(": ")
        return [Result(FAIL, PRODUCT, location(file, field_line(Path(file), ["name"])), problem)]
    return []


def config_problems(what: str, path: Path, error: ConfigError) -> list[Result]:
    """One FAIL per problem behind a loader's ConfigError, at the line of the offending key."""
    cause = error.__cause__
    if isinstance(cause, ValidationError):
        return [
            Result(FAIL, what, location(path, field_line(path, e["loc"])), _field_problem(e))
            for e in cause.errors(include_url=False)
        ]
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark:
        line = cause.problem_mark.line + 1
        return [Result(FAIL, what, location(path, line), f"YAML syntax: {_syntax_problem(cause)}")]
    if cause is None:  # a rule of the loader's own, about the whole file
        return [Result(FAIL, what, location(path, 1), str(error).removeprefix(f"{path}: "))]
    return [Result(FAIL, what, location(path), str(cause))]


def field_line(path: Path, loc: Sequence[str | int]) -> int:
    """1-based line of the deepest key or list item of a field path that the file has.

    Parts the file lacks are passed over: a required key that is missing (the line of
    its parent), or the member name pydantic adds for a union type (``list[int]``).
    """
    node = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    if node is None:
        return 1
    line = node.start_mark.line
    for part in loc:
        found = _child(node, part)
        if found:
            start, node = found
            line = start.start_mark.line
    return line + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(where it starts, the node) of a mapping's key or a sequence's item."""
    if isinstance(node, yaml.MappingNode):
        return next(((k, v) for k, v in node.value if k.value == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _field_problem(error: ErrorDetails) -> str:
    field = ".".join(map(str, error["loc"]))
    problem = f"{field}: {error['msg']}" if field else error["msg"]
    value = error.get("input")
    # A scalar input only (not the mapping of a missing key), when the message lacks it
    if isinstance(value, (str, int, float, bool)) and repr(value) not in problem:
        problem += f" (got {value!r})"
    return problem


def _syntax_problem(error: yaml.MarkedYAMLError) -> str:
    if error.context and error.context_mark:
        return f"{error.problem} ({error.context} from line {error.context_mark.line + 1})"
    return str(error.problem)
