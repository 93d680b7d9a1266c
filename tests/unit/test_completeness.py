"""Completeness rules: what a file still being written looks like to the reader, what a
corrupt one looks like, and the settings that tune the waiting."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from yieldops.completeness import CompletenessRules, cut_short, without_mrr
from yieldops.product_init import profile_files
from yieldops.settings import Settings, load_settings
from yieldops.stdf import StdfError, read_tables
from yieldops.synth import synthesize


def decode_error(data: bytes) -> StdfError:
    with pytest.raises(StdfError) as raised:
        read_tables(io.BytesIO(data))
    return raised.value


@pytest.fixture(scope="module")
def lots(tmp_path_factory):
    out = tmp_path_factory.mktemp("lots")
    (plain,) = synthesize(out, lots=1, wafers_per_lot=1, seed=1)
    (gz,) = synthesize(out, lots=1, wafers_per_lot=1, seed=1, compression="gz", first_lot=1)
    (bz2,) = synthesize(out, lots=1, wafers_per_lot=1, seed=1, compression="bz2", first_lot=2)
    return plain.read_bytes(), gz.read_bytes(), bz2.read_bytes()


def test_a_file_cut_short_is_still_being_written(lots):
    plain, gz, bz2 = lots
    cut = plain[:10_000]
    assert cut_short(decode_error(cut), len(cut)).startswith("file ends inside a record (")
    for compressed in (gz, bz2):
        half = compressed[: len(compressed) // 2]
        assert cut_short(decode_error(half), len(half)) == (
            f"the compressed stream ends before its end marker ({len(half)} bytes)"
        )
    for start in (b"", b"\x02\x00", gz[:5]):
        assert cut_short(decode_error(start), len(start)) is not None


def test_a_corrupt_file_is_not_waited_for(lots):
    _, gz, _ = lots
    flipped = bytearray(gz)
    flipped[len(gz) // 2 : len(gz) // 2 + 64] = bytes(64)  # corrupt deflate data, or its CRC
    for bad in (b"not an STDF file at all", b"\x02\x00\x00\x0a\x02\x03", bytes(flipped)):
        assert cut_short(decode_error(bad), len(bad)) is None


def test_without_mrr_a_file_is_complete_only_when_its_tester_writes_none_and_it_is_quiet():
    rules = CompletenessRules(quiet=timedelta(minutes=5), max_age=timedelta(hours=24))
    assert without_mrr(False, timedelta(minutes=5), rules) is None
    assert without_mrr(False, timedelta(minutes=1), rules).settles_after == rules.quiet
    for writes_mrr in (True, None):  # the product says it writes one, or says nothing
        assert without_mrr(writes_mrr, timedelta(days=9), rules).settles_after == rules.max_age


def test_product_init_tells_a_tester_that_writes_no_mrr(tmp_path):
    (lot,) = synthesize(tmp_path, lots=1, wafers_per_lot=1, seed=2, tester_style="inhouse")
    assert profile_files([lot], "SENSOR").writes_mrr is False


def test_the_waiting_times_come_from_environment_and_overrides(monkeypatch):
    assert (Settings().incomplete_quiet_seconds, Settings().incomplete_max_age_seconds) == (
        300.0,
        86400.0,
    )
    monkeypatch.setenv("YIELDOPS_INCOMPLETE_QUIET_SECONDS", "30")
    monkeypatch.setenv("YIELDOPS_INCOMPLETE_MAX_AGE_SECONDS", "0")
    settings = load_settings()
    assert (settings.incomplete_quiet_seconds, settings.incomplete_max_age_seconds) == (30.0, 0.0)
    overridden = settings.with_overrides(incomplete_max_age_seconds="7200")  # Airflow Variable
    assert overridden.incomplete_max_age_seconds == 7200.0


def test_airflow_variables_override_settings_as_their_fields_types():
    overridden = load_settings().with_overrides(
        max_decompressed_bytes="1048576", max_compression_ratio="50", curated_dir="/data/c"
    )
    assert overridden.max_decompressed_bytes == 1 << 20
    assert overridden.max_compression_ratio == 50.0
    assert overridden.curated_dir == Path("/data/c")
