"""The Rollouts page: per target the routing now, the latest rollout's steps with their
verdict numbers, the audit log, and a chart of the step metrics (inline SVG, no scripts).

``overview`` gathers plain data; ``render_html`` turns it into one self-contained page
(the Airflow plugin serves it; tests read the JSON of ``overview``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from .targets import Target

# Step metrics charted per target: (check, number, label).
CHART_SERIES = (
    ("accuracy", "champion_accuracy", "champion accuracy"),
    ("accuracy", "challenger_accuracy", "challenger accuracy"),
    ("agreement", "agreement", "agreement"),
    ("error_rate", "challenger_rate", "challenger error rate"),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")


def overview(
    targets: Sequence[Target],
    records: Sequence[Mapping[str, Any]],
    routing_of: Callable[[Target], dict[str, Any]],
) -> list[dict[str, Any]]:
    """One entry per target: ``routing`` (or ``routing_error``), the latest run's ``steps``
    (verdict records), ``current_step`` and that run's ``audit`` records."""
    entries = []
    for target in targets:
        mine = [r for r in records if r["target"] == target.name]
        latest_run = mine[-1]["run_id"] if mine else None
        run_records = [r for r in records if latest_run and r["run_id"] == latest_run]
        entry: dict[str, Any] = {
            "target": target.name,
            "product": target.product,
            "run_id": latest_run,
            "current_step": next((r["step"] for r in reversed(mine) if r["step"]), None),
            "steps": [
                _step(r) for r in mine if r["run_id"] == latest_run and r["event"] == "verdict"
            ],
            "audit": [_plain(r) for r in run_records],
        }
        try:
            entry["routing"] = routing_of(target)
        except Exception as exc:  # one unreachable gateway must not hide the others
            entry["routing_error"] = f"{type(exc).__name__}: {exc}"
        entries.append(entry)
    return entries


def _step(record: Mapping[str, Any]) -> dict[str, Any]:
    checks = (record.get("details") or {}).get("checks", [])
    return {
        "step": record["step"],
        "time": str(record["time"]),
        "verdict": record["verdict"],
        "summary": record["summary"],
        "checks": {c["name"]: {"verdict": c["verdict"], **c["numbers"]} for c in checks},
    }


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("time", "model", "version", "champion", "target", "step", "event", "verdict")
    return {
        **{k: record[k] for k in keys},
        "time": str(record["time"]),
        "summary": record["summary"],
    }


# -- HTML ------------------------------------------------------------------------------------


def render_html(entries: Sequence[Mapping[str, Any]]) -> str:
    body = "".join(_target_section(e) for e in entries) or "<p>No deployment target configured.</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Rollouts · yieldops</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }}
.pass {{ color: #1a7f37; }} .fail {{ color: #cf222e; }} .inconclusive {{ color: #9a6700; }}
section {{ border-top: 2px solid #ddd; padding-top: .5rem; }}
</style></head><body>
<h1>Rollouts</h1>
{body}
</body></html>"""


def _target_section(entry: Mapping[str, Any]) -> str:
    name = escape(entry["target"])
    if "routing" in entry:
        r = entry["routing"]
        routing = (
            f"mode <b>{escape(str(r['mode']))}</b>, champion v{r['champion']}, "
            f"challenger {('v' + str(r['challenger'])) if r.get('challenger') else '-'}, "
            f"weight {r.get('weight', 0)} %, live {escape(str(r.get('live', '')))}"
        )
    else:
        routing = f"<span class='fail'>unreachable: {escape(entry['routing_error'])}</span>"
    return f"""<section id="target-{name}">
<h2>{name} <small>({escape(entry["product"])})</small></h2>
<p>Routing now: {routing}</p>
<p>Latest rollout: {escape(entry["run_id"] or "none")}; current step:
 <b>{escape(entry["current_step"] or "-")}</b></p>
{_steps_table(entry["steps"])}
{_chart(entry["steps"])}
<h3>Audit log of that rollout</h3>
{_audit_table(entry["audit"])}
</section>"""


def _steps_table(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "<p>No step judged yet.</p>"
    rows = []
    for s in steps:
        cells = "".join(
            f"<td class='{c['verdict']}'>{escape(c['verdict'])}{_headline(name, c)}</td>"
            for name, c in s["checks"].items()
        )
        rows.append(
            f"<tr><td>{escape(s['step'])}</td><td class='{s['verdict']}'>"
            f"{escape(s['verdict'])}</td>{cells}</tr>"
        )
    names = "".join(f"<th>{escape(n)}</th>" for n in steps[-1]["checks"])
    return f"<table><tr><th>step</th><th>verdict</th>{names}</tr>{''.join(rows)}</table>"


def _headline(name: str, numbers: Mapping[str, Any]) -> str:
    key = {
        "error_rate": "challenger_rate",
        "latency": "challenger_p95_ms",
        "accuracy": "challenger_accuracy",
        "shift": "psi",
        "agreement": "agreement",
    }.get(name)
    value = numbers.get(key) if key else None
    return f"<br><small>{key} {value:.4g}</small>" if isinstance(value, int | float) else ""


def _chart(steps: Sequence[Mapping[str, Any]], width: int = 640, height: int = 220) -> str:
    """Lines of CHART_SERIES across the steps (0..1 scale), as inline SVG."""
    if len(steps) < 1:
        return ""
    pad, n = 40, len(steps)
    x_of = [pad + (width - 2 * pad) * (i / max(n - 1, 1)) for i in range(n)]

    def y(value: float) -> float:
        return height - pad - (height - 2 * pad) * max(0.0, min(1.0, value))

    parts = [
        f"<line x1='{pad}' y1='{y(0)}' x2='{width - pad}' y2='{y(0)}' stroke='#999'/>",
        f"<line x1='{pad}' y1='{y(1)}' x2='{width - pad}' y2='{y(1)}' stroke='#eee'/>",
        f"<text x='4' y='{y(1) + 4}' font-size='11'>1.0</text>",
        f"<text x='4' y='{y(0) + 4}' font-size='11'>0.0</text>",
    ]
    parts += [
        f"<text x='{x}' y='{height - 8}' font-size='11' text-anchor='middle'>"
        f"{escape(s['step'])}</text>"
        for x, s in zip(x_of, steps)
    ]
    for (check, number, label), colour, row in zip(CHART_SERIES, COLOURS, range(len(COLOURS))):
        points = [(x, s["checks"].get(check, {}).get(number)) for x, s in zip(x_of, steps)]
        points = [(x, v) for x, v in points if isinstance(v, int | float)]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y(v):.1f}" for x, v in points)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'/>")
        parts += [
            f"<circle cx='{x:.1f}' cy='{y(v):.1f}' r='3' fill='{colour}'/>" for x, v in points
        ]
        parts.append(
            f"<text x='{width - pad + 4}' y='{14 + 14 * row}' font-size='11' fill='{colour}'>"
            f"{escape(label)}</text>"
        )
    return (
        f"<svg class='step-chart' width='{width + 160}' height='{height}' role='img' "
        f"aria-label='step metrics'>{''.join(parts)}</svg>"
    )


def _audit_table(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return "<p>No record.</p>"
    rows = "".join(
        f"<tr><td>{escape(r['time'][:19])}</td><td>{escape(r['target'] or '')}</td>"
        f"<td>{escape(r['step'] or '')}</td><td>{escape(r['event'])}</td>"
        f"<td class='{r['verdict'] or ''}'>{escape(r['verdict'] or '')}</td>"
        f"<td>{escape(r['summary'])}</td></tr>"
        for r in records
    )
    return (
        "<table><tr><th>time</th><th>target</th><th>step</th><th>event</th>"
        f"<th>verdict</th><th>summary</th></tr>{rows}</table>"
    )
