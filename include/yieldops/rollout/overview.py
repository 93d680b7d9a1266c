"""The Rollouts page: per target the routing now, the versions of the latest rollout with
links to their training runs, each step's checks with the challenger's and the champion's
figures side by side, the audit log, and a chart of the step metrics (inline SVG, no
scripts).

``overview`` gathers plain data; ``render_html`` turns it into one self-contained page
(the Airflow plugin serves both: the page and its JSON).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from ..serving.client import GatewayNotConfigured
from .targets import Target

# Step metrics charted per target: (check, number, label, colour, dash pattern, marker).
# The champion's lines are dashed with hollow squares, drawn over the challenger's solid
# lines and dots: equal figures still show both.
CHART_SERIES = (
    ("accuracy", "challenger_accuracy", "challenger accuracy", "#d62728", "", "dot"),
    ("accuracy", "champion_accuracy", "champion accuracy", "#1f77b4", "7 4", "square"),
    ("agreement", "agreement", "agreement (shadow)", "#2ca02c", "2 3", "diamond"),
    ("error_rate", "challenger_rate", "challenger error rate", "#ff7f0e", "", "dot"),
    ("error_rate", "champion_rate", "champion error rate", "#9467bd", "7 4", "square"),
)

# How each check reads on the page; a figure whose numbers are missing (too few samples
# for a verdict) shows as a dash.
CHECK_LABELS = {
    "error_rate": "error rate",
    "latency": "latency: median, p95",
    "accuracy": "accuracy on the same labelled dies",
    "shift": "prediction shift",
    "agreement": "same good/bad answer",
}
SIDE_BY_SIDE = {  # check -> (challenger's figure, champion's figure)
    "error_rate": ("{challenger_rate:.2%}", "{champion_rate:.2%}"),
    "latency": (
        "{challenger_median_ms:.1f} ms, p95 {challenger_p95_ms:.1f} ms",
        "{champion_median_ms:.1f} ms, p95 {champion_p95_ms:.1f} ms",
    ),
    "accuracy": ("{challenger_accuracy:.2%}", "{champion_accuracy:.2%}"),
}
DIFFERENCES = {  # check -> the difference and its bound
    "error_rate": "{increase:+.2%} (tolerance {max_increase:.2%})",
    "latency": "median {median_increase:+.1%} (tolerance {tolerance:.0%}), "
    "p95 limit {p95_limit_ms:.0f} ms",
    "accuracy": "drop {drop:.2%} (tolerance {max_drop:.2%})",
    "shift": "PSI {psi:.3f} (limit {psi_limit:.2f}), KS D {ks:.3f}",
    "agreement": "{agreement:.1%} (minimum {min_agreement:.0%})",
}
P_VALUES = {  # check -> its test's p-value (agreement is a guard, not a test)
    "error_rate": "{p_value:.3g}",
    "latency": "{p_value:.3g}",
    "accuracy": "{p_value:.3g}",
    "shift": "KS {ks_p_value:.3g}",
}
SAMPLES = {
    "error_rate": "{challenger_n} / {champion_n} dies",
    "latency": "{challenger_n} / {champion_n} requests",
    "accuracy": "{labelled_n} labelled dies, both versions",
    "shift": "{challenger_n} dies, both versions",
    "agreement": "{paired_n} dies, both versions",
}


def overview(
    targets: Sequence[Target],
    records: Sequence[Mapping[str, Any]],
    routing_of: Callable[[Target], dict[str, Any]],
    links_of: Callable[[Target, int], dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One entry per target: ``routing`` (or ``routing_state`` and ``routing_error``), the
    latest run's ``steps`` (verdict records), ``current_step``, that run's ``versions``
    (challenger and champion, each with ``links`` from ``links_of``: label -> URL) and its
    ``audit`` records."""
    entries = []
    for target in targets:
        mine = [r for r in records if r["target"] == target.name]
        latest = mine[-1] if mine else None
        run_records = [r for r in records if latest and r["run_id"] == latest["run_id"]]
        entry: dict[str, Any] = {
            "target": target.name,
            "product": target.product,
            "run_id": latest["run_id"] if latest else None,
            "current_step": next((r["step"] for r in reversed(mine) if r["step"]), None),
            "steps": [
                _step(r)
                for r in run_records
                if r["event"] == "verdict" and r["target"] == target.name
            ],
            "audit": [_plain(r) for r in run_records],
        }
        entry.update(_routing(target, routing_of))
        roles = (
            {"challenger": latest["version"], "champion": latest["champion"]}
            if latest
            else {"champion": entry.get("routing", {}).get("champion")}
        )
        entry["versions"] = [
            _version(target, role, number, links_of)
            for role, number in roles.items()
            if number is not None
        ]
        entries.append(entry)
    return entries


def _routing(target: Target, routing_of: Callable[[Target], dict[str, Any]]) -> dict[str, Any]:
    try:
        return {"routing": routing_of(target)}
    except GatewayNotConfigured as exc:
        return {"routing_state": "not configured", "routing_error": str(exc)}
    except Exception as exc:  # one unreachable gateway must not hide the others
        return {"routing_state": "unreachable", "routing_error": f"{type(exc).__name__}: {exc}"}


def _version(
    target: Target,
    role: str,
    number: int,
    links_of: Callable[[Target, int], dict[str, str]] | None,
) -> dict[str, Any]:
    version: dict[str, Any] = {"role": role, "version": number, "links": {}}
    try:
        version["links"] = links_of(target, number) if links_of else {}
    except Exception as exc:  # the page still shows the rollout when MLflow does not answer
        version["links_error"] = f"{type(exc).__name__}: {exc}"
    return version


def _step(record: Mapping[str, Any]) -> dict[str, Any]:
    details = record.get("details") or {}
    checks = details.get("checks", [])
    return {
        "step": record["step"],
        "time": str(record["time"]),
        "verdict": record["verdict"],
        # inconclusive for want of samples alone: no evidence either way
        "no_evidence": details.get("no_evidence", False),
        "dropped_dies": details.get("dropped_dies", {}),  # mirrored copies dropped, by role
        "summary": record["summary"],
        "checks": {
            c["name"]: {"verdict": c["verdict"], "reason": c["reason"], **c["numbers"]}
            for c in checks
        },
    }


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("time", "model", "version", "champion", "target", "step", "event", "verdict")
    return {
        **{k: record[k] for k in keys},
        "time": str(record["time"]),
        "summary": record["summary"],
    }


def _final_judgements(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last judgement of each step, in step order, with how many it took (a step
    judged inconclusive waits and is judged again)."""
    last: dict[str, dict[str, Any]] = {}
    for step in steps:
        count = last.get(step["step"], {}).get("judgements", 0) + 1
        last[step["step"]] = {**step, "judgements": count}
    return list(last.values())


# -- HTML ------------------------------------------------------------------------------------


def render_html(entries: Sequence[Mapping[str, Any]]) -> str:
    body = "".join(_target_section(e) for e in entries) or "<p>No deployment target configured.</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Rollouts · yieldops</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
td.figure {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.step {{ white-space: nowrap; }}
.pass {{ color: #1a7f37; }} .fail {{ color: #cf222e; }}
.inconclusive, .no_evidence {{ color: #9a6700; }}
.not-configured {{ color: #9a6700; }}
section {{ border-top: 2px solid #ddd; padding-top: .5rem; }}
</style></head><body>
<h1>Rollouts</h1>
{body}
</body></html>"""


def _target_section(entry: Mapping[str, Any]) -> str:
    name = escape(entry["target"])
    steps = _final_judgements(entry["steps"])
    return f"""<section id="target-{name}">
<h2>{name} <small>({escape(entry["product"])})</small></h2>
<p>Routing now: {_routing_line(entry)}</p>
<p>Latest rollout: {escape(entry["run_id"] or "none")}; current step:
 <b>{escape(entry["current_step"] or "-")}</b></p>
{_versions_table(entry["versions"])}
<h3>Steps: challenger against champion</h3>
{_steps_table(steps)}
{_chart(steps)}
<h3>Audit log of that rollout</h3>
{_audit_table(entry["audit"])}
</section>"""


def _routing_line(entry: Mapping[str, Any]) -> str:
    if "routing" not in entry:  # a missing connection is set-up to do, not an outage
        if entry["routing_state"] == "not configured":
            return f"<span class='not-configured'>{escape(entry['routing_error'])}</span>"
        return f"<span class='fail'>unreachable: {escape(entry['routing_error'])}</span>"
    r = entry["routing"]
    return (
        f"mode <b>{escape(str(r['mode']))}</b>, champion v{r['champion']}, "
        f"challenger {('v' + str(r['challenger'])) if r.get('challenger') else '-'}, "
        f"weight {r.get('weight', 0)} %, live {escape(str(r.get('live', '')))}"
    )


def _versions_table(versions: Sequence[Mapping[str, Any]]) -> str:
    if not versions:
        return ""
    rows = []
    for v in versions:
        links = " · ".join(
            f"<a href='{escape(url)}' target='_blank' rel='noopener'>{escape(label)}</a>"
            for label, url in v["links"].items()
        )
        if "links_error" in v:
            links = f"<span class='fail'>no links: {escape(v['links_error'])}</span>"
        rows.append(
            f"<tr><td>{escape(v['role'])}</td><td>v{v['version']}</td><td>{links or '-'}</td></tr>"
        )
    return (
        "<table class='versions'><tr><th>role</th><th>version</th><th>training run</th></tr>"
        f"{''.join(rows)}</table>"
    )


STEP_HEADERS = (
    "step",
    "step verdict",
    "check",
    "check verdict",
    "challenger",
    "champion",
    "difference (bound)",
    "p-value",
    "samples (challenger / champion)",
)


def _steps_table(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "<p>No step judged yet.</p>"
    rows = []
    for s in steps:
        checks = list(s["checks"].items()) or [("-", {"verdict": "", "reason": ""})]
        again = f"<br><small>judged {s['judgements']} times</small>" if s["judgements"] > 1 else ""
        verdict = f"{s['verdict']}, no evidence" if s.get("no_evidence") else s["verdict"]
        dropped = ", ".join(f"{n} dies of {r}" for r, n in s.get("dropped_dies", {}).items() if n)
        dropped_note = f"<br><small>copies dropped: {escape(dropped)}</small>" if dropped else ""
        head = (
            f"<td rowspan='{len(checks)}' class='step'>{escape(s['step'])}{again}</td>"
            f"<td rowspan='{len(checks)}' class='{s['verdict']}'>{escape(verdict)}"
            f"{dropped_note}</td>"
        )
        for index, (name, c) in enumerate(checks):
            rows.append(f"<tr>{head if index == 0 else ''}{_check_cells(name, c)}</tr>")
    headers = "".join(f"<th>{escape(h)}</th>" for h in STEP_HEADERS)
    return f"<table class='steps'><tr>{headers}</tr>{''.join(rows)}</table>"


def _check_cells(name: str, numbers: Mapping[str, Any]) -> str:
    challenger, champion = SIDE_BY_SIDE.get(name, ("", ""))
    samples = _figure(SAMPLES.get(name, ""), numbers)
    if "min_samples" in numbers:
        samples += f" (need {numbers['min_samples']})"
    figures = (
        _figure(challenger, numbers),
        _figure(champion, numbers),
        _figure(DIFFERENCES.get(name, ""), numbers),
        _figure(P_VALUES.get(name, ""), numbers),
        samples,
    )
    verdict = escape(numbers["verdict"])
    return (
        f"<td>{escape(CHECK_LABELS.get(name, name))}</td>"
        f"<td class='{verdict}' title='{escape(numbers.get('reason', ''))}'>{verdict}</td>"
        + "".join(f"<td class='figure'>{escape(f)}</td>" for f in figures)
    )


def _figure(template: str, numbers: Mapping[str, Any]) -> str:
    """``template`` filled from the check's numbers; a dash when it needs a number the
    check did not produce (too few samples) or none was asked for."""
    try:
        return template.format(**numbers) if template else "-"
    except (KeyError, TypeError, ValueError):
        return "-"


def _chart(steps: Sequence[Mapping[str, Any]], width: int = 640, height: int = 240) -> str:
    """Lines of CHART_SERIES across the steps (0..1 scale) and their legend, inline SVG."""
    if not steps:
        return ""
    pad, n = 40, len(steps)
    x_of = [pad + (width - 2 * pad) * (i / max(n - 1, 1)) for i in range(n)]

    def y(value: float) -> float:
        return height - pad - (height - 2 * pad) * max(0.0, min(1.0, value))

    parts = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        stroke = "#999" if tick == 0 else "#eee"
        parts += [
            f"<line x1='{pad}' y1='{y(tick)}' x2='{width - pad}' y2='{y(tick)}' "
            f"stroke='{stroke}'/>",
            f"<text x='4' y='{y(tick) + 4}' font-size='11'>{tick:.2f}</text>",
        ]
    parts += [
        f"<text x='{x}' y='{height - 8}' font-size='11' text-anchor='middle'>"
        f"{escape(s['step'])}</text>"
        for x, s in zip(x_of, steps)
    ]
    legend_row = 0
    for check, number, label, colour, dash, marker in CHART_SERIES:
        points = [
            (x, s["step"], s["checks"].get(check, {}).get(number)) for x, s in zip(x_of, steps)
        ]
        points = [(x, step, v) for x, step, v in points if isinstance(v, int | float)]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y(v):.1f}" for x, _, v in points)
        parts.append(
            f"<polyline class='series' data-series='{escape(label)}' points='{path}' "
            f"fill='none' stroke='{colour}' stroke-width='2' stroke-dasharray='{dash}'/>"
        )
        parts += [
            _marker(marker, x, y(v), colour, f"{step}: {label} {v:.4g}") for x, step, v in points
        ]
        parts.append(_legend_entry(width + 10, 16 + 18 * legend_row, label, colour, dash, marker))
        legend_row += 1
    return (
        f"<svg class='step-chart' width='{width + 190}' height='{height}' role='img' "
        f"aria-label='step metrics, challenger against champion'>{''.join(parts)}</svg>"
    )


def _marker(kind: str, x: float, y: float, colour: str, title: str) -> str:
    tip = f"<title>{escape(title)}</title>"
    if kind == "square":  # hollow and larger than a dot: a dot under it stays visible
        return (
            f"<rect x='{x - 5:.1f}' y='{y - 5:.1f}' width='10' height='10' fill='none' "
            f"stroke='{colour}' stroke-width='2'>{tip}</rect>"
        )
    if kind == "diamond":
        shape = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}"
        return f"<polygon points='{shape}' fill='{colour}'>{tip}</polygon>"
    return f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{colour}'>{tip}</circle>"


def _legend_entry(x: float, y: float, label: str, colour: str, dash: str, marker: str) -> str:
    return (
        f"<g class='legend-entry'><line x1='{x}' y1='{y}' x2='{x + 28}' y2='{y}' "
        f"stroke='{colour}' stroke-width='2' stroke-dasharray='{dash}'/>"
        f"{_marker(marker, x + 14, y, colour, label)}"
        f"<text x='{x + 34}' y='{y + 4}' font-size='11'>{escape(label)}</text></g>"
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
