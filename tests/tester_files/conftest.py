"""The real samples onboarded once for this stage: one product per device, all in one
config folder (`yieldops product init`'s library call), for its tests and for `yieldops
run` on that config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.conftest import sample_files

from yieldops.product_init import InitOutcome, init_product
from yieldops.stdf import read_tables


def device_of(path: Path) -> tuple[str, str]:
    """What makes files one device's: the part type, else the test program."""
    lot = read_tables(path)["lots"].to_pylist()[0]
    return lot["part_type"] or "", "" if lot["part_type"] else lot["job_name"] or ""


def product_name(device: tuple[str, str]) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "".join(device))[:40].strip("_.-")


@pytest.fixture(scope="session")
def onboarded(tmp_path_factory) -> tuple[Path, dict[str, InitOutcome]]:
    """Every sample, one product per device, all in one config folder: the outcome of each
    file's init (the suites run once per file here)."""
    files = sample_files()
    if not files:
        pytest.skip("no STDF samples")
    config_dir = tmp_path_factory.mktemp("config")
    devices: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        devices.setdefault(device_of(path), []).append(path)
    outcomes = {}
    for device, paths in devices.items():
        outcome = init_product(paths, product_name(device), config_dir)
        outcomes.update({path.name: outcome for path in paths})
    return config_dir, outcomes
