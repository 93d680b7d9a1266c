"""How ingest runs start: chosen by configuration (``YIELDOPS_INGEST_TRIGGER``), not code."""

from __future__ import annotations

from typing import Any

from yieldops.names import challenger_asset_name, curated_asset_name
from yieldops.settings import Settings

SENSOR, EVENTS, SWEEP = "sensor", "events", "sweep"
SQS_LONG_POLL_SECONDS = 20  # SQS's maximum


def landing_asset(settings: Settings):
    """The landing zone as an Asset; in events mode it carries the SQS watcher.

    S3 ObjectCreated notifications go to the SQS queue; the triggerer's
    MessageQueueTrigger turns each message into an asset event that starts
    a run. Messages are deleted on receipt, so the ledger, not the queue,
    decides what is left to ingest.
    """
    from airflow.sdk import Asset, AssetWatcher

    if not settings.sqs_queue_url:
        raise ValueError("YIELDOPS_INGEST_TRIGGER=events needs YIELDOPS_SQS_QUEUE_URL")
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    trigger = MessageQueueTrigger(
        scheme="sqs",
        sqs_queue=settings.sqs_queue_url,
        aws_conn_id=settings.aws_conn_id,
        # Long polling answers as soon as a file lands: no minute-long gaps between polls
        # (the provider's default), and an idle queue costs three calls a minute.
        wait_time_seconds=SQS_LONG_POLL_SECONDS,
        waiter_delay=1,
        max_messages=10,
    )
    return Asset(
        name="stdf-landing",
        uri=settings.landing_url,
        watchers=[AssetWatcher(name="stdf_landing_sqs", trigger=trigger)],
    )


def ingest_schedule(settings: Settings) -> Any:
    """Sensor mode: one run at a time, its first task a deferrable sensor.
    Events mode: a run per S3 event, plus a periodic sweep for anything an event missed.
    Sweep mode: only the periodic sweep (no triggerer needed)."""
    if settings.ingest_trigger == SENSOR:
        return "@continuous"
    if settings.ingest_trigger == SWEEP:
        from airflow.sdk import CronTriggerTimetable

        return CronTriggerTimetable(settings.sweep_cron, timezone="UTC")
    if settings.ingest_trigger == EVENTS:
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

        return AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(settings.sweep_cron, timezone="UTC"),
            assets=landing_asset(settings),
        )
    raise ValueError(
        f"YIELDOPS_INGEST_TRIGGER must be {SENSOR!r}, {EVENTS!r} or {SWEEP!r}, "
        f"not {settings.ingest_trigger!r}"
    )


def curated_assets(products: list[str]):
    """Any product's curated data changing schedules a training run."""
    from airflow.sdk import Asset, AssetAny

    return AssetAny(*(Asset(curated_asset_name(p)) for p in products)) if products else None


def challenger_assets(models: list[str]):
    """A new challenger of any model schedules a rollout run."""
    from airflow.sdk import Asset, AssetAny

    return AssetAny(*(Asset(challenger_asset_name(m)) for m in models)) if models else None
