"""Ingest one claimed STDF file: decode, validate, curate, or quarantine with the reason.

The claim side (which files a run takes) is ``yieldops.landing.claims``;
this is the per-file work of the mapped ``ingest`` task of ``stdf_ingest``,
as a plain function.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .config import ConfigError, ProductConfig, product
from .landing.claims import ClaimedFile
from .landing.ledger import CURATED, QUARANTINED, Ledger
from .landing.zones import LandingZone
from .stdf import StdfError, read_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    sha256: str
    key: str
    status: str  # curated or quarantined
    product: str | None = None
    lot_id: str | None = None
    location: str | None = None  # curated folder, or where the quarantined copy went
    reason: str | None = None
    docs_page: str | None = None
    parts: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class Quarantine(Exception):
    """A file that is bad data: kept aside with this reason, never retried as is."""

    def __init__(self, stage: str, reason: str, **details) -> None:
        super().__init__(reason)
        self.stage, self.reason, self.details = stage, reason, details


def ingest_file(
    claimed: ClaimedFile,
    zone: LandingZone,
    ledger: Ledger,
    run_id: str,
    *,
    curated_dir: Path,
    docs_dir: Path | None = None,
    config_dir: Path | None = None,
) -> IngestOutcome:
    """Decode, validate and curate one claimed file, or quarantine it with the reason.

    Bad data never raises: the outcome says ``quarantined``. Anything else
    (storage down, worker killed) raises and leaves the claim for a retry.
    """
    started = time.perf_counter()
    try:
        outcome = _curate(claimed, zone, run_id, curated_dir, docs_dir, config_dir)
    except Quarantine as bad:
        location = zone.quarantine(claimed.key, _reason_record(claimed, zone, run_id, bad))
        outcome = IngestOutcome(
            claimed.sha256,
            claimed.key,
            QUARANTINED,
            location=location,
            reason=f"{bad.stage}: {bad.reason}",
            docs_page=bad.details.get("docs_page"),
            product=bad.details.get("product"),
            lot_id=bad.details.get("lot_id"),
        )
    outcome = IngestOutcome(**{**outcome.as_dict(), "seconds": time.perf_counter() - started})
    if not ledger.finish(
        claimed.sha256,
        run_id,
        outcome.status,
        reason=outcome.reason,
        output=outcome.location,
        product=outcome.product,
        lot_id=outcome.lot_id,
    ):
        log.warning("%s: the ledger claim moved on while it was processed", claimed.key)
    return outcome


def _curate(
    claimed: ClaimedFile,
    zone: LandingZone,
    run_id: str,
    curated_dir: Path,
    docs_dir: Path | None,
    config_dir: Path | None,
) -> IngestOutcome:
    from .curated.dataset import write_file_tables
    from .validation import validate_tables

    try:
        with zone.open(claimed.key) as stream:
            tables = read_tables(stream)
    except StdfError as exc:
        raise Quarantine("decode", exc.reason, offset=exc.offset, record=exc.record) from exc
    lot = tables["lots"].to_pylist()[0]
    lot_id, product_name = lot["lot_id"], lot["product"]
    config = _product_config(product_name, lot_id, config_dir)
    if not lot_id:
        raise Quarantine("decode", "MIR has no LOT_ID", product=product_name)
    report = validate_tables(
        tables,
        config,
        docs_dir=docs_dir,
        run_name=f"{run_id}/{claimed.sha256[:12]}",
        stdf_file=claimed.key,
    )
    docs_page = str(report.docs_page) if report.docs_page else None
    if not report.success:
        raise Quarantine(
            "validation",
            f"{len(report.failures)} expectation(s) failed: " + "; ".join(report.failures[:5]),
            failures=report.failures,
            docs_page=docs_page,
            product=product_name,
            lot_id=lot_id,
        )
    location = write_file_tables(tables, curated_dir, product_name, lot_id, claimed.sha256)
    return IngestOutcome(
        claimed.sha256,
        claimed.key,
        CURATED,
        product=product_name,
        lot_id=lot_id,
        location=str(location),
        docs_page=docs_page,
        parts=tables["parts"].num_rows,
    )


def _product_config(name: str | None, lot_id: str | None, config_dir: Path | None) -> ProductConfig:
    try:
        return product(name or "", config_dir)
    except ConfigError as exc:
        raise Quarantine("product", str(exc), product=name, lot_id=lot_id) from exc


def _reason_record(claimed: ClaimedFile, zone: LandingZone, run_id: str, bad: Quarantine) -> dict:
    return {
        "file": zone.uri(claimed.key),
        "key": claimed.key,
        "sha256": claimed.sha256,
        "size": claimed.size,
        "stage": bad.stage,
        "reason": bad.reason,
        "details": bad.details,
        "dag_run_id": run_id,
        "quarantined_at": datetime.now(timezone.utc).isoformat(),
    }
