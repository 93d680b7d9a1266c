"""The Rollouts page from real audit records: the comparison, the chart, the links, and a
target whose gateway is not configured."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from yieldops.rollout.audit import AuditLog, RolloutRef
from yieldops.rollout.overview import STEP_HEADERS, overview, render_html
from yieldops.rollout.targets import Target
from yieldops.rollout.thresholds import Thresholds
from yieldops.rollout.window import StepWindow, judge_window
from yieldops.serving.client import GatewayError, GatewayNotConfigured

T0 = pd.Timestamp("2026-11-26T12:00:00Z").to_pydatetime()
FAB_A = Target(name="fab-a", product="P", conn_id="gateway_a")
FAB_B = Target(name="fab-b", product="P", conn_id="gateway_b")
FAB_C = Target(name="fab-c", product="P", conn_id="gateway_c")
ROUTING = {"mode": "canary", "champion": 2, "challenger": 3, "weight": 5, "live": "champion"}


def _verdict(seed: int, n: int, agreement: bool, noise: float) -> dict:
    """A real step judgement: champion v2 and challenger v3 (the champion's probabilities
    plus ``noise``) on the same ``n`` dies."""
    rng = np.random.default_rng(seed)
    champion = rng.uniform(0, 1, n)
    challenger = np.clip(champion + rng.normal(0, noise, n), 0, 1)
    truth = (rng.uniform(0, 1, n) < champion).astype(int)
    rows = pd.DataFrame(
        [
            {"request_id": f"r{i // 4}", "time": T0, "die_key": f"L:W:{i}:0", "version": v,
             "served": v == 2, "probability": p, "latency_ms": 2.0 + i % 5 * 0.1, "error": None}
            for i in range(n)
            for v, p in ((2, champion[i]), (3, challenger[i]))
        ]
    )  # fmt: skip
    labels = pd.Series(truth, index=[f"L:W:{i}:0" for i in range(n)])
    window = StepWindow(champion=2, challenger=3, since=T0)
    return judge_window(rows, window, labels, Thresholds(min_samples=50), agreement).to_dict()


@pytest.fixture
def records(tmp_path):
    """fab-a's rollout of v3 over v2: shadow judged twice (too few, then pass), then
    canary-5 fails."""
    audit = AuditLog(f"sqlite:///{tmp_path / 'rollout.db'}")
    ref = RolloutRef("yield-P", 3, 2, "model_rollout", "run-1", "manual run")
    audit.record(ref, "routing", "routing shadow", target="fab-a", step="shadow")
    for step, verdict in (
        ("shadow", _verdict(0, 40, True, 0.01)),
        ("shadow", _verdict(1, 400, True, 0.01)),
        ("canary-5", _verdict(2, 400, False, 0.5)),
    ):
        audit.record(
            ref, "verdict", verdict["summary"], target="fab-a", step=step,
            verdict=verdict["verdict"], details=verdict,
        )  # fmt: skip
    rows = audit.rows()
    audit.close()
    return rows


def _links(target: Target, version: int) -> dict[str, str]:
    return {
        "MLflow run": f"http://127.0.0.1:5000/#/experiments/1/runs/run{version}",
        "Wafer maps": f"/yieldops/wafer-maps/run{version}",
    }


def _routing(target: Target) -> dict:
    if target is FAB_B:
        raise GatewayNotConfigured(target.name, target.conn_id)
    if target is FAB_C:
        raise GatewayError("GET http://127.0.0.1:9/v1/routing: ConnectError: refused")
    return ROUTING


class _Page(HTMLParser):
    """Tables as grids of cell texts (rowspans filled in), links, SVG elements."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.links: list[tuple[str, str]] = []
        self.svg: list[tuple[str, dict]] = []
        self.legend: list[str] = []  # the labels of the chart's legend entries
        self._in_legend = self._in_legend_text = False
        self._spans: dict[int, tuple[int, str]] = {}  # column -> (rows left, text)
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
            self._spans = {}
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._fill_spans()
            self._cell = []
            self._rowspan = int(attrs.get("rowspan", 1))
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "a":
            self._href, self._text = attrs["href"], []
        elif tag in ("polyline", "circle", "rect", "polygon", "line"):
            self.svg.append((tag, attrs))
        elif tag == "g" and attrs.get("class") == "legend-entry":
            self._in_legend = True
        elif tag == "text" and self._in_legend:
            self.legend.append("")
            self._in_legend_text = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            row = self.tables[-1][-1]
            if self._rowspan > 1:
                self._spans[len(row)] = (self._rowspan - 1, text)
            row.append(text)
            self._cell = None
        elif tag == "tr":
            self._fill_spans()
        elif tag == "a" and self._href is not None:
            self.links.append(("".join(self._text), self._href))
            self._href = None
        elif tag == "g":
            self._in_legend = False
        elif tag == "text":
            self._in_legend_text = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._text.append(data)
        if self._in_legend_text:
            self.legend[-1] += data

    def _fill_spans(self):
        """Cells of earlier rows spanning down into this one, in their columns."""
        row = self.tables[-1][-1]
        while len(row) in self._spans and len(self.tables[-1]) > 1:
            left, text = self._spans.pop(len(row))
            if left > 1:
                self._spans[len(row)] = (left - 1, text)
            row.append(text)


def _steps_grid(page: _Page) -> list[dict[str, str]]:
    (grid,) = [t for t in page.tables if t and tuple(t[0]) == STEP_HEADERS]
    assert all(len(row) == len(STEP_HEADERS) for row in grid), grid  # a header per column
    return [dict(zip(STEP_HEADERS, row)) for row in grid[1:]]


def test_each_check_shows_challenger_and_champion_side_by_side_with_p_value_and_samples(records):
    entries = overview([FAB_A], records, _routing, _links)
    page = _Page(render_html(entries))
    rows = _steps_grid(page)
    # the last judgement of each step, in order; the shadow one took two
    assert list(dict.fromkeys(r["step"] for r in rows)) == [
        "shadow judged 2 times", "canary-5",
    ]  # fmt: skip
    shadow = {r["check"]: r for r in rows if r["step"].startswith("shadow")}
    assert set(shadow) == {
        "error rate", "latency: median, p95", "accuracy on the same labelled dies",
        "prediction shift", "same good/bad answer",
    }  # fmt: skip
    numbers = entries[0]["steps"][-2]["checks"]["accuracy"]
    accuracy = shadow["accuracy on the same labelled dies"]
    assert accuracy["challenger"] == f"{numbers['challenger_accuracy']:.2%}"
    assert accuracy["champion"] == f"{numbers['champion_accuracy']:.2%}"
    assert accuracy["p-value"] == f"{numbers['p_value']:.3g}"
    assert accuracy["samples (challenger / champion)"].startswith(f"{numbers['labelled_n']} ")
    latency = entries[0]["steps"][-2]["checks"]["latency"]
    assert shadow["latency: median, p95"]["samples (challenger / champion)"] == (
        f"{latency['challenger_n']} / {latency['champion_n']} requests"
    )
    agreement = shadow["same good/bad answer"]
    assert agreement["check verdict"] == "pass" and agreement["difference (bound)"].endswith(
        "(minimum 90%)"
    )
    assert {r["step"]: r["step verdict"] for r in rows} == {
        "shadow judged 2 times": "pass", "canary-5": "fail",
    }  # fmt: skip
    assert "same good/bad answer" not in {r["check"] for r in rows if r["step"] == "canary-5"}


def test_too_few_samples_show_the_counts_and_what_is_needed(records):
    first_shadow_only = [r for r in records if r["event"] == "routing"] + [
        next(r for r in records if r["event"] == "verdict")
    ]
    rows = _steps_grid(_Page(render_html(overview([FAB_A], first_shadow_only, _routing))))
    accuracy = next(r for r in rows if r["check"].startswith("accuracy"))
    assert accuracy["check verdict"] == "inconclusive"
    assert rows[0]["step verdict"] == "inconclusive, no evidence"  # every check short
    assert (accuracy["challenger"], accuracy["champion"], accuracy["p-value"]) == ("-", "-", "-")
    assert accuracy["samples (challenger / champion)"].endswith("(need 50)")


def test_the_chart_shows_both_versions_lines_distinctly_with_a_legend(records):
    page = _Page(render_html(overview([FAB_A], records, _routing, _links)))
    lines = {a["data-series"]: a for tag, a in page.svg if tag == "polyline"}
    challenger, champion = lines["challenger accuracy"], lines["champion accuracy"]
    assert challenger["stroke"] != champion["stroke"]
    assert champion["stroke-dasharray"] and not challenger["stroke-dasharray"]
    # filled dots for the challenger, hollow squares (larger) for the champion
    assert any(t == "circle" and a["fill"] == challenger["stroke"] for t, a in page.svg)
    assert any(
        t == "rect" and a["fill"] == "none" and a["stroke"] == champion["stroke"]
        for t, a in page.svg
    )
    assert page.legend == list(lines) == [
        "challenger accuracy", "champion accuracy", "agreement (shadow)",
        "challenger error rate", "champion error rate",
    ]  # fmt: skip


def test_the_versions_link_to_their_mlflow_runs_and_wafer_maps(records):
    entries = overview([FAB_A], records, _routing, _links)
    assert [(v["role"], v["version"]) for v in entries[0]["versions"]] == [
        ("challenger", 3), ("champion", 2),
    ]  # fmt: skip
    page = _Page(render_html(entries))
    for version in (2, 3):
        assert ("MLflow run", f"http://127.0.0.1:5000/#/experiments/1/runs/run{version}") in (
            page.links
        )
        assert ("Wafer maps", f"/yieldops/wafer-maps/run{version}") in page.links
    (versions,) = [t for t in page.tables if t[0] == ["role", "version", "training run"]]
    assert versions[1] == ["challenger", "v3", "MLflow run · Wafer maps"]


def test_a_target_without_gateway_connection_reads_as_not_configured(records):
    entries = overview([FAB_A, FAB_B, FAB_C], records, _routing, _links)
    fab_b, fab_c = entries[1], entries[2]
    assert fab_b["routing_state"] == "not configured" and "routing" not in fab_b
    assert fab_c["routing_state"] == "unreachable"
    html = render_html(entries)
    assert (
        "<span class='not-configured'>target fab-b: gateway connection &#x27;gateway_b&#x27; "
        "not configured: add an HTTP connection &#x27;gateway_b&#x27; (host and port" in html
    )
    assert "GatewayNotConfigured" not in html and "Exception" not in html
    assert "unreachable: GatewayError: GET http://127.0.0.1:9/v1/routing" in html


def test_without_a_rollout_the_serving_champion_is_listed_even_when_mlflow_fails():
    def no_mlflow(target, version):
        raise ConnectionError("MLflow at http://127.0.0.1:1 refused")

    (entry,) = overview([FAB_A], [], _routing, no_mlflow)
    assert entry["versions"] == [
        {"role": "champion", "version": 2, "links": {},
         "links_error": "ConnectionError: MLflow at http://127.0.0.1:1 refused"},
    ]  # fmt: skip
    html = render_html([entry])
    assert "No step judged yet." in html and "no links: ConnectionError" in html
