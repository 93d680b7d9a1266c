"""Ingest one claimed STDF file: decode, validate, curate, or quarantine with the reason.

The claim side (which files a run takes) is ``yieldops.landing.claims``;
this is the per-file work of the mapped ``ingest`` task of ``stdf_ingest``,
as a plain function.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from . import completeness
from .completeness import CompletenessRules, HashedBytes, Unfinished
from .config import ConfigError, ProductConfig
from .landing.claims import ClaimedFile
from .landing.ledger import (
    CURATED,
    DUPLICATE,
    QUARANTINED,
    REJECTED,
    WAITING,
    Ledger,
    LedgerEntry,
)
from .landing.zones import EntryProblem, LandingZone
from .product_match import FileFacts, NoProductMatch, match_product
from .stdf import DecodeFacts, DecompressionLimits, StdfError, read_tables
from .stdf.source import DEFAULT_LIMITS, Digest

log = logging.getLogger(__name__)
DEFAULT_RULES = CompletenessRules()


@dataclass(frozen=True)
class IngestOutcome:
    sha256: str
    key: str
    status: str  # curated, quarantined, duplicate, rejected, or waiting (not complete yet)
    product: str | None = None
    lot_id: str | None = None
    location: str | None = None  # curated folder, or where the quarantined copy went
    reason: str | None = None
    docs_page: str | None = None
    parts: int = 0
    seconds: float = 0.0
    recheck_at: str | None = None  # when a waiting file is looked at again (ISO time)
    # Earlier versions of the same key whose curated data this file replaced (their hashes).
    replaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what decoding left out, counted

    def as_dict(self) -> dict:
        return asdict(self)


class Quarantine(Exception):
    """A file that is bad data: kept aside with this reason, never retried as is."""

    def __init__(self, stage: str, reason: str, **details) -> None:
        super().__init__(reason)
        self.stage, self.reason, self.details = stage, reason, details


class Waiting(Exception):
    """A file its tester is still writing: looked at again at ``recheck_at``, or sooner as
    new bytes."""

    def __init__(self, reason: str, recheck_at: datetime) -> None:
        super().__init__(reason)
        self.reason, self.recheck_at = reason, recheck_at


def ingest_file(
    claimed: ClaimedFile,
    zone: LandingZone,
    ledger: Ledger,
    run_id: str,
    *,
    curated_dir: Path,
    docs_dir: Path | None = None,
    config_dir: Path | None = None,
    rules: CompletenessRules | None = None,
    limits: DecompressionLimits = DEFAULT_LIMITS,
) -> IngestOutcome:
    """Decode, validate and curate one claimed file, or quarantine it with the reason.

    Bad data never raises: the outcome says ``quarantined``. A file not complete yet
    (``yieldops.completeness``, by ``rules``) is not curated: the outcome says ``waiting``.
    A compressed file may decompress only as far as ``limits`` allow.
    Anything else (storage down, worker killed) raises and leaves the claim for a retry.
    """
    started = time.perf_counter()
    try:
        outcome = _curate(
            claimed,
            zone,
            ledger,
            run_id,
            curated_dir,
            docs_dir,
            config_dir,
            rules or DEFAULT_RULES,
            limits,
        )
    except Waiting as young:
        outcome = IngestOutcome(
            claimed.sha256,
            claimed.key,
            WAITING,
            reason=young.reason,
            recheck_at=young.recheck_at.isoformat(),
        )
    except Quarantine as bad:
        outcome = _quarantined(claimed, zone, run_id, bad)
    except EntryProblem as problem:  # no longer a readable file (e.g. replaced by a pipe)
        outcome = IngestOutcome(claimed.sha256, claimed.key, REJECTED, reason=str(problem))
    outcome = IngestOutcome(**{**outcome.as_dict(), "seconds": time.perf_counter() - started})
    if not _record(outcome, claimed, ledger, run_id):
        log.warning("%s: the ledger claim moved on while it was processed", claimed.key)
    return outcome


def _quarantined(
    claimed: ClaimedFile, zone: LandingZone, run_id: str, bad: Quarantine
) -> IngestOutcome:
    """The file copied to the quarantine with its reason, or rejected when even that copy
    cannot be made (a key the quarantine has no room for)."""
    try:
        location = zone.quarantine(claimed.key, _reason_record(claimed, zone, run_id, bad))
    except EntryProblem as problem:
        reason = f"{bad.stage}: {bad.reason}; not copied to the quarantine: {problem}"
        return IngestOutcome(claimed.sha256, claimed.key, REJECTED, reason=reason)
    return IngestOutcome(
        claimed.sha256,
        claimed.key,
        QUARANTINED,
        location=location,
        reason=f"{bad.stage}: {bad.reason}",
        docs_page=bad.details.get("docs_page"),
        product=bad.details.get("product"),
        lot_id=bad.details.get("lot_id"),
    )


def _record(outcome: IngestOutcome, claimed: ClaimedFile, ledger: Ledger, run_id: str) -> bool:
    """The outcome in the ledger; False when the run no longer holds the claim."""
    if outcome.status == WAITING and outcome.recheck_at and outcome.reason:
        return ledger.wait(
            claimed.sha256,
            run_id,
            reason=outcome.reason,
            recheck_at=datetime.fromisoformat(outcome.recheck_at),
            modified_at=_modified(claimed),
        )
    return ledger.finish(
        claimed.sha256,
        run_id,
        outcome.status,
        reason=outcome.reason,
        output=outcome.location,
        product=outcome.product,
        lot_id=outcome.lot_id,
    )


def _curate(
    claimed: ClaimedFile,
    zone: LandingZone,
    ledger: Ledger,
    run_id: str,
    curated_dir: Path,
    docs_dir: Path | None,
    config_dir: Path | None,
    rules: CompletenessRules,
    limits: DecompressionLimits,
) -> IngestOutcome:
    from .curated.dataset import write_file_tables
    from .validation import validate_tables

    content = hashlib.sha256()
    facts = DecodeFacts()
    tables = _decode_complete(claimed, zone, content, config_dir, rules, facts, limits)
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
    earlier = ledger.curated_versions(claimed.zone_url, claimed.key, claimed.sha256)
    location = write_file_tables(
        tables,
        curated_dir,
        product_name,
        lot_id,
        claimed.sha256,
        replaces=[Path(e.output) for e in earlier if e.output],
    )
    if earlier:
        ledger.supersede_curated([e.sha256 for e in earlier], claimed.sha256, run_id)
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
        reason=_curated_note(earlier, facts.warnings),
        replaced=[e.sha256 for e in earlier],
        warnings=facts.warnings,
    )


def _curated_note(earlier: list[LedgerEntry], warnings: list[str]) -> str | None:
    """What a curated file's ledger reason says: the versions it replaced, decode warnings."""
    notes = []
    if earlier:
        replaced = ", ".join(e.sha256[:12] for e in earlier)
        notes.append(f"new version of the key: replaced the curated data of {replaced}")
    if warnings:
        notes.append("decoded with warnings: " + "; ".join(warnings))
    return "; ".join(notes) or None


def _decode_complete(
    claimed: ClaimedFile,
    zone: LandingZone,
    content: Digest,
    config_dir: Path | None,
    rules: CompletenessRules,
    facts: DecodeFacts,
    limits: DecompressionLimits,
) -> dict[str, pa.Table]:
    """The file's tables when it is complete (``facts`` filled); raises ``Waiting`` while its
    tester may still be writing it, ``Quarantine`` when it is corrupt or waited too long."""
    try:
        tables = _decode_claimed(claimed, zone, content, facts, limits)
    except StdfError as exc:
        missing = completeness.cut_short(exc, claimed.size)
        if missing is None:
            raise Quarantine("decode", exc.reason, offset=exc.offset, record=exc.record) from exc
        raise _unfinished(claimed, Unfinished(missing, rules.max_age), rules) from exc
    if facts.ends_with_mrr:
        return tables
    writes_mrr, product_note = _writes_mrr(claimed, tables, config_dir)
    unfinished = completeness.without_mrr(writes_mrr, _age(claimed), rules)
    if unfinished is not None:
        missing = unfinished.missing + product_note
        raise _unfinished(claimed, replace(unfinished, missing=missing), rules)
    return tables


def _decode_claimed(
    claimed: ClaimedFile,
    zone: LandingZone,
    content: Digest,
    facts: DecodeFacts,
    limits: DecompressionLimits,
) -> dict[str, pa.Table]:
    """The tables of the claimed bytes, or their ``StdfError``; ``Waiting`` when the file
    changed since it was claimed (still growing): its newer bytes are a version of their own."""
    with zone.open(claimed.key) as raw:
        read = HashedBytes(raw)
        try:
            tables = read_tables(read.stream, digest=content, facts=facts, limits=limits)
        except StdfError:
            _same_bytes(read, claimed)
            raise
        _same_bytes(read, claimed)
        return tables


def _same_bytes(read: HashedBytes, claimed: ClaimedFile) -> None:
    if read.sha256_to_end() != claimed.sha256:
        raise Waiting(
            "changed since it was claimed: its newer bytes are looked at as a new version",
            _now(),
        )


def _writes_mrr(
    claimed: ClaimedFile, tables: dict[str, pa.Table], config_dir: Path | None
) -> tuple[bool | None, str]:
    """Whether the file's product writes an MRR (None: not known), with a note for the
    reason when no product says."""
    if tables["lots"]["lot_id"][0].as_py() is None:
        return None, " (no MIR yet)"
    try:
        config = _product_config(FileFacts.of(claimed.key, tables["lots"]), config_dir)
    except Quarantine as unknown:
        return None, f" (and no product yet: {unknown.reason})"
    return config.tester.writes_mrr, ""


def _unfinished(
    claimed: ClaimedFile, unfinished: Unfinished, rules: CompletenessRules
) -> Waiting | Quarantine:
    """``Waiting`` until the file has been unchanged for ``settles_after``; ``Quarantine``
    once it has not changed for ``rules.max_age``."""
    modified, age = _modified(claimed), _age(claimed)
    if age >= rules.max_age:
        return Quarantine(
            "incomplete",
            completeness.too_old_reason(unfinished.missing, modified, age, rules.max_age),
            last_changed=modified.isoformat(),
            age_seconds=round(age.total_seconds()),
            max_age_seconds=rules.max_age.total_seconds(),
        )
    recheck_at = modified + min(unfinished.settles_after, rules.max_age)
    reason = completeness.waiting_reason(unfinished.missing, recheck_at)
    return Waiting(reason, recheck_at)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _modified(claimed: ClaimedFile) -> datetime:
    """When the claimed bytes last changed; unknown counts as just now."""
    return claimed.modified_at or _now()


def _age(claimed: ClaimedFile) -> timedelta:
    return _now() - _modified(claimed)


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
