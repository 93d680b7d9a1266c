"""What a demo or a ``yieldops run`` did, as readable lines: files, model versions with
each gated metric beside its no-skill baseline, rollout verdicts. Long lines wrap at word
boundaries; nothing is cut."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

WIDTH = 100
# The audit events a summary shows: what was decided and why (not every routing change).
DECISIONS = ("offline_check", "verdict", "rollback", "rejected", "aborted", "promoted")


def wrap(text: str, indent: str = "  ", hang: str = "    ") -> list[str]:
    """``text`` as lines of at most WIDTH characters, later lines indented by ``hang`` more."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_long_words=False,
        break_on_hyphens=False,
    )


def counts_text(counts: Mapping[str, int]) -> str:
    """``3 curated, 1 quarantined``."""
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


def file_lines(ledger_url: str) -> list[str]:
    """Files per ledger status, then each quarantined file with its reason."""
    from yieldops.landing.ledger import QUARANTINED, Ledger

    ledger = Ledger(ledger_url)
    try:
        entries = ledger.entries()
    finally:
        ledger.close()
    lines = [f"files: {counts_text(Counter(e.status for e in entries))}"]
    for entry in entries:
        if entry.status == QUARANTINED:
            lines += wrap(f"quarantined {entry.source_key}: {entry.reason}")
    return lines


def gate_checks(version_tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The gate's checks a model version was registered with (its ``gate.checks`` tag)."""
    try:
        checks = json.loads(version_tags.get("gate.checks", "[]"))
    except ValueError:  # longer than an MLflow tag holds, so cut short
        return []
    return checks if isinstance(checks, list) else []


def metric_lines(checks: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each gated metric once, beside its no-skill baseline when the check carries one
    (``no_skill``): ``accuracy 0.8070 vs no skill 0.7865``."""
    lines: dict[str, str] = {}
    for check in checks:
        text = f"{check['metric']} {_number(check.get('value'))}"
        if "no_skill" in check:
            text += f" vs no skill {_number(check['no_skill'])}"
        lines.setdefault(check["metric"], text)
    return list(lines.values())


def version_lines(model: str, versions: Iterable[Any]) -> list[str]:
    """Per registered version (MLflow ``ModelVersion``): gate, rollout status and why, and
    its gated metrics beside their baselines."""
    lines: list[str] = []
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags
        gate = {"true": "passed", "false": "failed"}.get(tags.get("gate.passed", ""), "unknown")
        status = tags.get("rollout.status", "not rolled out")
        lines += wrap(f"{model} v{version.version}: gate {gate}, rollout {status}")
        lines += [line for text in metric_lines(gate_checks(tags)) for line in wrap(text, "    ")]
        if "rollout.reason" in tags:
            lines += wrap(f"why: {tags['rollout.reason']}", "    ")
    return lines


def decision_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rollout audit records that decided something: offline checks, verdicts, outcomes."""
    lines: list[str] = []
    for r in records:
        if r["event"] in DECISIONS:
            where = "/".join(p for p in (r["target"], r["step"]) if p) or "-"
            lines += wrap(f"v{r['version']} {where}: {r['event']}: {r['summary']}")
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
