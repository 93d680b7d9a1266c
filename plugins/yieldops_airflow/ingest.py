"""The task bodies of ``stdf_ingest``: Airflow context in, yieldops library calls out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

from yieldops.names import curated_asset_name
from yieldops_airflow.hooks import LandingZoneHook
from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import open_ledger, runtime_settings
from yieldops_airflow.triggers import GAVE_WAY_KEY

if TYPE_CHECKING:
    from yieldops.landing.ledger import WaitingFile

log = logging.getLogger(__name__)
DAG_ID = "stdf_ingest"
WAIT_TASK_ID = "wait_for_files"
CURATED_ALIAS = "curated"
# The claim task's execution_timeout: claim_files stops hashing new files after its own
# limit (DEFAULT_CLAIM_TIME_LIMIT, 10 min); this leaves room for the file being hashed then.
CLAIM_TIMEOUT = timedelta(minutes=30)


def event_keys(triggering_asset_events) -> list[str]:
    """S3 keys named by the SQS messages that started this run (events mode), for the log."""
    from yieldops.landing.events import object_refs_from_asset_extras

    extras = (e.extra for events in (triggering_asset_events or {}).values() for e in events)
    return [ref.key for ref in object_refs_from_asset_extras(extras)]


def claim(run_id: str, params: dict, triggering_asset_events=None) -> list[dict]:
    from yieldops.landing.claims import claim_files

    settings = runtime_settings()
    if keys := event_keys(triggering_asset_events):
        log.info("started by S3 events for %d key(s): %s", len(keys), keys[:10])
    with open_ledger(settings) as ledger:
        report = claim_files(
            LandingZoneHook(settings).get_conn(),
            ledger,
            run_id,
            reprocess_key=params.get("reprocess_key") or None,
            reprocess_lot=params.get("reprocess_lot") or None,
            dry_run=bool(params.get("dry_run")),
        )
    log.info(
        "claimed %d file(s); %d already done; duplicates of other files: %s",
        len(report.claimed),
        report.already_done,
        report.duplicates or "none",
    )
    for waiting in report.waiting:
        log.info("not complete yet, not claimed: %s: %s", waiting.source_key, waiting.reason)
    if report.superseded:
        log.info("superseded before they were complete: %s", report.superseded)
    for entry in report.rejected:
        log.warning("%s %s: %s", "would reject" if params.get("dry_run") else "rejected",
                    entry.key, entry.reason)  # fmt: skip
    if report.left_for_next_run:
        log.warning(
            "claim time limit reached: %d file(s) left for the next run",
            len(report.left_for_next_run),
        )
    if params.get("dry_run"):
        log.info("dry run, would claim: %s", [f.key for f in report.would_claim] or "nothing")
    if report.claimed or report.rejected:
        set_run_note(DAG_ID, run_id, claim_note([f.key for f in report.claimed], report.rejected))
    return [asdict(f) for f in report.claimed]


def claim_note(claimed: list[str], rejected: list) -> str:
    """The note while the run ingests. The DAG runs one at a time: it says why a run
    triggered meanwhile stays queued."""
    parts = []
    if claimed:
        parts.append(f"ingesting {len(claimed)} file(s): {_some(claimed)}.")
    if rejected:
        parts.append(f"rejected {len(rejected)} entry(ies): {_some([e.key for e in rejected])}.")
    parts.append("Runs triggered meanwhile are queued until this one ends (one run at a time).")
    return " ".join(parts)


def _some(keys: list[str]) -> str:
    return f"{', '.join(keys[:3])}{', ...' if keys[3:] else ''}"


def ingest(file: dict, run_id: str, ti) -> dict:
    """One claimed file. A quarantined file fails this task (and only this one), without retry."""
    from yieldops.completeness import CompletenessRules
    from yieldops.ingest import ingest_file
    from yieldops.landing.claims import ClaimedFile
    from yieldops.stdf import DecompressionLimits
    from yieldops_airflow.links import DataDocsLink, data_docs_url

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        outcome = ingest_file(
            ClaimedFile(**file),
            LandingZoneHook(settings).get_conn(),
            ledger,
            run_id,
            curated_dir=settings.curated_dir,
            docs_dir=settings.docs_dir,
            rules=CompletenessRules.of(
                settings.incomplete_quiet_seconds, settings.incomplete_max_age_seconds
            ),
            limits=DecompressionLimits(
                settings.max_decompressed_bytes, settings.max_compression_ratio
            ),
        )
    if outcome.docs_page:
        ti.xcom_push(
            key=DataDocsLink().xcom_key,
            value=data_docs_url(outcome.docs_page, str(settings.docs_dir)),
        )
    if outcome.status == "quarantined":
        raise AirflowFailException(
            f"{outcome.key} quarantined ({outcome.reason}); see {outcome.location}"
        )
    if outcome.status == "rejected":
        raise AirflowFailException(f"{outcome.key} rejected: {outcome.reason}")
    if outcome.status == "waiting":
        log.info("%s not complete yet, not curated: %s", outcome.key, outcome.reason)
        return outcome.as_dict()
    log.info(
        "%s curated: %d parts of lot %s in %.2f s%s",
        outcome.key,
        outcome.parts,
        outcome.lot_id,
        outcome.seconds,
        f"; {outcome.reason}" if outcome.reason else "",
    )
    return outcome.as_dict()


def publish(outcomes, outlet_events) -> dict[str, int]:
    """An asset event per product that received new curated data (and none otherwise)."""
    from airflow.sdk import Asset, AssetAlias

    curated = [o for o in outcomes if o and o["status"] == "curated"]  # not duplicates
    files = Counter(o["product"] for o in curated)
    lots: dict[str, set] = {}
    for o in curated:
        lots.setdefault(o["product"], set()).add(o["lot_id"])
    for product, count in files.items():
        outlet_events[AssetAlias(CURATED_ALIAS)].add(
            Asset(curated_asset_name(product)),
            extra={"files": count, "lots": sorted(lots[product])},
        )
    log.info("new curated data: %s", dict(files) or "none")
    return dict(files)


def report(run_id: str, ti) -> dict[str, int]:
    """Summarise the run from the ledger; a run with quarantined or failed files, or with
    entries it rejected, ends failed."""
    from yieldops.landing.ledger import CURATED, FAILED, QUARANTINED, REJECTED
    from yieldops_airflow.notifiers import YieldopsNotifier

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        released = ledger.release_unfinished(run_id, "ingest task failed before finishing")
        entries = ledger.run_entries(run_id)
        waiting = ledger.waiting(LandingZoneHook(settings).get_conn().url)
    counts = Counter(e.status for e in entries)
    note = outcome_note(counts, ti.xcom_pull(WAIT_TASK_ID, key=GAVE_WAY_KEY))
    set_run_note(DAG_ID, run_id, "; ".join(filter(None, [note, waiting_text(waiting.values())])))
    for e in entries:
        log.info("%-12s %s %s", e.status, e.source_key, e.reason or e.output or "")
    bad = [e for e in entries if e.status in (QUARANTINED, FAILED, REJECTED)]
    if bad:
        details = {
            "run_id": run_id,
            "files": [{"key": e.source_key, "status": e.status, "reason": e.reason} for e in bad],
        }
        YieldopsNotifier().send(f"stdf_ingest: {len(bad)} file(s) not curated", details)
        raise AirflowFailException(
            f"{counts[CURATED]} curated, {counts[QUARANTINED]} quarantined, {counts[FAILED]} failed"
            f"{f' ({len(released)} left unfinished by their task)' if released else ''}"
            f"{f', {counts[REJECTED]} rejected' if counts[REJECTED] else ''}"
        )
    return dict(counts)


def outcome_note(counts: Counter, gave_way_to: int | None) -> str:
    """The run's final note: its files by status, or why it has none."""
    if gave_way_to:
        return (
            f"nothing ingested: gave way to {gave_way_to} run(s) triggered by hand "
            "instead of waiting on for new files"
        )
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to ingest"


def waiting_text(waiting: Iterable[WaitingFile]) -> str:
    """The landed files not complete yet, for a run note (empty when there are none)."""
    files = sorted(waiting, key=lambda w: w.source_key)
    if not files:
        return ""
    shown = "; ".join(f"{w.source_key} ({w.reason})" for w in files[:3])
    return f"{len(files)} file(s) not complete yet: {shown}{'; ...' if files[3:] else ''}"


def fail_if_any_failed(run_id: str) -> None:
    """Runs only when an upstream task failed (trigger rule one_failed): notifies and fails
    the run, which would otherwise end green since the report task succeeds on its own."""
    from yieldops_airflow.notifiers import YieldopsNotifier

    YieldopsNotifier().send("stdf_ingest: a task failed", {"run_id": run_id})
    raise AirflowFailException("a task of this run failed; see its log")
