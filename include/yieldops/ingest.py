"""Ingest one claimed STDF file: decode, validate, curate, or quarantine with the reason.

The claim side (which files a run takes) is ``yieldops.landing.claims``;
this is the per-file work of the mapped ``ingest`` task of ``stdf_ingest``,
as a plain function.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from .config import ConfigError, ProductConfig
from .landing.claims import ClaimedFile
from .landing.ledger import CURATED, DUPLICATE, QUARANTINED, Ledger, LedgerEntry
from .landing.zones import LandingZone
from .product_match import FileFacts, NoProductMatch, match_product
from .stdf import DecodeFacts, DecompressionLimits, StdfError, read_tables
from .stdf.source import DEFAULT_LIMITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    sha256: str
    key: str
    status: str  # curated, quarantined or duplicate
    product: str | None = None
    lot_id: str | None = None
    location: str | None = None  # curated folder, or where the quarantined copy went
    reason: str | None = None
    docs_page: str | None = None
    parts: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what decoding left out, counted

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
    limits: DecompressionLimits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Decode, validate and curate one claimed file, or quarantine it with the reason.

    Bad data never raises: the outcome says ``quarantined``. Anything else
    (storage down, worker killed) raises and leaves the claim for a retry. A compressed
    file may decompress only as far as ``limits`` allow.
    """
    started = time.perf_counter()
    try:
        outcome = _curate(claimed, zone, ledger, run_id, curated_dir, docs_dir, config_dir, limits)
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
    ledger: Ledger,
    run_id: str,
    curated_dir: Path,
    docs_dir: Path | None,
    config_dir: Path | None,
    limits: DecompressionLimits,
) -> IngestOutcome:
    from .curated.dataset import write_file_tables
    from .validation import validate_tables

    content = hashlib.sha256()
    facts = DecodeFacts()
    try:
        with zone.open(claimed.key) as stream:
            tables = read_tables(stream, digest=content, facts=facts, limits=limits)
    except StdfError as exc:
        raise Quarantine("decode", exc.reason, offset=exc.offset, record=exc.record) from exc
    first = ledger.take_content(content.hexdigest(), claimed.sha256)
    if first != claimed.sha256:
        return _duplicate(claimed, ledger.get(first), tables)
    if tables["lots"]["lot_id"][0].as_py() is None:
        raise Quarantine("decode", "no MIR: the file does not say which lot it tested")
    config = _product_config(FileFacts.of(claimed.key, tables["lots"]), config_dir)
    tables = with_product(tables, config.name)
    product_name, lot_id = config.name, tables["lots"]["lot_id"][0].as_py()
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
        # the ledger's reason column shows them
        reason="decoded with warnings: " + "; ".join(facts.warnings) if facts.warnings else None,
        warnings=facts.warnings,
    )


def _duplicate(claimed: ClaimedFile, first: LedgerEntry | None, tables: dict) -> IngestOutcome:
    """A file whose decoded content landed before (e.g. the .stdf of a .stdf.gz): not
    curated again; the outcome names the first."""
    name = f"{first.source_key} ({first.status})" if first else "a file no longer in the ledger"
    return IngestOutcome(
        claimed.sha256,
        claimed.key,
        DUPLICATE,
        product=first.product if first else None,
        lot_id=tables["lots"]["lot_id"][0].as_py(),
        location=first.output if first else None,
        reason=f"same STDF content as {name}: curated once",
    )


def _product_config(facts: FileFacts, config_dir: Path | None) -> ProductConfig:
    try:
        return match_product(facts, config_dir)
    except (NoProductMatch, ConfigError) as exc:
        raise Quarantine("product", str(exc), part_type=facts.part_type) from exc


def with_product(tables: dict[str, pa.Table], product_name: str) -> dict[str, pa.Table]:
    """The tables with ``lots.product`` set to the product the file was matched to."""
    lots = tables["lots"]
    column = pa.array([product_name] * lots.num_rows, pa.string())
    return {
        **tables,
        "lots": lots.set_column(lots.schema.get_field_index("product"), "product", column),
    }


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
