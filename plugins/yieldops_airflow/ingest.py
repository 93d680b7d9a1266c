"""The task bodies of ``stdf_ingest``: Airflow context in, yieldops library calls out."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict

from airflow.sdk.exceptions import AirflowFailException

from yieldops_airflow.notes import set_run_note
from yieldops_airflow.runtime import open_ledger, runtime_settings, zone_for
from yieldops_airflow.schedules import curated_asset_name
from yieldops_airflow.triggers import GAVE_WAY_KEY

log = logging.getLogger(__name__)
DAG_ID = "stdf_ingest"
WAIT_TASK_ID = "wait_for_files"
CURATED_ALIAS = "curated"


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
            zone_for(settings),
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
    if params.get("dry_run"):
        log.info("dry run, would claim: %s", [f.key for f in report.would_claim] or "nothing")
    if report.claimed:
        # The DAG runs one at a time: say why a run triggered meanwhile stays queued.
        keys = [f.key for f in report.claimed]
        set_run_note(
            DAG_ID,
            run_id,
            f"ingesting {len(keys)} file(s): {', '.join(keys[:3])}{', ...' if keys[3:] else ''}."
            " Runs triggered meanwhile are queued until this one ends (one run at a time).",
        )
    return [asdict(f) for f in report.claimed]


def ingest(file: dict, run_id: str, ti) -> dict:
    """One claimed file. A quarantined file fails this task (and only this one), without retry."""
    from yieldops.ingest import ingest_file
    from yieldops.landing.claims import ClaimedFile
    from yieldops.stdf import DecompressionLimits
    from yieldops_airflow.links import DataDocsLink, data_docs_url

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        outcome = ingest_file(
            ClaimedFile(**file),
            zone_for(settings),
            ledger,
            run_id,
            curated_dir=settings.curated_dir,
            docs_dir=settings.docs_dir,
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
    log.info(
        "%s curated: %d parts of lot %s in %.2f s",
        outcome.key,
        outcome.parts,
        outcome.lot_id,
        outcome.seconds,
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
    """Summarise the run from the ledger; a run with quarantined or failed files ends failed."""
    from yieldops.landing.ledger import CURATED, FAILED, QUARANTINED
    from yieldops_airflow.notifiers import YieldopsNotifier

    settings = runtime_settings()
    with open_ledger(settings) as ledger:
        released = ledger.release_unfinished(run_id, "ingest task failed before finishing")
        entries = ledger.run_entries(run_id)
    counts = Counter(e.status for e in entries)
    set_run_note(DAG_ID, run_id, outcome_note(counts, ti.xcom_pull(WAIT_TASK_ID, key=GAVE_WAY_KEY)))
    for e in entries:
        log.info("%-12s %s %s", e.status, e.source_key, e.reason or e.output or "")
    bad = [e for e in entries if e.status in (QUARANTINED, FAILED)]
    if bad:
        details = {
            "run_id": run_id,
            "files": [{"key": e.source_key, "status": e.status, "reason": e.reason} for e in bad],
        }
        YieldopsNotifier().send(f"stdf_ingest: {len(bad)} file(s) not curated", details)
        raise AirflowFailException(
            f"{counts[CURATED]} curated, {counts[QUARANTINED]} quarantined, {counts[FAILED]} failed"
            f"{f' ({len(released)} left unfinished by their task)' if released else ''}"
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


def fail_if_any_failed(run_id: str) -> None:
    """Runs only when an upstream task failed (trigger rule one_failed): notifies and fails
    the run, which would otherwise end green since the report task succeeds on its own."""
    from yieldops_airflow.notifiers import YieldopsNotifier

    YieldopsNotifier().send("stdf_ingest: a task failed", {"run_id": run_id})
    raise AirflowFailException("a task of this run failed; see its log")
