"""Real tester files end to end, as the README's "Your own tester files" tells a new user:
`yieldops product init` writes a product YAML per device, then `yieldops run` with
YIELDOPS_CONFIG_DIR on that config ingests, trains and rolls out.

- the real samples in ../shared/stdf-samples (skipped when absent): every file is curated
  (or is the same content as one that was), the curated tests table has one row per
  distinct test, and every product reaches a verdict its data allows;
- a product in each synthetic tester style (yieldops.synth.styles) goes to a champion,
  beside a file cut short that is named with its reason (exit 1) without stopping the
  others; the console shows one line per step and outcome, Airflow's logs go to the file
  it names.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import sample_files

from yieldops.config import load_product
from yieldops.stdf import read_records, read_tables
from yieldops.synth import TESTER_STYLES, synthesize

YIELDOPS = Path(sys.executable).with_name("yieldops")
TIMEOUT = 900
RESULT_RECORDS = ("PTR", "MPR", "FTR")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def yieldops(*args: object, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"YIELDOPS_CONFIG_DIR": str(config)} if config else {})}
    return subprocess.run(
        [YIELDOPS, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )


def init_products(devices: dict[str, list[Path]], config: Path) -> None:
    """`yieldops product init` for each device (its library call: the command's own
    behaviour is tested in tests/unit/test_product_init.py)."""
    from yieldops.product_init import format_outcome, init_product

    for name, files in devices.items():
        outcome = init_product(files, name, config)
        assert outcome.passed, format_outcome(outcome)


def run(files: list[Path], home: Path, config: Path, exit_code: int = 0) -> dict[str, str]:
    """`yieldops run`; its console lines by what they are about (``ingest X``, ``train P``,
    ``rollout M``), continuation lines joined."""
    return said_by_subject(run_command(files, home, config, exit_code).stdout)


def run_command(
    files: list[Path], home: Path, config: Path, exit_code: int = 0
) -> subprocess.CompletedProcess:
    done = yieldops("run", *files, "--home", home, config=config)
    assert done.returncode == exit_code, done.stdout + done.stderr[-3000:]
    return done


def said_by_subject(out: str) -> dict[str, str]:
    lines: dict[str, str] = {}
    subject = ""
    for line in out.splitlines():
        if line.startswith("    ") and subject:
            lines[subject] += " " + line.strip()
        elif ": " in line:
            subject, _, said = line.partition(": ")
            lines[subject] = said
    return lines


def distinct_tests(path: Path) -> set[tuple[str, int, str]]:
    """Record type, number and name of every test with a result, read independently of the
    curated tables: a record without a name is the test its number first named."""
    tests = set()
    records = read_records(path, list(RESULT_RECORDS))
    for record, table in records.items():
        first_name: dict[int, str] = {}
        for num, name in zip(table["TEST_NUM"].to_pylist(), table["TEST_TXT"].to_pylist()):
            first_name.setdefault(num, name or "")
            tests.add((record, num, name or first_name[num]))
    return tests


def test_every_real_sample_goes_from_product_init_through_run(onboarded, tmp_path: Path) -> None:
    config, outcomes = onboarded  # one product per device (conftest.py)
    files = sample_files()
    devices: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        devices[load_product(outcomes[path.name].path).name].append(path)
    home = tmp_path / "home"

    said = run(files, home, config)

    for path in files:
        outcome = said[f"ingest {path.name}"]
        assert outcome.startswith(("curated ", "duplicate (same STDF content as ")), outcome
        assert not outcome.startswith("duplicate") or "(curated): curated once" in outcome
        folders = list((home / "curated").glob(f"product=*/lot=*/file={sha256(path)}"))
        if outcome.startswith("curated "):
            (folder,) = folders
            tests = pq.read_table(folder / "tests.parquet")
            ids = tests["test_id"].to_pylist()
            assert len(ids) == len(set(ids)), path.name  # one row per distinct test ...
            measured = set(pq.read_table(folder / "results.parquet")["test_id"].to_pylist())
            with_results = tests.filter(pa.array([i in measured for i in ids]))
            # ... and every test with a result is one a reader independent of ours finds
            assert set(_tests_of(with_results)) == distinct_tests(path), path.name

    for name, paths in devices.items():
        outcome = said[f"train {name}"]
        tables = [read_tables(p) for p in paths]
        wafers = {w for t in tables for w in t["wafers"]["wafer_index"].to_pylist()}
        parts = max(t["parts"].num_rows for t in tables)
        if len(wafers) > 1 or (not wafers and parts > 1):
            # enough to hold some wafers (or, in final test, parts) out: a gate verdict
            verdict = r"(registered yield-\S+ v\d+|rejected by the gate) \(\w+ [\d.]+"
            assert re.match(verdict, outcome), outcome
        else:
            assert outcome.startswith("skipped: not enough data: "), outcome


def _tests_of(tests) -> list[tuple[str, int, str]]:
    return [
        (r["record"], r["test_num"], r["test_name"] or "")
        for r in tests.select(["record", "test_num", "test_name"]).to_pylist()
    ]


def test_a_product_in_each_tester_style_goes_to_a_champion(tmp_path: Path) -> None:
    import mlflow

    devices = {
        f"S-{style}": synthesize(
            tmp_path / "stdf" / style,
            lots=4,
            wafers_per_lot=1,
            seed=0,
            drift=0.3,
            tester_style=style,
        )
        for style in TESTER_STYLES
    }
    config, home = tmp_path / "config", tmp_path / "home"
    init_products(devices, config)
    cut_short = tmp_path / "stdf" / "cut_short.stdf"
    cut_short.write_bytes(next(iter(devices.values()))[0].read_bytes()[:5000])

    done = run_command(
        [*(p for paths in devices.values() for p in paths), cut_short], home, config, exit_code=1
    )

    said = said_by_subject(done.stdout)
    registry = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    for name, paths in devices.items():
        for path in paths:
            assert said[f"ingest {path.name}"].startswith("curated "), said
        registered = rf"registered yield-{name} v1 \(\w+ [\d.]+ vs no skill [\d.]+"
        assert re.match(registered, said[f"train {name}"]), said  # metrics beside baselines
        assert said[f"rollout yield-{name} v1"] == "champion", said
        assert int(registry.get_model_version_by_alias(f"yield-{name}", "champion").version) == 1
    # the bad file is named with its reason, and did not stop the others (exit 1 for it)
    assert said["ingest cut_short.stdf"].startswith(
        "quarantined (incomplete: file ends inside a record"
    ), said
    assert_console_and_log(done)


STEP_LINES = ("yieldops run: ", "ingest ", "train ", "rollout ", "full logs: ", "  ")


def assert_console_and_log(done: subprocess.CompletedProcess) -> None:
    """One console line per step and outcome; Airflow's logs, every task's, in the file the
    first and last lines name, without known third-party noise."""
    lines = done.stdout.splitlines()
    named = re.search(r"full logs: (\S+\.log)", lines[0])
    assert named, done.stdout
    log_path = Path(named.group(1))
    assert lines[-1].startswith(f"full logs: {log_path};")
    assert all(line.startswith(STEP_LINES) for line in lines), done.stdout  # no Airflow line
    assert "[info" not in done.stderr, done.stderr[-3000:]
    log = log_path.read_text()
    assert "[DAG TEST] end task task_id=promote" in log  # every task's log is there
    assert "DagRun Finished: dag_id=model_rollout" in log
    assert ">>> rollout yield-S-" in log  # the step lines mark the way
    assert "Skipping registering function" not in log  # Great Expectations' import chatter
    assert "DeprecatedImportWarning" not in log  # skops' scan of Airflow's modules
