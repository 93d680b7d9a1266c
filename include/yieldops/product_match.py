"""Which product a landed file belongs to: the ``match:`` blocks of the product YAML files.

Tried in this order, the first that matches wins:

1. the products whose YAML has a ``match:`` block, in the order of their file names; a
   block matches when every field it gives matches (``path`` is a prefix of the landing
   key, the other fields regular expressions searched in the MIR field or file name);
2. then the products without one, by MIR ``PART_TYP`` equal to the product's name.

A file that matches nothing is quarantined with what the file says about itself and the
command that onboards it (:class:`NoProductMatch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa

from .config import Match, ProductConfig, config_dir, products


@dataclass(frozen=True)
class FileFacts:
    """What a landed file says about itself: its MIR and where it landed."""

    key: str  # landing key, relative to the landing zone
    part_type: str | None = None
    family: str | None = None
    job_name: str | None = None
    process: str | None = None
    tester_type: str | None = None
    tester_node: str | None = None

    @classmethod
    def of(cls, key: str, lots: pa.Table) -> FileFacts:
        """The facts of a decoded file (its ``lots`` table) landed under ``key``."""
        mir = lots.to_pylist()[0] if lots.num_rows else {}
        fields = ("part_type", "family", "job_name", "process", "tester_type", "tester_node")
        return cls(key, **{name: mir.get(name) for name in fields})

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.key).name

    def describe(self) -> str:
        shown = {
            "PART_TYP": self.part_type,
            "FAMLY_ID": self.family,
            "JOB_NAM": self.job_name,
            "PROC_ID": self.process,
            "TSTR_TYP": self.tester_type,
            "NODE_NAM": self.tester_node,
        }
        return ", ".join(f"{name} {value!r}" for name, value in shown.items())


class NoProductMatch(LookupError):
    """No product configuration takes the file; the message says what the file is."""

    def __init__(self, facts: FileFacts, directory: Path) -> None:
        self.facts = facts
        super().__init__(
            f"no product matches {facts.key}: the file says {facts.describe()}; "
            f"configured in {directory / 'products'}: "
            f"{', '.join(sorted(products(directory))) or 'none'}. To onboard it: "
            f"yieldops product init {facts.file_name} --name <PRODUCT> "
            f"--config {directory}"
        )


def matches(rule: Match, facts: FileFacts) -> bool:
    """Whether every field the rule gives matches the file."""
    if rule.path is not None and not facts.key.startswith(rule.path):
        return False
    values = {**facts.__dict__, "file_name": facts.file_name}
    return all(
        re.search(pattern, values[field] or "") is not None
        for field, pattern in rule.patterns().items()
    )


def match_product(facts: FileFacts, directory: Path | None = None) -> ProductConfig:
    """The product of a landed file (module docstring for the order); NoProductMatch else."""
    directory = directory or config_dir()
    configured = products(directory)
    ordered = sorted(configured.values(), key=lambda c: str(c.source or c.name))
    for config in ordered:
        if config.match is not None and matches(config.match, facts):
            return config
    for config in ordered:
        if config.match is None and config.name == facts.part_type:
            return config
    raise NoProductMatch(facts, directory)
