"""stdf_ingest: landed STDF files -> validated curated Parquet, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetAlias, Param, TriggerRule, dag, task

from yieldops.settings import load_settings
from yieldops_airflow import ingest as steps
from yieldops_airflow.schedules import SENSOR, ingest_schedule
from yieldops_airflow.sensors import NewStdfFilesSensor
from yieldops_airflow.triggers import GIVE_WAY_CHECK_SECONDS

SETTINGS = load_settings()

DOC = f"""
### STDF ingest

Turns every STDF file that lands in the landing zone into curated Parquet
(`<curated>/product=<P>/lot=<L>/file=<sha256>/`), validated with Great
Expectations against the product's YAML (`include/config/products/`).

1. **wait_for_files** (sensor mode): a deferrable sensor waits for files the
   ledger has not finished. In events mode an S3 notification (via SQS) or the
   periodic sweep starts the run instead; in sweep mode only the schedule.
2. **claim**: every such file is claimed in the ledger (keyed by content
   hash: the same bytes are never curated twice, even under another name).
   Entries that are no files (symbolic links out of the landing folder or to
   nothing, pipes, sockets, devices, names that are not UTF-8, objects that
   cannot be read) are recorded once as `rejected`; the files beside them are
   claimed. It stops hashing new files past a time limit (the rest waits for
   the next run) and times out after {steps.CLAIM_TIMEOUT.total_seconds() / 60:g} minutes.
3. **ingest** (one mapped task per file): decode, validate, write curated
   Parquet. A bad file is copied to `quarantine/` (beside the landing zone)
   with a `.reason.json` and fails only its own task. The *Data Docs* button opens its validation.
   A file its tester is still writing (no MRR at its end yet, or cut inside a record) is
   not curated: it *waits* (ledger status `waiting`, listed in the run note) and is looked
   at again when it changes; unchanged for longer than the maximum age, it is quarantined
   as incomplete.
4. **publish**: an asset event `curated/<product>` for each product that got
   new data; this schedules `yield_training`.
5. **report**: the run's files from the ledger; a run with quarantined files
   or new rejected entries ends failed and notifies (HTTP connection
   `yieldops_notify`, else the log).
   **watcher** notifies and fails the run when any other task failed.

Params: `reprocess_key` / `reprocess_lot` take finished files again,
`dry_run` only lists what would be claimed. Configuration: environment
(`YIELDOPS_*`) or Airflow Variables `yieldops_landing_url`,
`yieldops_ledger_url`, `yieldops_curated_dir`, `yieldops_docs_dir`,
`yieldops_aws_conn_id`, `yieldops_incomplete_quiet_seconds`,
`yieldops_incomplete_max_age_seconds`.

**Runs triggered by hand** (sensor mode) do not wait for files: the DAG runs
one at a time and a continuous run is always there, so while that run waits
for files it looks for queued runs every {GIVE_WAY_CHECK_SECONDS:g} s and gives
way: its *wait_for_files* ends skipped, its note says "gave way", and the
queued run starts, seconds after it was triggered. While the continuous run
ingests (note "ingesting N file(s)"), a run triggered by hand stays queued
until it ends.
"""


@dag(
    dag_id="stdf_ingest",
    schedule=ingest_schedule(SETTINGS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["yieldops", "ingest", "stdf"],
    default_args={"owner": "yieldops", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "reprocess_key": Param(
            None,
            type=["null", "string"],
            title="Reprocess file",
            description="Landing key of a file to ingest again, even if curated or quarantined.",
        ),
        "reprocess_lot": Param(
            None,
            type=["null", "string"],
            title="Reprocess lot",
            description="Lot id whose files are ingested again.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Only list the files that would be claimed; change nothing.",
        ),
    },
)
def stdf_ingest():
    @task(execution_timeout=steps.CLAIM_TIMEOUT)
    def claim(params=None, run_id=None, triggering_asset_events=None) -> list[dict]:
        return steps.claim(run_id, params, triggering_asset_events)

    @task(retry_delay=timedelta(seconds=10))
    def ingest(file: dict, run_id=None, ti=None) -> dict:
        return steps.ingest(file, run_id, ti)

    @task(
        trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
        outlets=[AssetAlias(steps.CURATED_ALIAS)],
    )
    def publish(outcomes, outlet_events=None) -> dict:
        return steps.publish(outcomes, outlet_events)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(run_id=None, ti=None) -> dict:
        return steps.report(run_id, ti)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher(run_id=None) -> None:
        steps.fail_if_any_failed(run_id)

    claimed = claim()
    if SETTINGS.ingest_trigger == SENSOR:
        (
            NewStdfFilesSensor(
                task_id=steps.WAIT_TASK_ID,
                poke_interval=SETTINGS.sensor_poke_seconds,
                # A run lasts at most this long without files; runs triggered by hand
                # do not wait for it (the trigger gives way to them).
                timeout=SETTINGS.sensor_timeout_seconds,
                soft_fail=True,
            )
            >> claimed
        )
    ingested = ingest.expand(file=claimed)
    published = publish(ingested)
    published >> report()
    [claimed, ingested, published] >> watcher()


stdf_ingest()
